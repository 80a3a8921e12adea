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
from nat.search.objective_set import ObjectiveSet, accuracy_label
from nat.search.problem import Evaluate
from nat.search.seeds import SeedTag, iteration_seed
from nat.surrogates import ModelScore, Surrogate, SwitchReport, adaptive_switching, make_surrogate
from nat.surrogates.prior import Prior


def fit_surrogate(
    genomes: np.ndarray,
    y: np.ndarray,
    problem: ObjectiveSet,
    cfg: SurrogateConfig,
    seed: int,
    prior: Prior | None = None,
) -> tuple[Surrogate, SwitchReport]:
    """Adaptive switching; with too few points for cross-validation, the first model alone. With a
    ``prior`` (a warm-started run's), the prior model is one more candidate (`nat.surrogates.prior`)."""
    folds = min(cfg.folds, len(y) // 3)
    models, kwargs = list(cfg.models), {}
    if prior is not None:
        base = next((m for m in models if m != "ensemble"), "rbf")
        models, kwargs = [*models, "prior"], {"prior": {"prior": prior, "base": base}}
    if folds >= 2 and len(models) > 1:
        return adaptive_switching(
            genomes,
            y,
            problem.space,
            models=models,
            folds=folds,
            seed=seed,
            repeats=cfg.repeats,
            model_kwargs=kwargs,
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
    records: Sequence[Record],
    problem: ObjectiveSet,
    cfg: SurrogateConfig,
    run_seed: int,
    iteration: int,
    prior: Prior | None = None,
) -> tuple[Evaluate, SwitchReport]:
    """Fit the accuracy (and latency) surrogates on ``records``; return pymoo's batch evaluator and the
    accuracy surrogate's switching report (`surrogate_problem_reports` gives every accuracy's)."""
    evaluate, reports = surrogate_problem_reports(records, problem, cfg, run_seed, iteration, prior)
    return evaluate, reports[problem.accuracies[0]]


def surrogate_problem_reports(
    records: Sequence[Record],
    problem: ObjectiveSet,
    cfg: SurrogateConfig,
    run_seed: int,
    iteration: int,
    prior: Prior | None = None,
) -> tuple[Evaluate, dict[str, SwitchReport]]:
    """`surrogate_problem` with one accuracy surrogate per accuracy objective (one per task of a
    many-task run, each chosen by its own adaptive switching); returns the evaluator and each accuracy
    objective's switching report."""
    genomes = np.array([r.genome for r in records])
    models: dict[str, Surrogate] = {}
    reports: dict[str, SwitchReport] = {}
    for task, name in enumerate(problem.accuracies):
        seed = iteration_seed(run_seed, iteration, SeedTag.SURROGATE_TOP1, task=task)
        y = np.array([r.values[name] for r in records])
        models[name], reports[name] = fit_surrogate(genomes, y, problem, cfg, seed, prior)
    latency_model = None
    if problem.measured_latency:
        latency = np.array([r.values["latency"] for r in records])
        latency_seed = iteration_seed(run_seed, iteration, SeedTag.SURROGATE_LATENCY)
        latency_model, _ = fit_surrogate(genomes, latency, problem, cfg, latency_seed)
    bounds = problem.constraints
    wanted = sorted(set(problem.names) | set(bounds))

    def evaluate(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        values: dict[str, Any] = problem.exact(x, wanted)
        for name, model in models.items():
            values[name] = model.predict(x)
        if latency_model is not None:
            values["latency"] = latency_model.predict(x)
        F = problem.minimised(values)
        G = (
            np.stack([np.asarray(values[n]) - b for n, b in bounds.items()], axis=1)
            if bounds
            else np.zeros((len(x), 0))
        )
        return F, G

    return evaluate, reports


def surrogate_info(strategy: str, report: SwitchReport | dict[str, SwitchReport]) -> dict[str, Any]:
    """What an iteration's history records of the surrogate: its name and cross-validated Kendall tau
    (``None`` when there were too few archive members to cross-validate). With one report per task
    (a many-task run): ``surrogate`` lists each task's choice, ``tau`` is the mean of their taus and
    ``surrogates`` holds each task's model and tau."""
    if isinstance(report, SwitchReport):
        return {"strategy": strategy, "surrogate": report.chosen, "tau": _tau(report)}
    taus = [t for t in (_tau(r) for r in report.values()) if t is not None]
    per_task = {accuracy_label(name): {"surrogate": r.chosen, "tau": _tau(r)} for name, r in report.items()}
    return {
        "strategy": strategy,
        "surrogate": ", ".join(f"{task}={v['surrogate']}" for task, v in per_task.items()),
        "tau": float(np.mean(taus)) if taus else None,
        "surrogates": per_task,
    }


def _tau(report: SwitchReport) -> float | None:
    tau = float(report.scores[report.chosen].mean)
    return tau if math.isfinite(tau) else None
