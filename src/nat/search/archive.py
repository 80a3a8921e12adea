"""The archive: every real evaluation of a run, one JSON object per line in ``archive.jsonl``.

Appends are atomic enough to survive SIGKILL: each record is one ``write`` of a complete line followed
by ``fsync``; a line cut short by a kill has no trailing newline and is dropped (and truncated away) on
load, so a resumed run neither loses a finished evaluation nor counts a half-written one.

The *current* archive is the latest record per subnet: after supernet adaptation the paper
re-evaluates archive members, so a subnet can have several records (one per iteration).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from nat.files import append_line
from nat.space.subnet import Subnet

log = logging.getLogger(__name__)


class Phase(StrEnum):
    """Why a subnet was evaluated: the step of NAT's Algorithm 1 that asked for it."""

    INITIAL = "initial"  # the initial archive (iteration 0)
    CANDIDATE = "candidate"  # proposed by the strategy in iteration i
    REEVAL = "reeval"  # an archive member re-measured after iteration i's adaptation


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
        reserved = {"iteration", "phase", "subnet", "genome", "top1"}
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


class Archive:
    """Append-only evaluation log with a view of the latest value per subnet.

    ``read_only=True`` (how a finished or running run is *opened*) never changes the file: a torn last
    line is skipped in memory instead of being cut off, and `append` is refused.
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
        end = raw.rfind(b"\n") + 1
        if end < len(raw) and not self.read_only:
            log.warning("archive %s ends with a partial record (interrupted write); dropping it", self.path)
            with self.path.open("r+b") as f:
                f.truncate(end)
        for number, line in enumerate(raw[:end].decode().splitlines(), start=1):
            if line.strip():
                try:
                    self._remember(Record.from_json(json.loads(line)))
                except (ValueError, KeyError, TypeError) as exc:
                    raise ValueError(f"{self.path}:{number}: damaged archive record ({exc})") from None

    def _remember(self, record: Record) -> None:
        self.records.append(record)
        self._keys.add(record.key)

    def __len__(self) -> int:
        return len(self.records)

    def has(self, iteration: int, phase: Phase, subnet: Subnet) -> bool:
        return (iteration, phase, subnet) in self._keys

    def append(self, record: Record) -> None:
        """Add a record durably: one complete line, written once and synced (`nat.files.append_line`)."""
        if self.read_only:
            raise RuntimeError(f"archive {self.path} was opened read-only")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        append_line(self.path, json.dumps(record.to_json(), sort_keys=True) + "\n")
        self._remember(record)

    def current(self, before_iteration: int | None = None) -> list[Record]:
        """Latest record per subnet (optionally only records of iterations ``< before_iteration``), in
        order of each subnet's first appearance."""
        latest: dict[Subnet, Record] = {}
        for r in self.records:
            if before_iteration is None or r.iteration < before_iteration:
                latest[r.subnet] = r
        return list(latest.values())
