"""``net.config``: a nat model described in OFA/NAT's static-network JSON, and back to a `Subnet`.

The format is the one NAT's release uses for its NATNets (and that OFA's
``ofa.imagenet_classification.networks.MobileNetV3.build_from_config`` reads)::

    {"name": "MobileNetV3", "bn": {"momentum": 0.1, "eps": 1e-05},
     "first_conv": {"name": "ConvLayer", ...},
     "blocks": [{"name": "MobileInvertedResidualBlock",
                 "mobile_inverted_conv": {"name": "MBInvertedConvLayer", ...},
                 "shortcut": {"name": "IdentityLayer", ...} or null}, ...],
     "final_expand_layer": {...}, "feature_mix_layer": {...},
     "classifier": {"name": "LinearLayer", ...}, "img_size": 224}

Each layer carries the fields both NAT's release code and the current OFA package accept (OFA adds
``use_se``/``groups``/``ws_eps`` with default values; they are left out, as in NAT's files). The config is
read off the built network's modules, so every value (channels, strides, activations, SE widths, the
shortcut of each block) is the network's own, also for nat spaces OFA never had (other widths, a
stride-1 stem). One nat option has no OFA field: an SE width other than OFA's rule
(``make_divisible(mid // 4, 8)``) is written as ``se_mid_channels``, which nat reads and OFA refuses.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from nat.errors import ConfigError
from nat.space.definition import NUM_STAGES, SearchSpace, get_space, make_divisible
from nat.space.subnet import Subnet
from nat.supernet.static import StaticMobileNetV3

BLOCK_NAME = "MobileInvertedResidualBlock"
MBCONV_NAME = "MBInvertedConvLayer"

_ACT_NAMES: dict[type[nn.Module], str] = {
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Hardswish: "h_swish",
    nn.Hardsigmoid: "h_sigmoid",
    nn.Mish: "mish",
    nn.SiLU: "swish",
    nn.Sigmoid: "sigmoid",
    nn.Tanh: "tanh",
}


def act_name(module: nn.Module | None) -> str | None:
    """OFA's ``act_func`` string for an activation module (``None`` for none)."""
    if module is None:
        return None
    try:
        return _ACT_NAMES[type(module)]
    except KeyError:
        raise ValueError(f"no net.config name for activation {type(module).__name__}") from None


def _conv_layer(layer: nn.Module) -> dict[str, Any]:
    """A nat `ConvLayer` (``conv`` [+ ``bn``] [+ ``act``]) as OFA's ``ConvLayer`` config."""
    conv: nn.Conv2d = layer.conv
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
        "use_bn": hasattr(layer, "bn"),
        "act_func": act_name(getattr(layer, "act", None)),
        "dropout_rate": 0,
        "ops_order": "weight_bn_act",
    }


def _identity(channels: int) -> dict[str, Any]:
    return {
        "name": "IdentityLayer",
        "in_channels": channels,
        "out_channels": channels,
        "use_bn": False,
        "act_func": None,
        "dropout_rate": 0,
        "ops_order": "weight_bn_act",
    }


def _mbconv(conv: nn.Module, expand_ratio: int) -> dict[str, Any]:
    """A nat `MBConv` as OFA's ``MBConvLayer`` config (NAT's ``MBInvertedConvLayer`` name)."""
    depth = conv.depth_conv
    mid = depth.conv.in_channels
    has_bottleneck = conv.inverted_bottleneck is not None
    in_channels = conv.inverted_bottleneck.conv.in_channels if has_bottleneck else mid
    out = {
        "name": MBCONV_NAME,
        "in_channels": in_channels,
        "out_channels": conv.point_linear.conv.out_channels,
        "kernel_size": depth.conv.kernel_size[0],
        "stride": depth.conv.stride[0],
        "expand_ratio": expand_ratio if has_bottleneck else 1,
        "mid_channels": mid if has_bottleneck else None,
        "act_func": act_name(depth.act),
        "use_se": hasattr(depth, "se"),
    }
    if hasattr(depth, "se"):
        se_mid = depth.se.fc.reduce.out_channels
        if se_mid != make_divisible(mid // 4, 8):
            out["se_mid_channels"] = se_mid
    return out


def net_config(model: StaticMobileNetV3) -> dict[str, Any]:
    """The OFA/NAT static-network JSON (``net.config``) describing ``model`` exactly."""
    space, subnet = model.space, model.subnet
    expand_ratios = [1] + list(subnet.e)  # the fixed first block has no expansion
    blocks = []
    for block, e in zip(model.blocks, expand_ratios, strict=True):
        conv = _mbconv(block.conv, e)
        shortcut = _identity(conv["in_channels"]) if block.residual else None
        blocks.append({"name": BLOCK_NAME, "mobile_inverted_conv": conv, "shortcut": shortcut})
    linear: nn.Linear = model.classifier.linear
    return {
        "name": "MobileNetV3",
        "bn": {"momentum": space.bn_momentum, "eps": space.bn_eps},
        "first_conv": _conv_layer(model.first_conv),
        "blocks": blocks,
        "final_expand_layer": _conv_layer(model.final_expand_layer),
        "feature_mix_layer": _conv_layer(model.feature_mix_layer),
        "classifier": {
            "name": "LinearLayer",
            "in_features": linear.in_features,
            "out_features": linear.out_features,
            "bias": linear.bias is not None,
            "use_bn": False,
            "act_func": None,
            "dropout_rate": model.classifier.dropout_rate,
            "ops_order": "weight_bn_act",
        },
        "img_size": subnet.r,
    }


def is_net_config(data: Any) -> bool:
    """Whether ``data`` looks like an OFA/NAT static-network config (not a subnet, not nat's old format)."""
    return isinstance(data, Mapping) and "blocks" in data and "first_conv" in data


def block_conv(block: Mapping[str, Any]) -> Mapping[str, Any]:
    """The conv config of a block in either spelling (NAT's ``mobile_inverted_conv``, OFA's ``conv``)."""
    conv = block.get("mobile_inverted_conv", block.get("conv"))
    if not isinstance(conv, Mapping):
        raise ConfigError("a block of net.config has no 'mobile_inverted_conv' (or 'conv') layer")
    return conv


def _stages(convs: list[Mapping[str, Any]]) -> list[list[Mapping[str, Any]]]:
    """Blocks grouped into stages: a stage starts at every block that changes shape."""
    stages: list[list[Mapping[str, Any]]] = []
    for conv in convs:
        if not stages or conv["stride"] != 1 or conv["in_channels"] != conv["out_channels"]:
            stages.append([])
        stages[-1].append(conv)
    return stages


def subnet_from_net_config(
    config: Mapping[str, Any], space: SearchSpace | str | None = None, resolution: int | None = None
) -> Subnet:
    """The `Subnet` of ``space`` that a ``net.config`` describes (`ConfigError` if it is none).

    Recovers the width multiplier from the channel widths, each stage's depth from the block shapes and
    each block's kernel and expansion; the resolution is ``resolution``, else the config's ``img_size``.
    Only the architecture is compared: activations and dropout are not part of a subnet.
    """
    space = get_space(space)
    try:
        convs = [block_conv(b) for b in config["blocks"]]
        stem_width = config["first_conv"]["out_channels"]
        head_width = config["feature_mix_layer"]["out_channels"]
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"not a MobileNetV3 net.config (missing {exc})") from None
    width = next(
        (
            w
            for w in space.width_mults
            if space.widths(w)[0] == stem_width and space.widths(w)[8] == head_width
        ),
        None,
    )
    if width is None:
        raise ConfigError(
            f"net.config widths (stem {stem_width}, head {head_width}) match no width multiplier of "
            f"search space '{space.name}' {list(space.width_mults)}"
        )
    stages = _stages(convs[1:])
    outs = [stage[0]["out_channels"] for stage in stages]
    if len(stages) != NUM_STAGES or tuple(outs) != space.stage_widths(width):
        raise ConfigError(
            f"net.config stages (output widths {outs}) do not match the {NUM_STAGES} stages of search "
            f"space '{space.name}' at width {width} {list(space.stage_widths(width))}"
        )
    r = resolution if resolution is not None else config.get("img_size")
    if r is None:
        raise ConfigError("net.config has no 'img_size': give the resolution")
    flat = [conv for stage in stages for conv in stage]
    return Subnet(
        ks=tuple(int(c["kernel_size"]) for c in flat),
        e=tuple(int(c["expand_ratio"]) for c in flat),
        d=tuple(len(stage) for stage in stages),
        r=int(r),
        w=float(width),
    ).check(space)
