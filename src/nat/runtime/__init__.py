"""The runtime of a run: device, precision, CPU threads and the torchrun collective, decided once.

A run's config names them (`RuntimeSettings`); `Runtime.resolve` turns the names into objects once, at
the run's edge, and the layers below receive those objects (a `torch.device`, a `Precision`, a
`Collective`) instead of parsing strings themselves. This package imports nothing of nat above
``errors``, so every layer (supernet, train, search) may use it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from nat.runtime.device import check_device_name, resolve_device
from nat.runtime.distributed import Collective
from nat.runtime.memory import host_memory_reuse
from nat.runtime.precision import Precision, enable_cuda_fast_path, supernet_channels_last
from nat.runtime.settings import RuntimeSettings
from nat.runtime.threads import torch_threads


@dataclass(frozen=True)
class Runtime:
    """What a run computes on and how: resolved from `RuntimeSettings` once, then passed down."""

    device: torch.device
    precision: Precision
    channels_last: bool
    collective: Collective

    @classmethod
    def resolve(cls, settings: RuntimeSettings, collective: Collective | None = None) -> Runtime:
        """The device of this process (under torchrun: its local rank's GPU), its precision and layout,
        with the CUDA fast path applied as the settings ask (nothing on a CPU)."""
        collective = collective or Collective()
        device = collective.device_for(resolve_device(settings.device))
        enable_cuda_fast_path(device, tf32=settings.tf32, cudnn_benchmark=settings.cudnn_benchmark)
        return cls(
            device=device,
            precision=Precision(settings.precision, device),
            channels_last=supernet_channels_last(settings.memory_format, device),
            collective=collective,
        )


@contextmanager
def process_settings(settings: RuntimeSettings) -> Iterator[None]:
    """The process-wide settings of a run, held while it lasts and then set back: torch's CPU threads
    (`torch_threads`) and the reuse of freed host memory (`host_memory_reuse`)."""
    with torch_threads(settings.threads), host_memory_reuse(settings.reuse_host_memory):
        yield


__all__ = [
    "Collective",
    "Precision",
    "Runtime",
    "RuntimeSettings",
    "check_device_name",
    "host_memory_reuse",
    "process_settings",
    "resolve_device",
    "torch_threads",
]
