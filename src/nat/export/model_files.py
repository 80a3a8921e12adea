"""Model folders: a NATNet as files that other code can use, and ONNX.

A folder written by `save_model` holds (every file replaced atomically):

* ``model.safetensors``: the weights under OFA's static-network key names (weights only: loading can
  never run code);
* ``net.config``: the network in OFA/NAT's static-network JSON (`nat.export.ofa_config`), which OFA's
  ``MobileNetV3.build_from_config`` builds and those weights load into;
* ``net.subnet``: NAT's subnet format;
* ``model.json``: nat's own facts: search space, subnet, classes, preprocessing, metrics, provenance;
* ``model.onnx`` when asked for.

`load_model` reads these folders, and the older ones whose ``net.config`` held
``{"space", "subnet", "num_classes", "metrics"}``. docs/export.md describes every field.
"""

from __future__ import annotations

import importlib.util
import json
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from nat.config_io import check_file_data, read_json_file
from nat.errors import CheckpointError, ConfigError
from nat.export.natnet import load_weights
from nat.export.ofa_config import is_net_config, net_config
from nat.files import write_atomic, write_text_atomic
from nat.space.definition import SearchSpace
from nat.space.subnet import Subnet
from nat.supernet.static import StaticMobileNetV3

FORMAT = "nat.model/1"
#: ImageNet statistics (as ``nat.data.source``), the default when a model's data set is unknown
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: ImageNet's statistics for one grey channel (nat's ``normalization: imagenet`` on grayscale sets)
GRAY_MEAN, GRAY_STD = (0.449,), (0.226,)
INTERPOLATIONS = ("bilinear", "bicubic")
_INFO_KEYS = {"class_names", "preprocessing", "provenance"}
_PREPROCESSING_KEYS = {"resolution", "mean", "std", "channels", "interpolation", "crop_pct"}


#: what to run when a model folder is incomplete or damaged
RECREATE = "re-create the folder with `nat export RUN_DIR --out DIR` from the run that made it"


class Preprocessing(BaseModel):
    """``model.json``'s ``preprocessing``: how an image becomes the model's input."""

    model_config = ConfigDict(extra="allow")
    resolution: int = Field(ge=1)
    mean: list[float] = Field(min_length=1, max_length=3)
    std: list[float] = Field(min_length=1, max_length=3)
    channels: int = Field(ge=1, le=3)
    interpolation: str
    crop_pct: float = Field(gt=0, le=1)


class Provenance(BaseModel):
    """``model.json``'s ``provenance``: where the model comes from (what `nat eval` reads of it)."""

    model_config = ConfigDict(extra="allow")
    dataset: str | None = None
    data: dict[str, Any] | None = None
    seed: int | None = None
    run: str | None = None
    iteration: int | None = None


class ModelDescription(BaseModel):
    """``model.json``, validated strictly when a folder is read: every command that reads a model
    folder gets the same checked facts, and a damaged field is named, never hit later."""

    model_config = ConfigDict(extra="allow")
    format: str
    space: dict[str, Any]
    subnet: dict[str, Any]
    num_classes: int = Field(ge=1)
    class_names: list[str] | None = None
    preprocessing: Preprocessing
    metrics: dict[str, Any] = Field(default_factory=dict)
    provenance: Provenance = Field(default_factory=Provenance)


def _jsonable(value: Any) -> Any:
    """Plain JSON values: numpy/torch scalars unwrapped, tuples as lists, non-finite floats as null."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", 0) == 0:
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Path):
        return str(value)
    raise ConfigError(f"cannot store {type(value).__name__} value {value!r} in model.json")


def default_preprocessing(resolution: int, channels: int = 3) -> dict[str, Any]:
    mean, std = (IMAGENET_MEAN, IMAGENET_STD) if channels == 3 else (GRAY_MEAN, GRAY_STD)
    return {
        "resolution": resolution,
        "mean": list(mean),
        "std": list(std),
        "channels": channels,
        "interpolation": "bilinear",
        "crop_pct": 1.0,
    }


def check_preprocessing(given: Mapping[str, Any] | None, resolution: int) -> dict[str, Any]:
    """``given`` completed with defaults and checked (`ConfigError` for a wrong value)."""
    given = dict(given or {})
    unknown = sorted(set(given) - _PREPROCESSING_KEYS)
    if unknown:
        raise ConfigError(f"preprocessing: unknown key(s) {unknown}; known: {sorted(_PREPROCESSING_KEYS)}")
    channels = given.get("channels", 3)
    if channels not in (1, 3):
        raise ConfigError(f"preprocessing 'channels' must be 1 or 3, got {channels!r}")
    out = {**default_preprocessing(resolution, channels), **given}
    r = out["resolution"]
    if isinstance(r, bool) or not isinstance(r, int) or r < 1:
        raise ConfigError(f"preprocessing 'resolution' must be a positive integer, got {r!r}")
    for key in ("mean", "std"):
        values = out[key]
        if not isinstance(values, list | tuple) or len(values) != channels:
            raise ConfigError(f"preprocessing '{key}' needs {channels} value(s), got {values!r}")
        out[key] = [float(v) for v in values]
    if not all(s > 0 for s in out["std"]):
        raise ConfigError(f"preprocessing 'std' must be positive, got {out['std']}")
    if out["interpolation"] not in INTERPOLATIONS:
        raise ConfigError(f"preprocessing 'interpolation' must be one of {INTERPOLATIONS}")
    crop = out["crop_pct"]
    if isinstance(crop, bool) or not isinstance(crop, int | float) or not 0 < crop <= 1:
        raise ConfigError(f"preprocessing 'crop_pct' must be in (0, 1], got {crop!r}")
    out["crop_pct"] = float(crop)
    return out


def model_info(
    model: StaticMobileNetV3, metrics: Mapping[str, Any] | None = None, info: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The content of ``model.json`` for ``model`` (what `save_model` writes)."""
    from nat import __version__

    info = dict(info or {})
    unknown = sorted(set(info) - _INFO_KEYS)
    if unknown:
        raise ConfigError(f"save_model info: unknown key(s) {unknown}; known: {sorted(_INFO_KEYS)}")
    names = info.get("class_names")
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != model.num_classes:
            raise ConfigError(f"{len(names)} class names for a model with {model.num_classes} classes")
    provenance = info.get("provenance") or {}
    if not isinstance(provenance, Mapping):
        raise ConfigError(f"save_model info 'provenance' must be a mapping, got {provenance!r}")
    return _jsonable(
        {
            "format": FORMAT,
            "space": model.space.model_dump(mode="json"),
            "subnet": model.subnet.to_dict(),
            "num_classes": model.num_classes,
            "class_names": names,
            "preprocessing": check_preprocessing(info.get("preprocessing"), model.subnet.r),
            "metrics": dict(metrics or {}),
            "provenance": {"nat_version": __version__, **provenance},
        }
    )


def ofa_state_dict(model: StaticMobileNetV3) -> dict[str, torch.Tensor]:
    """The weights under OFA's static ``MobileNetV3`` key names.

    nat's standalone modules carry OFA's names (``first_conv.conv.weight``,
    ``blocks.N.conv.depth_conv.se.fc.reduce.weight``, ``classifier.linear.weight``, ...), so this is the
    state dict itself, on the CPU and contiguous (tested key for key against OFA's network).
    """
    return {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}


def save_model(
    model: StaticMobileNetV3,
    folder: str | Path,
    metrics: dict[str, Any] | None = None,
    onnx: bool = False,
    info: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a model folder (see the module docstring); returns the folder.

    ``info`` may hold ``class_names`` (one per class), ``preprocessing`` (``resolution``, ``mean``,
    ``std``, ``channels``, ``interpolation``, ``crop_pct``; defaults: the subnet's resolution, ImageNet
    statistics, bilinear, no crop) and ``provenance`` (any JSON: dataset, run folder, seed, ...).
    """
    folder = Path(folder)
    meta = model_info(model, metrics, info)  # checked before anything is written
    config = _jsonable({**net_config(model), "metrics": dict(metrics or {})})
    folder.mkdir(parents=True, exist_ok=True)
    state = ofa_state_dict(model)
    write_atomic(
        folder / "model.safetensors", lambda tmp: save_file(state, str(tmp), metadata={"format": FORMAT})
    )
    write_text_atomic(folder / "net.config", json.dumps(config, indent=1))
    write_text_atomic(folder / "net.subnet", json.dumps(model.subnet.to_dict()))
    write_text_atomic(folder / "model.json", json.dumps(meta, indent=1))
    if onnx:  # last: a failed export leaves a complete, loadable folder
        export_onnx(model, folder / "model.onnx")
    return folder


def _checked_description(path: Path) -> dict[str, Any]:
    """A ``model.json`` validated (`ModelDescription`), as the plain dict it holds."""
    info = read_json_file(path, RECREATE)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a nat model description (format {FORMAT})")
    check_file_data(ModelDescription, info, path, RECREATE)
    return info


def read_model_info(folder: str | Path) -> dict[str, Any]:
    """A model folder's ``model.json`` (for an older folder: the same fields from its ``net.config``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder}")
    if (folder / "model.json").is_file():
        return _checked_description(folder / "model.json")
    config = read_json_file(folder / "net.config") if (folder / "net.config").is_file() else None
    older = isinstance(config, dict) and {"space", "subnet", "num_classes"} <= set(config)
    if (folder / "model.safetensors").is_file() and not older:
        raise CheckpointError(
            f"{folder} holds model.safetensors but not model.json, the description nat writes beside it "
            f"(space, subnet, classes, preprocessing); {RECREATE}"
        )
    if config is None:
        raise CheckpointError(f"{folder} is not a nat model folder (missing model.json)")
    if is_net_config(config):
        raise CheckpointError(
            f"{folder} holds an OFA/NAT net.config but no nat model.json: build it with "
            "nat.load_natnet(net_config, weights)"
        )
    if not isinstance(config, dict) or not {"space", "subnet", "num_classes"} <= set(config):
        raise CheckpointError(f"{folder / 'net.config'} is not a nat model description")
    subnet = config["subnet"]
    resolution = subnet.get("r", 224) if isinstance(subnet, dict) else 224
    return {
        "format": FORMAT,
        **{k: config[k] for k in ("space", "subnet", "num_classes")},
        "class_names": None,
        "preprocessing": default_preprocessing(resolution if isinstance(resolution, int) else 224),
        "metrics": config.get("metrics", {}),
        "provenance": {},
    }


def subnet_file_context(
    file: Path, space: SearchSpace | None, num_classes: int | None
) -> tuple[SearchSpace, int]:
    """The search space and class count a ``net.subnet`` file is read in: those given (``--space``,
    ``--num-classes``), else the ``model.json`` beside it (a nat model folder describes itself). A bare
    file says neither, so both must be given: a guess (OFA's space, 1,000 classes) would count another
    network without a word."""
    info = read_model_info(file.parent) if (file.parent / "model.json").is_file() else None
    if space is None:
        if info is None:
            raise ConfigError(
                f"{file} has no model.json beside it, so its search space is unknown: give --space (ofa_mbv3 "
                "for NAT's and OFA's subnets; the preset or supernet file of the run that made it) and "
                "--num-classes"
            )
        space = SearchSpace.model_validate(info["space"])
    if num_classes is None:
        if info is None:
            raise ConfigError(
                f"{file} has no model.json beside it, so its class count is unknown: give --num-classes "
                "(1000 for ImageNet's subnets)"
            )
        num_classes = int(info["num_classes"])
    return space, num_classes


def load_model(folder: str | Path) -> StaticMobileNetV3:
    """The model a folder written by `save_model` holds, in eval mode.

    Its ``info`` attribute is the folder's ``model.json`` content (class names, preprocessing, metrics,
    provenance). Raises `CheckpointError` for a missing, incomplete or damaged folder.
    """
    folder = Path(folder)
    info = read_model_info(folder)
    try:
        space = SearchSpace.model_validate(info["space"])
        subnet = Subnet.from_dict(info["subnet"], space)
        num_classes = int(info["num_classes"])
        model = StaticMobileNetV3(space, subnet, num_classes)
    except (KeyError, TypeError, ValueError, ValidationError, ConfigError) as exc:
        raise CheckpointError(f"{folder}: damaged model description ({exc})") from None
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise CheckpointError(
            f"{folder} is a nat model folder without its weights (model.safetensors is missing); {RECREATE}"
        )
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights} is damaged: {exc}") from None
    load_weights(model, state, str(weights))
    model.info = info
    return model.eval()


def _example_resolution(model: nn.Module) -> int:
    subnet = getattr(model, "subnet", None)
    if isinstance(subnet, Subnet):
        return subnet.r
    return getattr(model, "resolution", None) or 224


def _without_debugging_notes(program: Any) -> Any:
    """``program`` (a `torch.onnx.ONNXProgram`) without the exporter's per-node debugging notes (each
    node's module path, class hierarchy, FX node text and stack trace), removed in memory before the one
    save: no runtime reads them, and they made a quickstart model's file 11% larger than its weights
    and graph."""
    for node in program.model.graph.all_nodes():
        node.metadata_props.clear()
    return program


def _spatial_means_as_global_pools(path: Path) -> None:
    """Rewrite, in the ONNX file at ``path``, every mean over the two spatial axes of an N x C x H x W
    tensor (``ReduceMean`` over axes 2 and 3, dimensions kept: the squeeze-and-excite modules' pooling and
    the head's) as ``GlobalAveragePool``, the same operation under the name ONNX Runtime has fast kernels
    for: its quantizer turns it into an int8 ``QLinearGlobalAveragePool`` where a ``ReduceMean`` stays in
    float between a dequantize and a quantize step. Measured at commit 824b9b5 (one thread, batch 1):
    int8 files 7-10% faster on the quickstart's models and 8% on an OFA subnet at 224 px, fp32 files
    2-7% faster on the quickstart's; the fp32 logits equal the ``ReduceMean`` graph's to the bit on the
    OFA subnet and within 6e-7 relative on the quickstart's models (the order of the float sum)."""
    import onnx

    proto = onnx.load(str(path))
    inferred = onnx.shape_inference.infer_shapes(proto)
    ranks = {
        v.name: len(v.type.tensor_type.shape.dim)
        for v in [*inferred.graph.value_info, *inferred.graph.input]
        if v.type.tensor_type.HasField("shape")
    }
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant" and node.attribute and node.attribute[0].name == "value":
            constants[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    freed: set[str] = set()  # the axes inputs of the rewritten nodes
    for node in proto.graph.node:
        if node.op_type != "ReduceMean" or node.domain not in ("", "ai.onnx") or len(node.input) != 2:
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        rank = ranks.get(node.input[0])
        axes = constants.get(node.input[1])
        if attributes.get("keepdims", 1) != 1 or rank != 4 or axes is None:
            continue
        if sorted(int(a) % 4 for a in axes.reshape(-1)) != [2, 3]:
            continue
        freed.add(node.input[1])
        node.op_type = "GlobalAveragePool"
        del node.input[1:]
        del node.attribute[:]
    if freed:  # those axes constants that no node reads any more go too; nothing else is touched
        used = {name for node in proto.graph.node for name in node.input}
        used |= {v.name for v in proto.graph.output}
        unused = freed - used
        nodes = [n for n in proto.graph.node if n.op_type != "Constant" or n.output[0] not in unused]
        initializers = [t for t in proto.graph.initializer if t.name not in unused]
        del proto.graph.node[:], proto.graph.initializer[:]
        proto.graph.node.extend(nodes)
        proto.graph.initializer.extend(initializers)
        onnx.save(proto, str(path))


def export_onnx(
    model: nn.Module,
    path: str | Path,
    *,
    dynamo: bool | None = None,
    opset: int = 18,
    example: torch.Tensor | None = None,
) -> Path:
    """Write ``model`` as ONNX (input ``images`` N x 3 x R x R, output ``logits``; the batch is dynamic).

    ``example``: an input of the shape to export with (default: a batch of images at the model's
    resolution); latency tables export single layers this way.

    ``dynamo``: use torch's ``torch.export``-based exporter (the one torch recommends; needs the
    ``onnxscript`` package); ``None`` uses it when ``onnxscript`` is installed and otherwise falls back to
    the TorchScript exporter. Needs ``onnx`` (the ``export`` extra). The file is replaced atomically.
    """
    if opset < 17:
        raise ConfigError(f"ONNX opset must be >= 17, got {opset}")
    if dynamo is None:
        dynamo = importlib.util.find_spec("onnxscript") is not None
    path = Path(path)
    if example is None:
        r = _example_resolution(model)
        x = torch.randn(2, 3, r, r)
    else:  # two of the example (torch.export specialises a batch dimension of size 1)
        x = example[:1].expand(2, *example.shape[1:]).contiguous()
    was_training = model.training
    model.eval()
    common = {"input_names": ["images"], "output_names": ["logits"], "opset_version": opset}
    try:
        if dynamo:

            def write(tmp: Path) -> None:
                batch = torch.export.Dim("batch", min=1)
                program = torch.onnx.export(
                    model, (x,), dynamo=True, dynamic_shapes=({0: batch},), verbose=False, **common
                )
                _without_debugging_notes(program).save(str(tmp), external_data=False)
                _spatial_means_as_global_pools(tmp)
        else:

            def write(tmp: Path) -> None:
                with warnings.catch_warnings():
                    # torch deprecates this exporter in favour of dynamo=True (which needs onnxscript):
                    # its notice, and the one its internals raise, are silenced here and nowhere else
                    warnings.filterwarnings(
                        "ignore",
                        message=".*legacy TorchScript-based ONNX export",
                        category=DeprecationWarning,
                    )
                    warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
                    torch.onnx.export(
                        model,
                        (x,),
                        str(tmp),
                        dynamo=False,
                        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                        **common,
                    )
                _spatial_means_as_global_pools(tmp)

        write_atomic(path, write)
    finally:
        model.train(was_training)
    return path
