"""Durable file writes: the one place nat replaces or appends to a file it must not lose or tear.

Why a helper and not ``Path.write_text``: a run folder has to survive SIGKILL, power loss and a full
disk at any instant. A replaced file is written beside its target, flushed to the disk (``fsync``) and
renamed over it (atomic on POSIX), and the folder entry is synced too, so a reader sees either the old
complete file or the new complete file, never a mix. An appended line is one ``write`` checked for
completeness, then ``fsync``: a kill can leave at most a torn *last* line, which readers drop.

A full disk, an exceeded quota or an I/O error while writing ends in one `CheckpointError` naming the
file and how to continue (`storage_error`); the file being written is left as it was. The module also
holds the run folders' writer lock (`RunLock`) and the checks of a folder a command is to write into
(`make_folder`).
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nat.errors import CheckpointError, ConfigError

#: errno values that mean "the storage refused the write" (not a bug, not a bad path)
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EIO)
#: how libraries that do their own I/O (safetensors, torch) word those errors
_STORAGE_TEXT = {
    errno.ENOSPC: re.compile(r"os error 28\b|no space left on device", re.IGNORECASE),
    errno.EDQUOT: re.compile(r"os error 122\b|disk quota exceeded", re.IGNORECASE),
    errno.EIO: re.compile(r"os error 5\b|input/output error", re.IGNORECASE),
}


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


# ----------------------------------------------------------------------------------------- storage errors


def _storage_errno(exc: BaseException, folder: Path) -> int | None:
    """The storage errno ``exc`` stands for, or None (not a storage failure)."""
    if not isinstance(exc, Exception):  # KeyboardInterrupt, SystemExit: never a storage error
        return None
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc.errno if exc.errno in STORAGE_ERRNOS else None
    text = str(exc)
    for number, pattern in _STORAGE_TEXT.items():
        if pattern.search(text):
            return number
    if isinstance(exc, OSError):
        return None
    try:  # torch.save says only "unexpected pos ..." when the disk fills: ask the file system
        return errno.ENOSPC if os.statvfs(folder).f_bavail == 0 else None
    except OSError:
        return None


#: the files of a run's report: rewritten from the folder by `nat report`, never part of the run's state
REPORT_FILES = ("report.html", "front.png", "summary.md")


def resume_hint(path: Path) -> str:
    """How to continue the run that ``path`` belongs to (found by the files of its folder or above); for
    a report file, how to rewrite the report (the run itself does not depend on it)."""
    if path.name in REPORT_FILES:
        return f"rewrite the report with `nat report {path.parent}` (the run itself is intact)"
    for folder in list(path.parents)[:3]:
        if (folder / "archive.jsonl").exists() or (folder / "state.json").exists():
            return f"resume with `nat search --resume {folder}`"
        if (folder / "checkpoint.pt").exists() or (folder / "metrics.jsonl").exists():
            return f"resume with `nat pretrain --resume {folder}`"
    return "run the same command again"


def storage_error(exc: BaseException, path: str | Path) -> CheckpointError | None:
    """A one-line `CheckpointError` for a write of ``path`` that failed because the storage refused it
    (disk full, quota exceeded, I/O error), or None when ``exc`` is something else."""
    path = Path(path)
    number = _storage_errno(exc, path.parent)
    if number is None:
        return None
    hint = resume_hint(path)
    if number == errno.ENOSPC:
        return CheckpointError(
            f"no space left on the device while writing {path}; free some space and {hint}"
        )
    if number == errno.EDQUOT:
        return CheckpointError(
            f"disk quota exceeded while writing {path}; free some space (or raise the quota) and {hint}"
        )
    return CheckpointError(
        f"I/O error while writing {path} (the device may be failing or gone); check it, then {hint}"
    )


# ----------------------------------------------------------------------------------------- writes


def write_atomic(path: str | Path, write: Callable[[Path], None]) -> Path:
    """Replace ``path`` atomically with what ``write(tmp_path)`` puts into a temporary file beside it.

    A failure leaves ``path`` as it was (the temporary file is removed); a full disk, quota or I/O error
    is raised as one `CheckpointError` (`storage_error`)."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException as exc:
        error = storage_error(exc, path)  # before the unlink: it frees the space the check looks at
        tmp.unlink(missing_ok=True)
        if error is not None:
            raise error from exc
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

    A short write (the disk filled up part-way) or a refused one cuts the file back to where it was, so
    the file never ends in a partial line that this process wrote, and raises one `CheckpointError`
    (`storage_error`: disk full, quota, I/O error; other `OSError`s are raised as they are).
    """
    if not line.endswith("\n"):
        raise ValueError("append_line expects a line ending in a newline")
    data = line.encode()
    path = Path(path)
    try:
        _append(path, data)
    except OSError as exc:
        error = storage_error(exc, path)
        if error is not None:
            raise error from exc
        raise


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        start = os.fstat(fd).st_size
        try:
            written = os.write(fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"short write to {path}: {written} of {len(data)} bytes")
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)


# ----------------------------------------------------------------------------------------- run folders


#: kernel file systems: nothing of a run can live there
_KERNEL_FOLDERS = ("/proc", "/sys")


def make_folder(path: str | Path, option: str = "--out") -> Path:
    """Create the folder a command writes into (parents too); one `ConfigError` naming ``path`` when it
    is an existing file, lies under /proc or /sys, or cannot be created."""
    path = Path(path)
    resolved = path.resolve()
    for kernel in _KERNEL_FOLDERS:
        if resolved == Path(kernel) or Path(kernel) in resolved.parents:
            raise ConfigError(f"{path} is inside {kernel}, a kernel file system; choose another {option}")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{path} exists and is not a folder; choose another {option}") from None
    except PermissionError:
        raise ConfigError(f"cannot create {path}: permission denied; choose another {option}") from None
    except OSError as exc:
        raise ConfigError(f"cannot create {path}: {exc.strerror or exc}; choose another {option}") from None
    return path


def lock_holder(path: Path) -> str | None:
    """The PID recorded in the lock file ``path`` while another process holds it (None: free, or no such
    file). The file is only opened for reading, so a folder that must not change (a retarget's source)
    can be checked."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
    except OSError:
        return None
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)


class RunLock:
    """An exclusive, non-blocking ``flock`` on a lock file that records the holder's PID.

    The kernel drops the lock when the holder dies, even by SIGKILL, so a killed run leaves no stale
    lock; the PID in the file is only for the message."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(
                f"cannot write into {self.path.parent} (creating {self.path.name}: "
                f"{exc.strerror or exc}); choose a folder you can write to"
            ) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise ConfigError(
                f"{self.path.parent} is being written by another nat process (PID {holder}); "
                "wait for it to finish or stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def sha256_file(path: str | Path) -> str:
    """The sha256 of a file's bytes, read in 1 MiB blocks (what a run records of the files it depends on)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
