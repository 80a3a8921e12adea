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

from nat.errors import ConfigError
from nat.space.definition import NUM_STAGES, SearchSpace, get_space
from nat.space.subnet import Subnet
from nat.supernet.layers import block_conv
from nat.supernet.static import StaticMobileNetV3


def net_config(model: StaticMobileNetV3) -> dict[str, Any]:
    """The OFA/NAT static-network JSON (``net.config``) describing ``model`` exactly: each layer writes
    its own entry (`nat.supernet.layers`), so the reader (`nat.export.natnet`) builds the same classes."""
    space = model.space
    return {
        "name": "MobileNetV3",
        "bn": {"momentum": space.bn_momentum, "eps": space.bn_eps},
        "first_conv": model.first_conv.to_config(),
        "blocks": [block.to_config() for block in model.blocks],
        "final_expand_layer": model.final_expand_layer.to_config(),
        "feature_mix_layer": model.feature_mix_layer.to_config(),
        "classifier": model.classifier.to_config(),
        "img_size": model.subnet.r,
    }


def is_net_config(data: Any) -> bool:
    """Whether ``data`` looks like an OFA/NAT static-network config (not a subnet, not nat's old format)."""
    return isinstance(data, Mapping) and "blocks" in data and "first_conv" in data


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
