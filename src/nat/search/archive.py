"""The archive: every real evaluation of a run, one JSON object per line in ``archive.jsonl``.

Appends are atomic enough to survive SIGKILL: each record is one ``write`` of a complete line followed
by ``fsync``; a line cut short by a kill has no trailing newline and is dropped (and truncated away) on
load, so a resumed run neither loses a finished evaluation nor counts a half-written one.

Each line also carries its place in the file (``seq``: 0, 1, 2, ...) and a checksum (``crc``: CRC32, 8
hex digits, of the canonical JSON, ``sort_keys=True``, of the line without ``crc``). Loading checks
both, so a removed, repeated, edited or garbled line anywhere but a torn last one stops the run with one
`CheckpointError` naming the file and line (nothing is changed); `repair_archive` (``nat search --resume
RUN --repair``) cuts the file back to the records before the first bad line, keeping the removed tail in
``archive.jsonl.damaged-<N>``. Archives of older nat versions (no ``seq``/``crc``) still load: records
without them are accepted as a leading block, and new records continue the numbering from its length.

The *current* archive is the latest record per subnet: after supernet adaptation the paper
re-evaluates archive members, so a subnet can have several records (one per iteration).
"""

from __future__ import annotations

import json
import logging
import os
import zlib
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from nat.errors import CheckpointError, NATError
from nat.files import append_line, write_bytes_atomic
from nat.space.subnet import Subnet

log = logging.getLogger(__name__)

#: the integrity fields of an archive line (never part of a `Record`)
SEQ, CRC = "seq", "crc"


class Phase(StrEnum):
    """Why a subnet was evaluated: the step of NAT's Algorithm 1 that asked for it."""

    INITIAL = "initial"  # the initial archive (iteration 0)
    CANDIDATE = "candidate"  # proposed by the strategy in iteration i
    REEVAL = "reeval"  # an archive member re-measured after iteration i's adaptation
    CARRIED = "carried"  # a retarget run's iteration 0: measured by its source run (`nat.search.retarget`)
    #: not a measurement: an archive member's top-1 after iteration i's adaptation, its earlier value
    #: shifted by the change the re-measured members showed (``evaluation.reevaluate: predicted``)
    PREDICTED = "predicted"


@dataclass(frozen=True)
class Record:
    """One evaluation: the subnet, when and why it was measured, and every objective value."""

    iteration: int
    phase: Phase
    subnet: Subnet
    genome: tuple[int, ...]
    top1: float
    values: dict[str, float] = field(default_factory=dict)  # objective name -> value (top1 included)

    def to_json(self) -> dict[str, Any]:
        return {
            "iteration": self.iteration,
            "phase": self.phase,
            "subnet": self.subnet.to_dict(),
            "genome": list(self.genome),
            "top1": self.top1,
            **{k: v for k, v in self.values.items() if k != "top1"},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Record:
        reserved = {"iteration", "phase", "subnet", "genome", "top1", SEQ, CRC}
        values = {k: float(v) for k, v in data.items() if k not in reserved}
        values["top1"] = float(data["top1"])
        return cls(
            int(data["iteration"]),
            Phase(data["phase"]),
            Subnet.from_dict(data["subnet"]),
            tuple(int(g) for g in data["genome"]),
            float(data["top1"]),
            values,
        )

    @property
    def key(self) -> tuple[int, Phase, Subnet]:
        return (self.iteration, self.phase, self.subnet)


# ----------------------------------------------------------------------------------------- line format


def checksum(body: dict[str, Any]) -> str:
    """CRC32 (8 hex digits) of the canonical JSON of an archive line without its ``crc``."""
    return f"{zlib.crc32(json.dumps(body, sort_keys=True).encode()):08x}"


def archive_line(record: Record, seq: int) -> str:
    """The archive line of ``record`` at position ``seq`` (canonical JSON with ``seq`` and ``crc``)."""
    body = {**record.to_json(), SEQ: seq}
    return json.dumps({**body, CRC: checksum(body)}, sort_keys=True) + "\n"


@dataclass
class _Scan:
    """What reading an archive's bytes found: the good records, where the complete lines end, and the
    first damaged line (1-based number, byte offset, what is wrong), if any."""

    records: list[Record]
    end: int  # bytes of complete lines (a torn last line starts here)
    bad_line: int | None = None
    bad_offset: int = 0
    problem: str = ""


def _check_line(data: Any, index: int, checksummed: bool | None) -> str | None:
    """What is wrong with the parsed line ``data`` as the ``index``-th record (None: nothing).
    ``checksummed``: whether earlier records carried seq/crc (None: there were none)."""
    if not isinstance(data, dict):
        return f"not a record (a JSON {type(data).__name__}, an object expected)"
    has_seq, has_crc = SEQ in data, CRC in data
    if has_seq != has_crc:
        return f"has {SEQ if has_seq else CRC} but no {CRC if has_seq else SEQ}"
    if not has_seq:
        return "has no seq/crc after records that have them" if checksummed else None
    body = {k: v for k, v in data.items() if k != CRC}
    if data[CRC] != checksum(body):
        return "checksum mismatch: the line was edited or corrupted"
    seq = data[SEQ]
    if type(seq) is not int:
        return f"sequence number {seq!r} is not a whole number"
    if seq != index:
        what = "a record before it is missing" if seq > index else "it repeats an earlier line"
        return f"sequence number {seq} where {index} was expected: {what}"
    return None


def scan_archive(raw: bytes) -> _Scan:
    """Check every complete line of an archive's bytes (see the module docstring); stops at the first
    damaged one."""
    end = raw.rfind(b"\n") + 1
    scan = _Scan([], end)
    checksummed: bool | None = None
    offset = 0
    for number, chunk in enumerate(raw[:end].split(b"\n")[:-1], start=1):
        start, offset = offset, offset + len(chunk) + 1
        if not chunk.strip():
            continue
        try:
            data = json.loads(chunk.decode())
        except (UnicodeDecodeError, ValueError) as exc:
            problem: str | None = f"not JSON ({exc})"
        else:
            problem = _check_line(data, len(scan.records), checksummed)
            if problem is None:
                try:
                    scan.records.append(Record.from_json(data))
                except (ValueError, KeyError, TypeError, NATError) as exc:
                    problem = f"not a record ({type(exc).__name__}: {exc})"
                checksummed = SEQ in data
        if problem is not None:
            scan.bad_line, scan.bad_offset, scan.problem = number, start, problem
            break
    return scan


def damage_error(path: Path, scan: _Scan) -> CheckpointError:
    run = path.parent
    return CheckpointError(
        f"{path} line {scan.bad_line}: damaged archive record ({scan.problem}); nothing was changed. "
        f"To keep the {len(scan.records)} records before it and continue the run, use "
        f"`nat search --resume {run} --repair` (the lines from {scan.bad_line} on are kept in "
        f"{path.name}.damaged-N)"
    )


# ----------------------------------------------------------------------------------------- the archive


class Archive:
    """Append-only evaluation log with a view of the latest value per subnet.

    ``read_only=True`` (how a finished or running run is *opened*) never changes the file: a torn last
    line is skipped in memory instead of being cut off, and `append` is refused. Either way a damaged
    line (see the module docstring) is one `CheckpointError`.
    """

    def __init__(self, path: str | Path, read_only: bool = False) -> None:
        self.path = Path(path)
        self.read_only = read_only
        self.records: list[Record] = []
        self._keys: set[tuple[int, Phase, Subnet]] = set()
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        scan = scan_archive(raw)
        if scan.bad_line is not None:
            raise damage_error(self.path, scan)
        if scan.end < len(raw) and not self.read_only:
            log.warning("archive %s ends with a partial record (interrupted write); dropping it", self.path)
            with self.path.open("r+b") as f:
                f.truncate(scan.end)
                os.fsync(f.fileno())
        for record in scan.records:
            self._remember(record)

    def _remember(self, record: Record) -> None:
        self.records.append(record)
        self._keys.add(record.key)

    def __len__(self) -> int:
        return len(self.records)

    def has(self, iteration: int, phase: Phase, subnet: Subnet) -> bool:
        return (iteration, phase, subnet) in self._keys

    def append(self, record: Record) -> None:
        """Add a record durably: one complete line, written once and synced (`nat.files.append_line`),
        numbered after the records already there."""
        if self.read_only:
            raise RuntimeError(f"archive {self.path} was opened read-only")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_line(self.path, archive_line(record, len(self.records)))
        self._remember(record)

    def current(self, before_iteration: int | None = None, measured_only: bool = False) -> list[Record]:
        """Latest record per subnet (optionally only records of iterations ``< before_iteration``, only
        measurements), in order of each subnet's first appearance."""
        latest: dict[Subnet, Record] = {}
        for r in self.records:
            if measured_only and r.phase == Phase.PREDICTED:
                continue
            if before_iteration is None or r.iteration < before_iteration:
                latest[r.subnet] = r
        return list(latest.values())

    def evaluations(self) -> int:
        """How many records are measurements (predicted values are not): what a run's evaluations cost."""
        return sum(r.phase != Phase.PREDICTED for r in self.records)


@dataclass(frozen=True)
class Repair:
    """What `repair_archive` did: records kept, the first bad line and why, where the removed lines went."""

    kept: list[Record]
    bad_line: int
    problem: str
    copy: Path

    def describe(self, path: Path) -> str:
        return (
            f"repaired {path}: line {self.bad_line} was damaged ({self.problem}); kept the "
            f"{len(self.kept)} records before it, the removed lines are in {self.copy}"
        )


def repair_archive(path: str | Path, before_cut: Any = None) -> Repair | None:
    """Cut a damaged archive back to the records before its first bad line (None: nothing to repair).

    The removed bytes are first saved (synced) as ``archive.jsonl.damaged-<N>`` (the first unused N),
    then ``before_cut(repair)`` runs (the run folder rolls its state back there), then the archive is
    truncated and synced: a kill at any point leaves either the old file or the repaired one."""
    path = Path(path)
    if not path.exists():
        return None
    raw = path.read_bytes()
    scan = scan_archive(raw)
    if scan.bad_line is None:
        return None
    n = 1
    while path.with_name(f"{path.name}.damaged-{n}").exists():
        n += 1
    copy = write_bytes_atomic(path.with_name(f"{path.name}.damaged-{n}"), raw[scan.bad_offset :])
    repair = Repair(scan.records, scan.bad_line, scan.problem, copy)
    if before_cut is not None:
        before_cut(repair)
    with path.open("r+b") as f:
        f.truncate(scan.bad_offset)
        os.fsync(f.fileno())
    log.warning("%s", repair.describe(path))
    return repair
