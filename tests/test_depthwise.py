"""The depthwise convolution with nat's own weight gradients (the C kernel, the batched product) equals
PyTorch's."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nat.supernet import depthwise, native
from nat.supernet.depthwise import depthwise_conv2d, uses_matmul_weight_grad, weight_grad_matmul

HAS_NATIVE = native.depthwise_weight_grad_library() is not None
needs_native = pytest.mark.skipif(not HAS_NATIVE, reason="no C compiler: nat's C kernel cannot be built")

SHAPES = [
    # channels, map size, kernel, stride
    (16, 4, 7, 1),
    (16, 4, 7, 2),
    (8, 2, 7, 1),
    (8, 1, 7, 1),
    (12, 7, 5, 1),
    (12, 7, 7, 2),
    (8, 5, 5, 2),
    (8, 3, 3, 1),
    (12, 8, 7, 1),
    (12, 8, 5, 2),
    (12, 8, 7, 2),
    # medium maps and channel counts off the 16-channel vector (only the C kernel runs there)
    (13, 16, 7, 1),
    (24, 12, 5, 2),
    (40, 11, 7, 2),
]


def _reference(x: torch.Tensor, w: torch.Tensor, stride: int) -> tuple[torch.Tensor, ...]:
    x, w = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
    out = F.conv2d(x, w, None, stride, w.shape[-1] // 2, 1, w.shape[0])
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    return out.detach(), x.grad, w.grad


def _without_native(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine without a C compiler."""
    monkeypatch.setattr(native, "depthwise_weight_grad_library", lambda: None)


@pytest.mark.parametrize(("channels", "size", "k", "stride"), SHAPES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("path", [pytest.param("native", marks=needs_native), "without native"])
def test_forward_and_both_gradients_equal_pytorch(
    channels, size, k, stride, channels_last, path, monkeypatch
):
    if path != "native":
        _without_native(monkeypatch)
    g = torch.Generator().manual_seed(size * 100 + k * 10 + stride)
    x = torch.randn(5, channels, size, size, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    w = torch.randn(channels, 1, k, k, generator=g)
    out_ref, gx_ref, gw_ref = _reference(x, w, stride)
    xs, ws = x.detach().requires_grad_(True), w.detach().requires_grad_(True)
    out = depthwise_conv2d(xs, ws, stride, k // 2)
    out.backward(torch.linspace(-1, 1, out.numel()).view_as(out))
    assert torch.allclose(out, out_ref, atol=1e-5)
    assert torch.allclose(xs.grad, gx_ref, atol=1e-5)
    assert torch.allclose(ws.grad, gw_ref, rtol=1e-4, atol=1e-4)


def test_weight_gradient_formula_directly():
    """The matmul formula itself, on a map where every tap is partly in the padding."""
    g = torch.Generator().manual_seed(0)
    x, w = torch.randn(3, 4, 3, 3, generator=g), torch.randn(4, 1, 7, 7, generator=g)
    _, _, gw_ref = _reference(x, w, 1)
    out = F.conv2d(x, w, None, 1, 3, 1, 4)
    grad = torch.linspace(-1, 1, out.numel()).view_as(out)
    assert torch.allclose(weight_grad_matmul(x, grad, 7, 1, 3), gw_ref, atol=1e-5)


@needs_native
def test_the_c_kernel_takes_every_5x5_and_7x7_float32_kernel_on_cpu():
    for size in (1, 4, 8, 16, 64):
        x = torch.zeros(1, 8, size, size)
        assert depthwise.weight_grad_method(x, 7) == "native"
        assert depthwise.weight_grad_method(x, 5, stride=2) == "native"
        assert depthwise.weight_grad_method(x, 3) == "pytorch"  # oneDNN's 3x3 kernel is as fast
    assert depthwise.weight_grad_method(torch.zeros(1, 8, 8, 8).bfloat16(), 7) == "pytorch"
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert depthwise.weight_grad_method(torch.zeros(1, 8, 8, 8), 7) == "pytorch"


def test_without_the_c_kernel_small_maps_take_the_product(monkeypatch):
    _without_native(monkeypatch)
    assert depthwise.weight_grad_method(torch.zeros(1, 8, 4, 4), 7) == "matmul"
    assert depthwise.weight_grad_method(torch.zeros(1, 8, 16, 16), 7) == "pytorch"


def test_which_inputs_take_the_matmul_path():
    small, large = torch.zeros(1, 8, 4, 4), torch.zeros(1, 8, 14, 14)
    assert uses_matmul_weight_grad(small, 7)
    assert not uses_matmul_weight_grad(small, 3)  # oneDNN's 3x3 kernel is fast
    assert not uses_matmul_weight_grad(large, 7)  # the direct product is cheaper
    assert not uses_matmul_weight_grad(small.bfloat16(), 7)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert not uses_matmul_weight_grad(small, 7)
    # 8x8 maps: only where the product measured faster (7x7 kernels, strided convolutions)
    eight = torch.zeros(1, 8, 8, 8)
    assert uses_matmul_weight_grad(eight, 7)
    assert uses_matmul_weight_grad(eight, 5, stride=2)
    assert not uses_matmul_weight_grad(eight, 5)
    assert not uses_matmul_weight_grad(eight, 3, stride=2)
    assert not uses_matmul_weight_grad(torch.zeros(1, 8, 9, 9), 7, stride=2)


@pytest.mark.parametrize("path", [pytest.param("native", marks=needs_native), "without native"])
def test_supernet_training_step_matches_plain_convolution(path, monkeypatch):
    """A whole supernet step gives the same gradients with nat's weight gradients as with PyTorch's."""
    from nat.space import Subnet, get_space
    from nat.supernet import Supernet

    space = get_space("micro")
    torch.manual_seed(0)
    net = Supernet(space, 1.0, 10).train()
    x, y = torch.randn(4, 3, 28, 28), torch.randint(0, 10, (4,))
    net.set_active(Subnet.largest(space))

    def grads() -> list[torch.Tensor]:
        net.zero_grad()
        torch.manual_seed(1)  # the same dropout mask
        F.cross_entropy(net(x), y).backward()
        return [p.grad.clone() for p in net.parameters() if p.grad is not None]

    if path != "native":
        _without_native(monkeypatch)
    fast = grads()
    monkeypatch.setattr(depthwise, "weight_grad_method", lambda *args, **kwargs: "pytorch")
    plain = grads()
    assert len(fast) == len(plain)
    for a, b in zip(fast, plain, strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)


def test_each_layout_stays_its_own_through_the_blocks(monkeypatch):
    """``memory_format`` holds inside the blocks: an NCHW supernet (the CUDA default) feeds every
    depthwise convolution NCHW activations, and a channels-last one (CPU) every 1x1 convolution
    channels-last ones (its one-GEMM path); both give the same logits and gradients up to rounding."""
    import random

    from nat.space import Subnet, get_space
    from nat.supernet import Supernet

    space = get_space("tiny-s2-wide")
    subnet = Subnet.sample(space, random.Random(3), w=1.0)
    x, y = torch.randn(4, 3, subnet.r, subnet.r), torch.randint(0, 10, (4,))
    seen: dict[bool, list[tuple[bool, bool]]] = {}
    results = {}
    conv = F.conv2d
    for channels_last in (False, True):
        torch.manual_seed(0)
        net = Supernet(space, 1.0, 10, channels_last=channels_last).train()
        net.set_active(subnet)
        layouts = seen.setdefault(channels_last, [])

        def spy(inp, weight, *args, layouts=layouts, **kwargs):
            if weight.shape[1] == 1 and inp.shape[-1] > 1:  # a depthwise convolution
                layouts.append((inp.is_contiguous(), inp.is_contiguous(memory_format=torch.channels_last)))
            return conv(inp, weight, *args, **kwargs)

        monkeypatch.setattr(F, "conv2d", spy)
        torch.manual_seed(1)  # the same dropout mask
        logits = net(x)
        F.cross_entropy(logits, y).backward()
        monkeypatch.setattr(F, "conv2d", conv)
        results[channels_last] = (
            logits.detach(),
            [p.grad.clone() for p in net.parameters() if p.grad is not None],
        )
    assert seen[False] and all(nchw for nchw, _ in seen[False])
    assert seen[True] and all(nhwc for _, nhwc in seen[True])
    torch.testing.assert_close(results[False][0], results[True][0], rtol=1e-4, atol=1e-5)
    for a, b in zip(results[False][1], results[True][1], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-5)
