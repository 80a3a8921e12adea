"""Static building blocks shared by the supernet's fixed parts, extracted subnets and ``net.config``
networks, each serialising itself in OFA/NAT's static-network JSON (``to_config`` / ``from_config``,
as OFA's ``MBConvLayer.config`` / ``build_from_config``).

Module and parameter names follow OFA's MobileNetV3 exactly (``conv``/``bn``/``act``,
``inverted_bottleneck``/``depth_conv``/``point_linear``, ``se.fc.reduce``/``expand``), so state dicts of
extracted nat models, of OFA's own static subnets and of NAT's released NATNets line up key for key.
One set of layers serves all three: a nat model written as ``net.config`` and read back is built from
the same classes, and NAT's released files are read by the same ``from_config`` (which checks every
field and names the one that is wrong: ``net.config blocks[3].mobile_inverted_conv: ...``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from nat.errors import ConfigError
from nat.space.definition import make_divisible
from nat.supernet.depthwise import depthwise_conv2d

#: activation modules by OFA's ``act_func`` names; NAT's releases add ``mish`` and ``swish``
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
_ACT_NAMES: dict[type[nn.Module], str] = {type(make()): name for name, make in ACTIVATIONS.items()}

#: the fields each OFA/NAT layer type may have (anything else is refused, naming the field)
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
BLOCK_NAME = "MobileInvertedResidualBlock"
MBCONV_NAME = "MBInvertedConvLayer"


def act_name(module: nn.Module | None) -> str | None:
    """OFA's ``act_func`` string for an activation module (``None`` for none)."""
    if module is None:
        return None
    try:
        return _ACT_NAMES[type(module)]
    except KeyError:
        raise ValueError(f"no net.config name for activation {type(module).__name__}") from None


def _activation(name: Any, where: str) -> nn.Module | None:
    """A ``net.config`` ``act_func`` as a module (None for none); unknown names: `ConfigError`."""
    if name is None or name == "none":
        return None
    if name not in ACTIVATIONS:
        raise ConfigError(f"net.config {where}: unknown act_func {name!r} (known: {sorted(ACTIVATIONS)})")
    return ACTIVATIONS[name]()


def _check(layer: Any, where: str, names: set[str], keys: set[str]) -> Mapping[str, Any]:
    """A ``net.config`` layer entry: a mapping of a supported type, with known fields only."""
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


def _bn_settings(bn: Mapping[str, float]) -> dict[str, float]:
    return {"bn_momentum": bn.get("momentum", 0.1), "bn_eps": bn.get("eps", 1e-5)}


def block_conv(block: Mapping[str, Any]) -> Mapping[str, Any]:
    """The conv config of a block in either spelling (NAT's ``mobile_inverted_conv``, OFA's ``conv``)."""
    conv = block.get("mobile_inverted_conv", block.get("conv"))
    if not isinstance(conv, Mapping):
        raise ConfigError("a block of net.config has no 'mobile_inverted_conv' (or 'conv') layer")
    return conv


def build_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}")
    return ACTIVATIONS[name]()


def same_padding(kernel_size: int) -> int:
    return kernel_size // 2


class ConvLayer(nn.Sequential):
    """(dropout) -> conv -> (bn) -> (act), OFA's ``ConvLayer`` with ``ops_order='weight_bn_act'``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        act: str | None = "relu",
        use_bn: bool = True,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        norm: type[nn.BatchNorm2d] = nn.BatchNorm2d,
        *,
        groups: int = 1,
        dilation: int = 1,
        bias: bool = False,
        dropout_rate: float = 0.0,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if dropout_rate:
            layers["dropout"] = nn.Dropout2d(dropout_rate)
        padding = same_padding(kernel_size) * dilation
        layers["conv"] = nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride,
            padding,
            dilation=dilation,
            groups=groups,
            bias=bias,
        )
        if use_bn:
            layers["bn"] = norm(out_channels, eps=bn_eps, momentum=bn_momentum)
        if act is not None:
            layers["act"] = build_activation(act)
        super().__init__(layers)

    def to_config(self) -> dict[str, Any]:
        """This layer as OFA's ``ConvLayer`` config."""
        conv: nn.Conv2d = self.conv
        dropout = getattr(self, "dropout", None)
        return {
            "name": "ConvLayer",
            "kernel_size": conv.kernel_size[0],
            "stride": conv.stride[0],
            "dilation": conv.dilation[0],
            "groups": conv.groups,
            "bias": conv.bias is not None,
            "has_shuffle": False,
            "in_channels": conv.in_channels,
            "out_channels": conv.out_channels,
            "use_bn": hasattr(self, "bn"),
            "act_func": act_name(getattr(self, "act", None)),
            "dropout_rate": dropout.p if dropout is not None else 0,
            "ops_order": "weight_bn_act",
        }

    @classmethod
    def from_config(cls, layer: Any, where: str, bn: Mapping[str, float]) -> ConvLayer:
        """OFA's ``ConvLayer`` config (checked field by field) as a layer; ``bn``: the network's
        ``{"momentum", "eps"}``."""
        layer = _check(layer, where, {"ConvLayer"}, _CONV_KEYS)
        groups = _int(layer, "groups", where, 1)
        if layer.get("has_shuffle") and groups > 1:
            raise ConfigError(f"net.config {where}: channel shuffle is not supported")
        if layer.get("use_se"):
            raise ConfigError(f"net.config {where}: SE inside a ConvLayer is not supported")
        act = layer.get("act_func", "relu")
        _activation(act, where)  # an unknown name fails here, naming the layer
        return cls(
            _int(layer, "in_channels", where),
            _int(layer, "out_channels", where),
            _int(layer, "kernel_size", where),
            _int(layer, "stride", where, 1),
            None if act in (None, "none") else act,
            bool(layer.get("use_bn", True)),
            **_bn_settings(bn),
            groups=groups,
            dilation=_int(layer, "dilation", where, 1),
            bias=bool(layer.get("bias", False)),
            dropout_rate=layer.get("dropout_rate", 0) or 0.0,
        )


def se_bottleneck(channels: int, mid_channels: int) -> nn.Sequential:
    """OFA's SE layers (``reduce``, ``relu``, ``expand``, ``h_sigmoid``), shared by static and elastic SE."""
    return nn.Sequential(
        OrderedDict(
            reduce=nn.Conv2d(channels, mid_channels, 1, bias=True),
            relu=nn.ReLU(inplace=True),
            expand=nn.Conv2d(mid_channels, channels, 1, bias=True),
            h_sigmoid=nn.Hardsigmoid(inplace=True),
        )
    )


class SqueezeExcite(nn.Module):
    """OFA's SE module: global average pool, 1x1 reduce + ReLU, 1x1 expand + h-sigmoid, rescale."""

    def __init__(self, channels: int, mid_channels: int) -> None:
        super().__init__()
        self.fc = se_bottleneck(channels, mid_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.fc(x.mean((2, 3), keepdim=True))


class DepthwiseConv2d(nn.Conv2d):
    """A depthwise ``nn.Conv2d`` (same state dict) whose training backward is fast on CPU for small maps
    (:mod:`nat.supernet.depthwise`); fine-tuning an extracted model benefits as the supernet does."""

    def __init__(self, channels: int, kernel_size: int, stride: int) -> None:
        super().__init__(
            channels, channels, kernel_size, stride, same_padding(kernel_size), groups=channels, bias=False
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:  # inference and export: the plain convolution
            return super().forward(x)
        return depthwise_conv2d(x, self.weight, self.stride[0], self.padding[0])


class MBConv(nn.Module):
    """Static inverted-residual block: 1x1 expand (unless ratio 1), depthwise kxk (+SE), 1x1 project."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        mid_channels: int,
        act: str | None,
        se_channels: int | None,
        expand: bool = True,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        norm: type[nn.BatchNorm2d] = nn.BatchNorm2d,
        *,
        expand_ratio: float | None = None,
    ) -> None:
        super().__init__()
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps, "norm": norm}
        #: the ratio a config names (written back by `to_config`; mid/in where not given)
        self.expand_ratio = (
            expand_ratio if expand_ratio is not None else (mid_channels / in_channels if expand else 1)
        )
        # OFA drops the 1x1 expansion only for expand ratio 1 (the fixed first block)
        self.inverted_bottleneck = ConvLayer(in_channels, mid_channels, 1, 1, act, **bn) if expand else None
        depth: OrderedDict[str, nn.Module] = OrderedDict()
        depth["conv"] = DepthwiseConv2d(mid_channels, kernel_size, stride)
        depth["bn"] = norm(mid_channels, eps=bn_eps, momentum=bn_momentum)
        if act is not None:
            depth["act"] = build_activation(act)
        if se_channels is not None:
            depth["se"] = SqueezeExcite(mid_channels, se_channels)
        self.depth_conv = nn.Sequential(depth)
        self.point_linear = ConvLayer(mid_channels, out_channels, 1, 1, act=None, **bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))

    def to_config(self) -> dict[str, Any]:
        """This block's layer as OFA's ``MBConvLayer`` config (NAT's ``MBInvertedConvLayer`` name). An SE
        width other than OFA's rule (``make_divisible(mid // 4, 8)``) is written as ``se_mid_channels``,
        which nat reads and OFA refuses."""
        depth = self.depth_conv
        mid = depth.conv.in_channels
        expands = self.inverted_bottleneck is not None
        ratio = self.expand_ratio
        out = {
            "name": MBCONV_NAME,
            "in_channels": self.inverted_bottleneck.conv.in_channels if expands else mid,
            "out_channels": self.point_linear.conv.out_channels,
            "kernel_size": depth.conv.kernel_size[0],
            "stride": depth.conv.stride[0],
            "expand_ratio": (int(ratio) if float(ratio).is_integer() else ratio) if expands else 1,
            "mid_channels": mid if expands else None,
            "act_func": act_name(getattr(depth, "act", None)),
            "use_se": hasattr(depth, "se"),
        }
        if hasattr(depth, "se"):
            se_mid = depth.se.fc.reduce.out_channels
            if se_mid != make_divisible(mid // 4, 8):
                out["se_mid_channels"] = se_mid
        return out

    @classmethod
    def from_config(cls, layer: Any, where: str, bn: Mapping[str, float]) -> MBConv:
        """OFA's ``MBConvLayer`` / NAT's ``MBInvertedConvLayer`` config (checked) as a layer."""
        layer = _check(layer, where, {MBCONV_NAME, "MBConvLayer"}, _MBCONV_KEYS)
        if layer.get("groups") is not None:
            raise ConfigError(f"net.config {where}: grouped MBConv ('groups') is not supported")
        c_in, c_out = _int(layer, "in_channels", where), _int(layer, "out_channels", where)
        ratio = layer.get("expand_ratio", 6)
        if isinstance(ratio, bool) or not isinstance(ratio, int | float) or ratio <= 0:
            raise ConfigError(f"net.config {where}: 'expand_ratio' must be a positive number, got {ratio!r}")
        mid = layer.get("mid_channels")
        mid = round(c_in * ratio) if mid is None else _int(layer, "mid_channels", where)
        act = layer.get("act_func", "relu6")
        _activation(act, where)
        se = None
        if layer.get("use_se", False):
            se = layer.get("se_mid_channels") or make_divisible(mid // 4, 8)
        return cls(
            c_in,
            c_out,
            _int(layer, "kernel_size", where),
            _int(layer, "stride", where, 1),
            mid,
            None if act in (None, "none") else act,
            se,
            expand=ratio != 1,
            **_bn_settings(bn),
            expand_ratio=ratio,
        )


class ResidualBlock(nn.Module):
    """``conv(x) + x`` when the block keeps shape (stride 1, same width), else ``conv(x)``."""

    def __init__(self, conv: nn.Module, residual: bool) -> None:
        super().__init__()
        self.conv = conv
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out + x if self.residual else out

    def to_config(self) -> dict[str, Any]:
        """OFA's ``MobileInvertedResidualBlock`` config (an identity shortcut where residual)."""
        conv = self.conv.to_config()
        shortcut = None
        if self.residual:
            channels = conv["in_channels"]
            shortcut = {
                "name": "IdentityLayer",
                "in_channels": channels,
                "out_channels": channels,
                "use_bn": False,
                "act_func": None,
                "dropout_rate": 0,
                "ops_order": "weight_bn_act",
            }
        return {"name": BLOCK_NAME, "mobile_inverted_conv": conv, "shortcut": shortcut}

    @classmethod
    def from_config(cls, block: Any, i: int, bn: Mapping[str, float]) -> ResidualBlock:
        """Block ``i`` of a ``net.config`` (NAT's or OFA's spelling), checked."""
        where = f"blocks[{i}]"
        if not isinstance(block, Mapping) or block.get("name") not in (BLOCK_NAME, "ResidualBlock"):
            raise ConfigError(f"net.config {where}: expected a MobileInvertedResidualBlock")
        conv_config = block_conv(block)
        conv = MBConv.from_config(conv_config, f"{where}.mobile_inverted_conv", bn)
        shortcut = block.get("shortcut")
        if shortcut is not None:
            shortcut = _check(shortcut, f"{where}.shortcut", {"IdentityLayer"}, _IDENTITY_KEYS)
            if shortcut.get("use_bn") or shortcut.get("act_func") is not None:
                raise ConfigError(f"net.config {where}.shortcut: only a plain identity shortcut is supported")
            shapes = (conv_config.get("stride", 1), conv_config["in_channels"], conv_config["out_channels"])
            if shapes[0] != 1 or shapes[1] != shapes[2]:
                raise ConfigError(f"net.config {where}: an identity shortcut needs stride 1 and equal widths")
        return cls(conv, residual=shortcut is not None)


class Classifier(nn.Module):
    """(dropout) -> linear -> (bn) -> (act), OFA's ``LinearLayer``; dropout is active only in training.
    nat's networks use dropout and linear alone; the rest is for ``net.config`` files that ask for it."""

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        dropout_rate: float,
        *,
        bias: bool = True,
        use_bn: bool = False,
        act: str | None = None,
    ) -> None:
        super().__init__()
        self.dropout_rate = dropout_rate
        self.linear = nn.Linear(in_features, num_classes, bias=bias)
        if use_bn:
            self.bn = nn.BatchNorm1d(num_classes)
        if act is not None:
            self.act = build_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout_rate > 0:
            x = nn.functional.dropout(x, self.dropout_rate, self.training)
        x = self.linear(x)
        if hasattr(self, "bn"):
            x = self.bn(x)
        return self.act(x) if hasattr(self, "act") else x

    def to_config(self) -> dict[str, Any]:
        """OFA's ``LinearLayer`` config."""
        return {
            "name": "LinearLayer",
            "in_features": self.linear.in_features,
            "out_features": self.linear.out_features,
            "bias": self.linear.bias is not None,
            "use_bn": hasattr(self, "bn"),
            "act_func": act_name(getattr(self, "act", None)),
            "dropout_rate": self.dropout_rate,
            "ops_order": "weight_bn_act",
        }

    @classmethod
    def from_config(cls, layer: Any, where: str) -> Classifier:
        """OFA's ``LinearLayer`` config (checked) as a classifier."""
        layer = _check(layer, where, {"LinearLayer"}, _LINEAR_KEYS)
        act = layer.get("act_func")
        _activation(act, where)
        return cls(
            _int(layer, "in_features", where),
            _int(layer, "out_features", where),
            layer.get("dropout_rate", 0) or 0.0,
            bias=bool(layer.get("bias", True)),
            use_bn=bool(layer.get("use_bn", False)),
            act=None if act in (None, "none") else act,
        )
