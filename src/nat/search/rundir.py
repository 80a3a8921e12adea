"""The run folder: everything one search writes, with one writer at a time and a read-only view.

Layout (all names relative to the folder)::

    config.yaml          the resolved SearchConfig the run was started (or last resumed) with
    versions.json        library versions, platform and torch thread count (provenance)
    archive.jsonl        every real evaluation, one JSON object a line (`nat.search.archive`)
    state.json           per-iteration history: hypervolume, front size, strategy's report
    front.json           the current front (rewritten after every iteration)
    search.log           the run's log (nat's loggers, while the run's code is running)
    supernet_w<W>.safetensors   adapted supernet of width W, tagged with the iteration it reached
    .lock                held (flock) by the process writing the folder; holds its PID

A `RunDir` is opened one of three ways: `create` (a new run; refuses a folder that holds one),
`resume` (continue a run) and `open` (read-only: nothing in the folder changes, no lock is taken, a
torn last archive line is skipped in memory). Writers hold an exclusive ``flock`` on ``.lock`` from
opening to `close`; the kernel drops it when the process dies, even by SIGKILL, so a killed run never
leaves a stale lock behind.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from nat.errors import CheckpointError, ConfigError
from nat.files import write_json_atomic, write_text_atomic
from nat.search.archive import Archive, Record
from nat.search.config import SearchConfig, load_config
from nat.supernet import Supernet
from nat.supernet.checkpoint import load_supernet, read_metadata, save_supernet
from nat.versions import library_versions

CONFIG, VERSIONS, ARCHIVE, STATE, FRONT, LOG, LOCK = (
    "config.yaml",
    "versions.json",
    "archive.jsonl",
    "state.json",
    "front.json",
    "search.log",
    ".lock",
)


class RunLock:
    """An exclusive, non-blocking ``flock`` on a lock file that records the holder's PID."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> None:
        if self._fd is not None:
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
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


class RunDir:
    """One search's folder (see the module docstring for the layout and the three ways to open it)."""

    def __init__(self, path: str | Path, config: SearchConfig, writable: bool) -> None:
        self.path = Path(path)
        self.config = config
        self.writable = writable
        self._lock = RunLock(self.path / LOCK)
        if writable:
            self._lock.acquire()
        self.archive = Archive(self.path / ARCHIVE, read_only=not writable)

    # ----------------------------------------------------------------- opening
    @classmethod
    def create(cls, path: str | Path, config: SearchConfig) -> RunDir:
        """A new run in ``path`` (created if needed); refused if the folder already holds a run."""
        path = Path(path)
        archive = path / ARCHIVE
        if archive.exists() and archive.stat().st_size > 0:
            raise ConfigError(
                f"{path} already holds a run; continue it with `nat search --resume {path}` or choose "
                "another --out"
            )
        return cls._for_writing(path, config)

    @classmethod
    def resume(cls, path: str | Path, config: SearchConfig) -> RunDir:
        """Continue the run in ``path`` with ``config`` (saved as its config from now on)."""
        return cls._for_writing(Path(path), config)

    @classmethod
    def _for_writing(cls, path: Path, config: SearchConfig) -> RunDir:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise ConfigError(f"{path} exists and is not a folder; choose another --out") from None
        run = cls(path, config, writable=True)
        write_json_atomic(path / VERSIONS, library_versions())
        write_text_atomic(path / CONFIG, yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        return run

    @classmethod
    def open(cls, path: str | Path) -> RunDir:
        """The run in ``path``, read-only: its config, archive, state and checkpoints, nothing written."""
        path = Path(path)
        if not (path / CONFIG).is_file():
            raise ConfigError(f"{path} is not a nat run directory (no {CONFIG})")
        return cls(path, load_config(path / CONFIG), writable=False)

    @staticmethod
    def saved_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SearchConfig:
        """The config a run folder holds (with ``overrides`` applied), for resuming it."""
        config_path = Path(path) / CONFIG
        if not config_path.is_file():
            raise ConfigError(f"{path} is not a nat run directory (no {CONFIG})")
        return load_config(config_path, overrides=overrides)

    def close(self) -> None:
        """Release the writer's lock (idempotent)."""
        self._lock.release()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- state and front
    def read_state(self) -> dict[str, Any]:
        path = self.path / STATE
        if not path.exists():
            return {}
        try:
            state = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise CheckpointError(f"{path} is damaged ({exc}); it is rebuilt if you delete it") from None
        if not isinstance(state, dict):
            raise CheckpointError(f"{path} is damaged (not a JSON object); it is rebuilt if you delete it")
        return state

    def write_state(self, state: dict[str, Any]) -> None:
        self._check_writable()
        write_json_atomic(self.path / STATE, state)

    def read_front(self) -> list[Record]:
        path = self.path / FRONT
        return [Record.from_json(r) for r in json.loads(path.read_text())] if path.exists() else []

    def write_front(self, front: list[Record]) -> None:
        self._check_writable()
        write_json_atomic(self.path / FRONT, [r.to_json() for r in front])

    # ----------------------------------------------------------------- adapted supernets
    def checkpoint_path(self, width: float) -> Path:
        return self.path / f"supernet_w{width:g}.safetensors"

    def adapted_iteration(self, width: float) -> int:
        """The iteration the saved adapted supernet of ``width`` reached (-1: none saved yet)."""
        ckpt = self.checkpoint_path(width)
        if not ckpt.exists():
            return -1
        return int(json.loads(read_metadata(ckpt).get("extra", "{}")).get("iteration", -1))

    def save_supernet(self, net: Supernet, iteration: int) -> None:
        """Replace the adapted checkpoint of ``net``'s width, tagged with ``iteration`` (atomic)."""
        self._check_writable()
        save_supernet(net, self.checkpoint_path(net.width_mult), extra={"iteration": iteration})

    def restore_supernets(self, nets: dict[float, Supernet]) -> None:
        """Load the run's adapted weights (where saved) into the pretrained ``nets``, in place."""
        for width, net in nets.items():
            ckpt = self.checkpoint_path(width)
            if ckpt.exists():
                net.load_state_dict(load_supernet(ckpt).state_dict())

    # ----------------------------------------------------------------- logging
    @contextmanager
    def logging(self, level: int = logging.INFO) -> Iterator[None]:
        """Copy nat's log records into ``search.log`` for the duration of the block (writers only);
        the ``nat`` logger's level is restored afterwards, so nothing outlives the block."""
        if not self.writable:
            yield
            return
        logger = logging.getLogger("nat")
        handler = logging.FileHandler(self.path / LOG)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler.setLevel(level)
        before = logger.level
        logger.addHandler(handler)
        if logger.getEffectiveLevel() > level:
            logger.setLevel(level)
        try:
            yield
        finally:
            logger.removeHandler(handler)
            logger.setLevel(before)
            handler.close()

    def _check_writable(self) -> None:
        if not self.writable:
            raise RuntimeError(f"run folder {self.path} was opened read-only")
