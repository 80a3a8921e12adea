"""Retarget: a finished search aimed at new objectives or constraints, without training again.

NAT's promise is that a search need not be paid again for each deployment target. A subnet's accuracy
on the task does not depend on the device it will run on or on the budget it must meet, so every
subnet a finished run measured keeps its top-1; only its complexity (MAdds, params, a latency table's
prediction, a user function) is recomputed for the new objective set, and measured latency is measured
where the new objectives ask for it. A retarget run is an ordinary search (`nat.search.loop`) whose
iteration 0 carries those records over instead of sampling, adapting and measuring an initial archive,
and whose supernets start as the source's adapted ones (``config.retarget``; the weights are copied
into the new folder at iteration 0, so the new run never needs the source again). Its later iterations
are NAT's: surrogates fitted on the carried records, NSGA-III on the new objectives, candidates
measured on the adapted supernet; adaptation only where asked (``adaptation.epochs`` > 0).

`plan_retarget` builds the new run's config from the source's and checks, before any work, everything
that would make the carried accuracies wrong or the search impossible (docs/transfer_search.md).
`carry_records` is iteration 0.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nat.errors import CheckpointError, ConfigError
from nat.files import lock_holder, sha256_file
from nat.objectives.latency_table import LatencyTable
from nat.run_folder import LOCK, enclosing_run
from nat.search.archive import Archive, Phase, Record
from nat.search.config import SearchConfig, _merge, validate_config
from nat.search.objective_set import ObjectiveSet, is_accuracy
from nat.search.rundir import ARCHIVE, RunDir, config_differences, resumable
from nat.space.definition import SearchSpace, space_over
from nat.space.genome import encode
from nat.space.subnet import Subnet
from nat.supernet.checkpoint import read_metadata

log = logging.getLogger("nat.search")

#: iterations of a retarget run unless asked otherwise: a short search on the carried archive
DEFAULT_ITERATIONS = 2
#: candidates per iteration, as a multiple of the source's, unless asked otherwise. Without adaptation
#: a candidate costs only its measurement, while each iteration's surrogate fitting and NSGA-III cost
#: the same whatever the number: on the latency target of bench/retarget.py (seed 0), 12 candidates per
#: iteration instead of 6 raised the hypervolume ratio to a fresh search from 0.965 to 0.988 at the same
#: time ratio (0.048); 4 iterations of 6 reached 0.977 at 0.078 (docs/results/retarget.md)
CANDIDATE_FACTOR = 2

#: config fields that decide what a subnet's top-1 is (the task, its splits, the weights, how it is
#: measured): a retarget keeps them, or the carried accuracies would not be comparable with new ones.
#: ``space`` may only narrow the source's resolutions (checked apart).
ACCURACY_FIELDS = (
    "seed",
    "data",
    "supernet",
    "evaluation.calibration_images",
    "evaluation.max_val_images",
)


def source_checkpoints(run: RunDir) -> dict[str | None, list[Path]]:
    """The source's adapted supernet files, per task (None: a single-task run), one per width."""
    config = run.config
    widths = _widths(run)
    tasks: list[str | None] = list(config.task_names) if config.many_task else [None]
    return {task: [run.checkpoint_path(w, task) for w in widths] for task in tasks}


def _widths(run: RunDir) -> list[float]:
    """The widths the source run searched (its adapted files' own record of them)."""
    prefix = f"supernet_{run.config.task_names[0]}_w" if run.config.many_task else "supernet_w"
    found = sorted(run.path.glob(f"{prefix}*.safetensors"))
    widths = []
    for path in found:
        try:
            widths.append(float(path.stem.removeprefix(prefix)))
        except ValueError:
            continue
    return widths


def source_space(run: RunDir) -> tuple[SearchSpace, int]:
    """The space the source run searched and its supernets' class count (from its adapted files)."""
    files = [p for paths in source_checkpoints(run).values() for p in paths]
    try:
        metadata = read_metadata(files[0])
        space = SearchSpace.model_validate_json(metadata["space"])
        classes = max(int(read_metadata(p)["num_classes"]) for p in files)
    except Exception as exc:  # noqa: BLE001 - any failure to read means an unusable file
        raise CheckpointError(f"{files[0]} is not a readable nat supernet file: {exc}") from None
    return space, classes


def _check_folders(source: Path, out: Path) -> None:
    src, new = source.resolve(), out.resolve()
    if new == src or new.is_relative_to(src):
        raise ConfigError(
            f"--out {out} is inside the source run {source}, which a retarget only reads; choose a "
            "folder outside it"
        )
    holder = enclosing_run(new.parent)
    if holder is not None:
        raise ConfigError(f"--out {out} is inside the run folder {holder}; choose a folder outside any run")


def _check_source(run: RunDir) -> None:
    """The source is not being written, has a finished iteration and an adapted supernet for every
    width (and task)."""
    holder = lock_holder(run.path / LOCK)
    if holder is not None:
        raise ConfigError(
            f"{run.path} is being written by another nat process (PID {holder}); a retarget starts from "
            "what a run has measured: wait for it to finish or stop it first"
        )
    if not run.read_state().get("history"):
        raise ConfigError(
            f"{run.path} has no finished iteration yet, so there is nothing measured to carry over; "
            f"let it run (`nat search --resume {run.path}`) at least through its initial archive"
        )
    files = source_checkpoints(run)
    missing = [p.name for paths in files.values() for p in paths if not p.is_file()]
    if not any(files.values()) or missing:
        raise ConfigError(
            f"{run.path} holds no adapted supernet ({', '.join(missing) or 'supernet_w*.safetensors'} "
            "missing), which a retarget starts from; resume the source run until its first iteration is "
            "recorded"
        )


def _check_unchanged(source: SearchConfig, new: SearchConfig, space: SearchSpace) -> None:
    """Refuse what would make the carried top-1 values wrong: another task, split, seed or supernet, a
    many-task run's tasks changed, or a space other than the source's with fewer resolutions."""
    changed = [
        f
        for f in config_differences(source, new)
        if any(f == a or f.startswith(a + ".") for a in ACCURACY_FIELDS) and not resumable(f)
    ]
    if changed:
        raise ConfigError(
            "a retarget keeps what its accuracies were measured with, but --set changes "
            + ", ".join(changed)
            + "; new objectives, constraints, latency tables, search and finalize settings may change. "
            "For another task, start a search of its own (docs/transfer_search.md: warm start)"
        )
    if new.space == source.space:
        return
    narrowed = space_over(space, new.space)
    same = {k: v for k, v in narrowed.model_dump().items() if k not in ("name", "resolutions")}
    if same != {k: v for k, v in space.model_dump().items() if k not in ("name", "resolutions")} or not set(
        narrowed.resolutions
    ) <= set(space.resolutions):
        raise ConfigError(
            f"space: a retarget searches the source's space (resolutions {list(space.resolutions)}) or a "
            "subset of its resolutions; its supernet knows nothing outside it"
        )


def _source_tables(run: RunDir, config: SearchConfig) -> SearchConfig:
    """``config`` with each latency table it shares with the source read from the source's own copy
    (the table the source's latencies came from, even if the original file moved since)."""
    data = config.model_dump(mode="json")
    before = run.config.latency_tables()
    for objective, files in config.latency_tables().items():
        copy = run.latency_table_file(objective)
        if before.get(objective) != files or not copy.is_file():
            continue
        if objective == "latency":
            data["latency"]["table"] = str(copy.resolve())
        else:
            data["latency"]["tables"][objective.partition(":")[2]] = str(copy.resolve())
    return validate_config(data, source="retarget")


def plan_retarget(
    source: str | Path,
    out: str | Path,
    overrides: dict[str, Any] | None = None,
    *,
    iterations: int | None = None,
    adapt_epochs: float | None = None,
) -> SearchConfig:
    """The retarget run's config: the source's with ``overrides``, then ``iterations`` and
    ``adaptation.epochs = adapt_epochs`` (where neither they nor ``overrides`` set them:
    `DEFAULT_ITERATIONS` and no adaptation) and `CANDIDATE_FACTOR` times the source's candidates per
    iteration (unless ``overrides`` set them), recording the source. Every refusal
    (one `ConfigError`) is checked here, before any work; the source folder is only read."""
    source, out = Path(source), Path(out)
    _check_folders(source, out)
    with RunDir.open(source) as run:
        _check_source(run)
        space, classes = source_space(run)
        base = run.config.model_dump(mode="json")
        overrides = overrides or {}
        derived = _merge(base, overrides)
        if iterations is not None or "iterations" not in overrides:
            derived["iterations"] = DEFAULT_ITERATIONS if iterations is None else iterations
        if "candidates_per_iteration" not in overrides:
            derived["candidates_per_iteration"] = CANDIDATE_FACTOR * run.config.candidates_per_iteration
        if adapt_epochs is not None or "epochs" not in overrides.get("adaptation", {}):
            derived.setdefault("adaptation", {})["epochs"] = adapt_epochs or 0.0
        derived["retarget"] = {
            "run": str(source.resolve()),
            "config_sha256": sha256_file(run.path / "config.yaml"),
            "archive_sha256": sha256_file(run.path / ARCHIVE),
        }
        for key in ("time_budget_minutes", "max_evaluations"):  # the source's budgets are not this run's
            if key not in overrides:
                derived[key] = None
        config = validate_config(derived, source="retarget (the source's config with --set)")
        config = _source_tables(run, config)
        _check_unchanged(run.config, config, space)
        narrowed = space_over(space, config.space) if config.space != run.config.space else space
        tables = {name: LatencyTable.load(files) for name, files in config.latency_tables().items()}
        objectives = ObjectiveSet(config.objective_names, narrowed, classes, config.constraints, tables)
        objectives.check_satisfiable(min(narrowed.width_mults))
        if not carried_values(run.archive.current(measured_only=True), objectives, measure_latency=None):
            raise ConfigError(
                f"none of the subnets {source} measured lies in the space asked for (resolutions "
                f"{list(narrowed.resolutions)}); keep at least one of the source's resolutions"
            )
    return config


def carried_values(
    records: Sequence[Record], objectives: ObjectiveSet, measure_latency: Any
) -> list[tuple[Subnet, dict[str, float]]]:
    """Each source record that lies in the new space, with its values for the new objective set: the
    measured top-1 (each task's, in a many-task run) carried, everything exact recomputed, measured
    latency from ``measure_latency(subnet)`` (None: left out, for checks that do not measure).

    Records that break the new constraints are carried too: they are true measurements, so the
    accuracy surrogates learn from them; the constraints keep them out of the front, the candidates
    and adaptation's elite (`feasible_or_all`), as in any run."""
    space = objectives.space
    out = []
    for record in records:
        subnet = record.subnet
        if subnet.r not in space.resolutions or subnet.w not in space.width_mults:
            continue
        values = objectives.exact_values(subnet)
        values.update({n: record.values[n] for n in record.values if is_accuracy(n)})
        values["top1"] = record.top1
        if objectives.measured_latency and measure_latency is not None:
            values["latency"] = float(measure_latency(subnet))
        out.append((subnet, values))
    return out


def feasible_or_all(records: Sequence[Record], objectives: ObjectiveSet) -> list[Record]:
    """The records that meet the constraints (all of them when none does): what a retarget run adapts
    on, so that its supernet is trained for the new target, not for the source's."""
    return objectives.feasible(records) or list(records)


def carry_records(
    config: SearchConfig, objectives: ObjectiveSet, archive: Archive, measure_latency: Any
) -> list[Record]:
    """Iteration 0 of a retarget run: append the source's carried records to ``archive`` (those not
    already there, on a resumed run) as ``carried`` records of iteration 0; returns them all."""
    source = config.retarget
    assert source is not None
    path = Path(source.run)
    if not (path / ARCHIVE).is_file():
        raise ConfigError(
            f"the source run {path} of this retarget run is gone, and its initial archive was not yet "
            "carried over; restore the source or start the retarget again"
        )
    if sha256_file(path / ARCHIVE) != source.archive_sha256:
        raise ConfigError(
            f"the source run {path} changed since this retarget run started (its archive.jsonl is not "
            "the one recorded); start the retarget again in a new folder"
        )
    with RunDir.open(path) as run:
        records = run.archive.current(measured_only=True)
    carried = carried_values(records, objectives, measure_latency)
    for subnet, values in carried:
        if not archive.has(0, Phase.CARRIED, subnet):
            genome = tuple(int(g) for g in encode(subnet, objectives.space))
            archive.append(Record(0, Phase.CARRIED, subnet, genome, values["top1"], values))
    found = {r.subnet: r for r in archive.records if r.iteration == 0 and r.phase == Phase.CARRIED}
    out = [found[s] for s, _ in carried]
    log.info(
        "retarget: %d records of %s carried over (%d meet the new constraints)",
        len(out),
        path,
        len(objectives.feasible(out)),
    )
    return out
