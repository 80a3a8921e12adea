"""bench/transfer_summary.py: the per-seed margins and domination counts it reports are the right ones."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def summary_module():
    spec = importlib.util.spec_from_file_location("transfer_summary", ROOT / "bench" / "transfer_summary.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(nat: list[tuple[float, float]], baselines: list[tuple[str, float, float, bool]]) -> dict:
    return {
        "task": {
            "nat": [{"madds": m, "top1": t} for m, t in nat],
            "baseline": [
                {"name": n, "madds": m, "top1": t, "dominated_by_nat": d} for n, m, t, d in baselines
            ],
            "test_images": 1000,
        }
    }


def test_margins_compare_with_nats_best_model_within_the_baselines_madds(summary_module):
    runs = {
        # the 8 M model is NAT's best overall but larger than the similar baseline's 7 M
        0: run([(5e6, 0.980), (8e6, 0.990)], [("largest", 90e6, 0.975, True), ("similar", 7e6, 0.978, True)]),
        1: run([(5e6, 0.970)], [("largest", 90e6, 0.975, False), ("similar", 7e6, 0.970, True)]),
    }
    out = summary_module.summarise(runs)
    assert out["target_met_on_seeds"] == [0]
    task = out["tasks"]["task"]
    assert task["nat_best_top1"]["per_seed"] == [0.990, 0.970]
    largest = task["baselines"]["largest"]
    assert [r["margin_points"] for r in largest["per_seed"]] == pytest.approx([1.5, -0.5])
    assert largest["dominated_on"] == 1 and largest["wins_ties_losses"] == [1, 0, 1]
    assert largest["margin_points"]["mean"] == pytest.approx(0.5)
    lo, hi = largest["margin_points"]["ci95"]
    assert lo < 0.5 < hi
    similar = task["baselines"]["similar"]
    assert [r["margin_points"] for r in similar["per_seed"]] == pytest.approx([0.2, 0.0])
    assert similar["wins_ties_losses"] == [1, 1, 0]
    assert task["test_top1_standard_error_points"] == pytest.approx(100 * (0.98 * 0.02 / 1000) ** 0.5)


def test_seeds_come_from_the_file_or_its_name(summary_module, tmp_path):
    stored = run([(5e6, 0.98)], [("largest", 90e6, 0.97, True)])
    stored["task"]["seed"] = 7
    assert summary_module.seed_of(tmp_path / "anything.json", stored) == 7
    plain = run([(5e6, 0.98)], [("largest", 90e6, 0.97, True)])
    assert summary_module.seed_of(tmp_path / "transfer_seed3.json", plain) == 3
    assert summary_module.seed_of(tmp_path / "transfer.json", plain) == 0
    with pytest.raises(SystemExit, match="cannot tell which seed"):
        summary_module.seed_of(tmp_path / "other.json", plain)


def test_the_script_summarises_the_runs_it_is_given_and_refuses_a_seed_given_twice(tmp_path):
    script = ROOT / "bench" / "transfer_summary.py"
    first, second = tmp_path / "transfer.json", tmp_path / "transfer_seed1.json"
    first.write_text(json.dumps(run([(5e6, 0.98)], [("largest", 90e6, 0.97, True)])))
    second.write_text(json.dumps(run([(5e6, 0.96)], [("largest", 90e6, 0.97, False)])))
    out = tmp_path / "summary.json"
    done = subprocess.run(
        [sys.executable, str(script), str(first), str(second), "--out", str(out)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "target met on [0]" in done.stdout
    assert json.loads(out.read_text())["seeds"] == [0, 1]
    twice = subprocess.run(
        [sys.executable, str(script), str(first), str(first), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert twice.returncode != 0 and "seed 0 appears twice" in twice.stderr
