"""Measured latency of a standalone subnet on this machine's CPU or GPU.

Warm-up runs first (allocator, oneDNN/cuDNN kernel selection), then the median of timed repeats. The timing
is `torch.utils.benchmark.Timer`'s: it synchronises the accelerator around each timed run and runs at the
caller's torch thread count (passed explicitly: the Timer's own default is one thread). Each timed run is
one ``Timer.timeit(number=1)``, which does two untimed runs of its own first, so a measurement makes
``warmup + 3 * repeats`` forward passes. Latency is a measurement, not a count: it varies a little between
runs, which is why nat records it per evaluation and models it with a surrogate during the search.
"""

from __future__ import annotations

import statistics
import timeit
from contextlib import nullcontext

import torch
from torch import nn


@torch.no_grad()
def measure_latency_ms(
    model: nn.Module,
    resolution: int,
    batch_size: int = 1,
    warmup: int = 3,
    repeats: int = 10,
    device: str | torch.device = "cpu",
) -> float:
    """Median wall-clock milliseconds of one forward pass of ``batch_size`` images, after ``warmup``
    untimed passes, over ``repeats`` timed passes (at the current ``torch.get_num_threads()``)."""
    # imported here: torch.utils.benchmark pulls in torch's C++-extension tooling, which logs a CUDA
    # warning on machines without CUDA, and most nat runs never measure latency
    from torch.utils import benchmark

    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.randn(batch_size, 3, resolution, resolution, device=device)
    # the Timer's default clock synchronises the current accelerator; a CPU model needs no sync
    clock = timeit.default_timer if device.type == "cpu" else benchmark.utils.timer.timer
    on_device = torch.cuda.device(device) if device.type == "cuda" else nullcontext()
    with on_device:
        for _ in range(warmup):
            model(x)
        timer = benchmark.Timer(
            stmt="model(x)",
            globals={"model": model, "x": x},
            timer=clock,
            num_threads=torch.get_num_threads(),
        )
        times = [timer.timeit(number=1).median * 1000.0 for _ in range(repeats)]
    return float(statistics.median(times))
