"""The working parts of a run, built once from its config and folder: data, supernets, problem, evaluator.

The search loop, finalisation and the post-search commands (`nat export`) all need the same parts, and
an interrupted or finished run must be able to rebuild them without searching and without writing:
`RunParts.build` reads the run folder only through `RunDir.restore_supernets` (the adapted weights) and
`RunDir.latency_tables` (the run's copies of its latency tables).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch

from nat.data import TaskData, load_from_config
from nat.errors import DataError
from nat.objectives.latency_table import LatencyTable
from nat.runtime import Runtime
from nat.runtime.distributed import Collective
from nat.search.config import SearchConfig
from nat.search.evaluator import SubnetEvaluator
from nat.search.objective_set import ObjectiveSet, is_accuracy
from nat.search.rundir import RunDir
from nat.search.supernets import check_initial_samples, load_supernets
from nat.space.definition import SearchSpace
from nat.supernet import Supernet


def load_latency_tables(config: SearchConfig) -> dict[str, LatencyTable]:
    """Objective name -> latency table, from the files the config names (no run folder involved)."""
    return {name: LatencyTable.load(files) for name, files in config.latency_tables().items()}


@dataclass
class TaskParts:
    """One task of a run: its data, its supernets (adapted on this task only, as far as the run got)
    and its evaluator. ``config`` is the run's config as the task sees it (``data`` = the task's), so
    adaptation, evaluation and fine-tuning run exactly as in a single-task run."""

    name: str
    index: int  # place in the run's ``data`` list (0 for a single-task run): offsets the task's seeds
    config: SearchConfig
    objective: str  # its accuracy objective: ``top1``, or ``top1:<name>`` in a many-task run
    task: TaskData
    supernets: dict[float, Supernet]  # keyed by width
    evaluator: SubnetEvaluator


def _restore(run: RunDir | None, supernets: dict[float, Supernet], task: str | None) -> None:
    if run is not None:
        run.restore_supernets(supernets, task)


def _load_task(config: SearchConfig, index: int, name: str) -> TaskData:
    """Task ``index``'s data; in a many-task run a data error names the task and its config entry."""
    try:
        return load_from_config(config.for_task(name).data, config.seed)
    except DataError as exc:
        if not config.many_task:
            raise
        raise DataError(f"task {name!r} (data.{index}): {exc}") from None


@dataclass
class RunParts:
    """A run's parts: its tasks (one, or several in a many-task run) and the problem over all of them.

    ``task``, ``supernets`` and ``evaluator`` are the first task's: in a single-task run, the run's.
    `for_task` gives one task's parts as a single-task run (what finalisation works on)."""

    config: SearchConfig
    runtime: Runtime
    space: SearchSpace
    objectives: ObjectiveSet
    tasks: dict[str, TaskParts]

    @property
    def device(self) -> torch.device:
        return self.runtime.device

    @property
    def first(self) -> TaskParts:
        return next(iter(self.tasks.values()))

    @property
    def task(self) -> TaskData:
        return self.first.task

    @property
    def supernets(self) -> dict[float, Supernet]:
        return self.first.supernets

    @property
    def evaluator(self) -> SubnetEvaluator:
        return self.first.evaluator

    @property
    def many_task(self) -> bool:
        return len(self.tasks) > 1

    @classmethod
    def build(
        cls, config: SearchConfig, run: RunDir | None = None, collective: Collective | None = None
    ) -> RunParts:
        """Load every task and its supernets (with ``run``'s adapted weights, if it has any).

        Each task gets its own copy of the pretrained supernets, with a classifier for its own classes.
        Complexity (MAdds, params, table latency) is computed with the largest class count of the
        tasks: a bound then holds for every task's model (docs/many_task.md).

        Under torchrun (``collective`` of several processes) only rank 0 reads ``run``; the others get
        its supernet weights and latency tables by broadcast, so a run folder need not be reachable
        from other nodes."""
        runtime = Runtime.resolve(config, collective)  # device, precision, layout: decided once
        collective = runtime.collective
        tasks: dict[str, TaskParts] = {}
        space: SearchSpace | None = None
        for index, name in enumerate(config.task_names):
            task_config = config.for_task(name)
            task = _load_task(config, index, name)
            space, supernets = load_supernets(config, task.num_classes, runtime, index)
            # rank 0 reads the checkpoints; a damaged one ends every rank with the same line
            collective.on_main(partial(_restore, run, supernets, name if config.many_task else None))
            for net in supernets.values():
                collective.sync_module(net)
            evaluator = SubnetEvaluator(supernets, task, task_config, runtime)
            objective = config.accuracy_objective(name)
            tasks[name] = TaskParts(name, index, task_config, objective, task, supernets, evaluator)
        assert space is not None
        tables = collective.decide(
            lambda: run.latency_tables() if run is not None else load_latency_tables(config)
        )
        classes = max(t.task.num_classes for t in tasks.values())
        objectives = ObjectiveSet(config.objective_names, space, classes, config.constraints, tables)
        return cls(config, runtime, space, objectives, tasks)

    def for_task(self, name: str) -> RunParts:
        """One task's parts as a single-task run: its config, its supernets, and objectives with its
        accuracy as ``top1`` (the other tasks' dropped) and complexity for its own classifier (exact for
        the models made for it). A single-task run's parts are returned as they are."""
        if not self.many_task:
            return self
        part = self.tasks[name]
        names = [
            "top1" if n == part.objective else n
            for n in self.objectives.names
            if not is_accuracy(n) or n == part.objective
        ]
        objectives = ObjectiveSet(
            names,
            self.space,
            part.task.num_classes,
            self.config.constraints,
            {n: p.table for n, p in self.objectives.latency.items()},
        )
        return RunParts(part.config, self.runtime, self.space, objectives, {name: part})

    def check_searchable(self) -> None:
        """What a search needs of its settings that only the built parts can tell, checked before any
        training: every bound on madds/params can be met by some subnet, and the space holds at least
        ``initial_samples`` distinct subnets (the initial archive is drawn without repeats)."""
        self.objectives.check_satisfiable(min(self.supernets))
        check_initial_samples(self.config, self.space)
