"""Static building blocks shared by the supernet's fixed parts and by extracted subnets.

Module and parameter names follow OFA's MobileNetV3 exactly (``conv``/``bn``/``act``,
``inverted_bottleneck``/``depth_conv``/``point_linear``, ``se.fc.reduce``/``expand``), so state dicts of
extracted nat models and of OFA's own static subnets line up key for key.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from nat.space.definition import Activation
from nat.supernet.depthwise import depthwise_conv2d


def build_activation(name: Activation) -> nn.Module:
    if name == "relu":
        return nn.ReLU(inplace=True)
    if name == "h_swish":
        return nn.Hardswish(inplace=True)
    raise ValueError(f"unknown activation {name!r}")


def same_padding(kernel_size: int) -> int:
    return kernel_size // 2


class ConvLayer(nn.Sequential):
    """conv -> (bn) -> act, OFA's ``ConvLayer`` with ``ops_order='weight_bn_act'``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        act: Activation | None = "relu",
        use_bn: bool = True,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        norm: type[nn.BatchNorm2d] = nn.BatchNorm2d,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        layers["conv"] = nn.Conv2d(
            in_channels, out_channels, kernel_size, stride, same_padding(kernel_size), bias=False
        )
        if use_bn:
            layers["bn"] = norm(out_channels, eps=bn_eps, momentum=bn_momentum)
        if act is not None:
            layers["act"] = build_activation(act)
        super().__init__(layers)


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
        act: Activation,
        se_channels: int | None,
        expand: bool = True,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
        norm: type[nn.BatchNorm2d] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        bn = {"bn_momentum": bn_momentum, "bn_eps": bn_eps, "norm": norm}
        # OFA drops the 1x1 expansion only for expand ratio 1 (the fixed first block)
        self.inverted_bottleneck = ConvLayer(in_channels, mid_channels, 1, 1, act, **bn) if expand else None
        depth: OrderedDict[str, nn.Module] = OrderedDict()
        depth["conv"] = DepthwiseConv2d(mid_channels, kernel_size, stride)
        depth["bn"] = norm(mid_channels, eps=bn_eps, momentum=bn_momentum)
        depth["act"] = build_activation(act)
        if se_channels is not None:
            depth["se"] = SqueezeExcite(mid_channels, se_channels)
        self.depth_conv = nn.Sequential(depth)
        self.point_linear = ConvLayer(mid_channels, out_channels, 1, 1, act=None, **bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.inverted_bottleneck is not None:
            x = self.inverted_bottleneck(x)
        return self.point_linear(self.depth_conv(x))


class ResidualBlock(nn.Module):
    """``conv(x) + x`` when the block keeps shape (stride 1, same width), else ``conv(x)``."""

    def __init__(self, conv: nn.Module, residual: bool) -> None:
        super().__init__()
        self.conv = conv
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return out + x if self.residual else out


class Classifier(nn.Module):
    """Dropout then linear (OFA's ``LinearLayer``); dropout is active only in training."""

    def __init__(self, in_features: int, num_classes: int, dropout_rate: float) -> None:
        super().__init__()
        self.dropout_rate = dropout_rate
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.dropout_rate > 0:
            x = nn.functional.dropout(x, self.dropout_rate, self.training)
        return self.linear(x)
