"""The one place that changes torch's CPU thread count, always for a block and always restored.

Why a context manager and not a global setting at start-up: nat is a library as much as a tool, and a
caller's thread setting must survive a call into it. Why it matters at all: on a CPU shared with other
work, torch's default (one thread per core) oversubscribes the cores and a training step can be several
times slower than with one thread, so runs, the data loader's augmentation and benchmarks pick theirs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run the block with ``threads`` intra-op torch CPU threads (``None``: leave the setting alone)."""
    before = torch.get_num_threads()
    if not threads or threads == before:
        yield
        return
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
