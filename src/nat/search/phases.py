"""The phases of a NAT iteration, as functions of the run's parts: what `NATSearch` sequences.

Each phase is the same code on one process and under torchrun. Rank 0 holds the run folder and the
archive (``None`` on the other ranks); what the other ranks need of them reaches them through
`Collective.decide` (computed on rank 0, broadcast), so each function reads as single-process code.

`PhaseClock` records where an iteration's time goes (seconds per phase, subnets measured per phase):
the loop writes it into ``state.json``'s history and the report shows it, so benchmarks read a run's
own record instead of timing the loop from outside.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from nat.progress import progress_bar
from nat.runtime.distributed import Collective, balanced_shares
from nat.search.adaptation import adapt_supernet
from nat.search.archive import Archive, Phase, Record
from nat.search.config import SearchConfig
from nat.search.distribution import GenomeDistribution, elite
from nat.search.objective_set import ObjectiveSet, check_finite, task_columns
from nat.search.parts import RunParts
from nat.search.retarget import carry_records, feasible_or_all
from nat.search.rundir import RunDir
from nat.search.seeds import SeedTag, initial_sample_seed, iteration_seed
from nat.search.supernets import check_initial_samples, planned_space
from nat.search.warm_start import check_sources
from nat.space.definition import SearchSpace
from nat.space.genome import encode
from nat.space.subnet import Subnet

log = logging.getLogger("nat.search")

#: subnets each process measures per round of evaluation: a kill loses at most one round's work, and
#: a round is long enough to balance costs between processes
ROUND_PER_PROCESS = 4


class PhaseClock:
    """Seconds spent in each phase of one iteration, and the subnets each measuring phase measured."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.measured: dict[str, int] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - start

    def record(self) -> dict[str, Any]:
        """What the iteration's history entry holds of it."""
        out: dict[str, Any] = {"seconds": {k: round(v, 3) for k, v in self.seconds.items()}}
        if self.measured:
            out["measured"] = dict(self.measured)
        return out


class RunClock:
    """Seconds a run has spent, over all the sessions (and processes) that worked on it."""

    def __init__(self, before: float) -> None:
        self.before, self.start = before, time.monotonic()

    def seconds(self) -> float:
        return self.before + time.monotonic() - self.start


def log_start(parts: RunParts, out: Path) -> None:
    """The run's first log line: where, what strategy and objectives, which tasks (rank 0)."""
    cfg, c = parts.config, parts.runtime.collective
    tasks = ", ".join(f"{n} ({p.task.num_classes} classes)" for n, p in parts.tasks.items())
    log.info(
        "NAT run in %s: strategy %s, objectives %s, constraints %s, %d supernet(s), %s %s",
        out,
        cfg.strategy,
        parts.objectives.names,
        cfg.constraints or "none",
        len(parts.supernets),
        "tasks" if parts.many_task else "task",
        tasks,
    )
    if c.active:
        log.info("%d processes (torchrun); this is rank 0, which writes the run", c.world_size)


def record(
    folder: RunDir,
    objectives: ObjectiveSet,
    iteration: int,
    info: dict[str, Any],
    state: dict[str, Any],
    seconds: float,
) -> None:
    """Log an iteration and write its front and history (``front.json``, ``state.json``; rank 0)."""
    current = folder.archive.current()
    front = objectives.front(current)
    hv = objectives.hypervolume(front)
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
    folder.write_front(front)
    state.update({"iteration": iteration, "elapsed_s": seconds, "hypervolume": hv, **info})
    history = state.setdefault("history", [])
    history[:] = [h for h in history if h["iteration"] != iteration]
    entry = {
        "iteration": iteration,
        "hypervolume": hv,
        "front_size": len(front),
        "archive_size": len(current),
    }
    history.append({**entry, **info})
    folder.write_state(state)


def initial_subnets(
    space: SearchSpace, widths: Sequence[float], config: SearchConfig, picks: Sequence[Subnet] = ()
) -> list[Subnet]:
    """The smallest and the largest subnet, ``picks`` (a warm start's, from earlier runs), then
    distinct uniform samples, ``initial_samples`` in all."""
    rng = random.Random(initial_sample_seed(config.seed))
    widths = sorted(widths)
    subnets = [Subnet.smallest(space, w=widths[0]), Subnet.largest(space, w=widths[-1])]
    subnets += [s for s in dict.fromkeys(picks) if s not in subnets][: config.initial_samples - 2]
    seen = set(subnets)
    while len(subnets) < config.initial_samples:
        s = Subnet.sample(space, rng)
        if s not in seen:
            seen.add(s)
            subnets.append(s)
    return subnets


def check_before_work(config: SearchConfig, out: Path, collective: Collective) -> None:
    """What a search checks before it loads any data or weights or opens its folder ``out``: the space
    holds ``initial_samples`` distinct subnets, and a warm start's earlier runs can be used (rank 0)."""
    space = planned_space(config)
    check_initial_samples(config, space)
    collective.on_main(lambda: check_sources(config, space, out))


def carry(parts: RunParts, archive: Archive) -> list[Subnet]:
    """A retarget run's iteration 0 (rank 0): its source's records, carried into ``archive`` with the
    new objectives' values (`nat.search.retarget.carry_records`); returns their subnets."""
    evaluator = parts.first.evaluator
    records = carry_records(parts.config, parts.objectives, archive, evaluator.latency_ms)
    return [r.subnet for r in records]


def elite_genomes(parts: RunParts, before: Sequence[Record]) -> dict[str, np.ndarray]:
    """Each task's elite genomes among ``before`` (the archive as it stood): the distribution the
    iteration's adaptation samples from. A retarget run takes them from the records that meet its
    constraints (`nat.search.retarget.feasible_or_all`)."""
    if parts.config.retarget is not None:
        before = feasible_or_all(before, parts.objectives)
    genomes, F = np.array([r.genome for r in before]), parts.objectives.matrix(before)
    fraction, names = parts.config.adaptation.elite_fraction, parts.objectives.names
    return {
        name: elite(genomes, F[:, task_columns(names, part.objective)], fraction)
        for name, part in parts.tasks.items()
    }


def adapt(
    parts: RunParts, folder: RunDir | None, iteration: int, genomes: dict[str, np.ndarray], epochs: float
) -> None:
    """Online adaptation: train each task's supernets, on that task, on subnets drawn from the
    distribution of ``genomes[task]``, once per iteration (skipped when the saved checkpoint already
    carries this iteration). Tasks are adapted one after another (under torchrun, each by all
    processes together); rank 0 saves each adapted supernet into ``folder``."""
    config, c = parts.config, parts.runtime.collective
    for name, part in parts.tasks.items():
        distribution = GenomeDistribution.from_genomes(genomes[name], parts.space)
        if config.adaptation.uniform_mix > 0:
            distribution = distribution.mixed_with_uniform(config.adaptation.uniform_mix)
        key = name if parts.many_task else None  # checkpoint names of a single-task run as ever
        done = c.decide(lambda: {w: folder.adapted_iteration(w, key) >= iteration for w in part.supernets})  # noqa: B023
        label = f" {name}" if parts.many_task else ""
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
                    seed=iteration_seed(config.seed, iteration, SeedTag.ADAPT, index, part.index),
                    runtime=parts.runtime,
                    desc=f"iter {iteration} adapt{label} w{width:g}",
                )
                c.sync_module(net)  # BN running statistics: rank 0's everywhere, as saved
            c.on_main(lambda: folder.save_supernet(net, iteration, key))  # noqa: B023


def evaluation_rounds(todo: Sequence[Subnet], world_size: int) -> list[list[Subnet]]:
    """``todo`` cut into consecutive rounds: one subnet per round on one process (appended as soon as
    measured, as always), `ROUND_PER_PROCESS` per process under torchrun."""
    size = 1 if world_size == 1 else ROUND_PER_PROCESS * world_size
    return [list(todo[i : i + size]) for i in range(0, len(todo), size)]


def evaluate(
    parts: RunParts,
    objectives: ObjectiveSet,
    archive: Archive | None,
    subnets: Sequence[Subnet],
    iteration: int,
    phase: Phase,
    clock: PhaseClock | None = None,
) -> list[Record]:
    """Measure the subnets not yet recorded for (iteration, phase) and append them to ``archive``;
    returns the records of all of them (fresh and already recorded), in the order given, on rank 0
    (other ranks measure their share and return nothing). ``clock`` counts the fresh ones."""
    c = parts.runtime.collective
    todo = c.decide(lambda: [s for s in subnets if not archive.has(iteration, phase, s)])
    if clock is not None and todo:
        clock.measured[str(phase)] = clock.measured.get(str(phase), 0) + len(todo)
    latency = objectives.measured_latency
    bar = progress_bar(
        total=len(todo), desc=f"iter {iteration} evaluate {phase}", leave=False, show=c.is_main
    )
    for batch in evaluation_rounds(todo, c.world_size):
        exact = [objectives.exact_values(s) for s in batch]  # madds and params always
        shares = balanced_shares([v["madds"] for v in exact], c.world_size)
        mine = {i: measure(parts, batch[i], latency) for i in shares[c.rank]}
        measured = {i: v for share in c.gather(mine) for i, v in share.items()}
        bar.update(len(batch))
        if archive is None:
            continue
        for i, subnet in enumerate(batch):  # appended in the order one process would have
            values = {**exact[i], **measured[i]}
            for name, value in values.items():  # nothing non-finite reaches the archive or hypervolume
                check_finite(name, value, subnet)
            genome = tuple(int(g) for g in encode(subnet, parts.space))
            archive.append(Record(iteration, phase, subnet, genome, values["top1"], values))
    bar.close()
    if archive is None:
        return []
    found = {r.subnet: r for r in archive.records if r.iteration == iteration and r.phase == phase}
    return [found[s] for s in subnets if s in found]


def reevaluation_sample(before: Sequence[Record], front: Sequence[Subnet], k: int, seed: int) -> list[Subnet]:
    """``reevaluate: predicted``: ``k`` archive members beyond ``front`` drawn uniformly (``seed``), in
    archive order: an unbiased sample of how adaptation moved the members that are not re-measured."""
    measured = set(front)
    others = [r.subnet for r in before if r.subnet not in measured]
    if len(others) <= k:
        return others
    chosen = set(np.random.default_rng(seed).choice(len(others), k, replace=False).tolist())
    return [s for i, s in enumerate(others) if i in chosen]


def predict_unmeasured(
    config: SearchConfig, objectives: ObjectiveSet, archive: Archive, iteration: int
) -> list[Subnet]:
    """``reevaluate: predicted``, after iteration ``iteration``'s re-measurements: every archive member
    not re-measured gets a `Phase.PREDICTED` record, its accuracies shifted by the median change of the
    members that were (each accuracy objective its own shift; in a many-task run ``top1`` is again the
    tasks' mean). Returns the predicted members now on the front, to be measured: the front a run
    reports and selects from then holds measurements only.

    The shift comes from the planned re-measurements alone (not from predicted members measured later),
    and predictions already recorded are kept, so a resumed run predicts exactly what it would have."""
    before = archive.current(before_iteration=iteration)
    remeasured = {
        r.subnet: r
        for r in archive.records
        if r.iteration == iteration
        and r.phase == Phase.REEVAL
        and not archive.has(iteration, Phase.PREDICTED, r.subnet)
    }
    names = [config.accuracy_objective(t) for t in config.task_names]
    pairs = [(r, remeasured[r.subnet]) for r in before if r.subnet in remeasured]
    shift = {
        name: float(np.median([new.values[name] - old.values[name] for old, new in pairs])) if pairs else 0.0
        for name in names
    }
    for r in before:
        if r.subnet in remeasured or archive.has(iteration, Phase.PREDICTED, r.subnet):
            continue
        values = dict(r.values)
        for name in names:
            values[name] = min(1.0, max(0.0, values[name] + shift[name]))
        if config.many_task:
            values["top1"] = float(np.mean([values[n] for n in names]))
        archive.append(Record(iteration, Phase.PREDICTED, r.subnet, r.genome, values["top1"], values))
    return [r.subnet for r in objectives.front(archive.current()) if r.phase == Phase.PREDICTED]


def measure(parts: RunParts, subnet: Subnet, latency: bool) -> dict[str, float]:
    """The measured values of one subnet: each task's top-1 (under its accuracy objective) and, if
    asked, latency (once, on the first task's supernet). In a many-task run ``top1`` is the tasks'
    mean, which the archive's ``top1`` field holds."""
    values: dict[str, float] = {}
    for index, part in enumerate(parts.tasks.values()):
        measured = part.evaluator.evaluate(subnet, latency and index == 0)
        values[part.objective] = measured.pop("top1")
        values.update(measured)
    if parts.many_task:
        values["top1"] = float(np.mean([values[p.objective] for p in parts.tasks.values()]))
    return values
