"""Depthwise convolution with a fast weight gradient on CPU: nat's C kernel, else a product on small maps.

On CPU, PyTorch's depthwise backward-weights kernel (oneDNN) is pathologically slow when the feature
map is not much larger than the kernel: on a 4x4 map, the weight gradient of a 7x7 depthwise conv
takes 50-100x longer than the forward pass, and in MobileNetV3's last two stages (4x4 and 2x2 maps at
28 px with a stride-2 stem, 4x4 at OFA's 128 px) it was about three quarters of a whole training step.

For such maps the weight gradient is cheap as a batched matrix product: for each channel ``c``,
``Z_c = G_c X_c^T`` over the batch (``G``: output gradient, ``Q`` output positions; ``X``: input,
``P`` input positions) gives every (output position, input position) product summed over images, and
the gradient of tap ``(i, j)`` is the sum of ``Z_c[q, pos(q, i, j)]`` over the output positions ``q``
whose tap lands inside the map. It computes ``Q x P`` products per image and channel instead of the
direct ``Q x k^2``, so it pays only when ``P`` is close to ``k^2`` (small maps, large kernels); there
it is 8-17x faster than oneDNN (bench/supernet_speed.py). On 8x8 maps (OFA's stages 4-5 at 128 px,
stage 2 at 32 px with a stride-2 stem) it still wins for 7x7 kernels (1.7-3.3x at stride 1) and at stride 2
(oneDNN took 8-31 ms for a 7x7 kernel on 8x8 -> 4x4 with 672-960 channels, the product 2-4 ms;
5x5: 1.7-2x), and it ties for 5x5 at stride 1 (bench/results/depthwise_weight_grad.json).
Elsewhere, and on GPUs (cuDNN is fine), and under autocast, the ordinary convolution runs. The result is
the same gradient up to float rounding.

Faster still, everywhere a 5x5 or 7x7 kernel is used, is nat's small C kernel for the direct sum
(``nat.supernet.native``, compiled on first use): 4-10x oneDNN on OFA's 16x16-64x64 maps and 4-7x the
batched product on small maps (bench/results/depthwise_weight_grad.json). Where it cannot be built (no C
compiler, or ``NAT_NATIVE_KERNELS=0``), the rules above apply.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from nat.supernet import native

#: largest input map (height x width) for which the batched-matmul weight gradient is used
MAX_MAP_POSITIONS = 49
#: ... and for kernels of at least ``WIDE_MAP_KERNEL`` or strided convolutions (module docstring)
MAX_WIDE_MAP_POSITIONS = 64
WIDE_MAP_KERNEL = 7
#: smallest kernel for it: oneDNN's 3x3 depthwise backward is fast at every size measured
MIN_KERNEL = 5


WeightGradMethod = Literal["native", "matmul", "pytorch"]


def weight_grad_method(x: torch.Tensor, kernel_size: int, stride: int = 1) -> WeightGradMethod:
    """Which weight gradient :func:`depthwise_conv2d` computes for this input (module docstring)."""
    if not _own_weight_grad_applies(x, kernel_size):
        return "pytorch"
    if kernel_size <= native.MAX_KERNEL and native.depthwise_weight_grad_library() is not None:
        return "native"
    return "matmul" if _map_suits_product(x, kernel_size, stride) else "pytorch"


def uses_matmul_weight_grad(x: torch.Tensor, kernel_size: int, stride: int = 1) -> bool:
    """Whether the batched-matmul weight gradient beats oneDNN's for this input (without the C kernel)."""
    return _own_weight_grad_applies(x, kernel_size) and _map_suits_product(x, kernel_size, stride)


def _map_suits_product(x: torch.Tensor, kernel_size: int, stride: int) -> bool:
    """The product rule's map-size bound (module docstring): small maps only, wider ones for 7x7
    kernels and strided convolutions."""
    positions = x.shape[-2] * x.shape[-1]
    wide = kernel_size >= WIDE_MAP_KERNEL or stride > 1
    return positions <= (MAX_WIDE_MAP_POSITIONS if wide else MAX_MAP_POSITIONS)


def _own_weight_grad_applies(x: torch.Tensor, kernel_size: int) -> bool:
    """Float32 on CPU, no autocast, a kernel of at least ``MIN_KERNEL``: where nat's weight gradients
    (the C kernel or the product) may replace oneDNN's."""
    return (
        x.device.type == "cpu"
        and x.dtype == torch.float32
        and kernel_size >= MIN_KERNEL
        and not torch.is_autocast_enabled("cpu")
    )


def depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int) -> torch.Tensor:
    """``F.conv2d(x, weight, None, stride, padding, groups=channels)`` with a faster backward on CPU.

    ``weight`` is ``(channels, 1, k, k)`` with a square kernel and ``padding`` the same on every side.
    """
    needs_grad = torch.is_grad_enabled() and (x.requires_grad or weight.requires_grad)
    if needs_grad and not torch.compiler.is_compiling():
        method = weight_grad_method(x, weight.shape[-1], stride)
        if method != "pytorch":
            return _DepthwiseOwnWeightGrad.apply(x, weight, stride, padding, method)
    return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])


class _DepthwiseOwnWeightGrad(torch.autograd.Function):
    """oneDNN's forward and input gradient, nat's weight gradient (``method``: native or matmul)."""

    @staticmethod
    def forward(
        ctx, x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int, method: str
    ) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.method = stride, padding, method
        return F.conv2d(x, weight, None, stride, padding, 1, weight.shape[0])

    @staticmethod
    def backward(ctx, grad_out: torch.Tensor) -> tuple:
        x, weight = ctx.saved_tensors
        stride, padding = ctx.stride, ctx.padding
        grad_x = grad_w = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.ops.aten.convolution_backward(
                grad_out,
                x,
                weight,
                None,
                [stride, stride],
                [padding, padding],
                [1, 1],
                False,
                [0, 0],
                weight.shape[0],
                [True, False, False],
            )[0]
        if ctx.needs_input_grad[1]:
            weight_grad = native.depthwise_weight_grad if ctx.method == "native" else weight_grad_matmul
            grad_w = weight_grad(x, grad_out, weight.shape[-1], stride, padding)
        return grad_x, grad_w, None, None, None


def weight_grad_matmul(
    x: torch.Tensor, grad_out: torch.Tensor, kernel_size: int, stride: int, padding: int
) -> torch.Tensor:
    """The weight gradient of a depthwise convolution as one batched matrix product (module docstring)."""
    n, c, h, w = x.shape
    out_h, out_w = grad_out.shape[-2:]
    # one copy each into the layout bmm wants (it would otherwise copy per channel)
    inputs = x.permute(1, 0, 2, 3).reshape(c, n, h * w).contiguous()  # (C, N, P)
    grads = grad_out.permute(1, 2, 3, 0).reshape(c, out_h * out_w, n).contiguous()  # (C, Q, N)
    products = torch.bmm(grads, inputs)  # (C, Q, P)
    index, inside = _tap_positions(h, w, out_h, out_w, kernel_size, stride, padding, x.device)
    taps = products.gather(2, index.expand(c, -1, -1)) * inside  # (C, Q, k*k)
    return taps.sum(1).view(c, 1, kernel_size, kernel_size)


def _tap_positions(
    h: int, w: int, out_h: int, out_w: int, k: int, stride: int, padding: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """For each output position and tap: the input position it reads (flattened) and whether that
    position is inside the map (padding contributes zero)."""
    rows = stride * torch.arange(out_h, device=device).view(-1, 1, 1, 1)
    rows = rows + torch.arange(k, device=device).view(1, 1, -1, 1) - padding
    cols = stride * torch.arange(out_w, device=device).view(1, -1, 1, 1)
    cols = cols + torch.arange(k, device=device).view(1, 1, 1, -1) - padding
    inside = (rows >= 0) & (rows < h) & (cols >= 0) & (cols < w)
    index = rows.clamp(0, h - 1) * w + cols.clamp(0, w - 1)
    shape = (1, out_h * out_w, k * k)
    return index.reshape(shape), inside.reshape(shape).to(torch.float32)
