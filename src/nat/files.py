"""Durable file writes: the one place nat replaces or appends to a file it must not lose or tear.

Why a helper and not ``Path.write_text``: a run folder has to survive SIGKILL, power loss and a full
disk at any instant. A replaced file is written beside its target, flushed to the disk (``fsync``) and
renamed over it (atomic on POSIX), and the folder entry is synced too, so a reader sees either the old
complete file or the new complete file, never a mix. An appended line is one ``write`` checked for
completeness, then ``fsync``: a kill can leave at most a torn *last* line, which readers drop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # some file systems do not let a folder be opened; the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Replace ``path`` atomically with what ``write(tmp_path)`` puts into a temporary file beside it."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return write_atomic(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: str | Path, text: str) -> Path:
    return write_bytes_atomic(path, text.encode())


def write_json_atomic(path: str | Path, data: Any, indent: int | None = 1) -> Path:
    """``data`` as JSON, replaced atomically (non-finite floats are refused: they are not JSON)."""
    return write_text_atomic(path, json.dumps(data, indent=indent, allow_nan=False))


def append_line(path: str | Path, line: str) -> None:
    """Append one complete line (``line`` must end in a newline) with a single checked write + fsync.

    A short write (the disk filled up part-way) raises `OSError` after cutting the file back to where
    it was, so the file never ends in a partial line that this process wrote.
    """
    if not line.endswith("\n"):
        raise ValueError("append_line expects a line ending in a newline")
    data = line.encode()
    path = Path(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(28, f"short write to {path}: {written} of {len(data)} bytes (disk full?)")
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
