"""nat's library API: `search` runs (or continues) a search, `retarget` aims a finished one at a new
target, `open_run` reads one.

    import nat
    result = nat.search("smoke", out="runs/smoke")          # preset, YAML path, dict or SearchConfig
    small = nat.retarget("runs/smoke", out="runs/small", overrides={"constraints": {"params": 2e5}})
    run = nat.open_run("runs/smoke")                        # read-only: nothing in the folder changes
    run.front, run.models, run.history                      # what the search found and delivered
    model = nat.load_model(run.models_dir / run.models[0]["name"])

`search` is what ``nat search`` does: a folder that already holds a run of the same configuration is
continued (a finished one only redoes what is missing), one of another configuration is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nat.errors import ConfigError
from nat.runs import SearchResult
from nat.search.archive import Record
from nat.search.config import SearchConfig, _merge, list_presets, load_config, validate_config
from nat.search.finalize import MODELS_DIR, MODELS_INDEX, read_index
from nat.search.objective_set import pareto_front
from nat.search.retarget import source_checkpoints, source_space
from nat.search.rundir import RunDir
from nat.space.definition import SearchSpace

ConfigLike = str | Path | dict[str, Any] | SearchConfig


def resolve_config(config: ConfigLike, overrides: dict[str, Any] | None = None) -> SearchConfig:
    """A `SearchConfig` from a preset name, a YAML file, a mapping or a config, with ``overrides``."""
    if isinstance(config, SearchConfig):
        if not overrides:
            return config
        return validate_config(_merge(config.model_dump(mode="json"), overrides), "config")
    if isinstance(config, dict):
        return validate_config(_merge(config, overrides or {}), "config")
    if isinstance(config, str) and config in list_presets() and not Path(config).is_file():
        return load_config(preset=config, overrides=overrides)
    if isinstance(config, (str, Path)):
        return load_config(Path(config), overrides=overrides)
    raise ConfigError(
        f"config must be a preset name, a YAML path, a dict or a SearchConfig, got {type(config)}"
    )


def search(config: ConfigLike, out: str | Path, overrides: dict[str, Any] | None = None) -> SearchResult:
    """Run NAT (or continue the run in ``out``) and deliver its front models and report.

    Under torchrun every process calls this; they share the work and rank 0 writes ``out`` (the
    others return a result with an empty front)."""
    from nat.runs import run_search

    return run_search(resolve_config(config, overrides), out)


def retarget(
    run: str | Path,
    out: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    iterations: int | None = None,
    adapt_epochs: float | None = None,
) -> SearchResult:
    """Aim the finished run ``run`` at new objectives or constraints (``overrides``, e.g.
    ``{"constraints": {"params": 2e6}}``) in the new run folder ``out``, without training again: its
    measured subnets carry over, complexity is recomputed, a short search (``iterations``) runs on the
    adapted supernet (adapted further only with ``adapt_epochs`` > 0). ``run`` is only read. A folder
    that already holds this retarget is continued. docs/transfer_search.md."""
    from nat.runs import run_retarget

    return run_retarget(run, out, overrides, iterations=iterations, adapt_epochs=adapt_epochs, resume=None)


class RunView:
    """A finished or interrupted run, read-only (`open_run`): nothing in its folder is changed."""

    def __init__(self, path: str | Path) -> None:
        self._run = RunDir.open(path)

    @property
    def path(self) -> Path:
        return self._run.path

    @property
    def config(self) -> SearchConfig:
        return self._run.config

    @property
    def archive(self) -> list[Record]:
        """Every evaluation, in order (re-evaluations included)."""
        return list(self._run.archive.records)

    @property
    def current(self) -> list[Record]:
        """The latest evaluation of each subnet."""
        return self._run.archive.current()

    @property
    def space(self) -> SearchSpace:
        """The search space the run searched, as its adapted supernet files record it: every record's
        genome encodes a subnet of it (to fit surrogates on the archive, or decode genomes)."""
        if not any(p.is_file() for paths in source_checkpoints(self._run).values() for p in paths):
            raise ConfigError(
                f"{self.path} holds no adapted supernet yet, which records the run's space; let it run "
                "through its first iteration"
            )
        return source_space(self._run)[0]

    @property
    def front(self) -> list[Record]:
        """The feasible non-dominated subnets of the current archive."""
        return pareto_front(self.current, self.config.objective_names, self.config.constraints)

    @property
    def history(self) -> list[dict[str, Any]]:
        """Per iteration: hypervolume, front and archive size, the strategy's report."""
        return list(self._run.read_state().get("history", []))

    @property
    def finished(self) -> bool:
        """Whether the last configured iteration was recorded (a time budget can end a run earlier)."""
        return any(h["iteration"] == self.config.iterations for h in self.history)

    @property
    def models_dir(self) -> Path:
        return self.path / MODELS_DIR

    @property
    def models(self) -> list[dict[str, Any]]:
        """The front models' index entries (``models.json``; empty before the run delivered them)."""
        return read_index(self.path / MODELS_INDEX)

    def __repr__(self) -> str:
        return f"RunView({str(self.path)!r}: {len(self.current)} subnets, front {len(self.front)})"


def open_run(path: str | Path) -> RunView:
    """Open a run folder read-only (``.config``, ``.space``, ``.archive``, ``.front``, ``.history``,
    ``.models``)."""
    return RunView(path)
