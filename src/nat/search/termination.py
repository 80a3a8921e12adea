"""When a search stops: budgets as objects, as pymoo's terminations (``iterations``, time, evaluations).

The loop asks its `Termination` before each iteration whether the budget is used up, from the run's
`Progress` (the iteration about to start, seconds spent over all sessions of the run, evaluations in
the archive). A budget only says how far a run goes, never what it measures, so a resumed run may
change it (`nat.search.rundir.RESUMABLE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from nat.search.config import SearchConfig


@dataclass(frozen=True)
class Progress:
    """Where a run stands before iteration ``iteration`` starts."""

    iteration: int
    seconds: float
    evaluations: int


class Termination(Protocol):
    def reason(self, progress: Progress) -> str | None:
        """Why the run stops before ``progress.iteration`` (None: it goes on)."""
        ...


@dataclass(frozen=True)
class IterationBudget:
    """At most ``iterations`` iterations after the initial one (``iterations``)."""

    iterations: int

    def reason(self, progress: Progress) -> str | None:
        if progress.iteration > self.iterations:
            return f"all {self.iterations} iterations done"
        return None


@dataclass(frozen=True)
class TimeBudget:
    """No iteration starts after ``minutes`` of the run (``time_budget_minutes``)."""

    minutes: float

    def reason(self, progress: Progress) -> str | None:
        if progress.seconds > self.minutes * 60:
            return f"time budget of {self.minutes:.1f} min used up after iteration {progress.iteration - 1}"
        return None


@dataclass(frozen=True)
class EvaluationBudget:
    """No iteration starts once the archive holds ``evaluations`` measurements, re-evaluations included
    (``max_evaluations``): the cost measure a comparison of strategies fixes."""

    evaluations: int

    def reason(self, progress: Progress) -> str | None:
        if progress.evaluations >= self.evaluations:
            return (
                f"evaluation budget of {self.evaluations} used up after iteration {progress.iteration - 1} "
                f"({progress.evaluations} evaluations)"
            )
        return None


@dataclass(frozen=True)
class AnyOf:
    """The first of several budgets to run out."""

    budgets: tuple[Termination, ...]

    def reason(self, progress: Progress) -> str | None:
        return next((r for b in self.budgets if (r := b.reason(progress)) is not None), None)


def termination_from_config(config: SearchConfig) -> AnyOf:
    """The budgets a run config sets: its iterations, and its time and evaluation budgets if given."""
    budgets: list[Termination] = [IterationBudget(config.iterations)]
    if config.time_budget_minutes is not None:
        budgets.append(TimeBudget(config.time_budget_minutes))
    if config.max_evaluations is not None:
        budgets.append(EvaluationBudget(config.max_evaluations))
    return AnyOf(tuple(budgets))
