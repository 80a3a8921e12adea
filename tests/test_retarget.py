"""`nat retarget` / `nat.retarget`: a finished search aimed at new objectives or constraints, without
training again. The source folder is never changed; every refusal is one line, before any work."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import yaml

import nat
from nat.cli import main
from nat.errors import ConfigError
from nat.files import RunLock
from nat.search import RunDir
from nat.search.objective_set import ObjectiveSet
from nat.search.retarget import plan_retarget
from nat.space import get_space
from nat.space.genome import encode

SETS = {
    "initial_samples": 8,
    "iterations": 1,
    "candidates_per_iteration": 2,
    "adaptation.max_steps": 3,
    "nsga3.pop_size": 12,
    "nsga3.generations": 3,
    "evaluation.calibration_images": 32,
    "data.val_size": 100,
    "finalize.models": 1,
}


def digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """A finished smoke run (one iteration): what a retarget starts from."""
    out = tmp_path_factory.mktemp("source") / "run"
    args = ["search", "--preset", "smoke", "--out", str(out)]
    for key, value in SETS.items():
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    return out


def _params_bound(source: Path) -> float:
    """A params bound that half of the source's subnets meet."""
    params = sorted(r.values["params"] for r in nat.open_run(source).current)
    return params[len(params) // 2]


def test_retarget_to_a_tighter_budget_carries_the_measurements(source: Path, tmp_path: Path, capsys) -> None:
    before = digest(source)
    bound = _params_bound(source)
    new = tmp_path / "small"
    argv = ["retarget", str(source), "--out", str(new), "--set", f"constraints.params={bound}"]
    assert main(argv) == 0
    assert "report:" in capsys.readouterr().out
    assert digest(source) == before  # not a byte of the source changed

    run = nat.open_run(new)
    assert run.config.constraints == {"params": bound} and run.config.iterations == 2
    assert run.config.candidates_per_iteration == 2 * nat.open_run(source).config.candidates_per_iteration
    assert run.config.adaptation.epochs == 0
    recorded = run.config.retarget
    assert recorded is not None and Path(recorded.run) == source.resolve()
    assert recorded.archive_sha256 == hashlib.sha256((source / "archive.jsonl").read_bytes()).hexdigest()
    # every subnet the source measured is carried, with its top-1 as measured there
    carried = [r for r in run.archive if r.phase == "carried"]
    source_current = {r.subnet: r for r in nat.open_run(source).current}
    assert {r.subnet for r in carried} == set(source_current)
    for r in carried:
        assert r.iteration == 0 and r.top1 == source_current[r.subnet].top1
        assert r.values["params"] == source_current[r.subnet].values["params"]
    # then a short search: candidates measured on the adapted supernet, no adaptation, no re-evaluation
    assert {r.phase for r in run.archive} == {"carried", "candidate"}
    assert [h["iteration"] for h in run.history] == [0, 1, 2]
    assert all(r.values["params"] <= bound for r in run.front) and run.front
    assert run.models and all(m["params"] <= bound for m in run.models)
    assert (new / "supernet_w1.safetensors").is_file()  # the new run is self-contained
    assert json.loads((new / "run.json").read_text())["kind"] == "search"
    # and an ordinary run folder: resumable, reportable
    assert main(["search", "--resume", str(new), "--set", "iterations=3"]) == 0
    assert [h["iteration"] for h in nat.open_run(new).history] == [0, 1, 2, 3]
    assert main(["report", str(new)]) == 0
    assert (
        "retargeted from" in (new / "report.html").read_text()
        and str(source.resolve()) in (new / "summary.md").read_text()
    )
    assert digest(source) == before


def test_retarget_is_deterministic_and_the_library_call_continues_a_folder(
    source: Path, tmp_path: Path
) -> None:
    overrides = {"objectives": ["top1", "params"], "finalize": {"models": 0}}
    a = nat.retarget(source, out=tmp_path / "a", overrides=overrides, iterations=1)
    b = nat.retarget(source, out=tmp_path / "b", overrides=overrides, iterations=1)
    assert (a.run_dir / "archive.jsonl").read_bytes() == (b.run_dir / "archive.jsonl").read_bytes()
    again = nat.retarget(source, out=tmp_path / "a", overrides=overrides, iterations=1)  # continued
    assert (again.run_dir / "archive.jsonl").read_bytes() == (b.run_dir / "archive.jsonl").read_bytes()
    assert all("params" in r.values for r in a.front)


def test_retarget_to_measured_latency_measures_only_that(source: Path, tmp_path: Path) -> None:
    result = nat.retarget(
        source,
        out=tmp_path / "lat",
        overrides={
            "objectives": ["top1", "latency"],
            "latency": {"repeats": 2, "warmup": 0},
            "finalize": {"models": 0},
        },
        iterations=0,
    )
    run = nat.open_run(result.run_dir)
    measured = {r.subnet: r.top1 for r in nat.open_run(source).current}
    assert len(run.archive) == len(measured)  # carried only: iterations 0
    for r in run.archive:
        assert r.values["latency"] > 0 and r.top1 == measured[r.subnet]


def test_adaptation_when_asked_trains_on_subnets_that_meet_the_new_target(
    source: Path, tmp_path: Path
) -> None:
    bound = _params_bound(source)
    result = nat.retarget(
        source,
        out=tmp_path / "adapted",
        overrides={"constraints": {"params": bound}, "finalize": {"models": 0}},
        iterations=1,
        adapt_epochs=0.1,
    )
    run = nat.open_run(result.run_dir)
    assert run.config.adaptation.epochs == 0.1
    assert "reeval" in {r.phase for r in run.archive}  # adapted: the archive re-measured (reevaluate: all)
    adapted = RunDir.open(result.run_dir).adapted_iteration(1.0)
    assert adapted == 1
    source_weights = (source / "supernet_w1.safetensors").read_bytes()
    assert (result.run_dir / "supernet_w1.safetensors").read_bytes() != source_weights


def test_carried_values_are_recomputed_for_the_new_objectives(source: Path) -> None:
    from nat.search.retarget import carried_values

    space = get_space("micro")
    objectives = ObjectiveSet(["top1", "params", "madds"], space, 10, {"params": 1e5})
    records = nat.open_run(source).current
    carried = carried_values(records, objectives, measure_latency=None)
    assert len(carried) == len(records)  # infeasible ones too: the surrogates learn from them
    for (subnet, values), record in zip(carried, records, strict=True):
        exact = objectives.exact(encode(subnet, space)[None])
        assert values["params"] == float(exact["params"][0]) and values["top1"] == record.top1


# ----------------------------------------------------------------------------------------- refusals


def _copy(source: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(source, copy)
    return copy


@pytest.mark.parametrize(
    ("case", "sets", "message"),
    [
        ("inside", [], "is inside the source run"),
        ("same", [], "is inside the source run"),
        ("other-run", [], "is inside the run folder"),
        ("data", ["data.val_size=50"], "changes data.val_size"),
        ("seed", ["seed=3"], "changes seed"),
        ("supernet", ["supernet=builtin:fashion_mnist_tiny"], "changes supernet"),
        ("space", ["space={resolutions: [48]}"], "subset of its resolutions"),
        ("infeasible", ["constraints.params=10"], "constraint params <= 10 cannot be met"),
        ("new-task-objective", ["objectives=[top1, 'top1:cifar10']"], "objective 'top1:cifar10'"),
        ("unknown-field", ["constraints.parms=10"], "constraint"),
        ("no-iteration", [], "has no finished iteration"),
        ("no-supernet", [], "holds no adapted supernet"),
        ("being-written", [], "is being written by another nat process"),
        ("pretraining", [], "not a nat run directory of a search"),
        ("nowhere", [], "not a nat run directory"),
    ],
)
def test_refusals_are_one_line_before_any_work(
    source: Path, tmp_path: Path, capsys, case, sets, message
) -> None:
    src, out = source, tmp_path / "new"
    if case == "inside":
        out = source / "retargeted"
    elif case == "same":
        out = source
    elif case == "other-run":
        out = tmp_path / "other" / "x"
        shutil.copytree(source, tmp_path / "other")
    elif case == "no-iteration":
        src = _copy(source, tmp_path, "fresh")
        (src / "state.json").write_text(json.dumps({"history": []}))
    elif case == "no-supernet":
        src = _copy(source, tmp_path, "noweights")
        (src / "supernet_w1.safetensors").unlink()
    elif case == "being-written":
        src = _copy(source, tmp_path, "running")
        held = RunLock(src / ".lock")
        held.acquire()  # this process's own lock: flock is per open file, so it counts as another writer
    elif case == "pretraining":
        src = tmp_path / "pt"
        src.mkdir()
        (src / "run.json").write_text(json.dumps({"kind": "pretrain", "format": 1}))
    elif case == "nowhere":
        src = tmp_path / "nowhere"
    before = digest(source)
    argv = ["retarget", str(src), "--out", str(out)]
    for item in sets:
        argv += ["--set", item]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("nat retarget: error: "), err
    assert message in err[0], err[0]
    assert digest(source) == before
    assert not (tmp_path / "new").exists() and not (source / "retargeted").exists()


def test_plan_names_the_source_and_keeps_its_latency_table_copy(source: Path, tmp_path: Path) -> None:
    config = plan_retarget(source, tmp_path / "x", {"constraints": {"madds": 1e6}})
    saved = yaml.safe_load((source / "config.yaml").read_text())
    assert config.retarget is not None
    assert config.retarget.config_sha256 == hashlib.sha256((source / "config.yaml").read_bytes()).hexdigest()
    assert config.data.model_dump(mode="json") == saved["data"] and config.seed == saved["seed"]
    assert config.time_budget_minutes is None and config.max_evaluations is None
    with pytest.raises(ConfigError, match="iterations"):
        plan_retarget(source, tmp_path / "x", {"iterations": -1})
