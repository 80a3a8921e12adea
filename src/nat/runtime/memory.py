"""Host memory reuse: large CPU buffers freed by one batch are kept for the next, not returned to the OS.

Why: glibc's malloc serves every block above its mmap threshold (at most 32 MB) with a fresh ``mmap``
and gives it back with ``munmap`` when freed. A CPU forward pass at 192-256 px allocates activations of
tens to hundreds of MB per layer, so each batch page-faults all of them in again, zeroed by the kernel:
on this project's VM that was 40% of the time of BN calibration and validation at 256 px (9.3 s of
system time in 23 s; docs/results/evaluation_speed.md). With mmap turned off for such blocks and the
heap never trimmed, the memory a batch frees is reused by the next one.

The cost: the process keeps its peak memory until the block ends (measured +8% peak RSS in that
test). The settings are process-wide (malloc has no per-thread setting), so they are held for a block,
like torch's thread count (`nat.runtime.threads`), and set back to glibc's defaults afterwards (glibc
cannot say what they were, and its adaptive threshold stays off: large blocks are then mapped as with
``MALLOC_MMAP_THRESHOLD_`` set). Nested blocks end the reuse at the innermost exit (speed only).
Elsewhere than Linux with glibc nothing changes.
"""

from __future__ import annotations

import ctypes
import platform
from collections.abc import Iterator
from contextlib import contextmanager

#: mallopt parameters (malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
#: glibc's defaults for both (bytes)
GLIBC_DEFAULT = 128 * 1024
#: the largest value mallopt takes (an int): blocks up to 2 GB come from the heap, which is never trimmed
KEEP = 2**31 - 1


def _glibc() -> ctypes.CDLL | None:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return None
    try:
        return ctypes.CDLL("libc.so.6")
    except OSError:
        return None


@contextmanager
def host_memory_reuse(enabled: bool = True) -> Iterator[None]:
    """Within the block (if ``enabled``, on Linux with glibc), freed large host buffers are reused."""
    libc = _glibc() if enabled else None
    if libc is None or not (libc.mallopt(M_MMAP_THRESHOLD, KEEP) and libc.mallopt(M_TRIM_THRESHOLD, KEEP)):
        yield
        return
    try:
        yield
    finally:
        libc.mallopt(M_MMAP_THRESHOLD, GLIBC_DEFAULT)
        libc.mallopt(M_TRIM_THRESHOLD, GLIBC_DEFAULT)
        libc.malloc_trim(0)  # what was kept goes back now
