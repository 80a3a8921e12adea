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

The parts (`RunParts`: data, supernets, problem, evaluator), the run folder (`RunDir`), the strategy
and the phases (`nat.search.phases`) are built elsewhere; `NATSearch` only sequences them.

Under torchrun (`nat.runtime.distributed`) every process runs this loop. Rank 0 alone holds the run
folder, asks the strategy and records; what the others need of it (done iterations, the plan of each
iteration: elite genomes, candidates, re-evaluation set) it decides and broadcasts (`Collective.decide`,
`Collective.on_main`), so the loop reads as single-process code. Adaptation trains with
DistributedDataParallel on all ranks; evaluations are dealt out in rounds (`phases.evaluation_rounds`),
and rank 0 appends the gathered records in the order one process would have. Evaluation of a subnet
does not depend on which process runs it or what it ran before, so with adaptation off a run writes
the same archive on any number of processes; resuming works as on one process (only rank 0 reads the
folder; the others receive its weights).

Each iteration's history entry in ``state.json`` records where its time went (`PhaseClock`: seconds of
proposal, adaptation, evaluation, re-evaluation, and the subnets measured), and ``finalize_seconds``
the models' part; the report shows both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np

from nat.data import TaskData
from nat.runtime.distributed import Collective, batch_rows
from nat.search import phases
from nat.search.archive import Archive, Phase, Record
from nat.search.config import SearchConfig
from nat.search.data_defaults import settled
from nat.search.evaluator import SubnetEvaluator
from nat.search.finalize import MODELS_DIR, MODELS_INDEX, export_run_models, write_run_report
from nat.search.objective_set import ObjectiveSet
from nat.search.parts import RunParts
from nat.search.phases import RunClock
from nat.search.rundir import RunDir
from nat.search.seeds import SeedTag, iteration_seed
from nat.search.strategies import Proposal, make_strategy
from nat.search.termination import Progress, Termination, termination_from_config
from nat.search.warm_start import warm_start_for
from nat.space.definition import SearchSpace
from nat.space.genome import encode
from nat.space.subnet import Subnet
from nat.supernet import Supernet

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
        self.collective = Collective.current() if collective is None else collective
        self._out = Path(out_dir)
        if config.supernet is None:  # never random weights unless asked: a pretrained one, said and saved
            config = self.collective.decide(lambda: settled(config, self._out if resume else None))
        self.config = config
        if self.collective.active:  # before anything is written: the batch must split over the processes
            for data in config.tasks:
                batch_rows(data.train_batch_size, self.collective)
        phases.check_before_work(config, self._out, self.collective)  # before any data, weights or folder
        # rank 0 alone opens the folder; a refusal there ends every rank with the same line
        self.run_dir: RunDir | None = self.collective.on_main(
            lambda: (RunDir.resume if resume else RunDir.create)(out_dir, config)
        )
        try:
            self.parts = RunParts.build(config, self.run_dir, self.collective)
            self.parts.check_searchable()  # impossible settings fail here, before any training
            # earlier runs a warm start takes from (rank 0 reads them; None without warm_start)
            self.warm = self.collective.on_main(lambda: warm_start_for(config, self.run_dir, self.space))
        except BaseException:
            self.close()
            raise
        self.strategy = make_strategy(self.parts.objectives, config, self.warm.prior if self.warm else None)
        self.models: list[dict[str, Any]] = []  # the front models' index entries, once `run` has finished

    # the parts, by name (what the phases and finalisation use)
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
        clock = RunClock(float(state.get("elapsed_s", 0.0)))
        done = c.decide(lambda: {int(h["iteration"]) for h in state.get("history", [])})
        c.on_main(lambda: phases.log_start(self.parts, self.out))
        if 0 not in done:
            self.initial_iteration(state, clock)
        budget = termination_from_config(cfg)
        for iteration in range(1, cfg.iterations + 1):
            if iteration in done:  # recorded, so all its evaluations are in the archive: nothing to redo
                continue
            if c.decide(lambda: self._stop_reason(budget, iteration, clock)):  # noqa: B023
                break
            self.iteration(iteration, state, clock)
        front = c.on_main(self.front) or []
        c.on_main(lambda: self.folder.write_front(front))
        self.finish(front, state)
        return front

    def _stop_reason(self, budget: Termination, iteration: int, clock: RunClock) -> str | None:
        """Why the run stops before ``iteration`` (rank 0; None: it goes on), logged."""
        reason = budget.reason(Progress(iteration, clock.seconds(), self.archive.evaluations()))
        if reason is not None:
            log.info("%s", reason)
        return reason

    def finish(self, front: list[Record], state: dict[str, Any] | None = None) -> None:
        """The last phase: the front's models (``finalize`` section; only what is missing on a rerun)
        and the report. Sets ``self.models`` to the models' index entries. Under torchrun every process
        takes part in fine-tuning; rank 0 plans, tests and writes (and records the seconds it took)."""
        path, start = self.out, time.monotonic()
        index = path / MODELS_INDEX
        before = index.read_bytes() if self.main and index.is_file() else None
        self.models = export_run_models(
            self.parts, front, self.config.finalize, path / MODELS_DIR, path, index, self.collective
        )
        made = self.main and (not index.is_file() or index.read_bytes() != before)
        if state is not None and made:  # a finished run resumed, whose models all stand, changes nothing
            state["finalize_seconds"] = round(time.monotonic() - start, 3)
            self.folder.write_state(state)
        self.collective.on_main(lambda: write_run_report(self.folder, self.models))

    def initial_iteration(self, state: dict[str, Any], clock: RunClock) -> None:
        """Iteration 0: adapt on the initial subnets' distribution, then evaluate them. A retarget run
        carries its source's records over instead and keeps its source's adapted weights (saved here)."""
        timer, retarget = phases.PhaseClock(), self.config.retarget is not None
        if retarget:
            with timer.phase("evaluation"):
                initial = self.collective.decide(lambda: phases.carry(self.parts, self.archive))
        else:
            initial = self.initial_subnets()
        genomes = np.array([encode(s, self.space) for s in initial])
        epochs = 0.0 if retarget else self.config.adaptation.initial_epochs
        with timer.phase("adaptation"):
            self.adapt(0, {name: genomes for name in self.parts.tasks}, epochs)
        with timer.phase("evaluation"):
            self.evaluate([] if retarget else initial, 0, Phase.INITIAL, timer)
        self.collective.on_main(
            lambda: self.record(0, {"strategy": self.config.strategy, **timer.record()}, state, clock)
        )

    def iteration(self, iteration: int, state: dict[str, Any], clock: RunClock) -> None:
        """Iteration i >= 1 of Algorithm 1 (the strategy runs on rank 0, which broadcasts the plan)."""
        c, timer = self.collective, phases.PhaseClock()
        with timer.phase("proposal"):
            proposal = c.on_main(
                lambda: self.strategy.ask(self.archive.current(before_iteration=iteration), iteration)
            )
            elite_genomes, candidates, reevaluate = c.decide(lambda: self.plan(iteration, proposal))
        with timer.phase("adaptation"):
            self.adapt(iteration, elite_genomes, self.config.adaptation.epochs)
        with timer.phase("evaluation"):
            measured = self.evaluate(candidates, iteration, Phase.CANDIDATE, timer)
        with timer.phase("reevaluation"):
            self.evaluate(reevaluate, iteration, Phase.REEVAL, timer)
            if self.config.evaluation.reevaluate == "predicted" and reevaluate:
                self.predict_the_rest(iteration, timer)
        c.on_main(
            lambda: self.record(
                iteration,
                {**proposal.info, **self.strategy.tell(proposal, measured), **timer.record()},
                state,
                clock,
            )
        )

    def plan(
        self, iteration: int, proposal: Proposal
    ) -> tuple[dict[str, np.ndarray], list[Subnet], list[Subnet]]:
        """What every process needs of iteration ``iteration``: each task's elite genomes (adaptation's
        distribution), the candidates to measure, and the archive members to re-measure (rank 0)."""
        before = self.archive.current(before_iteration=iteration)
        reevaluate = self.reevaluation_set(before, iteration)
        return phases.elite_genomes(self.parts, before), proposal.subnets, reevaluate

    # ----------------------------------------------------------------- phases (`nat.search.phases`)
    def initial_subnets(self) -> list[Subnet]:
        """The smallest and the largest subnet, a warm start's picks, then distinct uniform samples."""
        k = self.config.warm_start.picks(self.config.initial_samples) if self.config.warm_start else 0
        picks = self.collective.decide(lambda: self.warm.initial_picks(k) if self.warm else [])
        return phases.initial_subnets(self.space, list(self.supernets), self.config, picks)

    def adapt(self, iteration: int, genomes: dict[str, np.ndarray], epochs: float) -> None:
        """Online adaptation of every task's supernets (`nat.search.phases.adapt`)."""
        phases.adapt(self.parts, self.run_dir, iteration, genomes, epochs)

    def evaluate(
        self, subnets: Sequence[Subnet], iteration: int, kind: Phase, clock: phases.PhaseClock | None = None
    ) -> list[Record]:
        """Measure and record the subnets not yet recorded (`nat.search.phases.evaluate`)."""
        archive = self.archive if self.main else None
        return phases.evaluate(self.parts, self.objectives, archive, subnets, iteration, kind, clock)

    def reevaluation_set(self, before: Sequence[Record], iteration: int) -> list[Subnet]:
        """Archive members to re-measure after adaptation (the paper: all of them)."""
        evaluation = self.config.evaluation
        mode = evaluation.reevaluate
        if mode == "none" or self.config.adaptation.epochs == 0:
            return []
        if mode == "all":
            return [r.subnet for r in before]
        front = [r.subnet for r in self.front(before)]
        if mode == "front":
            return front
        seed = iteration_seed(self.config.seed, iteration, SeedTag.REEVALUATION_SAMPLE)
        return front + phases.reevaluation_sample(before, front, evaluation.reevaluate_sample, seed)

    def predict_the_rest(self, iteration: int, clock: phases.PhaseClock) -> None:
        """``reevaluate: predicted``: shift the members not re-measured by the change the re-measured
        ones showed, then measure every predicted member that reaches the front, until the front holds
        measurements only (`nat.search.phases.predict_unmeasured`)."""
        while todo := self.collective.decide(
            lambda: phases.predict_unmeasured(self.config, self.objectives, self.archive, iteration)
        ):
            self.evaluate(todo, iteration, Phase.REEVAL, clock)

    def record(self, iteration: int, info: dict[str, Any], state: dict[str, Any], clock: RunClock) -> None:
        """Log the iteration and write its front and history (`nat.search.phases.record`)."""
        phases.record(self.folder, self.objectives, iteration, info, state, clock.seconds())
