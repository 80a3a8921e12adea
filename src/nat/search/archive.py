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
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nat.space.subnet import Subnet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Record:
    """One evaluation: the subnet, when and why it was measured, and every objective value."""

    iteration: int
    phase: str  # "initial", "candidate" or "reeval"
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
            str(data["phase"]),
            Subnet.from_dict(data["subnet"]),
            tuple(int(g) for g in data["genome"]),
            float(data["top1"]),
            values,
        )

    @property
    def key(self) -> tuple[int, str, Subnet]:
        return (self.iteration, self.phase, self.subnet)


class Archive:
    """Append-only evaluation log with a view of the latest value per subnet."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.records: list[Record] = []
        self._keys: set[tuple[int, str, Subnet]] = set()
        if self.path.exists():
            self._load()

    def _load(self) -> None:
        raw = self.path.read_bytes()
        end = raw.rfind(b"\n") + 1
        if end < len(raw):
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

    def has(self, iteration: int, phase: str, subnet: Subnet) -> bool:
        return (iteration, phase, subnet) in self._keys

    def append(self, record: Record) -> None:
        line = (json.dumps(record.to_json(), sort_keys=True) + "\n").encode()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
        self._remember(record)

    def current(self, before_iteration: int | None = None) -> list[Record]:
        """Latest record per subnet (optionally only records of iterations ``< before_iteration``), in
        order of each subnet's first appearance."""
        latest: dict[Subnet, Record] = {}
        for r in self.records:
            if before_iteration is None or r.iteration < before_iteration:
                latest[r.subnet] = r
        return list(latest.values())

    def subnets(self) -> set[Subnet]:
        return {r.subnet for r in self.records}


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w") as f:
        json.dump(data, f, indent=1)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


def records_to_json(records: Iterable[Record]) -> list[dict[str, Any]]:
    return [r.to_json() for r in records]
