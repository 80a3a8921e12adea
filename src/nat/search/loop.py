"""The NAT loop, the paper's Algorithm 1, over a run folder that survives being killed.

    iteration 0:  initial subnets -> adapt -> evaluate -> record
    iteration i:  strategy.ask(archive) -> adapt (archive elite) -> evaluate candidates
                  -> re-evaluate the archive -> strategy.tell -> record

Each iteration ``i >= 1`` is a pure function of the archive as it stood before ``i`` and of seeds
derived from ``(seed, i, tag)`` (`nat.search.seeds`). That is what makes resuming exact: after a kill,
the proposal is recomputed (identically), evaluations already in ``archive.jsonl`` are skipped, and
adaptation is redone only if the supernet checkpoint does not already carry iteration ``i`` (the tag is
stored inside the checkpoint, written atomically).

A many-task run (``data`` a list; docs/many_task.md) runs the same steps with one supernet copy per
task (`nat.search.parts.TaskParts`): adaptation per task on that task's own elite, every evaluation on
every task (one ``top1:<task>`` value each), one archive.

The parts are built once and kept apart: the run folder (`RunDir`), the task's data, the supernets
(`load_supernets`), the problem (`ObjectiveSet`: objectives, constraints, fronts), the strategy
(`nat.search.strategies`) and the evaluator. `NATSearch` only sequences them.

Under torchrun (`nat.train.distributed`) every process runs this loop. Rank 0 alone holds the run
folder, asks the strategy and records; it broadcasts each iteration's plan (elite genomes, candidates,
re-evaluation set). Adaptation trains with DistributedDataParallel on all ranks; evaluations are dealt
out in rounds (`evaluation_rounds`), each rank measures its share, and rank 0 appends the gathered
records in the order one process would have. Evaluation of a subnet does not depend on which process
runs it or what it ran before, so with adaptation off a run writes the same archive on any number of
processes; resuming works as on one process (only rank 0 reads the folder; the others receive its
weights).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from contextlib import nullcontext
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
from nat.search.finalize import MODELS_DIR, MODELS_INDEX, export_run_models, write_run_report
from nat.search.objectives import ObjectiveSet, check_finite, task_columns
from nat.search.parts import RunParts
from nat.search.rundir import RunDir
from nat.search.seeds import SeedTag, initial_sample_seed, iteration_seed
from nat.search.strategies import make_strategy
from nat.search.supernets import check_initial_samples, planned_space
from nat.space.definition import SearchSpace
from nat.space.genome import encode
from nat.space.subnet import Subnet
from nat.supernet import Supernet
from nat.train.distributed import Collective, balanced_shares, batch_rows

log = logging.getLogger("nat.search")


class NATSearch:
    """One run of NAT (or of a baseline strategy) in a run folder.

    ``NATSearch(config, out)`` starts a run in ``out`` (refused if the folder holds one);
    ``resume=True`` continues it. The object holds the folder's writer lock until `close` (or the end
    of a ``with`` block); `run` releases it when it fails. ``collective`` (default: the torchrun job this
    process is in, if any) says which process this is; only rank 0 opens the folder.
    """

    def __init__(
        self,
        config: SearchConfig,
        out_dir: str | Path,
        resume: bool = False,
        collective: Collective | None = None,
    ) -> None:
        self.config = config
        self.collective = Collective.current() if collective is None else collective
        self._out = Path(out_dir)
        self.run_dir: RunDir | None = None
        if self.collective.active:  # before anything is written: the batch must split over the processes
            for data in config.tasks:
                batch_rows(data.train_batch_size, self.collective)
        check_initial_samples(config, planned_space(config))  # before any data, weights or folder
        # rank 0 alone opens the folder; a refusal there ends every rank with the same line
        self.run_dir = self.collective.on_main(
            lambda: (RunDir.resume if resume else RunDir.create)(out_dir, config)
        )
        try:
            self.parts = RunParts.build(config, self.run_dir, self.collective)
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
        return self._out if self.run_dir is None else self.run_dir.path

    @property
    def main(self) -> bool:
        """This process writes the run (always, without torchrun; rank 0 under it)."""
        return self.collective.is_main

    @property
    def folder(self) -> RunDir:
        """The run folder (rank 0 only: other processes never touch it)."""
        assert self.run_dir is not None, "only rank 0 holds the run folder"
        return self.run_dir

    @property
    def archive(self) -> Archive:
        return self.folder.archive

    def close(self) -> None:
        if self.run_dir is not None:
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
            with self.folder.logging() if self.main else nullcontext():
                return self._run()
        except BaseException:
            self.close()
            raise

    def _run(self) -> list[Record]:
        """The iterations; on ranks other than 0 the same steps, following rank 0's decisions, and an
        empty front (rank 0 writes the models; all processes fine-tune them)."""
        cfg, c = self.config, self.collective
        state = self.folder.read_state() if self.main else {}
        clock = _Clock(float(state.get("elapsed_s", 0.0)))
        done = c.broadcast({int(h["iteration"]) for h in state.get("history", [])} if self.main else None)
        if self.main:
            self._log_start()
        if 0 not in done:
            self.initial_iteration(state, clock)
        for iteration in range(1, cfg.iterations + 1):
            if iteration in done:  # recorded, so all its evaluations are in the archive: nothing to redo
                continue
            if c.broadcast(self._budget_spent(iteration, clock) if self.main else None):
                break
            self.iteration(iteration, state, clock)
        front = self.front() if self.main else []
        if self.main:
            self.folder.write_front(front)
        self.finish(front)
        return front

    def _budget_spent(self, iteration: int, clock: _Clock) -> bool:
        budget = self.config.time_budget_minutes
        if budget is None or clock.seconds() <= budget * 60:
            return False
        log.info("time budget of %.1f min used up after iteration %d", budget, iteration - 1)
        return True

    def _log_start(self) -> None:
        cfg = self.config
        tasks = ", ".join(f"{n} ({p.task.num_classes} classes)" for n, p in self.parts.tasks.items())
        log.info(
            "NAT run in %s: strategy %s, objectives %s, constraints %s, %d supernet(s), %s %s",
            self.out,
            cfg.strategy,
            self.objectives.names,
            cfg.constraints or "none",
            len(self.supernets),
            "tasks" if self.parts.many_task else "task",
            tasks,
        )
        if self.collective.active:
            log.info(
                "%d processes (torchrun); this is rank 0, which writes the run", self.collective.world_size
            )

    def finish(self, front: list[Record]) -> None:
        """The last phase: the front's models (``finalize`` section; only what is missing on a rerun)
        and the report. Sets ``self.models`` to the models' index entries. Under torchrun every process
        takes part in fine-tuning; rank 0 plans, tests and writes."""
        settings = self.config.finalize
        path = self.out
        self.models = export_run_models(
            self.parts, front, settings, path / MODELS_DIR, path, path / MODELS_INDEX, self.collective
        )
        if self.main:
            write_run_report(self.folder, self.models)

    def initial_iteration(self, state: dict[str, Any], clock: _Clock) -> None:
        """Iteration 0: adapt on the initial subnets' distribution, then evaluate them."""
        initial = self.initial_subnets()
        genomes = np.array([encode(s, self.space) for s in initial])
        self.adapt(0, {name: genomes for name in self.parts.tasks}, self.config.adaptation.initial_epochs)
        self.evaluate(initial, 0, Phase.INITIAL)
        if self.main:
            self.record(0, {"strategy": self.config.strategy}, state, clock)

    def iteration(self, iteration: int, state: dict[str, Any], clock: _Clock) -> None:
        """Iteration i >= 1 of Algorithm 1 (the strategy runs on rank 0, which broadcasts the plan)."""
        plan = None
        if self.main:
            before = self.archive.current(before_iteration=iteration)
            proposal = self.strategy.ask(before, iteration)
            genomes, F = np.array([r.genome for r in before]), self.objectives.matrix(before)
            fraction = self.config.adaptation.elite_fraction
            elite_genomes = {
                name: elite(genomes, F[:, task_columns(self.objectives.names, part.objective)], fraction)
                for name, part in self.parts.tasks.items()
            }
            plan = (elite_genomes, proposal.subnets, self.reevaluation_set(before))
        elite_genomes, candidates, reevaluate = self.collective.broadcast(plan)
        self.adapt(iteration, elite_genomes, self.config.adaptation.epochs)
        measured = self.evaluate(candidates, iteration, Phase.CANDIDATE)
        self.evaluate(reevaluate, iteration, Phase.REEVAL)
        if self.main:
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

    def adapt(self, iteration: int, genomes: dict[str, np.ndarray], epochs: float) -> None:
        """Online adaptation: train each task's supernets, on that task, on subnets drawn from the
        distribution of ``genomes[task]``, once per iteration (skipped when the saved checkpoint
        already carries this iteration). Tasks are adapted one after another (under torchrun, each
        by all processes together)."""
        c = self.collective
        for name, part in self.parts.tasks.items():
            distribution = GenomeDistribution.from_genomes(genomes[name], self.space)
            if self.config.adaptation.uniform_mix > 0:
                distribution = distribution.mixed_with_uniform(self.config.adaptation.uniform_mix)
            key = name if self.parts.many_task else None  # checkpoint names of a single-task run as ever
            done = c.broadcast(
                {w: self.folder.adapted_iteration(w, key) >= iteration for w in part.supernets}
                if self.main
                else None
            )
            label = f" {name}" if self.parts.many_task else ""
            for index, (width, net) in enumerate(part.supernets.items()):
                if done[width]:
                    continue
                if epochs > 0:
                    adapt_supernet(
                        net,
                        part.task,
                        distribution,
                        width,
                        part.config,
                        epochs,
                        seed=iteration_seed(self.config.seed, iteration, SeedTag.ADAPT, index, part.index),
                        device=self.device,
                        desc=f"iter {iteration} adapt{label} w{width:g}",
                        collective=c,
                    )
                    c.sync_module(net)  # BN running statistics: rank 0's everywhere, as saved
                if self.main:
                    self.folder.save_supernet(net, iteration, key)

    def evaluate(self, subnets: Sequence[Subnet], iteration: int, phase: Phase) -> list[Record]:
        """Measure the subnets not yet recorded for (iteration, phase); returns the records of all of
        them (fresh and already recorded), in the order given (on rank 0; other ranks measure their
        share and return nothing)."""
        c = self.collective
        todo = c.broadcast(
            [s for s in subnets if not self.archive.has(iteration, phase, s)] if self.main else None
        )
        latency = self.objectives.measured_latency
        bar = tqdm(
            total=len(todo),
            desc=f"iter {iteration} evaluate {phase}",
            leave=False,
            disable=None if self.main else True,
        )
        for batch in evaluation_rounds(todo, c.world_size):
            exact = [self.objectives.exact_values(s) for s in batch]  # madds and params always
            shares = balanced_shares([v["madds"] for v in exact], c.world_size)
            mine = {i: self.measure(batch[i], latency) for i in shares[c.rank]}
            measured = {i: v for part in c.gather(mine) for i, v in part.items()}
            bar.update(len(batch))
            if not self.main:
                continue
            for i, subnet in enumerate(batch):  # appended in the order one process would have
                values = {**exact[i], **measured[i]}
                for name, value in values.items():  # nothing non-finite reaches the archive or hypervolume
                    check_finite(name, value, subnet)
                genome = tuple(int(g) for g in encode(subnet, self.space))
                self.archive.append(Record(iteration, phase, subnet, genome, values["top1"], values))
        bar.close()
        if not self.main:
            return []
        found = {r.subnet: r for r in self.archive.records if r.iteration == iteration and r.phase == phase}
        return [found[s] for s in subnets if s in found]

    def measure(self, subnet: Subnet, latency: bool) -> dict[str, float]:
        """The measured values of one subnet: each task's top-1 (under its accuracy objective) and, if
        asked, latency (once, on the first task's supernet). In a many-task run ``top1`` is the tasks'
        mean, which the archive's ``top1`` field holds."""
        values: dict[str, float] = {}
        for index, part in enumerate(self.parts.tasks.values()):
            measured = part.evaluator.evaluate(subnet, latency and index == 0)
            values[part.objective] = measured.pop("top1")
            values.update(measured)
        if self.parts.many_task:
            values["top1"] = float(np.mean([values[p.objective] for p in self.parts.tasks.values()]))
        return values

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
        best = max((r.top1 for r in front), default=float("nan"))  # many tasks: the best mean top-1
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
        self.folder.write_front(front)
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
        self.folder.write_state(state)


#: subnets each process measures per round of evaluation: a kill loses at most one round's work, and
#: a round is long enough to balance costs between processes
ROUND_PER_PROCESS = 4


def evaluation_rounds(todo: Sequence[Subnet], world_size: int) -> list[list[Subnet]]:
    """``todo`` cut into consecutive rounds: one subnet per round on one process (appended as soon as
    measured, as always), `ROUND_PER_PROCESS` per process under torchrun."""
    size = 1 if world_size == 1 else ROUND_PER_PROCESS * world_size
    return [list(todo[i : i + size]) for i in range(0, len(todo), size)]


class _Clock:
    """Seconds a run has spent, over all the processes that worked on it."""

    def __init__(self, before: float) -> None:
        self.before, self.start = before, time.monotonic()

    def seconds(self) -> float:
        return self.before + time.monotonic() - self.start
