"""The NAT loop end to end on the smoke preset: outputs, constraints, objectives, baselines, resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from nat.cli import main
from nat.errors import ConfigError
from nat.search import Archive, NATSearch, load_config
from nat.search.front import non_dominated
from nat.search.problem import run_nsga3
from nat.search.selection import select_by_hypervolume, select_diverse
from nat.space import get_space

TESTS = Path(__file__).parent
FAST = {
    "initial_samples": 6,
    "iterations": 2,
    "candidates_per_iteration": 2,
    "adaptation": {"initial_epochs": 1.0, "epochs": 0.3, "max_steps": 4},
    "nsga3": {"pop_size": 12, "generations": 4},
    "evaluation": {"calibration_images": 64},
    "data": {"val_size": 120},
}


def fast_config(**overrides):
    data = json.loads(json.dumps(FAST))
    for key, value in overrides.items():
        data[key] = value
    return load_config(preset="smoke", overrides=data)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("smoke")
    args = ["search", "--preset", "smoke", "--out", str(out / "run")]
    for key, value in [
        ("initial_samples", 6),
        ("iterations", 2),
        ("candidates_per_iteration", 2),
        ("adaptation.max_steps", 4),
        ("nsga3.pop_size", 12),
        ("nsga3.generations", 4),
        ("evaluation.calibration_images", 64),
        ("data.val_size", 120),
    ]:
        args += ["--set", f"{key}={value}"]
    assert main(args) == 0
    return out / "run"


def test_run_directory_contents(smoke_run: Path) -> None:
    for name in (
        "config.yaml",
        "archive.jsonl",
        "front.json",
        "state.json",
        "search.log",
        "versions.json",
        "supernet_w1.safetensors",
    ):
        assert (smoke_run / name).is_file(), name
    config = yaml.safe_load((smoke_run / "config.yaml").read_text())
    assert config["initial_samples"] == 6 and config["nsga3"]["pop_size"] == 12
    lines = (smoke_run / "archive.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert {"iteration", "subnet", "top1", "madds", "phase", "genome"} <= set(records[0])
    assert [r["iteration"] for r in records if r["phase"] == "initial"] == [0] * 6
    assert sum(r["phase"] == "candidate" for r in records) == 4  # 2 iterations x 2 candidates
    assert sum(r["phase"] == "reeval" for r in records) > 0  # archive re-measured after adaptation
    log = (smoke_run / "search.log").read_text()
    assert log.count("hypervolume") == 3 and "surrogate" in log


def test_front_is_non_dominated_current_archive(smoke_run: Path) -> None:
    front = json.loads((smoke_run / "front.json").read_text())
    archive = Archive(smoke_run / "archive.jsonl").current()
    F = np.array([[1 - r.top1, r.values["madds"]] for r in archive])
    expected = {json.dumps(archive[i].subnet.to_dict(), sort_keys=True) for i in non_dominated(F)}
    assert {json.dumps(r["subnet"], sort_keys=True) for r in front} == expected


def test_existing_run_needs_resume(smoke_run: Path, capsys) -> None:
    assert main(["search", "--preset", "smoke", "--out", str(smoke_run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]


def test_resume_after_crash_gives_the_same_archive(tmp_path, at_evaluation) -> None:
    config = fast_config()
    with NATSearch(config, tmp_path / "straight") as straight:
        straight.run()
    expected = (tmp_path / "straight" / "archive.jsonl").read_text()

    restore = at_evaluation(9)  # inside iteration 1, after its adaptation
    with pytest.raises(KeyboardInterrupt):
        NATSearch(config, tmp_path / "crashed").run()
    restore()
    # a kill in the middle of a write leaves a partial line: it must be dropped, not duplicated
    with (tmp_path / "crashed" / "archive.jsonl").open("a") as f:
        f.write('{"iteration": 1, "phase": "cand')
    NATSearch(config, tmp_path / "crashed", resume=True).run()
    assert (tmp_path / "crashed" / "archive.jsonl").read_text() == expected


def test_constraints_are_respected(tmp_path) -> None:
    bound = 1.0e6
    config = fast_config(constraints={"madds": bound}, iterations=1)
    front = NATSearch(config, tmp_path / "run").run()
    assert front and all(r.values["madds"] <= bound for r in front)
    candidates = [r for r in Archive(tmp_path / "run" / "archive.jsonl").records if r.phase == "candidate"]
    assert candidates and all(r.values["madds"] <= bound for r in candidates)


def test_four_objectives_with_a_user_function(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(TESTS))
    config = fast_config(objectives=["top1", "madds", "params", "user_objectives:total_kernel"], iterations=1)
    NATSearch(config, tmp_path / "run").run()
    record = Archive(tmp_path / "run" / "archive.jsonl").records[-1]
    assert record.values["user_objectives:total_kernel"] == sum(record.subnet.ks)
    assert record.values["params"] > 0


@pytest.mark.parametrize("strategy", ["random", "evolution"])
def test_baselines_share_the_interface(tmp_path, strategy: str) -> None:
    config = fast_config(strategy=strategy, constraints={"madds": 2.0e6}, iterations=1)
    NATSearch(config, tmp_path / "run").run()
    candidates = [r for r in Archive(tmp_path / "run" / "archive.jsonl").records if r.phase == "candidate"]
    assert len(candidates) == 2 and all(r.values["madds"] <= 2.0e6 for r in candidates)


@pytest.mark.parametrize("n_obj", [2, 3, 5, 12])
def test_nsga3_scales_to_many_objectives(n_obj: int) -> None:
    space = get_space()
    rng = np.random.default_rng(0)
    weights = rng.random((n_obj, 22))

    def evaluate(x: np.ndarray):
        return (x @ weights.T) * np.where(np.arange(n_obj) % 2 == 0, 1.0, -1.0), np.zeros((len(x), 0))

    X, F = run_nsga3(
        space, evaluate, n_obj, 0, np.zeros((0, 22), dtype=int), pop_size=24, generations=3, seed=1
    )
    assert F.shape[1] == n_obj and len(X) >= 24
    picked = select_diverse(F, 6, seed=0)
    assert len(set(picked)) == 6


def test_select_diverse_spreads_along_the_front() -> None:
    t = np.linspace(0, 1, 101)
    F = np.stack([t, 1 - np.sqrt(t)], axis=1)
    picked = sorted(F[select_diverse(F, 5, seed=0), 0])
    assert picked[0] < 0.1 and picked[-1] > 0.9
    assert min(np.diff(picked)) > 0.05


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"objectives": ["top1"]}, "at least 2"),
        ({"objectives": ["top1", "flops"]}, "unknown objective"),
        ({"strategy": "evolution"}, "needs at least one constraint"),
        ({"bogus": 1}, "bogus"),
        ({"constraints": {"madds": -1}}, "positive"),
        ({"data": {"dataset": "nope"}}, "unknown dataset"),
        ({"surrogate": {"models": ["rbf", "svm"]}}, "unknown surrogate"),
        ({"surrogate": {"models": ["rbf", "ensemble"]}}, "at least two besides it"),
        ({"surrogate": {"models": ["gp", "gp"]}}, "distinct"),
    ],
)
def test_config_errors(overrides, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(preset="smoke", overrides=overrides)


def test_cli_errors(tmp_path, capsys) -> None:
    assert main(["search", "--preset", "nope", "--out", str(tmp_path / "x")]) == 1
    assert "unknown preset" in capsys.readouterr().err
    assert main(["search", "--resume", str(tmp_path)]) == 1
    assert "not a nat run directory" in capsys.readouterr().err
    assert main(["search", "--preset", "smoke", "--out", str(tmp_path / "y"), "--set", "nsga3"]) == 1
    assert "KEY=VALUE" in capsys.readouterr().err


@pytest.mark.slow
def test_sigkill_and_resume_matches_uninterrupted(tmp_path) -> None:
    """A real SIGKILL at an arbitrary moment, then --resume: the same archive as a straight run."""
    sets = []
    for key, value in [
        ("initial_samples", 8),
        ("iterations", 3),
        ("candidates_per_iteration", 3),
        ("adaptation.max_steps", 6),
    ]:
        sets += ["--set", f"{key}={value}"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "nat.cli", "search", "--preset", "smoke"]
    subprocess.run([*cmd, "--out", str(tmp_path / "a"), *sets], check=True, env=env, capture_output=True)
    proc = subprocess.Popen(
        [*cmd, "--out", str(tmp_path / "b"), *sets],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    archive = tmp_path / "b" / "archive.jsonl"
    while proc.poll() is None and (not archive.exists() or archive.read_text().count("\n") < 12):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    resume = [sys.executable, "-m", "nat.cli", "search", "--resume", str(tmp_path / "b")]
    subprocess.run(resume, check=True, env=env, capture_output=True)
    assert archive.read_text() == (tmp_path / "a" / "archive.jsonl").read_text()


def test_latency_objective_is_measured_and_modelled(tmp_path) -> None:
    from nat.search.strategies.surrogate import surrogate_problem

    config = fast_config(
        objectives=["top1", "latency"], iterations=1, latency={"warmup": 1, "repeats": 2, "batch_size": 1}
    )
    with NATSearch(config, tmp_path / "run") as search:
        search.run()
        records = search.archive.current()
        assert all(r.values["latency"] > 0 for r in search.archive.records)
        assert any(r.phase == "candidate" for r in search.archive.records)
        # the search's latency model, fitted on the measurements, follows them (in sample). Linear, not
        # rank, correlation: two repeats on a busy shared CPU cannot order subnets of similar latency
        # (seen: 12.8-16.4 ms for seven of eight), only tell the large ones apart (68 ms)
        evaluate, _ = surrogate_problem(records, search.objectives, config.surrogate, config.seed, 1)
        F, _ = evaluate(np.array([r.genome for r in records]))
    column = config.objectives.index("latency")
    measured = np.array([r.values["latency"] for r in records])
    assert np.all(np.isfinite(F[:, column])) and np.all(F[:, column] > 0)
    assert np.corrcoef(F[:, column], measured)[0, 1] > 0.5
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["history"][-1]["strategy"] == "nat"


def test_cli_config_file_errors(tmp_path, capsys) -> None:
    assert main(["search", "--config", str(tmp_path / "none.yaml"), "--out", str(tmp_path / "r")]) == 1
    assert "config file not found" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    assert main(["search", "--config", str(bad), "--out", str(tmp_path / "r")]) == 1
    assert "not valid YAML at line" in capsys.readouterr().err
    typo = tmp_path / "typo.yaml"
    typo.write_text("data: {dataset: digits}\niteratons: 3\n")
    assert main(["search", "--config", str(typo), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "iteratons: unknown field (did you mean 'iterations'?" in err[0]


def test_select_by_hypervolume_prefers_the_gain() -> None:
    archive = np.array([[0.5, 0.1], [0.3, 0.5], [0.2, 0.9]])
    cands = np.array(
        [
            [0.25, 0.95],  # dominated by the archive: adds nothing
            [0.35, 0.12],  # much more accurate at almost the smallest cost: a large gain
            [0.18, 0.95],  # a little more accurate at a high cost: a thin sliver
            [0.45, 0.11],  # a smaller gain in the same place as the second
            [1.5, 0.05],  # outside the reference box
        ]
    )
    assert select_by_hypervolume(cands, archive, 1, seed=0) == [1]
    picked = select_by_hypervolume(cands, archive, 2, seed=0)
    assert picked[0] == 1 and picked[1] == 2  # after the first pick, candidate 3 adds less than 2
    assert len(set(select_by_hypervolume(cands, archive, 4, seed=0))) == 4  # the rest by spread
    assert sorted(select_by_hypervolume(cands, archive, 5, seed=0)) == [0, 1, 2, 3, 4]
    assert select_by_hypervolume(cands, np.zeros((0, 2)), 1, seed=0) == [1]


def _strategy_on(run: Path, **changes):
    """A strategy over a finished run's archive before iteration 1 (read-only), for ``changes``."""
    from nat.search import ObjectiveSet, RunDir
    from nat.search.strategies import make_strategy

    opened = RunDir.open(run)
    config = opened.config.model_copy(update=changes)
    problem = ObjectiveSet(config.objectives, get_space(config.space), 10, config.constraints)
    return make_strategy(problem, config), opened.archive.current(before_iteration=1)


def test_paper_candidate_selection_takes_the_extremes_of_the_predicted_front(smoke_run: Path) -> None:
    strategy, archive = _strategy_on(
        smoke_run, candidate_selection="reference_directions", candidates_per_iteration=3
    )
    result = strategy.surrogate_search(archive, 1)
    pool = result.F[result.fresh]
    proposal = strategy.ask(archive, 1)
    assert len(proposal.subnets) == 3 and not set(proposal.subnets) & {r.subnet for r in archive}
    # the paper's rule spreads the picks along the predicted front, both of its ends included
    assert np.isclose(proposal.predicted[:, 0].min(), pool[:, 0].min())
    assert np.isclose(proposal.predicted[:, 1].min(), pool[:, 1].min())
    front = pool[non_dominated(pool)]
    if len(front) >= 3:
        assert all(any(np.allclose(row, f) for f in front) for row in proposal.predicted)
    with pytest.raises(ConfigError, match="candidate_selection"):
        fast_config(candidate_selection="best")


def test_hypervolume_selection_picks_the_largest_predicted_gain_first(smoke_run: Path) -> None:
    from nat.search.front import hypervolume

    strategy, archive = _strategy_on(smoke_run, candidates_per_iteration=2)
    result = strategy.surrogate_search(archive, 1)
    pool = result.F[result.fresh]
    F_archive = result.evaluate(np.array([r.genome for r in archive]))[0]
    divisor = strategy.problem.hv_divisor(np.vstack([F_archive, pool]))
    base_front = (F_archive / divisor)[non_dominated(F_archive / divisor)]
    base = hypervolume(base_front)
    gains = [hypervolume(np.vstack([base_front, row / divisor])) - base for row in pool]
    proposal = strategy.ask(archive, 1)
    assert np.allclose(proposal.predicted[0], pool[int(np.argmax(gains))])
    assert proposal.info["strategy"] == "nat" and proposal.info["surrogate"] in ("rbf", "cart")
    # the proposal is a pure function of the archive and the iteration: asking again gives the same
    assert strategy.ask(archive, 1).subnets == proposal.subnets


def test_nat_strategy_tells_the_out_of_sample_ranking(smoke_run: Path) -> None:
    from nat.search import Record

    strategy, archive = _strategy_on(smoke_run, candidates_per_iteration=4)
    proposal = strategy.ask(archive, 1)
    predicted_top1 = 1.0 - proposal.predicted[:, 0]
    # measurements that rank the candidates exactly as predicted, then exactly reversed
    for sign, tau in ((1.0, 1.0), (-1.0, -1.0)):
        measured = [
            Record(1, "candidate", s, (), float(0.5 + sign * 0.01 * rank), {})
            for s, rank in zip(proposal.subnets, np.argsort(np.argsort(predicted_top1)), strict=True)
        ]
        assert strategy.tell(proposal, measured) == {"candidate_tau": pytest.approx(tau)}
    assert strategy.tell(proposal, measured[:2]) == {}  # too few to rank


def test_a_space_mapping_changes_only_the_named_fields_of_the_loaded_supernets_space(tmp_path) -> None:
    builtin = "builtin:fashion_mnist_tiny"
    search = NATSearch(fast_config(supernet=builtin, space={"resolutions": [28, 32]}), tmp_path / "run")
    assert search.space.resolutions == (28, 32)
    assert search.space.model_dump(exclude={"resolutions"}) == get_space("tiny-s2-wide-32").model_dump(
        exclude={"resolutions"}
    )
    assert {s.r for s in search.initial_subnets()} == {28, 32}
    with pytest.raises(ConfigError, match="only resolutions and width_mults may differ"):
        NATSearch(fast_config(supernet=builtin, space={"depths": [2, 3]}), tmp_path / "depths")
    with pytest.raises(ConfigError, match="invalid search space"):
        NATSearch(fast_config(supernet=builtin, space={"resolutions": [32, 28]}), tmp_path / "order")


def test_adaptation_with_distillation_trains_the_largest_subnet_too(tmp_path) -> None:
    """``adaptation.distill``: every step also trains the largest subnet on the labels and the sampled
    subnets learn from it, so the adapted weights differ from the paper's adaptation (off)."""
    import torch

    weights = {}
    for distill in (False, True):
        adaptation = {**FAST["adaptation"], "distill": distill}
        config = fast_config(iterations=0, initial_samples=4, adaptation=adaptation)
        with NATSearch(config, tmp_path / str(distill)) as search:
            search.run()
            weights[distill] = search.supernets[1.0].state_dict()
    assert any(not torch.equal(weights[True][k], weights[False][k]) for k in weights[False])


def test_an_evaluation_budget_stops_the_run_and_the_record_says_where_time_went(tmp_path) -> None:
    """`max_evaluations`: no iteration starts once the archive holds that many records; each history
    entry holds the seconds per phase and the subnets measured, the state the finalisation's seconds."""
    from nat.search.termination import EvaluationBudget, IterationBudget, Progress, TimeBudget

    assert EvaluationBudget(10).reason(Progress(2, 0.0, 9)) is None
    assert "evaluation budget of 10" in EvaluationBudget(10).reason(Progress(2, 0.0, 10))
    assert TimeBudget(1.0).reason(Progress(3, 61.0, 0)) and not TimeBudget(1.0).reason(Progress(3, 59.0, 0))
    assert IterationBudget(2).reason(Progress(3, 0.0, 0)) and not IterationBudget(2).reason(
        Progress(2, 0.0, 0)
    )
    config = fast_config(iterations=3, max_evaluations=10, finalize={"models": 1, "finetune_epochs": 0})
    with NATSearch(config, tmp_path / "run") as search:
        search.run()
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    # 6 initial records, then iteration 1 adds 2 candidates and 6 re-evaluations: 14 >= 10, so no more
    assert [h["iteration"] for h in state["history"]] == [0, 1]
    first, second = state["history"]
    assert set(first["seconds"]) == {"adaptation", "evaluation"} and first["measured"] == {"initial": 6}
    assert set(second["seconds"]) == {"proposal", "adaptation", "evaluation", "reevaluation"}
    assert second["measured"] == {"candidate": 2, "reeval": 6}  # the archive's phase names
    assert all(v >= 0 for h in state["history"] for v in h["seconds"].values())
    assert state["finalize_seconds"] > 0
    assert "s adaptation" in (tmp_path / "run" / "report.html").read_text()


def _predicted_config():
    return fast_config(
        initial_samples=8,
        iterations=3,
        evaluation={"calibration_images": 64, "reevaluate": "predicted", "reevaluate_sample": 2},
    )


def test_reevaluate_predicted_measures_the_front_and_a_sample_and_shifts_the_rest(tmp_path) -> None:
    from nat.search.archive import Phase

    with NATSearch(_predicted_config(), tmp_path / "run") as search:
        search.run()
        archive, objectives = search.archive, search.objectives
    records = archive.records
    predicted = [r for r in records if r.phase == Phase.PREDICTED]
    assert predicted, "members beyond the front and the sample are predicted, not measured"
    assert archive.evaluations() == len(records) - len(predicted)
    for iteration in (1, 2, 3):
        before = {r.subnet: r for r in archive.current(before_iteration=iteration)}
        shifted = [r for r in predicted if r.iteration == iteration]
        planned = [
            r
            for r in records
            if r.iteration == iteration
            and r.phase == Phase.REEVAL
            and not archive.has(iteration, Phase.PREDICTED, r.subnet)
        ]
        # the front of the archive before the iteration, and 2 others, were re-measured in full
        front = {r.subnet for r in objectives.front(list(before.values()))}
        assert front <= {r.subnet for r in planned} and len(planned) == len(front) + 2
        # every other member: its earlier top-1 plus the median change of the planned re-measurements
        shift = float(np.median([r.top1 - before[r.subnet].top1 for r in planned]))
        assert len(shifted) == len(before) - len(planned)
        for r in shifted:
            assert r.top1 == pytest.approx(min(1.0, max(0.0, before[r.subnet].top1 + shift)))
            assert r.values["madds"] == before[r.subnet].values["madds"]
    # the front a run reports holds measurements only
    assert all(r.phase != Phase.PREDICTED for r in objectives.front(archive.current()))
    front_file = json.loads((tmp_path / "run" / "front.json").read_text())
    assert front_file and all(m["phase"] != "predicted" for m in front_file)


def test_reevaluate_predicted_resumes_to_the_same_archive(tmp_path, at_evaluation) -> None:
    config = _predicted_config()
    with NATSearch(config, tmp_path / "straight") as straight:
        straight.run()
    expected = (tmp_path / "straight" / "archive.jsonl").read_text()
    restore = at_evaluation(14)  # inside iteration 1 or 2, after an adaptation
    with pytest.raises(KeyboardInterrupt):
        NATSearch(config, tmp_path / "crashed").run()
    restore()
    NATSearch(config, tmp_path / "crashed", resume=True).run()
    assert (tmp_path / "crashed" / "archive.jsonl").read_text() == expected
