"""The working parts of a run, built once from its config and folder: data, supernets, problem, evaluator.

The search loop, finalisation and the post-search commands (`nat export`) all need the same parts, and
an interrupted or finished run must be able to rebuild them without searching and without writing:
`RunParts.build` reads the run folder only through `RunDir.restore_supernets` (the adapted weights) and
`RunDir.latency_tables` (the run's copies of its latency tables).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nat.data import TaskData, load_from_config
from nat.device import resolve_device
from nat.errors import ConfigError
from nat.objectives.latency_table import LatencyTable
from nat.search.config import SearchConfig
from nat.search.evaluator import SubnetEvaluator
from nat.search.objectives import ObjectiveSet
from nat.search.rundir import RunDir
from nat.search.supernets import load_supernets
from nat.space.definition import SearchSpace
from nat.supernet import Supernet
from nat.train.distributed import Collective
from nat.train.precision import enable_cuda_fast_path


def load_latency_tables(config: SearchConfig) -> dict[str, LatencyTable]:
    """Objective name -> latency table, from the files the config names (no run folder involved)."""
    return {name: LatencyTable.load(files) for name, files in config.latency_tables().items()}


@dataclass
class RunParts:
    config: SearchConfig
    device: torch.device
    task: TaskData
    space: SearchSpace
    supernets: dict[float, Supernet]  # adapted as far as the run got, keyed by width
    objectives: ObjectiveSet
    evaluator: SubnetEvaluator

    @classmethod
    def build(
        cls, config: SearchConfig, run: RunDir | None = None, collective: Collective | None = None
    ) -> RunParts:
        """Load the task and the supernets (with ``run``'s adapted weights, if it has any).

        Under torchrun (``collective`` of several processes) only rank 0 reads ``run``; the others get
        its supernet weights and latency tables by broadcast, so a run folder need not be reachable
        from other nodes."""
        collective = collective or Collective()
        device = collective.device_for(resolve_device(config.device))
        enable_cuda_fast_path(device, tf32=config.tf32)  # TF32, cudnn.benchmark on a GPU; nothing on CPU
        task = load_from_config(config.data, config.seed)
        space, supernets = load_supernets(config, task.num_classes, device)
        if run is not None:
            run.restore_supernets(supernets)
        for net in supernets.values():
            collective.sync_module(net)
        tables = None
        if collective.is_main:
            tables = run.latency_tables() if run is not None else load_latency_tables(config)
        tables = collective.broadcast(tables)
        objectives = ObjectiveSet(config.objectives, space, task.num_classes, config.constraints, tables)
        evaluator = SubnetEvaluator(supernets, task, config, device)
        return cls(config, device, task, space, supernets, objectives, evaluator)

    def check_searchable(self) -> None:
        """What a search needs of its settings that only the built parts can tell, checked before any
        training: every bound on madds/params can be met by some subnet, and the space holds at least
        ``initial_samples`` distinct subnets (the initial archive is drawn without repeats)."""
        self.objectives.check_satisfiable(min(self.supernets))
        count = self.space.num_subnets
        wanted = self.config.initial_samples
        if wanted > count:
            raise ConfigError(
                f"initial_samples: {wanted} distinct subnets asked for, but the search space "
                f"'{self.space.name}' has only {count}; lower initial_samples to at most {count} or widen "
                "the space (more resolutions, depths, kernel sizes or expand ratios)"
            )
