"""Supernet checkpoints: OFA's public files and nat's own, always loaded without running pickle code.

OFA checkpoints (``ofa_mbv3_d234_e346_k357_w1.0`` / ``_w1.2``) are ``torch.save`` files holding
``{"state_dict": ...}`` or a bare state dict, with block keys either ``blocks.N.conv.`` (current OFA) or
``blocks.N.mobile_inverted_conv.`` (legacy). They are read with ``torch.load(weights_only=True)``,
which refuses anything but tensors and plain containers. nat's own supernets are safetensors files
whose metadata carries the search space, width and class count, so they load without any guessing.
"""

from __future__ import annotations

import json
import math
import pickle
import re
import struct
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from nat.errors import CheckpointError
from nat.files import write_bytes_atomic
from nat.space.definition import SearchSpace, get_space
from nat.supernet.network import Supernet

FORMAT = "nat.supernet/1"
_LEGACY = ".mobile_inverted_conv."


def unsafe_reason(exc: Exception) -> str:
    """What torch's safe loader refused, without its advice to turn the safety off (never repeat that)."""
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    return (
        f"it needs the Python object {match.group(1)}" if match else "it needs Python objects beyond tensors"
    )


def read_torch_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The state dict inside a ``torch.save`` file, loaded safely; `CheckpointError` if it is not one."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; give the file inside it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with path.open("rb") as f:
        head = f.read(2)
    if head[:2] != b"PK" and head[:1] != b"\x80":  # neither torch.save's zip nor a legacy pickle
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (neither torch.save's zip format nor a pickle; "
            "an HTML page or another kind of file?)"
        )
    try:
        with (
            warnings.catch_warnings()
        ):  # torch's notes on a foreign file's pickle protocol: our error says it
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds more than weights and was not loaded: only tensors and plain containers are "
            f"accepted, never pickled code ({unsafe_reason(exc)}); save its state_dict alone, or use a "
            "safetensors file"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, SafetensorError) as exc:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint (truncated or wrong file?): "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    if isinstance(data, Mapping) and "state_dict" in data and isinstance(data["state_dict"], Mapping):
        data = data["state_dict"]
    if (
        not isinstance(data, Mapping)
        or not data
        or not all(isinstance(v, torch.Tensor) for v in data.values())
    ):
        raise CheckpointError(
            f"{path} does not hold a state dict (expected a mapping of tensor names to "
            "tensors, possibly under 'state_dict')"
        )
    return dict(data)


def normalise_ofa_keys(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OFA's legacy ``mobile_inverted_conv`` key names mapped to the current ``conv`` names."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")  # saved from DataParallel/DDP
        out[key.replace(_LEGACY, ".conv.")] = value
    return out


def _infer_width(state: Mapping[str, torch.Tensor], space: SearchSpace, path: Path) -> float:
    try:
        observed = (
            state["first_conv.conv.weight"].shape[0],
            state["final_expand_layer.conv.weight"].shape[0],
            state["feature_mix_layer.conv.weight"].shape[0],
        )
    except KeyError as exc:
        raise CheckpointError(
            f"{path} is not an OFA MobileNetV3 supernet checkpoint (no {exc.args[0]!r} weights)"
        ) from None
    for w in space.width_mults:
        widths = space.widths(w)
        if observed == (widths[0], widths[7], widths[8]):
            return w
    raise CheckpointError(
        f"{path}: channel widths {observed} match no width multiplier of search space "
        f"'{space.name}' {list(space.width_mults)}"
    )


def fit_problems(
    own: Mapping[str, torch.Tensor], state: Mapping[str, torch.Tensor], optional: tuple[str, ...] = ()
) -> list[str]:
    """Why ``state`` does not load strictly into a network whose state dict is ``own`` (missing keys,
    unexpected keys, shape mismatches; keys ending in one of ``optional`` may be missing)."""
    missing = [k for k in own if k not in state and not k.endswith(optional)]
    unexpected = [k for k in state if k not in own]
    shapes = [
        f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), e.g. {missing[:3]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), e.g. {unexpected[:3]}")
    if shapes:
        problems.append(f"{len(shapes)} shape mismatch(es), e.g. {shapes[:2]}")
    return problems


def load_ofa_state_dict(net: Supernet, state: Mapping[str, torch.Tensor], source: str = "state dict") -> None:
    """Load an OFA-format state dict into ``net``; clear errors for missing, extra or mis-shaped keys."""
    state = normalise_ofa_keys(state)
    own = net.state_dict()
    problems = fit_problems(own, state)
    if problems:
        raise CheckpointError(
            f"{source} does not fit a supernet of space '{net.space.name}' width "
            f"{net.width_mult}: " + "; ".join(problems)
        )
    net.load_state_dict(state)


def _blank_supernet(space: SearchSpace, width: float, num_classes: int) -> Supernet:
    """A supernet about to receive a checkpoint's weights. Its initial weights are overwritten, so they
    are drawn in a forked random state: loading a file leaves the caller's global random state as it
    was (a run's later draws then never depend on which files were loaded before)."""
    with torch.random.fork_rng(devices=[]):
        return Supernet(space, width, num_classes)


def from_ofa_checkpoint(
    path: str | Path,
    space: SearchSpace | str | None = None,
    num_classes: int | None = None,
    *,
    classifier_seed: int = 0,
) -> Supernet:
    """Build a `Supernet` from an OFA MobileNetV3 checkpoint; width and class count are inferred.

    With ``num_classes`` different from the checkpoint's, the classifier is replaced (for a new task),
    its weights drawn from ``classifier_seed`` (`Supernet.reset_classifier`).
    """
    path = Path(path)
    space = get_space(space)
    state = normalise_ofa_keys(read_torch_checkpoint(path))
    width = _infer_width(state, space, path)
    if "classifier.linear.weight" not in state:
        raise CheckpointError(f"{path} has no classifier weights ('classifier.linear.weight')")
    ckpt_classes = state["classifier.linear.weight"].shape[0]
    net = _blank_supernet(space, width, ckpt_classes)
    load_ofa_state_dict(net, state, str(path))
    if num_classes is not None and num_classes != ckpt_classes:
        net.reset_classifier(num_classes, seed=classifier_seed)
    return net


def save_supernet(net: Supernet, path: str | Path, extra: Mapping[str, Any] | None = None) -> Path:
    """Save weights as safetensors with the space, width and class count in the metadata (atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    metadata = {
        "format": FORMAT,
        "space": net.space.model_dump_json(),
        "width_mult": str(net.width_mult),
        "num_classes": str(net.num_classes),
        "extra": json.dumps(dict(extra or {})),
    }
    tensors = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return write_bytes_atomic(path, _sorted_metadata(save(tensors, metadata=metadata)))


def _sorted_metadata(data: bytes) -> bytes:
    """A safetensors file with its metadata keys in sorted order. safetensors writes them in the order
    of a Rust hash map, which changes from process to process, so two identical runs wrote supernet
    files that differed by bytes though every tensor was equal. Sorting keeps the header's length (the
    same entries, reordered), so the tensor offsets stay valid; anything unexpected is left as it is."""
    (size,) = struct.unpack("<Q", data[:8])
    text = data[8 : 8 + size].decode("utf-8")
    header = json.loads(text)
    if not isinstance(header.get("__metadata__"), dict):
        return data
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    redone = json.dumps(header, separators=(",", ":"), ensure_ascii=False)
    padded = redone + " " * (len(text.encode("utf-8")) - len(redone.encode("utf-8")))
    if len(redone.encode("utf-8")) != len(text.rstrip(" ").encode("utf-8")):
        return data  # another escaping than serde_json's: keep the file as safetensors wrote it
    return data[:8] + padded.encode("utf-8") + data[8 + size :]


def read_metadata(path: str | Path) -> dict[str, str]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def load_supernet(path: str | Path, num_classes: int | None = None, *, classifier_seed: int = 0) -> Supernet:
    """Load a supernet saved by `save_supernet`, or (by content) an OFA ``torch.save`` checkpoint.

    With ``num_classes`` different from the file's, the classifier is replaced by one drawn from
    ``classifier_seed`` (the same seed, the same head)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a checkpoint file; give the file inside it")
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    with path.open("rb") as f:
        head = f.read(8)
    if head[:2] == b"PK" or head[:1] == b"\x80":  # zip (torch.save) or legacy pickle: an OFA checkpoint
        return from_ofa_checkpoint(path, num_classes=num_classes, classifier_seed=classifier_seed)
    try:
        metadata = read_metadata(path)
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(
            f"{path} is neither a nat supernet (safetensors) nor a PyTorch checkpoint: {exc}"
        ) from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(
            f"{path} is a safetensors file but not a nat supernet "
            f"(metadata format {metadata.get('format')!r}, expected {FORMAT!r})"
        )
    try:
        space = SearchSpace.model_validate_json(metadata["space"])
        width = float(metadata["width_mult"])
        classes = int(metadata["num_classes"])
    except (KeyError, ValueError, ValidationError) as exc:
        raise CheckpointError(f"{path} has damaged nat metadata: {exc}") from None
    net = _blank_supernet(space, width, classes)
    load_ofa_state_dict(net, tensors, str(path))
    if num_classes is not None and num_classes != classes:
        net.reset_classifier(num_classes, seed=classifier_seed)
    if not math.isfinite(width):
        raise CheckpointError(f"{path}: invalid width multiplier {width}")
    return net


def load_weights_from(net: Supernet, path: str | Path, what: str) -> None:
    """Copy the saved supernet ``path``'s weights into ``net`` (same space and width, else one
    `CheckpointError` naming ``what`` asked for it); its classifier too where the class counts agree
    (as for a pretrained supernet), else ``net`` keeps its own new head. Used by pretraining's
    ``init_from`` and a warm start's ``supernet``."""
    source = load_supernet(path)
    if source.space != net.space or source.width_mult != net.width_mult:
        raise CheckpointError(
            f"{what} {path} is a supernet of space '{source.space.name}' width {source.width_mult}; "
            f"this run trains space '{net.space.name}' width {net.width_mult}"
        )
    state = source.state_dict()
    if source.num_classes != net.num_classes:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    net.load_state_dict(state, strict=False)
