"""NAT's released networks (``net.config`` + ``net.weights``) as plain PyTorch modules.

`build_natnet` turns a static-network JSON in OFA/NAT's format (NAT's 14 released NATNets, OFA's own
``MobileNetV3.config`` output, or the ``net.config`` nat writes) into a `NATNet` made of ``torch.nn``
parts with OFA's module names, so OFA/NAT state dicts load key for key. Activations include NAT's
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
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nat.errors import CheckpointError, ConfigError
from nat.export.ofa_config import block_conv, is_net_config
from nat.space.definition import make_divisible
from nat.supernet.checkpoint import fit_problems
from nat.supernet.layers import ResidualBlock, SqueezeExcite

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": lambda: nn.ReLU(inplace=True),
    "relu6": lambda: nn.ReLU6(inplace=True),
    "h_swish": lambda: nn.Hardswish(inplace=True),
    "h_sigmoid": lambda: nn.Hardsigmoid(inplace=True),
    "sigmoid": nn.Sigmoid,
    "tanh": nn.Tanh,
    "mish": nn.Mish,  # x * tanh(softplus(x)), as timm's Mish that NAT's code uses
    "swish": nn.SiLU,  # x * sigmoid(x)
}

_CONV_KEYS = {
    "name", "in_channels", "out_channels", "kernel_size", "stride", "dilation", "groups", "bias",
    "has_shuffle", "use_se", "use_bn", "act_func", "dropout_rate", "ops_order",
}  # fmt: skip
_MBCONV_KEYS = {
    "name", "in_channels", "out_channels", "kernel_size", "stride", "expand_ratio", "mid_channels",
    "act_func", "use_se", "groups", "se_mid_channels",
}  # fmt: skip
_IDENTITY_KEYS = {"name", "in_channels", "out_channels", "use_bn", "act_func", "dropout_rate", "ops_order"}
_LINEAR_KEYS = {
    "name",
    "in_features",
    "out_features",
    "bias",
    "use_bn",
    "act_func",
    "dropout_rate",
    "ops_order",
}
_LEGACY = ".mobile_inverted_conv."


def _check(layer: Any, where: str, names: set[str], keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(layer, Mapping):
        raise ConfigError(f"net.config {where} must be an object, got {layer!r}")
    if layer.get("name") not in names:
        raise ConfigError(
            f"net.config {where}: layer type {layer.get('name')!r} not supported ({sorted(names)})"
        )
    unknown = sorted(set(layer) - keys)
    if unknown:
        raise ConfigError(f"net.config {where} ({layer['name']}): unknown field(s) {unknown}")
    if layer.get("ops_order", "weight_bn_act") != "weight_bn_act":
        raise ConfigError(f"net.config {where}: only ops_order 'weight_bn_act' is supported")
    return layer


def _int(layer: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = layer.get(key, default)
    if isinstance(value, list | tuple) and len(value) == 1:  # NAT's IdentityLayer stores [channels]
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"net.config {where}: '{key}' must be a positive integer, got {value!r}")
    return value


def activation(name: Any, where: str) -> nn.Module | None:
    if name is None or name == "none":
        return None
    if name not in ACTIVATIONS:
        raise ConfigError(f"net.config {where}: unknown act_func {name!r} (known: {sorted(ACTIVATIONS)})")
    return ACTIVATIONS[name]()


def _bn(channels: int, bn: Mapping[str, float]) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=bn["eps"], momentum=bn["momentum"])


def conv_layer(layer: Any, where: str, bn: Mapping[str, float]) -> nn.Sequential:
    """OFA's ``ConvLayer``: (dropout) conv (bn) (act), modules named as OFA's."""
    layer = _check(layer, where, {"ConvLayer"}, _CONV_KEYS)
    groups = _int(layer, "groups", where, 1)
    if layer.get("has_shuffle") and groups > 1:
        raise ConfigError(f"net.config {where}: channel shuffle is not supported")
    if layer.get("use_se"):
        raise ConfigError(f"net.config {where}: SE inside a ConvLayer is not supported")
    c_in, c_out = _int(layer, "in_channels", where), _int(layer, "out_channels", where)
    k, dilation = _int(layer, "kernel_size", where), _int(layer, "dilation", where, 1)
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    if layer.get("dropout_rate", 0):
        modules["dropout"] = nn.Dropout2d(layer["dropout_rate"])
    modules["conv"] = nn.Conv2d(
        c_in,
        c_out,
        k,
        _int(layer, "stride", where, 1),
        k // 2 * dilation,
        dilation=dilation,
        groups=groups,
        bias=bool(layer.get("bias", False)),
    )
    if layer.get("use_bn", True):
        modules["bn"] = _bn(c_out, bn)
    act = activation(layer.get("act_func", "relu"), where)
    if act is not None:
        modules["act"] = act
    return nn.Sequential(modules)


class MBConv(nn.Module):
    """OFA's ``MBConvLayer``: 1x1 expand (unless ratio 1), depthwise kxk (+SE), 1x1 linear projection."""

    def __init__(self, layer: Any, where: str, bn: Mapping[str, float]) -> None:
        super().__init__()
        layer = _check(layer, where, {"MBInvertedConvLayer", "MBConvLayer"}, _MBCONV_KEYS)
        if layer.get("groups") is not None:
            raise ConfigError(f"net.config {where}: grouped MBConv ('groups') is not supported")
        c_in, c_out = _int(layer, "in_channels", where), _int(layer, "out_channels", where)
        k, stride = _int(layer, "kernel_size", where), _int(layer, "stride", where, 1)
        ratio = layer.get("expand_ratio", 6)
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio <= 0:
            raise ConfigError(f"net.config {where}: 'expand_ratio' must be a positive number, got {ratio!r}")
        mid = layer.get("mid_channels")
        mid = round(c_in * ratio) if mid is None else _int(layer, "mid_channels", where)
        act = layer.get("act_func", "relu6")
        self.inverted_bottleneck = None
        if ratio != 1:
            self.inverted_bottleneck = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(c_in, mid, 1, bias=False), bn=_bn(mid, bn), act=activation(act, where)
                )
            )
        depth: OrderedDict[str, nn.Module] = OrderedDict()
        depth["conv"] = nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False)
        depth["bn"] = _bn(mid, bn)
        depth["act"] = activation(act, where)
        if layer.get("use_se", False):
            se_mid = layer.get("se_mid_channels") or make_divisible(mid // 4, 8)
            depth["se"] = SqueezeExcite(mid, se_mid)
        self.depth_conv = nn.Sequential(OrderedDict((n, m) for n, m in depth.items() if m is not None))
        self.point_linear = nn.Sequential(
            OrderedDict(conv=nn.Conv2d(mid, c_out, 1, bias=False), bn=_bn(c_out, bn))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


def linear_layer(layer: Any, where: str) -> nn.Sequential:
    """OFA's ``LinearLayer``: (dropout) linear (bn) (act)."""
    layer = _check(layer, where, {"LinearLayer"}, _LINEAR_KEYS)
    c_in, c_out = _int(layer, "in_features", where), _int(layer, "out_features", where)
    modules: OrderedDict[str, nn.Module] = OrderedDict()
    if layer.get("dropout_rate", 0):
        modules["dropout"] = nn.Dropout(layer["dropout_rate"])
    modules["linear"] = nn.Linear(c_in, c_out, bias=bool(layer.get("bias", True)))
    if layer.get("use_bn", False):
        modules["bn"] = nn.BatchNorm1d(c_out)
    act = activation(layer.get("act_func"), where)
    if act is not None:
        modules["act"] = act
    return nn.Sequential(modules)


def _block(block: Any, i: int, bn: Mapping[str, float]) -> ResidualBlock:
    where = f"blocks[{i}]"
    if not isinstance(block, Mapping) or block.get("name") not in (
        "MobileInvertedResidualBlock",
        "ResidualBlock",
    ):
        raise ConfigError(f"net.config {where}: expected a MobileInvertedResidualBlock")
    conv_config = block_conv(block)
    conv = MBConv(conv_config, f"{where}.mobile_inverted_conv", bn)
    shortcut = block.get("shortcut")
    if shortcut is not None:
        shortcut = _check(shortcut, f"{where}.shortcut", {"IdentityLayer"}, _IDENTITY_KEYS)
        if shortcut.get("use_bn") or shortcut.get("act_func") is not None:
            raise ConfigError(f"net.config {where}.shortcut: only a plain identity shortcut is supported")
        shapes = (conv_config.get("stride", 1), conv_config["in_channels"], conv_config["out_channels"])
        if shapes[0] != 1 or shapes[1] != shapes[2]:
            raise ConfigError(f"net.config {where}: an identity shortcut needs stride 1 and equal widths")
    return ResidualBlock(conv, residual=shortcut is not None)


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
        self.first_conv = conv_layer(config["first_conv"], "first_conv", bn)
        self.blocks = nn.ModuleList(_block(b, i, bn) for i, b in enumerate(config["blocks"]))
        self.final_expand_layer = conv_layer(config["final_expand_layer"], "final_expand_layer", bn)
        self.feature_mix_layer = conv_layer(config["feature_mix_layer"], "feature_mix_layer", bn)
        self.classifier = linear_layer(config["classifier"], "classifier")
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
