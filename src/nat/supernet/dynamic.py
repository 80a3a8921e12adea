"""Elastic (weight-sharing) operators: slicing primitives and the elastic inverted-residual block.

Layering follows OFA's ``dynamic_op`` -> ``dynamic_layers``: each primitive owns the *largest* weights
and produces the active slice on demand; the block asks for the slices its active (kernel, expansion)
needs. Differences from OFA, all without changing the maths:

* no class-level mutable flags: the active choice is plain instance state of each block, and BN
  recalibration is switched on per module by :func:`nat.supernet.calibration` (a context manager);
* the block runs its sub-layers functionally, so one forward does no module dispatch per slice;
* in eval mode the block folds BN into the conv weights once per (subnet, weights) and reuses them,
  which is what makes evaluating many subnets cheap.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from nat.space.definition import Activation, make_divisible
from nat.supernet.depthwise import depthwise_conv2d
from nat.supernet.layers import build_activation, same_padding, se_bottleneck


class RunningAverage:
    """Batch-size weighted average of per-channel batch statistics (OFA's BN recalibration)."""

    def __init__(self) -> None:
        self.mean_sum: torch.Tensor | None = None
        self.var_sum: torch.Tensor | None = None
        self.count = 0

    def update(self, mean: torch.Tensor, var: torch.Tensor, n: int) -> None:
        if self.mean_sum is None:
            self.mean_sum, self.var_sum = mean * n, var * n
        else:
            self.mean_sum = self.mean_sum + mean * n
            self.var_sum = self.var_sum + var * n
        self.count += n


def normalise_by_batch(
    x: torch.Tensor, weight: torch.Tensor | None, bias: torch.Tensor | None, eps: float
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``x`` normalised by its own per-channel statistics, and those statistics (float32 mean and biased
    variance): what a BN does in training mode, and what recalibration collects.

    One fused training-mode ``batch_norm`` computes both (it writes the batch's mean and unbiased
    variance into scratch running buffers at momentum 1). Statistics computed apart and then passed to
    an eval-mode ``batch_norm`` cost three more passes over the activation, which made a calibration
    image 2.3x the cost of a validation image on OFA's space at 224 px (docs/results/evaluation_speed.md).
    The buffers are float32, so under autocast (bf16 activations) the statistics are still float32.
    A channel of a single value (one image at 1x1) has no unbiased variance: computed apart (variance 0).
    """
    c = x.size(1)
    n = x.numel() // c
    if n < 2:
        xf = x.float()
        mean = xf.mean((0, 2, 3))
        var = (xf - mean.view(1, -1, 1, 1)).square().mean((0, 2, 3))
        return F.batch_norm(x, mean, var, weight, bias, False, 0.0, eps), mean, var
    mean = torch.zeros(c, dtype=torch.float32, device=x.device)
    var = torch.ones(c, dtype=torch.float32, device=x.device)
    out = F.batch_norm(x, mean, var, weight, bias, True, 1.0, eps)
    return out, mean, var.mul_((n - 1) / n)


class BatchNorm2d(nn.BatchNorm2d):
    """BatchNorm that also normalises the first ``C <= num_features`` channels (elastic width) and can
    collect recalibration statistics. State-dict compatible with ``nn.BatchNorm2d``."""

    def __init__(self, *args, **kwargs) -> None:  # nn.BatchNorm2d's signature
        super().__init__(*args, **kwargs)
        #: set by `nat.supernet.calibration.bn_calibration` on this instance only
        self.calibration: RunningAverage | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.size(1)
        weight, bias = self.weight[:c], self.bias[:c]
        if self.calibration is not None:
            # OFA's set_running_statistics: normalise with this batch's statistics (biased variance)
            # and average them over all calibration images
            out, mean, var = normalise_by_batch(x, weight, bias, self.eps)
            self.calibration.update(mean, var, x.size(0))
            return out
        if self.training and self.num_batches_tracked is not None:
            self.num_batches_tracked.add_(1)
        return F.batch_norm(
            x,
            self.running_mean[:c],
            self.running_var[:c],
            weight,
            bias,
            self.training,
            self.momentum,
            self.eps,
        )


class DynamicConv2d(nn.Module):
    """A 1x1 convolution whose output and input channels are the first ``out``/``in`` of the largest."""

    def __init__(self, max_in: int, max_out: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(max_in, max_out, 1, bias=False)

    def active_weight(self, out_channels: int, in_channels: int) -> torch.Tensor:
        return self.conv.weight[:out_channels, :in_channels]


class DynamicBatchNorm2d(nn.Module):
    """OFA's ``DynamicBatchNorm2d`` key layout (``bn.*``) around the elastic :class:`BatchNorm2d`."""

    def __init__(self, max_features: int, eps: float, momentum: float) -> None:
        super().__init__()
        self.bn = BatchNorm2d(max_features, eps=eps, momentum=momentum)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn(x)


class DynamicDepthwiseConv2d(nn.Module):
    """Depthwise convolution with elastic kernel size via OFA's kernel transformation.

    A smaller kernel is the centre crop of the next larger one, passed through a learned linear map
    (``7to5_matrix``: 25x25, ``5to3_matrix``: 9x9), applied 7 -> 5 -> 3 as in OFA.
    """

    def __init__(self, max_channels: int, kernel_sizes: tuple[int, ...], stride: int) -> None:
        super().__init__()
        self.kernel_sizes = tuple(sorted(kernel_sizes))
        self.max_kernel = self.kernel_sizes[-1]
        self.stride = stride
        self.conv = nn.Conv2d(
            max_channels,
            max_channels,
            self.max_kernel,
            stride,
            same_padding(self.max_kernel),
            groups=max_channels,
            bias=False,
        )
        for small, large in zip(self.kernel_sizes[:-1], self.kernel_sizes[1:], strict=True):
            self.register_parameter(f"{large}to{small}_matrix", nn.Parameter(torch.eye(small * small)))

    def active_filter(self, channels: int, kernel_size: int) -> torch.Tensor:
        weight = self.conv.weight[:channels]
        size = self.max_kernel
        for target in reversed(self.kernel_sizes):
            if target >= size:
                continue
            if target < kernel_size:
                break
            start = (size - target) // 2
            crop = weight[:, :, start : start + target, start : start + target].reshape(-1, target * target)
            matrix = getattr(self, f"{size}to{target}_matrix")
            weight = F.linear(crop, matrix).view(channels, 1, target, target)
            size = target
        return weight


class DynamicSE(nn.Module):
    """Squeeze-and-excite on the first ``C`` channels; hidden width ``make_divisible(C // 4, 8)``."""

    def __init__(self, max_channels: int, reduction: int) -> None:
        super().__init__()
        self.reduction = reduction
        self.fc = se_bottleneck(max_channels, make_divisible(max_channels // reduction, 8))

    def mid_channels(self, channels: int) -> int:
        return make_divisible(channels // self.reduction, 8)

    def active_weights(self, channels: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        mid = self.mid_channels(channels)
        return (
            self.fc.reduce.weight[:mid, :channels],
            self.fc.reduce.bias[:mid],
            self.fc.expand.weight[:channels, :mid],
            self.fc.expand.bias[:channels],
        )


def _scale_excite(
    x: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor
) -> torch.Tensor:
    s = x.mean((2, 3))
    s = F.relu(F.linear(s, w1.flatten(1), b1))
    s = F.hardsigmoid(F.linear(s, w2.flatten(1), b2))
    return x * s[:, :, None, None]


def pointwise(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """A 1x1 convolution that keeps the activations' layout.

    On channels-last inputs (the supernet's layout on CPU) without a bias (training: BN follows) it is
    one GEMM over the channels: ``permute`` is free and ``linear`` runs a single BLAS call forward and
    backward, which on CPU is much faster than the im2col convolution PyTorch picks for 1x1 kernels.
    With a bias (the BN-folded inference path) it is oneDNN's convolution, which adds the bias inside
    its kernel, where ``addmm`` first copies the broadcast bias into the whole output: 8% of a 128 px
    inference pass and 12% of a 32 px one (docs/scale.md). On NCHW inputs (the layout on CUDA,
    ``memory_format``) it is an ordinary convolution: the GEMM would return channels-last activations,
    and the depthwise convolution after it would run channels-last after all.
    """
    if bias is None and x.is_contiguous(memory_format=torch.channels_last):
        return F.linear(x.permute(0, 2, 3, 1), weight.flatten(1)).permute(0, 3, 1, 2)
    return F.conv2d(x, weight.reshape(weight.shape[0], -1, 1, 1), bias)


def _fold_bn(weight: torch.Tensor, bn: nn.BatchNorm2d, channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and bias equal to conv followed by BN in eval mode (first ``channels`` channels)."""
    scale = bn.weight[:channels] * torch.rsqrt(bn.running_var[:channels] + bn.eps)
    folded = weight * scale.view(-1, *([1] * (weight.dim() - 1)))
    return folded, bn.bias[:channels] - bn.running_mean[:channels] * scale


class DynamicMBConv(nn.Module):
    """Elastic inverted-residual block (OFA's ``DynamicMBConvLayer``): kernel and expansion elastic.

    The hidden width for expansion ``e`` is ``make_divisible(round(in_channels * e), 8)``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_sizes: tuple[int, ...],
        expand_ratios: tuple[int, ...],
        stride: int,
        act: Activation,
        use_se: bool,
        se_reduction: int = 4,
        bn_momentum: float = 0.1,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride = in_channels, out_channels, stride
        self.act_name = act
        self.use_se = use_se
        max_mid = make_divisible(round(in_channels * max(expand_ratios)), 8)
        bn = {"eps": bn_eps, "momentum": bn_momentum}
        self.inverted_bottleneck = nn.Sequential(
            OrderedDict(
                conv=DynamicConv2d(in_channels, max_mid),
                bn=DynamicBatchNorm2d(max_mid, **bn),
                act=build_activation(act),
            )
        )
        depth: OrderedDict[str, nn.Module] = OrderedDict(
            conv=DynamicDepthwiseConv2d(max_mid, kernel_sizes, stride),
            bn=DynamicBatchNorm2d(max_mid, **bn),
            act=build_activation(act),
        )
        if use_se:
            depth["se"] = DynamicSE(max_mid, se_reduction)
        self.depth_conv = nn.Sequential(depth)
        self.point_linear = nn.Sequential(
            OrderedDict(conv=DynamicConv2d(max_mid, out_channels), bn=DynamicBatchNorm2d(out_channels, **bn))
        )
        self.active_kernel = max(kernel_sizes)
        self.active_expand = max(expand_ratios)
        # ReLU runs in place on BN's output (BN's backward needs its input, ReLU's its output);
        # h-swish's backward needs its input, so only the folded no-grad path runs it in place
        self._act = F.relu_ if act == "relu" else F.hardswish
        self._act_inplace = F.relu_ if act == "relu" else partial(F.hardswish, inplace=True)
        self._folded: tuple | None = None
        self._folded_key: tuple | None = None

    @property
    def active_mid(self) -> int:
        return make_divisible(round(self.in_channels * self.active_expand), 8)

    def set_active(self, kernel_size: int, expand_ratio: int) -> None:
        self.active_kernel, self.active_expand = kernel_size, expand_ratio

    # ----------------------------------------------------------------- forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training and not torch.is_grad_enabled() and not self._calibrating():
            return self._forward_folded(x)
        mid, k, act = self.active_mid, self.active_kernel, self._act
        ib, dw, pl = self.inverted_bottleneck, self.depth_conv, self.point_linear
        x = act(ib.bn(pointwise(x, ib.conv.active_weight(mid, self.in_channels))))
        x = depthwise_conv2d(x, dw.conv.active_filter(mid, k), self.stride, same_padding(k))
        x = act(dw.bn(x))
        if self.use_se:
            x = _scale_excite(x, *dw.se.active_weights(mid))
        return pl.bn(pointwise(x, pl.conv.active_weight(self.out_channels, mid)))

    def _calibrating(self) -> bool:
        return self.inverted_bottleneck.bn.bn.calibration is not None

    def _forward_folded(self, x: torch.Tensor) -> torch.Tensor:
        mid, k, act = self.active_mid, self.active_kernel, self._act_inplace
        w1, b1, w2, b2, w3, b3, se = self._folded_weights()
        x = act(pointwise(x, w1, b1))
        x = act(F.conv2d(x, w2, b2, self.stride, same_padding(k), 1, mid))
        if se is not None:
            x = _scale_excite(x, *se)
        return pointwise(x, w3, b3)

    def _folded_weights(self) -> tuple:
        """BN-folded active weights, rebuilt only when the subnet or any tensor of the block changed."""
        tensors = [*self.parameters(), *self.buffers()]
        key = (
            self.active_kernel,
            self.active_expand,
            tuple(t._version for t in tensors),
            tuple(t.data_ptr() for t in tensors),
        )
        if key != self._folded_key:
            mid, k = self.active_mid, self.active_kernel
            ib, dw, pl = self.inverted_bottleneck, self.depth_conv, self.point_linear
            with torch.no_grad():
                w1, b1 = _fold_bn(ib.conv.active_weight(mid, self.in_channels), ib.bn.bn, mid)
                w2, b2 = _fold_bn(dw.conv.active_filter(mid, k), dw.bn.bn, mid)
                w3, b3 = _fold_bn(pl.conv.active_weight(self.out_channels, mid), pl.bn.bn, self.out_channels)
                se = tuple(t.contiguous() for t in dw.se.active_weights(mid)) if self.use_se else None
                self._folded = (w1.contiguous(), b1, w2.contiguous(), b2, w3.contiguous(), b3, se)
            self._folded_key = key
        return self._folded

    def train(self, mode: bool = True) -> DynamicMBConv:
        self._folded = self._folded_key = None
        return super().train(mode)
