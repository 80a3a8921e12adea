"""The run folder: everything one search writes, with one writer at a time and a read-only view.

Layout (all names relative to the folder)::

    run.json             the folder's kind marker (``search``; `nat.run_folder`)
    config.yaml          the resolved SearchConfig the run was started (or last resumed) with
    versions.json        library versions, platform and torch thread count (provenance)
    archive.jsonl        every real evaluation, one JSON object a line (`nat.search.archive`)
    state.json           per-iteration history: hypervolume, front size, strategy's report
    front.json           the current front (rewritten after every iteration)
    search.log           the run's log (nat's loggers, while the run's code is running)
    supernet_w<W>.safetensors   adapted supernet of width W, tagged with the iteration it reached
                         (a many-task run: supernet_<task>_w<W>.safetensors, one per task)
    latency_table[_<name>].yaml the latency tables the run predicts ``latency`` / ``latency:<name>``
                         from, copied in when the run starts (a resumed run uses its copy)
    .lock                held (flock) by the process writing the folder; holds its PID

A `RunDir` is opened one of three ways: `create` (a new run; refuses a folder that holds one),
`resume` (continue a run) and `open` (read-only: nothing in the folder changes, no lock is taken, a
torn last archive line is skipped in memory). Writers hold an exclusive ``flock`` on ``.lock`` from
opening to `close`; the kernel drops it when the process dies, even by SIGKILL, so a killed run never
leaves a stale lock behind. All three refuse, before anything is written, a folder that holds a
run of another kind (`nat.run_folder`) or a ``config.yaml`` that is not a search config
(`check_run_folder`); `repair` cuts a
damaged archive back to its intact records (``nat search --resume RUN --repair``). See
docs/reliability.md for what survives what.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from nat.errors import CheckpointError, ConfigError
from nat.files import RunLock, make_folder, write_json_atomic, write_text_atomic
from nat.objectives.latency_table import LatencyTable
from nat.run_folder import CONFIG, LOCK, SEARCH, RunFolder
from nat.search.archive import Archive, Record, Repair, repair_archive
from nat.search.config import SearchConfig, load_saved_config
from nat.search.run_files import read_state
from nat.supernet import Supernet
from nat.supernet.checkpoint import load_supernet, load_weights_from, read_metadata, save_supernet

ARCHIVE, STATE, FRONT = "archive.jsonl", "state.json", "front.json"
LOG = SEARCH.log


#: config fields a resumed run may change: they do not change which subnets are evaluated or their values
#: (``iterations``, ``time_budget_minutes`` and ``max_evaluations`` only say how far the run goes;
#: ``finalize`` acts after it)
RESUMABLE = (
    "threads",
    "device",
    "iterations",
    "time_budget_minutes",
    "max_evaluations",
    "distributed_timeout_minutes",
    "finalize",
    "data.num_workers",
    "data.pin_memory",
    "evaluation.calibration_cache_mb",
    "evaluation.validation_cache_mb",
)


def resumable(field: str) -> bool:
    field = re.sub(r"^data\.\d+\.", "data.", field)  # a task of a many-task run: as data.<field>
    return any(field == f or field.startswith(f + ".") for f in RESUMABLE)


def config_differences(a: SearchConfig, b: SearchConfig) -> list[str]:
    """Dotted names of the fields whose values differ between two configs (deepest differing level)."""

    def walk(x: Any, y: Any, prefix: str) -> list[str]:
        if isinstance(x, dict) and isinstance(y, dict):
            out: list[str] = []
            for key in list(x) + [k for k in y if k not in x]:
                out += walk(x.get(key), y.get(key), f"{prefix}{key}.")
            return out
        if prefix == "data." and isinstance(x, list) and isinstance(y, list) and len(x) == len(y):
            return [f for i, (a, b) in enumerate(zip(x, y, strict=True)) for f in walk(a, b, f"data.{i}.")]
        return [] if x == y else [prefix.rstrip(".")]

    return walk(a.model_dump(mode="json"), b.model_dump(mode="json"), "")


def _what_config_is(path: Path, error: ConfigError) -> str:
    """A few words on a ``config.yaml`` that is not a search config, for the error message."""
    from nat.config_io import read_yaml_mapping
    from nat.train.config import parse_config

    try:
        data = read_yaml_mapping(path)
    except ConfigError:
        return "not a YAML mapping"
    try:
        parse_config(data)
    except ConfigError:
        return f"not a nat search config ({str(error).removeprefix(f'{path}: ')})"
    return "the config of a nat pretraining run (`nat pretrain`)"


def check_run_folder(path: Path) -> None:
    """Refuse (one `ConfigError`, nothing written) a folder that holds a run of another kind or a
    ``config.yaml`` that is not a search config: a search must not write into another kind of run."""
    if not path.is_dir():
        return
    RunFolder(path, SEARCH).refuse_other_kind()
    if (path / CONFIG).is_file():
        try:
            load_saved_config(path / CONFIG)
        except ConfigError as exc:
            raise ConfigError(
                f"{path / CONFIG} is {_what_config_is(path / CONFIG, exc)}, so {path} is not a nat run "
                "directory of a search; nothing was changed: choose another folder"
            ) from None


def holds_run(folder: str | Path) -> bool:
    """Whether ``folder`` already holds a search's records (`RunDir.create` refuses it; a search
    started with ``resume=None`` continues it)."""
    archive = Path(folder) / ARCHIVE
    return archive.is_file() and archive.stat().st_size > 0


def checkpoint_file(folder: Path, width: float, task: str | None = None) -> Path:
    """Where a run folder keeps its adapted supernet of ``width`` (``task``: its task, many-task runs)."""
    prefix = "supernet" if task is None else f"supernet_{task}"
    return folder / f"{prefix}_w{width:g}.safetensors"


def warm_start_supernet(config: SearchConfig) -> str | None:
    """The earlier run whose adapted supernet a warm-started run starts from (``warm_start.supernet``,
    ``auto`` resolved: the first run's unless it is a many-task run); None: the pretrained one."""
    warm = config.warm_start
    if warm is None or warm.supernet != "auto":
        return None if warm is None else warm.supernet
    first = Path(warm.runs[0]) / CONFIG
    return warm.supernet_run(load_saved_config(first).many_task if first.is_file() else False)


def read_state_file(path: Path) -> dict[str, Any]:
    """``state.json`` ({} when there is none yet), validated; `CheckpointError` when it is damaged."""
    return read_state(path)


class RunDir:
    """One search's folder (see the module docstring for the layout and the three ways to open it)."""

    def __init__(self, path: str | Path, config: SearchConfig, writable: bool) -> None:
        self.path = Path(path)
        self.config = config
        self.writable = writable
        self.folder = RunFolder(self.path, SEARCH)
        self._lock = self.folder.lock
        if writable:
            self._lock.acquire()
        try:
            self.archive = Archive(self.path / ARCHIVE, read_only=not writable)
        except BaseException:  # a damaged archive: the folder is not opened, so nothing stays locked
            self._lock.release()
            raise

    # ----------------------------------------------------------------- opening
    @classmethod
    def create(cls, path: str | Path, config: SearchConfig) -> RunDir:
        """A new run in ``path`` (created if needed); refused if the folder already holds a run."""
        path = Path(path)
        check_run_folder(path)
        if holds_run(path):
            raise ConfigError(
                f"{path} already holds a run; continue it with `nat search --resume {path}` or choose "
                "another --out"
            )
        return cls._for_writing(path, config)

    @classmethod
    def resume(cls, path: str | Path, config: SearchConfig) -> RunDir:
        """Continue the run in ``path`` with ``config`` (saved as its config from now on). A config that
        differs from the saved one in anything that changes results is refused, naming the field."""
        path = Path(path)
        check_run_folder(path)
        if (path / CONFIG).is_file():
            saved = load_saved_config(path / CONFIG)
            changed = [f for f in config_differences(saved, config) if not resumable(f)]
            if changed:
                raise ConfigError(
                    f"{path} was run with another {', '.join(changed)}; a resumed run keeps every setting "
                    f"that changes its results (only {', '.join(RESUMABLE)} may change); start a new run "
                    "in another folder instead"
                )
        return cls._for_writing(path, config)

    @classmethod
    def _for_writing(cls, path: Path, config: SearchConfig) -> RunDir:
        make_folder(path)
        run = cls(path, config, writable=True)
        run.folder.write_start(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False))
        return run

    @classmethod
    def open(cls, path: str | Path, lock: bool = False) -> RunDir:
        """The run in ``path``, read-only: its config, archive, state and checkpoints, nothing written.
        ``lock=True`` also takes the writer's lock, for commands that add files (a report, models) to
        the folder without touching the run itself."""
        path = Path(path)
        check_run_folder(path)
        if not (path / CONFIG).is_file():
            raise ConfigError(f"{path} is not a nat run directory (no {CONFIG})")
        run = cls(path, load_saved_config(path / CONFIG), writable=False)
        if lock:
            run._lock.acquire()
        return run

    @staticmethod
    def saved_config(path: str | Path, overrides: dict[str, Any] | None = None) -> SearchConfig:
        """The config a run folder holds (with ``overrides`` applied), for resuming it."""
        check_run_folder(Path(path))
        config_path = Path(path) / CONFIG
        if not config_path.is_file():
            raise ConfigError(f"{path} is not a nat run directory (no {CONFIG})")
        return load_saved_config(config_path, overrides=overrides)

    @classmethod
    def repair(cls, path: str | Path) -> str | None:
        """Cut a damaged ``archive.jsonl`` back to the records before its first bad line, under the
        writer's lock (`nat.search.archive.repair_archive`: the removed lines are kept beside it), and
        roll ``state.json`` back so that the iteration of the last record kept and every later one are
        run again. Returns what was done (None: the archive was intact, nothing changed)."""
        path = Path(path)
        check_run_folder(path)
        if not (path / CONFIG).is_file():
            raise ConfigError(f"{path} is not a nat run directory (no {CONFIG})")
        with RunLock(path / LOCK):
            repair = repair_archive(path / ARCHIVE, before_cut=lambda r: cls._roll_back_state(path, r))
        return None if repair is None else repair.describe(path / ARCHIVE)

    @staticmethod
    def _roll_back_state(path: Path, repair: Repair) -> None:
        """Forget the iterations from the last kept record's on (they are redone), noting the repair."""
        state = read_state_file(path / STATE)
        redo = repair.kept[-1].iteration if repair.kept else 0
        state["history"] = [h for h in state.get("history", []) if int(h["iteration"]) < redo]
        state.setdefault("repairs", []).append(
            {
                "bad_line": repair.bad_line,
                "problem": repair.problem,
                "records_kept": len(repair.kept),
                "removed_to": repair.copy.name,
                "redo_from_iteration": redo,
            }
        )
        write_json_atomic(path / STATE, state)

    def close(self) -> None:
        """Release the writer's lock (idempotent)."""
        self._lock.release()

    def __enter__(self) -> RunDir:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- state and front
    def read_state(self) -> dict[str, Any]:
        return read_state_file(self.path / STATE)

    def write_state(self, state: dict[str, Any]) -> None:
        self._check_writable()
        write_json_atomic(self.path / STATE, state)

    def write_front(self, front: list[Record]) -> None:
        self._check_writable()
        write_json_atomic(self.path / FRONT, [r.to_json() for r in front])

    # ----------------------------------------------------------------- adapted supernets
    def checkpoint_path(self, width: float, task: str | None = None) -> Path:
        """Where the adapted supernet of ``width`` is kept (``task``: its task, in a many-task run)."""
        return checkpoint_file(self.path, width, task)

    def adapted_iteration(self, width: float, task: str | None = None) -> int:
        """The iteration the saved adapted supernet of ``width`` (of ``task``) reached (-1: none saved)."""
        ckpt = self.checkpoint_path(width, task)
        if not ckpt.exists():
            return -1
        return int(json.loads(read_metadata(ckpt).get("extra", "{}")).get("iteration", -1))

    def save_supernet(self, net: Supernet, iteration: int, task: str | None = None) -> None:
        """Replace the adapted checkpoint of ``net``'s width (of ``task``), tagged with ``iteration``
        (atomic)."""
        self._check_writable()
        save_supernet(net, self.checkpoint_path(net.width_mult, task), extra={"iteration": iteration})

    def latency_table_file(self, objective: str) -> Path:
        """Where the run keeps its copy of the table for ``latency`` or ``latency:<name>``."""
        suffix = objective.partition(":")[2]
        return self.path / (f"latency_table_{suffix}.yaml" if suffix else "latency_table.yaml")

    def latency_tables(self) -> dict[str, LatencyTable]:
        """The run's latency tables, objective name -> table: the run's own copies where it has them,
        else the files the config names (copied into a writable run, so that a resumed run and
        `nat export` predict with exactly the table the run started with)."""
        tables = {}
        for objective, files in self.config.latency_tables().items():
            copy = self.latency_table_file(objective)
            if copy.is_file():
                tables[objective] = LatencyTable.load(copy)
                continue
            table = LatencyTable.load(files)
            if self.writable:
                table.meta.setdefault("copied_from", table.sources)
                write_text_atomic(copy, table.to_yaml())
            tables[objective] = table
        return tables

    def restore_supernets(self, nets: dict[float, Supernet], task: str | None = None) -> None:
        """Load the run's adapted weights (where saved) into the pretrained ``nets`` (of ``task``, in a
        many-task run), in place; a retarget run that has saved none yet loads its source's."""
        for width, net in nets.items():
            ckpt = self.checkpoint_path(width, task)
            if ckpt.exists():
                net.load_state_dict(load_supernet(ckpt).state_dict())
            elif self.config.retarget is not None:  # a retarget starts from its source's weights
                net.load_state_dict(
                    load_supernet(self._start_from(self.config.retarget.run, width, task)).state_dict()
                )
            elif (warm := warm_start_supernet(self.config)) is not None:
                load_weights_from(net, self._start_from(warm, width, None), "warm_start.supernet")

    @staticmethod
    def _start_from(run: str, width: float, task: str | None) -> Path:
        """The adapted supernet of ``width`` in the earlier run ``run`` a retarget or warm start begins
        with (the run's own file is used once saved: the earlier run is not needed after)."""
        ckpt = checkpoint_file(Path(run), width, task)
        if not ckpt.is_file():
            raise CheckpointError(
                f"{ckpt} is missing: this run starts from the adapted supernet of width {width:g} of {run}; "
                "restore that run, or point the run at one that has it"
            )
        return ckpt

    # ----------------------------------------------------------------- logging
    @contextmanager
    def logging(self, level: int = logging.INFO) -> Iterator[None]:
        """Copy nat's log records into ``search.log`` for the duration of the block (writers only);
        the ``nat`` logger's level is restored afterwards, so nothing outlives the block."""
        if not self.writable:
            yield
            return
        with self.folder.logging(level):
            yield

    def _check_writable(self) -> None:
        if not self.writable:
            raise RuntimeError(f"run folder {self.path} was opened read-only")
