"""The NAT loop, the paper's Algorithm 1, over a run folder that survives being killed.

    iteration 0:  initial subnets -> adapt -> evaluate -> record
    iteration i:  strategy.ask(archive) -> adapt (archive elite) -> evaluate candidates
                  -> re-evaluate the archive -> strategy.tell -> record

Each iteration ``i >= 1`` is a pure function of the archive as it stood before ``i`` and of seeds
derived from ``(seed, i, tag)`` (`nat.search.seeds`). That is what makes resuming exact: after a kill,
the proposal is recomputed (identically), evaluations already in ``archive.jsonl`` are skipped, and
adaptation is redone only if the supernet checkpoint does not already carry iteration ``i`` (the tag is
stored inside the checkpoint, written atomically).

The parts are built once and kept apart: the run folder (`RunDir`), the task's data, the supernets
(`load_supernets`), the problem (`ObjectiveSet`: objectives, constraints, fronts), the strategy
(`nat.search.strategies`) and the evaluator. `NATSearch` only sequences them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from nat.data import TaskData
from nat.search.adaptation import adapt_supernet
from nat.search.archive import Archive, Phase, Record
from nat.search.config import SearchConfig
from nat.search.distribution import GenomeDistribution, elite
from nat.search.evaluator import SubnetEvaluator
from nat.search.finalize import MODELS_DIR, MODELS_INDEX, export_models, write_run_report
from nat.search.objectives import ObjectiveSet, check_finite
from nat.search.parts import RunParts
from nat.search.rundir import RunDir
from nat.search.seeds import SeedTag, initial_sample_seed, iteration_seed
from nat.search.strategies import make_strategy
from nat.space.definition import SearchSpace
from nat.space.genome import encode
from nat.space.subnet import Subnet
from nat.supernet import Supernet

log = logging.getLogger("nat.search")


class NATSearch:
    """One run of NAT (or of a baseline strategy) in a run folder.

    ``NATSearch(config, out)`` starts a run in ``out`` (refused if the folder holds one);
    ``resume=True`` continues it. The object holds the folder's writer lock until `close` (or the end
    of a ``with`` block); `run` releases it when it fails.
    """

    def __init__(self, config: SearchConfig, out_dir: str | Path, resume: bool = False) -> None:
        self.config = config
        self.run_dir = (RunDir.resume if resume else RunDir.create)(out_dir, config)
        try:
            self.parts = RunParts.build(config, self.run_dir)
            self.parts.check_searchable()  # impossible settings fail here, before any training
        except BaseException:
            self.close()
            raise
        self.strategy = make_strategy(self.parts.objectives, config)
        self.models: list[dict[str, Any]] = []  # the front models' index entries, once `run` has finished

    # the parts, by name (what the phases and finalisation use)
    @property
    def device(self) -> torch.device:
        return self.parts.device

    @property
    def task(self) -> TaskData:
        return self.parts.task

    @property
    def space(self) -> SearchSpace:
        return self.parts.space

    @property
    def supernets(self) -> dict[float, Supernet]:
        return self.parts.supernets

    @property
    def objectives(self) -> ObjectiveSet:
        return self.parts.objectives

    @property
    def evaluator(self) -> SubnetEvaluator:
        return self.parts.evaluator

    @property
    def out(self) -> Path:
        return self.run_dir.path

    @property
    def archive(self) -> Archive:
        return self.run_dir.archive

    def close(self) -> None:
        self.run_dir.close()

    def __enter__(self) -> NATSearch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- archive views
    def front(self, records: Sequence[Record] | None = None) -> list[Record]:
        """The feasible non-dominated records of the current archive (or of ``records``)."""
        return self.objectives.front(self.archive.current() if records is None else records)

    def hypervolume(self, records: Sequence[Record]) -> float:
        return self.objectives.hypervolume(self.front(records))

    # ----------------------------------------------------------------- the loop
    def run(self) -> list[Record]:
        """Run (or finish) every iteration; returns the final front (also written to ``front.json``)."""
        try:
            with self.run_dir.logging():
                return self._run()
        except BaseException:
            self.close()
            raise

    def _run(self) -> list[Record]:
        cfg = self.config
        state = self.run_dir.read_state()
        clock = _Clock(float(state.get("elapsed_s", 0.0)))
        log.info(
            "NAT run in %s: strategy %s, objectives %s, constraints %s, %d supernet(s), task %s (%d classes)",
            self.out,
            cfg.strategy,
            cfg.objectives,
            cfg.constraints or "none",
            len(self.supernets),
            self.task.name,
            self.task.num_classes,
        )
        done = {int(h["iteration"]) for h in state.get("history", [])}
        if 0 not in done:
            self.initial_iteration(state, clock)
        for iteration in range(1, cfg.iterations + 1):
            if iteration in done:  # recorded, so all its evaluations are in the archive: nothing to redo
                continue
            if cfg.time_budget_minutes is not None and clock.seconds() > cfg.time_budget_minutes * 60:
                log.info(
                    "time budget of %.1f min used up after iteration %d",
                    cfg.time_budget_minutes,
                    iteration - 1,
                )
                break
            self.iteration(iteration, state, clock)
        front = self.front()
        self.run_dir.write_front(front)
        self.finish(front)
        return front

    def finish(self, front: list[Record]) -> None:
        """The last phase: the front's models (``finalize`` section; only what is missing on a rerun)
        and the report. Sets ``self.models`` to the models' index entries."""
        path = self.run_dir.path
        settings = self.config.finalize
        self.models = export_models(self.parts, front, settings, path / MODELS_DIR, path, path / MODELS_INDEX)
        write_run_report(self.run_dir, self.models)

    def initial_iteration(self, state: dict[str, Any], clock: _Clock) -> None:
        """Iteration 0: adapt on the initial subnets' distribution, then evaluate them."""
        initial = self.initial_subnets()
        self.adapt(
            0, np.array([encode(s, self.space) for s in initial]), self.config.adaptation.initial_epochs
        )
        self.evaluate(initial, 0, Phase.INITIAL)
        self.record(0, {"strategy": self.config.strategy}, state, clock)

    def iteration(self, iteration: int, state: dict[str, Any], clock: _Clock) -> None:
        """Iteration i >= 1 of Algorithm 1."""
        before = self.archive.current(before_iteration=iteration)
        proposal = self.strategy.ask(before, iteration)
        elite_genomes = elite(
            np.array([r.genome for r in before]),
            self.objectives.matrix(before),
            self.config.adaptation.elite_fraction,
        )
        self.adapt(iteration, elite_genomes, self.config.adaptation.epochs)
        measured = self.evaluate(proposal.subnets, iteration, Phase.CANDIDATE)
        self.evaluate(self.reevaluation_set(before), iteration, Phase.REEVAL)
        self.record(iteration, {**proposal.info, **self.strategy.tell(proposal, measured)}, state, clock)

    # ----------------------------------------------------------------- phases
    def initial_subnets(self) -> list[Subnet]:
        """The smallest and the largest subnet, then distinct uniform samples (``initial_samples``)."""
        rng = random.Random(initial_sample_seed(self.config.seed))
        widths = sorted(self.supernets)
        subnets = [Subnet.smallest(self.space, w=widths[0]), Subnet.largest(self.space, w=widths[-1])]
        seen = set(subnets)
        while len(subnets) < self.config.initial_samples:
            s = Subnet.sample(self.space, rng)
            if s not in seen:
                seen.add(s)
                subnets.append(s)
        return subnets

    def adapt(self, iteration: int, genomes: np.ndarray, epochs: float) -> None:
        """Online adaptation: train each supernet on subnets drawn from ``genomes``' distribution, once
        per iteration (skipped when the saved checkpoint already carries this iteration)."""
        distribution = GenomeDistribution.from_genomes(genomes, self.space)
        if self.config.adaptation.uniform_mix > 0:
            distribution = distribution.mixed_with_uniform(self.config.adaptation.uniform_mix)
        for index, (width, net) in enumerate(self.supernets.items()):
            if self.run_dir.adapted_iteration(width) >= iteration:
                continue
            if epochs > 0:
                adapt_supernet(
                    net,
                    self.task,
                    distribution,
                    width,
                    self.config,
                    epochs,
                    seed=iteration_seed(self.config.seed, iteration, SeedTag.ADAPT, index),
                    device=self.device,
                    desc=f"iter {iteration} adapt w{width:g}",
                )
            self.run_dir.save_supernet(net, iteration)

    def evaluate(self, subnets: Sequence[Subnet], iteration: int, phase: Phase) -> list[Record]:
        """Measure the subnets not yet recorded for (iteration, phase); returns the records of all of
        them (fresh and already recorded), in the order given."""
        todo = [s for s in subnets if not self.archive.has(iteration, phase, s)]
        latency = self.objectives.measured_latency
        for subnet in tqdm(todo, desc=f"iter {iteration} evaluate {phase}", leave=False, disable=None):
            values = self.objectives.exact_values(subnet)  # madds and params always, objectives or not
            values.update(self.evaluator.evaluate(subnet, latency))
            for name, value in values.items():  # nothing non-finite reaches the archive or hypervolume
                check_finite(name, value, subnet)
            genome = tuple(int(g) for g in encode(subnet, self.space))
            self.archive.append(Record(iteration, phase, subnet, genome, values["top1"], values))
        found = {r.subnet: r for r in self.archive.records if r.iteration == iteration and r.phase == phase}
        return [found[s] for s in subnets if s in found]

    def reevaluation_set(self, before: Sequence[Record]) -> list[Subnet]:
        """Archive members to re-measure after adaptation (the paper: all of them)."""
        mode = self.config.evaluation.reevaluate
        if mode == "none" or self.config.adaptation.epochs == 0:
            return []
        chosen = before if mode == "all" else self.front(before)
        return [r.subnet for r in chosen]

    def record(self, iteration: int, info: dict[str, Any], state: dict[str, Any], clock: _Clock) -> None:
        """Log the iteration and write its front and history (``front.json``, ``state.json``)."""
        current = self.archive.current()
        front = self.front(current)
        hv = self.objectives.hypervolume(front)
        best = max((r.top1 for r in front), default=float("nan"))
        surrogate = ""
        if "surrogate" in info:
            tau = "n/a" if info.get("tau") is None else f"{info['tau']:.3f}"
            surrogate = f", surrogate {info['surrogate']} (tau {tau})"
        log.info(
            "iteration %d: archive %d, front %d, best top1 %.4f, hypervolume %.4f%s",
            iteration,
            len(current),
            len(front),
            best,
            hv,
            surrogate,
        )
        self.run_dir.write_front(front)
        state.update({"iteration": iteration, "elapsed_s": clock.seconds(), "hypervolume": hv, **info})
        history = state.setdefault("history", [])
        history[:] = [h for h in history if h["iteration"] != iteration]
        history.append(
            {
                "iteration": iteration,
                "hypervolume": hv,
                "front_size": len(front),
                "archive_size": len(current),
                **info,
            }
        )
        self.run_dir.write_state(state)


class _Clock:
    """Seconds a run has spent, over all the processes that worked on it."""

    def __init__(self, before: float) -> None:
        self.before, self.start = before, time.monotonic()

    def seconds(self) -> float:
        return self.before + time.monotonic() - self.start
