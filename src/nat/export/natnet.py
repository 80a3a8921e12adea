"""NAT's released networks (``net.config`` + ``net.weights``) as plain PyTorch modules.

`build_natnet` turns a static-network JSON in OFA/NAT's format (NAT's 14 released NATNets, OFA's own
``MobileNetV3.config`` output, or the ``net.config`` nat writes) into a `NATNet` made of nat's static
layers (`nat.supernet.layers`, each built by its ``from_config``: the classes nat's own models are made
of), with OFA's module names, so OFA/NAT state dicts load key for key. Activations include NAT's
``mish`` and ``swish`` besides OFA's ``relu``/``relu6``/``h_swish``/``h_sigmoid``/``sigmoid``/``tanh``.

`load_natnet` adds weights: a ``torch.save`` file as NAT releases them (``{"state_dict": ...}`` or a bare
state dict, legacy ``.mobile_inverted_conv.`` keys, maybe a ``module.`` prefix), read with
``torch.load(weights_only=True)``, or a safetensors file. `profile_network` counts MAdds and parameters
of any built network by nat's convention (``nat.objectives.complexity``).
"""

from __future__ import annotations

import copy
import json
import pickle
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nat.errors import CheckpointError, ConfigError
from nat.export.ofa_config import is_net_config
from nat.supernet.checkpoint import fit_problems
from nat.supernet.layers import Classifier, ConvLayer, ResidualBlock, block_conv

_LEGACY = ".mobile_inverted_conv."


def _check_channel_chain(config: Mapping[str, Any]) -> None:
    """Each layer must take the channels the one before it gives: a config that breaks the chain would
    build, then fail at its first forward pass with a shape error that names no layer."""
    chain = [("first_conv", config["first_conv"]["in_channels"], config["first_conv"]["out_channels"])]
    for i, block in enumerate(config["blocks"]):
        conv = block_conv(block)
        chain.append((f"blocks[{i}]", conv["in_channels"], conv["out_channels"]))
    for name in ("final_expand_layer", "feature_mix_layer"):
        chain.append((name, config[name]["in_channels"], config[name]["out_channels"]))
    classifier = config["classifier"]
    chain.append(("classifier", classifier["in_features"], classifier["out_features"]))
    for (before, _, given), (name, taken, _) in zip(chain, chain[1:], strict=False):
        if taken != given:
            raise ConfigError(
                f"net.config {name} takes {taken} input channels but {before} gives {given}: the layers "
                "do not chain (a hand-edited or damaged net.config?)"
            )


class NATNet(nn.Module):
    """A static MobileNetV3 (NATNet) built from its ``net.config``; OFA's module and parameter names."""

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__()
        if not is_net_config(config):
            raise ConfigError(
                "not an OFA/NAT net.config (expected 'first_conv', 'blocks', 'final_expand_layer', "
                "'feature_mix_layer' and 'classifier')"
            )
        self.net_config = copy.deepcopy(dict(config))
        bn = {"momentum": 0.1, "eps": 1e-5, **(config.get("bn") or {})}
        if bn.pop("ws_eps", None) is not None:
            raise ConfigError("net.config 'bn': weight standardisation ('ws_eps') is not supported")
        if not isinstance(config["blocks"], list) or not config["blocks"]:
            raise ConfigError("net.config 'blocks' must be a non-empty list")
        self.first_conv = ConvLayer.from_config(config["first_conv"], "first_conv", bn)
        self.blocks = nn.ModuleList(
            ResidualBlock.from_config(b, i, bn) for i, b in enumerate(config["blocks"])
        )
        self.final_expand_layer = ConvLayer.from_config(
            config["final_expand_layer"], "final_expand_layer", bn
        )
        self.feature_mix_layer = ConvLayer.from_config(config["feature_mix_layer"], "feature_mix_layer", bn)
        self.classifier = Classifier.from_config(config["classifier"], "classifier")
        _check_channel_chain(config)
        img_size = config.get("img_size")
        self.resolution: int | None = int(img_size) if isinstance(img_size, int) else None
        self.num_classes: int = self.classifier.linear.out_features

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_conv(x)
        for block in self.blocks:
            x = block(x)
        x = self.final_expand_layer(x)
        x = x.mean((2, 3), keepdim=True)
        return torch.flatten(self.feature_mix_layer(x), 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))


def read_net_config(path: str | Path) -> dict[str, Any]:
    """A ``net.config`` file as a dict (`ConfigError` if missing or not JSON)."""
    path = Path(path)
    if path.is_dir():
        path = path / "net.config"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"net.config not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not a readable JSON net.config ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a net.config must be a JSON object")
    return data


def build_natnet(config: Mapping[str, Any] | str | Path) -> NATNet:
    """The network a ``net.config`` (a dict or a file) describes, freshly initialised, in eval mode."""
    if not isinstance(config, Mapping):
        path = config
        config = read_net_config(path)
        try:
            return NATNet(config).eval()
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return NATNet(config).eval()


# ------------------------------------------------------------------------------------------- weights


def _torch_state(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if "GLOBAL" in ln or "Unsupported" in ln]
        detail = f" ({lines[0]})" if lines else ""
        raise CheckpointError(
            f"{path} holds Python objects besides tensors{detail}; nat reads only weight files made of "
            "tensors and plain containers, which cannot run code when loaded"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise CheckpointError(
            f"{path} is not a readable PyTorch weights file (truncated?): {first}"
        ) from None


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``torch.save`` file (NAT's ``net.weights``) or a safetensors file.

    Accepts ``{"state_dict": ...}`` or a bare mapping; strips a ``module.`` prefix (DataParallel) and
    maps OFA's legacy ``.mobile_inverted_conv.`` block keys to ``.conv.``.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file not found: {path}")
    with path.open("rb") as f:
        head = f.read(8)
    if head[:2] == b"PK" or head[:1] == b"\x80":  # zip (torch.save) or legacy pickle
        data = _torch_state(path)
        if isinstance(data, Mapping) and isinstance(data.get("state_dict"), Mapping):
            data = data["state_dict"]
    else:
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            data = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"{path} is neither a PyTorch nor a safetensors weights file: {exc}"
            ) from None
    if (
        not isinstance(data, Mapping)
        or not data
        or not all(isinstance(v, torch.Tensor) for v in data.values())
    ):
        raise CheckpointError(
            f"{path} does not hold a state dict (a mapping of names to tensors, possibly under 'state_dict')"
        )
    return {k.removeprefix("module.").replace(_LEGACY, ".conv."): v for k, v in data.items()}


def load_weights(net: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict ``load_state_dict`` with one clear `CheckpointError` (BN batch counters may be absent)."""
    own = net.state_dict()
    problems = fit_problems(own, state, optional=("num_batches_tracked",))
    if problems:
        raise CheckpointError(f"{source} does not fit the network: " + "; ".join(problems))
    net.load_state_dict({**own, **state})


def load_natnet(net_config: str | Path | Mapping[str, Any], weights: str | Path | None = None) -> NATNet:
    """Build the network a NAT/OFA ``net.config`` describes and load ``weights`` into it; eval mode.

    ``net_config`` is a file, a folder holding ``net.config``, or a dict. ``weights`` is NAT's
    ``net.weights`` (``torch.save``, loaded with ``weights_only=True``) or a safetensors file; without
    it the network keeps its fresh initialisation.
    """
    net = build_natnet(net_config)
    if weights is not None:
        load_weights(net, read_weights(weights), str(weights))
    return net.eval()


# ------------------------------------------------------------------------------------------- counting


def profile_network(net: nn.Module, resolution: int) -> dict[str, int]:
    """MAdds and parameters of a built network at ``resolution`` (nat's ``profile_subnet`` convention).

    MAdds: every convolution (output elements x k*k*in/groups, biases excluded, the SE 1x1 convolutions
    on their pooled 1x1 maps included) and every linear layer (in x out), counted by forward hooks on
    one ``resolution`` x ``resolution`` image on the meta device (no arithmetic is done). Params: all
    parameters (weights, biases, BN affine), not BN running statistics.
    """
    total = 0

    def conv_hook(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups

    def linear_hook(m: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() // out.shape[-1] * m.in_features * m.out_features

    params = sum(p.numel() for p in net.parameters())
    meta = copy.deepcopy(net).to("meta").eval()
    handles = []
    for m in meta.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    with torch.no_grad():
        meta(torch.zeros(1, 3, resolution, resolution, device="meta"))
    for h in handles:
        h.remove()
    return {"madds": int(total), "params": int(params)}
