"""Surrogate models for the strategies that search on predictions (NAT and OFA-style evolution).

Accuracy (and measured latency, when it is an objective without a table) are predicted by a model
chosen per iteration by adaptive switching; the exact objectives come from the complexity table and
from latency tables. The result is the batch evaluator pymoo's problem calls: genomes -> (objective
matrix to minimise, constraint matrix).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from nat.search.archive import Record
from nat.search.config import SurrogateConfig
from nat.search.objectives import ObjectiveSet
from nat.search.problem import Evaluate
from nat.search.seeds import SeedTag, iteration_seed
from nat.surrogates import ModelScore, Surrogate, SwitchReport, adaptive_switching, make_surrogate


def fit_surrogate(
    genomes: np.ndarray, y: np.ndarray, problem: ObjectiveSet, cfg: SurrogateConfig, seed: int
) -> tuple[Surrogate, SwitchReport]:
    """Adaptive switching; with too few points for cross-validation, the first model alone."""
    folds = min(cfg.folds, len(y) // 3)
    if folds >= 2 and len(cfg.models) > 1:
        return adaptive_switching(
            genomes, y, problem.space, models=cfg.models, folds=folds, seed=seed, repeats=cfg.repeats
        )
    model = make_surrogate(cfg.models[0], problem.space, seed=seed).fit(genomes, y)
    return model, SwitchReport(
        chosen=cfg.models[0],
        folds=0,
        n_samples=len(y),
        seed=seed,
        scores={cfg.models[0]: ModelScore(cfg.models[0], [], *[float("nan")] * 4)},
    )


def surrogate_problem(
    records: Sequence[Record], problem: ObjectiveSet, cfg: SurrogateConfig, run_seed: int, iteration: int
) -> tuple[Evaluate, SwitchReport]:
    """Fit the accuracy (and latency) surrogates on ``records``; return pymoo's batch evaluator and the
    accuracy surrogate's switching report."""
    genomes = np.array([r.genome for r in records])
    top1_seed = iteration_seed(run_seed, iteration, SeedTag.SURROGATE_TOP1)
    top1_model, report = fit_surrogate(genomes, np.array([r.top1 for r in records]), problem, cfg, top1_seed)
    latency_model = None
    if problem.measured_latency:
        latency = np.array([r.values["latency"] for r in records])
        latency_seed = iteration_seed(run_seed, iteration, SeedTag.SURROGATE_LATENCY)
        latency_model, _ = fit_surrogate(genomes, latency, problem, cfg, latency_seed)
    bounds = problem.constraints
    wanted = sorted(set(problem.names) | set(bounds))

    def evaluate(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values: dict[str, Any] = problem.exact(x, wanted)
        values["top1"] = top1_model.predict(x)
        if latency_model is not None:
            values["latency"] = latency_model.predict(x)
        F = problem.minimised(values)
        G = (
            np.stack([np.asarray(values[n]) - b for n, b in bounds.items()], axis=1)
            if bounds
            else np.zeros((len(x), 0))
        )
        return F, G

    return evaluate, report


def surrogate_info(strategy: str, report: SwitchReport) -> dict[str, Any]:
    """What an iteration's history records of the surrogate: its name and cross-validated Kendall tau
    (``None`` when there were too few archive members to cross-validate)."""
    tau = float(report.scores[report.chosen].mean)
    return {"strategy": strategy, "surrogate": report.chosen, "tau": tau if math.isfinite(tau) else None}
