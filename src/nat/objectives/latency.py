"""Measured latency of a standalone subnet on this machine's CPU or GPU.

Warm-up runs first (allocator, oneDNN/cuDNN kernel selection), then the median of timed repeats, with
CUDA synchronised around each run. Latency is a measurement, not a count: it varies a little between
runs, which is why nat records it per evaluation and models it with a surrogate during the search.
"""

from __future__ import annotations

import statistics
import time

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
    """Median wall-clock milliseconds of one forward pass of ``batch_size`` images."""
    device = torch.device(device)
    model = model.to(device).eval()
    x = torch.randn(batch_size, 3, resolution, resolution, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(warmup):
        model(x)
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        sync()
        times.append((time.perf_counter() - start) * 1000.0)
    return float(statistics.median(times))
