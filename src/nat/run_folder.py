"""A run folder of any kind: its kind marker, config and provenance files, writer lock and log.

Every command that owns a folder (``nat search``, ``nat pretrain``, and the kinds to come) opens it
through `RunFolder`, so the rules are written once: a folder holds one kind of run (a search never
writes into a pretraining folder, nor the reverse: refused before anything is written, naming the
files that show what the folder holds and the command that continues it); one process writes it at a
time (``.lock``, `nat.files.RunLock`); a run starts by writing ``run.json`` (its kind), ``config.yaml``
(the resolved config) and ``versions.json`` (provenance); its log is the folder's ``<kind>.log``.

``run.json`` is the marker; folders written before it existed are recognised by the files only their
kind writes (`Kind.marks`). What each kind keeps besides lives with it: `nat.search.rundir.RunDir` (the
archive, state, front, adapted supernets) and `nat.train.progressive.PretrainingTrainer` (checkpoint,
metrics, the final supernet).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict

from nat.config_io import check_file_data, read_json_file
from nat.errors import ConfigError
from nat.files import RunLock, write_json_atomic, write_text_atomic
from nat.versions import library_versions

MARKER, CONFIG, VERSIONS, LOCK = "run.json", "config.yaml", "versions.json", ".lock"
MARKER_FORMAT = 1


@dataclass(frozen=True)
class Kind:
    """One kind of run: its name in ``run.json``, the noun messages use, the command that runs and
    resumes it, the files only it writes (glob patterns; they identify folders without a marker) and
    its log file."""

    name: str
    noun: str
    command: str
    marks: tuple[str, ...]

    @property
    def title(self) -> str:
        return f"a {self.noun} run"

    @property
    def log(self) -> str:
        return f"{self.name}.log"


SEARCH = Kind("search", "search", "nat search", ("archive.jsonl", "state.json", "supernet_w*.safetensors"))
PRETRAIN = Kind(
    "pretrain", "pretraining", "nat pretrain", ("checkpoint.pt", "metrics.jsonl", "supernet.safetensors")
)
KINDS = {kind.name: kind for kind in (SEARCH, PRETRAIN)}


class Marker(BaseModel):
    """What ``run.json`` holds."""

    model_config = ConfigDict(extra="forbid")
    kind: Literal["search", "pretrain"]
    format: int = MARKER_FORMAT


def marks_found(path: Path, kind: Kind) -> list[str]:
    """The files of ``path`` that only a run of ``kind`` writes (sorted names)."""
    return sorted({p.name for pattern in kind.marks for p in path.glob(pattern)})


def read_marker(path: Path) -> Marker | None:
    """``run.json`` of the folder ``path``, validated (None when there is none)."""
    file = path / MARKER
    if not file.is_file():
        return None
    data = read_json_file(file, remedy=f"it names the kind of run {path} holds; restore it from a copy")
    check_file_data(Marker, data, file)
    return Marker.model_validate(data)


def kind_of(path: Path) -> Kind | None:
    """The kind of run ``path`` holds: its marker's, else the kind whose files it holds (a search's
    archive first: a search folder may hold files named like a pretraining's, never the reverse);
    None for a folder that holds no run (or does not exist)."""
    if not path.is_dir():
        return None
    marker = read_marker(path)
    if marker is not None:
        return KINDS[marker.kind]
    for kind in (SEARCH, PRETRAIN):
        if marks_found(path, kind):
            return kind
    return None


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` holds a run of any kind: its marker, a search's archive, or a config beside
    what every run writes with it (versions.json) or a pretraining's checkpoint or metrics. A
    ``config.yaml`` alone does not make one: a user's project folder may well hold one."""

    def has(name: str) -> bool:
        return (path / name).exists()

    if not path.is_dir():
        return False
    return (
        has(MARKER)
        or has("archive.jsonl")
        or (has(CONFIG) and (has(VERSIONS) or has("checkpoint.pt") or has("metrics.jsonl")))
    )


def enclosing_run(path: Path) -> Path | None:
    """The run folder that is ``path`` or holds it (the nearest), None when there is none. Commands
    that write outside their run use it to refuse writing into another run's files."""
    for folder in (path, *path.parents):
        if is_run_folder(folder):
            return folder
    return None


class _RunLogHandler(logging.FileHandler):
    """The run's log file: a record that cannot be written (disk full) is dropped, not a traceback on
    stderr (the write that matters fails with one clear line of its own)."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if isinstance(sys.exc_info()[1], OSError):
            return
        super().handleError(record)


class RunFolder:
    """The folder ``path`` as the home of a run of ``kind`` (nothing is read or written on creation)."""

    def __init__(self, path: str | Path, kind: Kind) -> None:
        self.path = Path(path)
        self.kind = kind
        self.lock = RunLock(self.path / LOCK)

    def refuse_other_kind(self) -> None:
        """One `ConfigError` (nothing written) when the folder holds a run of another kind."""
        other = kind_of(self.path)
        if other is None or other is self.kind:
            return
        found = marks_found(self.path, other) or [MARKER]
        raise ConfigError(
            f"{self.path} holds {other.title} ({', '.join(found)}), not {self.kind.title} (so it is not a "
            f"nat run directory of a {self.kind.noun}); nothing was changed: continue it with "
            f"`{other.command} --resume {self.path}`; a {self.kind.noun} needs a folder of its own"
        )

    def write_start(self, config_yaml: str) -> None:
        """The files a run writes when it starts or resumes: its kind, resolved config and the versions
        of the libraries it runs with (a resumed run records the versions it continued with)."""
        write_json_atomic(self.path / MARKER, Marker(kind=self.kind.name).model_dump())
        write_json_atomic(self.path / VERSIONS, library_versions())
        write_text_atomic(self.path / CONFIG, config_yaml)

    @contextmanager
    def logging(self, level: int = logging.INFO) -> Iterator[None]:
        """Copy nat's log records into the run's log file for the duration of the block; the ``nat``
        logger's level is restored afterwards, so nothing outlives the block."""
        logger = logging.getLogger("nat")
        handler = _RunLogHandler(self.path / self.kind.log)
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
