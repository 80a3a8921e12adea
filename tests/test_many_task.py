"""Many-task NAT (issue 20): one search over several tasks, one accuracy objective and supernet per task."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import nat
from nat.cli import main
from nat.errors import ConfigError
from nat.search import NATSearch, load_config
from nat.search.front import hypervolume, monte_carlo_hypervolume, non_dominated
from nat.search.objective_set import minimisation_matrix, pareto_front
from nat.search.selection import select_by_hypervolume, select_by_task_hypervolume
from nat.supernet.checkpoint import load_supernet

pytestmark = pytest.mark.usefixtures("one_thread")

TASK = {"val_size": 120, "train_batch_size": 64, "eval_batch_size": 300, "rrc_scale": [0.6, 1.0]}
MANY = {
    "data": [{"dataset": "digits", **TASK}, {"dataset": "mnist5k", **TASK}],
    "initial_samples": 6,
    "iterations": 2,
    "candidates_per_iteration": 2,
    "adaptation": {"initial_epochs": 1.0, "epochs": 0.3, "max_steps": 3},
    "nsga3": {"pop_size": 12, "generations": 4},
    "evaluation": {"calibration_images": 64},
    "finalize": {"models": 2, "finetune_epochs": 0.02},
}
NAMES = ["top1:digits", "top1:mnist5k", "madds"]


def many_config(**overrides):
    data = json.loads(json.dumps(MANY))
    data.update(overrides)
    return load_config(preset="smoke", overrides=data)


@pytest.fixture(scope="module")
def many_run(tmp_path_factory) -> Path:
    config = tmp_path_factory.mktemp("cfg") / "many.yaml"
    config.write_text(yaml.safe_dump(MANY))
    out = tmp_path_factory.mktemp("many") / "run"
    assert main(["search", "--preset", "smoke", "--config", str(config), "--out", str(out)]) == 0
    return out


def archive_lines(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "archive.jsonl").read_text().splitlines()]


def test_config_expands_top1_into_one_objective_per_task() -> None:
    config = many_config()
    assert config.many_task and config.task_names == ["digits", "mnist5k"]
    assert config.objective_names == NAMES
    assert config.for_task("mnist5k").data.dataset == "mnist5k"
    assert not config.for_task("mnist5k").many_task
    # repeated datasets get unique names that never clash with an explicit one
    twice = many_config(
        data=[{"dataset": "digits"}, {"dataset": "digits"}, {"dataset": "digits", "name": "digits-2"}]
    )
    assert twice.task_names == ["digits", "digits-3", "digits-2"]
    # a list of one task is a single-task run, exactly
    one = many_config(data=[{"dataset": "digits", **TASK}])
    assert not one.many_task and one.objective_names == ["top1", "madds"]
    assert one.data == load_config(preset="smoke", overrides={"data": {"dataset": "digits", **TASK}}).data


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"data": [{"dataset": "digits", "name": "a"}, {"dataset": "mnist5k", "name": "a"}]},
            "must be distinct",
        ),
        ({"data": [{"dataset": "digits", "name": "a/b"}, {"dataset": "mnist5k"}]}, "task name 'a/b'"),
        ({"data": []}, "list of tasks is empty"),
        ({"objectives": ["top1", "madds", "top1:digits"]}, "write 'top1'"),
        ({"strategy": "evolution", "constraints": {"madds": 1e7}}, "many-task run"),
        ({"constraints": {"top1:digits": 0.5}}, "constrain complexity objectives only"),
    ],
)
def test_bad_many_task_configs_are_one_clear_error(overrides: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        many_config(**overrides)


def test_setting_a_field_of_a_task_list_is_refused_not_a_silent_replacement(tmp_path) -> None:
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump(MANY))
    with pytest.raises(ConfigError, match="data is a list"):
        load_config(path, preset="smoke", overrides={"data": {"val_size": 10}})


def test_archive_records_every_tasks_top1_and_their_mean(many_run: Path) -> None:
    records = archive_lines(many_run)
    assert len([r for r in records if r["phase"] == "candidate"]) == 4
    for r in records:
        assert 0 <= r["top1:digits"] <= 1 and 0 <= r["top1:mnist5k"] <= 1
        assert r["top1"] == pytest.approx((r["top1:digits"] + r["top1:mnist5k"]) / 2)
    for task in ("digits", "mnist5k"):
        assert (many_run / f"supernet_{task}_w1.safetensors").is_file()
    assert not (many_run / "supernet_w1.safetensors").exists()
    # each task's supernet was adapted on its own task: the two copies no longer hold the same weights
    a = load_supernet(many_run / "supernet_digits_w1.safetensors").state_dict()
    b = load_supernet(many_run / "supernet_mnist5k_w1.safetensors").state_dict()
    assert any(not torch.equal(a[k], b[k]) for k in a if a[k].is_floating_point())


def test_front_is_non_dominated_over_every_objective(many_run: Path) -> None:
    run = nat.open_run(many_run)
    front = json.loads((many_run / "front.json").read_text())
    current = run.current
    expected = pareto_front(current, NAMES)
    assert [r["subnet"] for r in front] == [r.subnet.to_dict() for r in expected]
    F = minimisation_matrix(current, NAMES)
    assert sorted(non_dominated(F)) == sorted(current.index(r) for r in expected)


def test_history_reports_a_surrogate_per_task(many_run: Path) -> None:
    history = json.loads((many_run / "state.json").read_text())["history"]
    later = [h for h in history if h["iteration"] >= 1]
    assert later and all(set(h["surrogates"]) == {"digits", "mnist5k"} for h in later)
    assert all("digits=" in h["surrogate"] and "mnist5k=" in h["surrogate"] for h in later)


def test_models_are_made_per_task_from_that_tasks_own_front(many_run: Path) -> None:
    models = json.loads((many_run / "models.json").read_text())
    assert {m["task"] for m in models} == {"digits", "mnist5k"}
    run_front = json.loads((many_run / "front.json").read_text())
    for task in ("digits", "mnist5k"):
        own = [m for m in models if m["task"] == task]
        assert 1 <= len(own) <= 2
        index = json.loads((many_run / "models" / task / "models.json").read_text())
        assert [f"{task}/{e['name']}" for e in index] == [m["name"] for m in own]
        for m in own:
            assert m["name"].startswith(f"{task}/")
            # the model's search-val top-1 is its task's, and it is a member of the run's front
            member = next(r for r in run_front if r["subnet"] == m["subnet"])
            assert m["top1"] == pytest.approx(member[f"top1:{task}"])
            assert "test_top1" in m
            info = json.loads((many_run / "models" / m["name"] / "model.json").read_text())
            assert info["provenance"]["dataset"] == task
            model = nat.load_model(many_run / "models" / m["name"])
            r = m["subnet"]["r"]
            assert model(torch.zeros(2, 3, r, r)).shape == (2, 10)


def test_report_shows_the_front_over_every_objective(many_run: Path) -> None:
    html = (many_run / "report.html").read_text()
    assert 'id="parallel"' in html
    assert "top1:digits" in html and "top1:mnist5k" in html
    summary = (many_run / "summary.md").read_text()
    assert "best test top-1 (digits)" in summary and "best test top-1 (mnist5k)" in summary


def test_resumed_many_task_run_equals_an_uninterrupted_one(many_run: Path, tmp_path) -> None:
    config = many_config(iterations=1, finalize={"models": 0})
    out = tmp_path / "run"
    with NATSearch(config, out) as search:
        search.run()
    assert main(["search", "--resume", str(out), "--set", "iterations=2", "--set", "finalize.models=0"]) == 0
    assert archive_lines(out) == archive_lines(many_run)
    for task in ("digits", "mnist5k"):
        a = load_supernet(out / f"supernet_{task}_w1.safetensors").state_dict()
        b = load_supernet(many_run / f"supernet_{task}_w1.safetensors").state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_monte_carlo_hypervolume_agrees_with_the_exact_one_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    for k in (3, 5):
        F = rng.random((200, k))
        F = F[non_dominated(F)][:30]
        exact = hypervolume(F)
        estimate = monte_carlo_hypervolume(F)
        assert estimate == pytest.approx(exact, rel=0.01)
        assert monte_carlo_hypervolume(F) == estimate
    F = rng.random((50, 9))
    assert hypervolume(F) == monte_carlo_hypervolume(F)  # above 6 objectives: the estimate


def test_a_search_above_six_objectives_runs_on_the_cheap_selection_and_hypervolume(tmp_path) -> None:
    """Seven tasks + MAdds = 8 objectives: candidates are spread by reference directions and the
    hypervolume is the Monte Carlo estimate (exact hypervolume would take seconds to minutes here)."""
    tasks = [{"dataset": "digits", **TASK, "val_size": 60} for _ in range(7)]
    config = many_config(
        data=tasks,
        adaptation={"initial_epochs": 0, "epochs": 0},
        iterations=2,
        finalize={"models": 0},
    )
    assert len(config.objective_names) == 8
    with NATSearch(config, tmp_path / "run") as search:
        front = search.run()
    assert config.task_names == ["digits"] + [f"digits-{i}" for i in range(2, 8)]
    history = json.loads((tmp_path / "run" / "state.json").read_text())["history"]
    assert len(history) == 3 and all(h["hypervolume"] > 0 for h in history)
    assert sum(r.phase == "candidate" for r in search.archive.records) == 4
    assert front and all(len([k for k in r.values if k.startswith("top1:")]) == 7 for r in front)


def test_the_first_task_of_iteration_zero_is_exactly_its_single_task_run(tmp_path) -> None:
    """Iteration 0 adapts every task's copy on the same initial subnets; the first task's seeds are a
    single-task run's, so its copy and its measurements are exactly those of a single-task run."""
    overrides = {"iterations": 0, "finalize": {"models": 0}}
    with NATSearch(many_config(**overrides), tmp_path / "many") as search:
        search.run()
    single = many_config(**overrides, data=MANY["data"][0])
    with NATSearch(single, tmp_path / "single") as search:
        search.run()
    many_records, single_records = archive_lines(tmp_path / "many"), archive_lines(tmp_path / "single")
    assert [r["top1:digits"] for r in many_records] == [r["top1"] for r in single_records]
    a = load_supernet(tmp_path / "many" / "supernet_digits_w1.safetensors").state_dict()
    b = load_supernet(tmp_path / "single" / "supernet_w1.safetensors").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_task_hypervolume_gives_each_task_the_candidate_that_is_best_for_it() -> None:
    """Columns: error on task a, error on task b, MAdds. Both rules first take the cheap subnet that
    improves both tasks (3). Then the joint hypervolume takes another all-round subnet (2), while the
    per-task rule gives task b's turn the subnet far better for b (1)."""
    archive = np.array([[0.20, 0.20, 0.50]])
    F = np.array(
        [
            [0.05, 0.95, 0.50],  # best for a, poor for b
            [0.95, 0.05, 0.50],  # best for b, poor for a
            [0.17, 0.17, 0.40],  # a little better on both
            [0.19, 0.19, 0.30],  # a little better on both, cheaper
        ]
    )
    assert select_by_task_hypervolume(F, archive, [0, 1], 2, seed=0) == [3, 1]
    assert select_by_hypervolume(F, archive, 2, seed=0) == [3, 2]
    assert select_by_task_hypervolume(F, archive, [0, 1], 3, seed=0) == [3, 1, 0]
    # one task: exactly the single-task rule on its columns
    assert select_by_task_hypervolume(F[:, [0, 2]], archive[:, [0, 2]], [0], 2, seed=0) == (
        select_by_hypervolume(F[:, [0, 2]], archive[:, [0, 2]], 2, seed=0)
    )
    cost_first = F[:, [2, 0]], archive[:, [2, 0]]  # objectives: [madds, top1]
    assert select_by_task_hypervolume(*cost_first, [1], 2, seed=0) == select_by_hypervolume(*cost_first, 2, 0)
    # a turn with no gain left for its task takes that task's lowest predicted error
    dominated = np.array([[0.9, 0.9, 0.9], [0.8, 0.95, 0.95], [0.95, 0.7, 0.99]])
    assert select_by_task_hypervolume(dominated, np.zeros((1, 3)), [0, 1], 2, seed=0) == [1, 2]


def test_a_many_task_search_runs_on_task_hypervolume_selection(tmp_path) -> None:
    """Eight objectives (seven tasks + MAdds): the per-task rule still runs exact hypervolume, on each
    task's two columns, and picks the run's candidates."""
    tasks = [{"dataset": "digits", **TASK, "val_size": 60} for _ in range(7)]
    config = many_config(
        data=tasks,
        adaptation={"initial_epochs": 0, "epochs": 0},
        iterations=1,
        candidates_per_iteration=3,
        candidate_selection="task_hypervolume",
        finalize={"models": 0},
    )
    with NATSearch(config, tmp_path / "run") as search:
        search.run()
    assert sum(r.phase == "candidate" for r in search.archive.records) == 3


def test_a_many_task_run_retargets_with_every_tasks_top1_carried(many_run: Path, tmp_path) -> None:
    import nat

    before = {p: p.read_bytes() for p in sorted(many_run.rglob("*")) if p.is_file()}
    result = nat.retarget(
        many_run, out=tmp_path / "small", overrides={"constraints": {"params": 2e5}}, iterations=1
    )
    after = {p: p.read_bytes() for p in sorted(many_run.rglob("*")) if p.is_file()}
    assert after == before  # the source is only read
    source = {r.subnet: r for r in nat.open_run(many_run).current}
    run = nat.open_run(result.run_dir)
    carried = [r for r in run.archive if r.phase == "carried"]
    assert {r.subnet for r in carried} == set(source)
    for r in carried:
        for name in NAMES[:2]:
            assert r.values[name] == source[r.subnet].values[name]
    for task in ("digits", "mnist5k"):  # each task's copy starts from its own adapted supernet
        assert (result.run_dir / f"supernet_{task}_w1.safetensors").is_file()
    assert all(m["params"] <= 2e5 for m in run.models)
