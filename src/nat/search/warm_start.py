"""Warm start: a new search begins from earlier runs on other tasks (``warm_start:`` in a config).

A finished run has measured many subnets on its task and adapted a supernet to it. A search on a new
task can start from that in three ways, each on its own switch (docs/transfer_search.md#warm-start):

* ``archive: K``: K of the initial subnets come from the earlier runs (their fronts first, then their
  archives, spread over MAdds) instead of random samples; they are measured on the new task like any
  initial subnet, so only the choice of subnets transfers, never an accuracy;
* ``surrogate: true`` (off by default: it saved no evaluations in bench/warm_start.py): adaptive
  switching is offered one more model, `nat.surrogates.prior.PriorResidual`,
  which predicts the new top-1 from the earlier runs' measured accuracies (a surrogate fitted on each
  earlier archive is the prior); switching picks it only where it ranks the new archive better;
* ``supernet: DIR`` (default ``auto``: the first run's): the search starts from that run's adapted
  supernet instead of the pretrained one (`nat.search.rundir.RunDir.restore_supernets`).

What the earlier runs hold is copied into the new run folder when it starts (``warm_start.json``: each
run's path, archive checksum and measured records), so a resumed run rebuilds the same initial archive
and prior even if the earlier runs have changed or gone since; the runs must share the new run's space
and widths (one line naming the difference otherwise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from nat.config_io import check_file_data, read_json_file
from nat.errors import ConfigError
from nat.files import sha256_file, write_json_atomic
from nat.search.config import SearchConfig
from nat.search.objective_set import pareto_front
from nat.search.retarget import source_space
from nat.search.rundir import ARCHIVE, RunDir, checkpoint_file, warm_start_supernet
from nat.search.seeds import SeedTag, iteration_seed
from nat.space.definition import SearchSpace
from nat.space.genome import encode
from nat.space.subnet import Subnet
from nat.surrogates import make_surrogate
from nat.surrogates.prior import Prior

log = logging.getLogger("nat.search")

WARM_FILE = "warm_start.json"
FORMAT = "nat.warm_start/1"
#: the model each earlier archive's prior is fitted with (fast, and the strongest single model on
#: small archives in docs/surrogates.md)
PRIOR_MODEL = "rbf"


class SourceRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")
    subnet: dict
    top1: float
    madds: float


class SourceRun(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str
    archive_sha256: str
    records: list[SourceRecord]
    front: list[int]  # indices into records: the run's front over (top1, madds)


class WarmStartFile(BaseModel):
    """What ``warm_start.json`` holds."""

    model_config = ConfigDict(extra="forbid")
    format: Literal["nat.warm_start/1"] = FORMAT
    runs: list[SourceRun]


def _same_space(a: SearchSpace, b: SearchSpace) -> bool:
    return {k: v for k, v in a.model_dump().items() if k != "name"} == {
        k: v for k, v in b.model_dump().items() if k != "name"
    }


def _check_space(run: RunDir, space: SearchSpace | None) -> None:
    """`ConfigError` naming what differs when the earlier ``run`` searched another space than ``space``
    (None: not known before the weights load; checked again then)."""
    if space is None or not any(run.path.glob("supernet*_w*.safetensors")):
        return
    theirs, _ = source_space(run)
    if not _same_space(theirs, space):
        differ = [k for k, v in space.model_dump().items() if k != "name" and theirs.model_dump()[k] != v]
        raise ConfigError(
            f"warm_start: {run.path} searched another space ({', '.join(differ)} differ); a warm start "
            "needs the same space and widths"
        )


def check_sources(config: SearchConfig, space: SearchSpace | None, out: Path) -> None:
    """Before any work (rank 0): the earlier runs are search run folders of ``space`` (where it is
    known), and the one ``supernet`` names holds an adapted supernet of every width. A run being
    resumed in ``out`` that already took what it needs from them (its ``warm_start.json``, its own
    adapted supernets) does not need them any more."""
    warm = config.warm_start
    if warm is None:
        return
    if not (out / WARM_FILE).is_file():
        for path in warm.runs:
            with RunDir.open(Path(path)) as run:
                _check_space(run, space)
    supernet = warm_start_supernet(config)
    if supernet is None or any(out.glob("supernet*_w*.safetensors")):
        return
    with RunDir.open(Path(supernet)) as run:
        if run.config.many_task:
            raise ConfigError(
                f"warm_start.supernet: {run.path} is a many-task run (one adapted supernet per task); "
                "name a single-task run"
            )
        _check_space(run, space)
        for width in space.width_mults if space is not None else []:
            ckpt = checkpoint_file(run.path, width)
            if not ckpt.is_file():
                raise ConfigError(
                    f"warm_start.supernet: {ckpt} is missing (no adapted supernet of width {width:g})"
                )


def read_source(path: Path, space: SearchSpace) -> SourceRun:
    """One earlier run's measured records (its current archive), checked to share ``space``."""
    with RunDir.open(path) as run:
        _check_space(run, space)
        records = [r for r in run.archive.current(measured_only=True) if r.subnet.r in space.resolutions]
        front_ids = {id(r) for r in pareto_front(records, ["top1", "madds"])}
        return SourceRun(
            path=str(path.resolve()),
            archive_sha256=sha256_file(run.path / ARCHIVE),
            records=[
                SourceRecord(subnet=r.subnet.to_dict(), top1=r.top1, madds=r.values["madds"]) for r in records
            ],
            front=[i for i, r in enumerate(records) if id(r) in front_ids],
        )


def load_sources(config: SearchConfig, run: RunDir, space: SearchSpace) -> WarmStartFile:
    """The earlier runs' records: the run folder's own copy (``warm_start.json``) if it has one, else read
    from the runs and copied in (rank 0; the folder is being written)."""
    assert config.warm_start is not None
    copy = run.path / WARM_FILE
    if copy.is_file():
        data = read_json_file(copy, remedy="it holds what the warm start took from earlier runs")
        check_file_data(WarmStartFile, data, copy)
        return WarmStartFile.model_validate(data)
    sources = WarmStartFile(runs=[read_source(Path(p), space) for p in config.warm_start.runs])
    write_json_atomic(copy, sources.model_dump(mode="json"))
    counts = ", ".join(f"{Path(r.path).name}: {len(r.records)}" for r in sources.runs)
    log.info("warm start from %d run(s) (measured subnets: %s)", len(sources.runs), counts)
    return sources


@dataclass
class WarmStart:
    """A warm-started run's view of its earlier runs: initial picks and the surrogate prior (None
    unless ``warm_start.surrogate``)."""

    sources: WarmStartFile
    space: SearchSpace
    prior: Prior | None = None

    def initial_picks(self, k: int) -> list[Subnet]:
        """Up to ``k`` distinct subnets: the earlier runs' front members first, then the rest of their
        archives, each group spread evenly over MAdds (so the picks cover the complexity range); never
        the space's smallest or largest subnet, which every initial archive holds."""
        widths = sorted(self.space.width_mults)
        always = {Subnet.smallest(self.space, w=widths[0]), Subnet.largest(self.space, w=widths[-1])}
        front, rest = {}, {}
        for run in self.sources.runs:
            for i, r in enumerate(run.records):
                subnet = Subnet.from_dict(r.subnet)
                (front if i in run.front else rest).setdefault(subnet, r.madds)
        front = {s: m for s, m in front.items() if s not in always}  # in every initial archive anyway
        rest = {s: m for s, m in rest.items() if s not in front and s not in always}
        picks = _spread(front, k)
        return picks + _spread(rest, k - len(picks))

    def fit_prior(self, seed: int) -> Prior:
        """The prior `PriorResidual` uses: the mean, over the earlier runs, of a surrogate fitted on each
        run's measured top-1, each standardised (z-scores: runs on easy and hard tasks weigh alike)."""
        models = []
        for run in self.sources.runs:
            genomes = np.array([encode(Subnet.from_dict(r.subnet), self.space) for r in run.records])
            top1 = np.array([r.top1 for r in run.records])
            if len(top1) < 3:
                continue
            model = make_surrogate(PRIOR_MODEL, self.space, seed=seed).fit(genomes, top1)
            fitted = model.predict(genomes)
            models.append((model, float(fitted.mean()), float(fitted.std()) or 1.0))
        if not models:
            raise ConfigError(
                "warm_start.surrogate: the earlier runs hold fewer than 3 measured subnets each"
            )

        def predict(x: np.ndarray) -> np.ndarray:
            return np.mean([(m.predict(x) - mean) / std for m, mean, std in models], axis=0)

        return predict


def _spread(by_madds: dict[Subnet, float], k: int) -> list[Subnet]:
    """``k`` of the subnets (all if fewer), evenly spaced in MAdds order (ties: by the subnet's text)."""
    if k <= 0 or not by_madds:
        return []
    ordered = sorted(by_madds, key=lambda s: (by_madds[s], str(s.to_dict())))
    if len(ordered) <= k:
        return ordered
    return [ordered[i] for i in sorted({int(round(i)) for i in np.linspace(0, len(ordered) - 1, k)})]


def warm_start_for(config: SearchConfig, run: RunDir | None, space: SearchSpace) -> WarmStart | None:
    """The run's `WarmStart` (rank 0, which holds the folder; None without ``warm_start:``)."""
    if config.warm_start is None or run is None:
        return None
    warm = WarmStart(load_sources(config, run, space), space)
    if config.warm_start.surrogate:
        warm.prior = warm.fit_prior(iteration_seed(config.seed, 0, SeedTag.SURROGATE_TOP1))
    return warm
