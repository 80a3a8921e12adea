"""nat's C kernel for the depthwise weight gradient: its results, and how it is built, cached and skipped."""

from __future__ import annotations

import logging

import pytest
import torch
import torch.nn.functional as F

from nat.supernet import depthwise, native

needs_native = pytest.mark.skipif(
    native.depthwise_weight_grad_library() is None, reason="no C compiler: nat's C kernel cannot be built"
)


def _reference(x: torch.Tensor, grad: torch.Tensor, k: int, stride: int, padding: int) -> torch.Tensor:
    return torch.ops.aten.convolution_backward(
        grad, x, torch.zeros(x.shape[1], 1, k, k), None, [stride] * 2, [padding] * 2, [1, 1], False,
        [0, 0], x.shape[1], [False, True, False],
    )[1]  # fmt: skip


def _case(channels: int, size: int, k: int, stride: int, padding: int, channels_last: bool = True):
    g = torch.Generator().manual_seed(channels * 1000 + size * 10 + k + stride)
    x = torch.randn(3, channels, size, size, generator=g)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    out = F.conv2d(x, torch.zeros(channels, 1, k, k), None, stride, padding, 1, channels)
    grad = torch.randn(out.shape, generator=g)
    if channels_last:
        grad = grad.contiguous(memory_format=torch.channels_last)
    return x, grad


@needs_native
@pytest.mark.parametrize(
    ("channels", "size", "k", "stride", "padding"),
    [
        (16, 8, 7, 1, 3),  # one full vector of channels
        (40, 13, 5, 2, 2),  # 16 + 16 + 8 channels, odd map, stride 2
        (35, 9, 7, 2, 3),  # 16 + 16 + 3 single channels
        (7, 3, 7, 1, 3),  # map smaller than the kernel: most taps in the padding
        (24, 1, 5, 1, 2),  # a 1x1 map
        (32, 20, 3, 1, 1),  # the kernel computes 3x3 too (nat does not pick it there)
        (8, 10, 5, 1, 0),  # no padding
        (8, 10, 7, 2, 1),  # padding smaller than k // 2
        (48, 64, 7, 1, 3),  # a large map
    ],
)
@pytest.mark.parametrize("channels_last", [True, False])
def test_equals_pytorchs_weight_gradient(channels, size, k, stride, padding, channels_last):
    x, grad = _case(channels, size, k, stride, padding, channels_last)
    ours = native.depthwise_weight_grad(x, grad, k, stride, padding)
    reference = _reference(x, grad, k, stride, padding)
    assert ours.shape == reference.shape == (channels, 1, k, k)
    assert torch.allclose(ours, reference, rtol=1e-4, atol=1e-4 * reference.abs().max().item())


@needs_native
def test_the_same_bits_whatever_the_thread_count():
    """Channels are split between threads; each channel's sum keeps its order, so results are identical."""
    x, grad = _case(72, 12, 7, 1, 3)
    before = torch.get_num_threads()
    try:
        results = []
        for threads in (1, 2, 3):
            torch.set_num_threads(threads)
            results.append(native.depthwise_weight_grad(x, grad, 7, 1, 3))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(results[0], r) for r in results[1:])


@needs_native
def test_kernels_larger_than_seven_are_refused():
    x, grad = _case(8, 10, 9, 1, 4)
    with pytest.raises(RuntimeError, match="not available"):
        native.depthwise_weight_grad(x, grad, 9, 1, 4)
    assert depthwise.weight_grad_method(x, 9) != "native"


@pytest.fixture
def fresh_build(monkeypatch, tmp_path):
    """An empty kernel cache and no library loaded yet in this process."""
    monkeypatch.setenv("NAT_CACHE_DIR", str(tmp_path / "cache"))
    native.depthwise_weight_grad_library.cache_clear()
    yield tmp_path / "cache"
    native.depthwise_weight_grad_library.cache_clear()


@needs_native
def test_built_once_into_the_cache_then_reused(fresh_build):
    first = native._build(native.SOURCE)
    assert first.parent == fresh_build and first.suffix == ".so"
    stamp = first.stat().st_mtime_ns
    assert native._build(native.SOURCE) == first
    assert first.stat().st_mtime_ns == stamp  # not compiled again
    assert list(fresh_build.iterdir()) == [first]  # no temporary files left behind
    assert native.depthwise_weight_grad_library() is not None


def test_no_compiler_falls_back_to_pytorch_with_a_warning(fresh_build, monkeypatch, caplog):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    with caplog.at_level(logging.WARNING, logger="nat.supernet.native"):
        assert native.depthwise_weight_grad_library() is None
    assert "could not be built" in caplog.text and "same results" in caplog.text
    small = torch.zeros(1, 8, 4, 4)
    assert depthwise.weight_grad_method(small, 7) == "matmul"
    # and training still works
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    w = torch.randn(8, 1, 7, 7, requires_grad=True)
    depthwise.depthwise_conv2d(x, w, 1, 3).sum().backward()
    assert w.grad is not None and x.grad is not None


@needs_native
def test_a_source_that_does_not_compile_reports_the_compilers_message(fresh_build, tmp_path):
    broken = tmp_path / "broken.c"
    broken.write_text("int f(void) { return undeclared_name; }\n")
    with pytest.raises(RuntimeError, match="undeclared_name"):
        native._build(broken)


def test_switched_off_by_the_environment(fresh_build, monkeypatch):
    monkeypatch.setenv("NAT_NATIVE_KERNELS", "0")
    assert native.depthwise_weight_grad_library() is None
    assert not fresh_build.exists()  # nothing compiled
    assert depthwise.weight_grad_method(torch.zeros(1, 8, 16, 16), 7) == "pytorch"


def test_a_run_records_which_kernel_it_had(fresh_build, monkeypatch):
    from nat.versions import library_versions

    expected = "nat C kernel" if native.depthwise_weight_grad_library() else "PyTorch"
    assert library_versions()["cpu_depthwise_weight_grad"] == expected
    native.depthwise_weight_grad_library.cache_clear()
    monkeypatch.setenv("NAT_NATIVE_KERNELS", "0")
    assert library_versions()["cpu_depthwise_weight_grad"] == "PyTorch"
