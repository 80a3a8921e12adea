"""Host memory reuse (`nat.runtime.memory`): within the block a large CPU buffer comes from malloc's heap
(reused by the next batch), outside it from a fresh mmap (page-faulted in again at every allocation)."""

from __future__ import annotations

import ctypes
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nat.runtime import host_memory_reuse
from nat.runtime.memory import _glibc

LIBC = _glibc()
pytestmark = pytest.mark.skipif(
    LIBC is None or not hasattr(LIBC, "mallinfo2"), reason="needs Linux with glibc >= 2.33 (mallinfo2)"
)
SIZE = 64 * 2**20  # above glibc's largest adaptive mmap threshold (32 MB)


class _MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def _mapped_growth(size: int = SIZE) -> int:
    """Bytes of mmap'd blocks that allocating a ``size``-byte tensor adds (while it is alive)."""
    LIBC.mallinfo2.restype = _MallInfo2
    before = LIBC.mallinfo2().hblkhd
    buffer = torch.empty(size, dtype=torch.uint8)
    grown = LIBC.mallinfo2().hblkhd - before
    del buffer
    return grown


def _check_in_a_fresh_process() -> None:
    assert _mapped_growth() >= SIZE  # glibc's default: mapped, and unmapped when freed
    with host_memory_reuse():
        assert _mapped_growth() == 0
        assert _mapped_growth() == 0
    # set back afterwards: a block larger than any the heap holds free is mapped again
    assert _mapped_growth(4 * SIZE) >= 4 * SIZE
    with host_memory_reuse(enabled=False):
        assert _mapped_growth(4 * SIZE) >= 4 * SIZE


def test_large_buffers_come_from_the_heap_only_within_the_block() -> None:
    # in a process of its own: what earlier tests freed into the heap would serve the allocation
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
    code += "import test_host_memory as t; t._check_in_a_fresh_process()"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_run_config_can_turn_it_off() -> None:
    from nat.search import load_config

    assert load_config(preset="quickstart").reuse_host_memory is True
    assert load_config(preset="quickstart", overrides={"reuse_host_memory": False}).reuse_host_memory is False
