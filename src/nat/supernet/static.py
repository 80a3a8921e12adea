"""Standalone MobileNetV3 networks: what `Supernet.extract` returns and what nat exports.

A `StaticMobileNetV3` is plain PyTorch (``nn.Conv2d``/``nn.BatchNorm2d``/...) with OFA's module names,
built from a `SearchSpace`, a `Subnet` and a class count alone, so a saved state dict plus the subnet
JSON is a complete, code-free model file.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import nn

from nat.space.definition import NUM_STAGES, SearchSpace
from nat.space.subnet import Subnet
from nat.supernet.layers import Classifier, ConvLayer, MBConv, ResidualBlock


def first_block(space: SearchSpace, width_mult: float, norm: type[nn.BatchNorm2d]) -> ResidualBlock:
    """OFA's fixed first block: depthwise 3x3 + 1x1 projection (expansion 1), stride 1."""
    widths = space.widths(width_mult)
    conv = MBConv(
        widths[0],
        widths[1],
        3,
        1,
        widths[0],
        space.first_block_act,
        None,
        expand=False,
        bn_momentum=space.bn_momentum,
        bn_eps=space.bn_eps,
        norm=norm,
    )
    return ResidualBlock(conv, residual=widths[0] == widths[1])


def head_layers(
    space: SearchSpace, width_mult: float, num_classes: int, norm: type[nn.BatchNorm2d]
) -> tuple[ConvLayer, ConvLayer, Classifier]:
    """Final 1x1 expand (BN, h-swish), feature mix after pooling (no BN, h-swish), classifier."""
    widths = space.widths(width_mult)
    final_expand = ConvLayer(
        widths[6], widths[7], 1, 1, "h_swish", bn_momentum=space.bn_momentum, bn_eps=space.bn_eps, norm=norm
    )
    feature_mix = ConvLayer(widths[7], widths[8], 1, 1, "h_swish", use_bn=False)
    return final_expand, feature_mix, Classifier(widths[8], num_classes, space.dropout_rate)


def stem(space: SearchSpace, width_mult: float, norm: type[nn.BatchNorm2d]) -> ConvLayer:
    return ConvLayer(
        3,
        space.widths(width_mult)[0],
        3,
        space.stem_stride,
        "h_swish",
        bn_momentum=space.bn_momentum,
        bn_eps=space.bn_eps,
        norm=norm,
    )


def mobilenet_features(
    net: nn.Module, blocks: Iterable[nn.Module], x: torch.Tensor, mix_as_matmul: bool = False
) -> torch.Tensor:
    """Stem, ``blocks``, final expand, global pooling and feature mix: the trunk every network shares.

    ``mix_as_matmul`` runs the feature mix (a 1x1 convolution on a 1x1 map) as the matrix product it
    is: the supernet's training step does, because on CPU PyTorch's convolution backward for it took
    4-5x the GEMM's time at OFA's widths. Standalone networks keep calling the module, so forward hooks
    on it (MAdds counters, user tools) and exported graphs see an ordinary convolution.
    """
    x = net.first_conv(x)
    for block in blocks:
        x = block(x)
    x = net.final_expand_layer(x)
    mix = net.feature_mix_layer
    if mix_as_matmul:
        return mix.act(F.linear(x.mean((2, 3)), mix.conv.weight.flatten(1), mix.conv.bias))
    x = x.mean((2, 3), keepdim=True)
    return torch.flatten(mix(x), 1)


class StaticMobileNetV3(nn.Module):
    """One fixed subnet as an ordinary network (no elastic ops, no supernet needed)."""

    def __init__(
        self, space: SearchSpace, subnet: Subnet, num_classes: int, channels_last: bool = True
    ) -> None:
        super().__init__()
        subnet.check(space)
        self.space, self.subnet, self.num_classes = space, subnet, num_classes
        #: run on NHWC activations (the input is made channels-last; the weights keep their layout, so
        #: files and state dicts are unchanged): oneDNN's kernels on CPU, 1.6-2.1x faster inference than
        #: NCHW there (bench/static_layout.py), and the layout GPU tensor cores prefer. Same as `Supernet`
        self.channels_last = channels_last
        widths = space.widths(subnet.w)
        self.first_conv = stem(space, subnet.w, nn.BatchNorm2d)
        blocks = [first_block(space, subnet.w, nn.BatchNorm2d)]
        in_channels = widths[1]
        for stage, stage_blocks in enumerate(subnet.stage_blocks()):
            out_channels = widths[2 + stage]
            for j, (k, e) in enumerate(stage_blocks):
                stride = space.stage_strides[stage] if j == 0 else 1
                mid = space.middle_channels(in_channels, e)
                conv = MBConv(
                    in_channels,
                    out_channels,
                    k,
                    stride,
                    mid,
                    space.stage_acts[stage],
                    space.se_channels(mid) if space.stage_se[stage] else None,
                    bn_momentum=space.bn_momentum,
                    bn_eps=space.bn_eps,
                    expand_ratio=e,
                )
                blocks.append(ResidualBlock(conv, residual=stride == 1 and in_channels == out_channels))
                in_channels = out_channels
        self.blocks = nn.ModuleList(blocks)
        self.final_expand_layer, self.feature_mix_layer, self.classifier = head_layers(
            space, subnet.w, num_classes, nn.BatchNorm2d
        )
        assert len(self.blocks) == 1 + sum(subnet.d) and len(subnet.d) == NUM_STAGES

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        return mobilenet_features(self, self.blocks, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.forward_features(x))

    def config(self) -> dict:
        """Everything needed to rebuild this network (besides its weights)."""
        return {
            "space": self.space.model_dump(mode="json"),
            "subnet": self.subnet.to_dict(),
            "num_classes": self.num_classes,
        }
