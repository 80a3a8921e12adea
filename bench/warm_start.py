"""Warm start against a cold start on a new task (issue 41): how many evaluations does it save?

For each target task, a source run on another task (the quickstart preset on that task, no models)
and, on the target, runs of the same budget (the quickstart's settings on the target's data): cold,
and warm-started from the source with each part alone and together (the ablation), plus nat's
default (``warm_start: {runs: [SOURCE]}``). Every run delivers the quickstart's number of models as
adapted (BN recalibrated, no fine-tuning: the same for every arm, and cheap), tested on the target's
test split.

Per warm arm and seed, against the cold run of the same seed:

* ``evaluations_ratio``: archive records (re-evaluations included) the warm run needed to reach the cold
  run's final search-validation hypervolume, over the cold run's total (None: never reached);
* ``final_hypervolume_ratio``: warm / cold final search-validation hypervolume;
* ``matched_madds_test_top1``: mean, over the cold run's models, of (best warm test top-1 within the
  model's MAdds) - (the model's test top-1).

    python bench/warm_start.py [--targets digits] [--seeds 0 1 2] [--arms default ...] [--threads 1]
                               [--keep DIR] [--out FILE] [--quick] [--combine FILE ...]

Writes bench/results/warm_start.json (``--quick``: a smoke check cut to seconds, written to
bench/results/warm_start_quick.json); ``--combine`` merges per-process results (one per seed).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.runs import run_search  # noqa: E402
from nat.search import load_config  # noqa: E402
from nat.search.data_defaults import INITIAL_STEPS, ITERATION_STEPS  # noqa: E402
from nat.search.run_files import read_state  # noqa: E402
from record import code_version, machine  # noqa: E402

RESULTS = ROOT / "bench" / "results"
DATA = {
    "mnist5k": {"dataset": "mnist5k", "val_size": 500, "rrc_scale": [0.8, 1.0]},
    "digits": {"dataset": "digits", "val_size": 300, "rrc_scale": [0.6, 1.0]},
    "fashion-mnist": {"dataset": "fashion-mnist", "val_size": 5000, "rrc_scale": [0.8, 1.0]},
}
SOURCE_OF = {"digits": "mnist5k", "mnist5k": "digits", "fashion-mnist": "mnist5k"}
#: training images per task (the training split less the held-out search-validation images)
TRAIN_IMAGES = {"fashion-mnist": 60_000 - 5000}


def adaptation_budget(task: str) -> dict[str, float]:
    """The quickstart's adaptation in epochs, except on a large set, where it is the optimiser steps that
    ``nat search --data`` gives any set (210 initial, 140 per iteration: the quickstart's on mnist5k).
    The quickstart's epochs on Fashion-MNIST's 55,000 images are 12x the steps, an hour per arm here."""
    if task not in TRAIN_IMAGES:
        return {}
    steps_per_epoch = TRAIN_IMAGES[task] // 64
    return {
        "initial_epochs": round(INITIAL_STEPS / steps_per_epoch, 4),
        "epochs": round(ITERATION_STEPS / steps_per_epoch, 4),
    }


QUICK = {
    "initial_samples": 8,
    "iterations": 2,
    "candidates_per_iteration": 2,
    "adaptation": {"max_steps": 3},
    "nsga3": {"pop_size": 12, "generations": 3},
    "evaluation": {"calibration_images": 32},
}


def arms(source: str) -> dict[str, dict[str, Any] | None]:
    """The warm-start settings of each arm (None: cold)."""
    runs = [source]
    return {
        "cold": None,
        "default": {"runs": runs},  # nat's defaults: archive (half) and supernet (the source's)
        "archive": {"runs": runs, "surrogate": False, "supernet": None},
        "surrogate": {"runs": runs, "archive": 0, "surrogate": True, "supernet": None},
        "supernet": {"runs": runs, "archive": 0, "surrogate": False, "supernet": source},
        "archive+surrogate": {"runs": runs, "surrogate": True, "supernet": None},
        "all": {"runs": runs, "surrogate": True, "supernet": source},
    }


def settings(task: str, seed: int, threads: int, quick: bool, models: int) -> dict[str, Any]:
    data = {**DATA[task], "train_batch_size": 64, "eval_batch_size": 500}
    if quick:
        data["val_size"] = 100
    base = {"seed": seed, "threads": threads, "device": "cpu", "data": data}
    if adaptation_budget(task):
        base["adaptation"] = adaptation_budget(task)
    base.update(QUICK if quick else {})
    return {**base, "finalize": {"models": models, "finetune_epochs": 0.0}}


def evaluations_until(run: Path, target: float) -> int | None:
    """Archive records written by the end of the first iteration whose hypervolume reached ``target``."""
    history = read_state(run / "state.json")["history"]
    reached = next((int(h["iteration"]) for h in history if h["hypervolume"] >= target - 1e-12), None)
    if reached is None:
        return None
    lines = [json.loads(line) for line in (run / "archive.jsonl").read_text().splitlines()]
    return sum(1 for r in lines if int(r["iteration"]) <= reached)


def matched(cold: list[dict], warm: list[dict]) -> float | None:
    diffs = []
    for m in cold:
        within = [w["test_top1"] for w in warm if w["madds"] <= m["madds"]]
        if within:
            diffs.append(max(within) - m["test_top1"])
    return float(np.mean(diffs)) if diffs else None


def one(task: str, seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    source_task = SOURCE_OF[task]
    preset_models = load_config(preset="quickstart").finalize.models
    source = work / f"source_{source_task}_{seed}"
    source_config = load_config(
        preset="quickstart", overrides={**settings(source_task, seed, args.threads, args.quick, 0)}
    )
    run_search(source_config, source)  # reused when --keep holds it finished
    rows: dict[str, Any] = {}
    for arm, warm in arms(str(source)).items():
        if args.arms and arm != "cold" and arm not in args.arms:
            continue
        overrides = settings(task, seed, args.threads, args.quick, preset_models)
        if warm is not None:
            overrides["warm_start"] = warm
        out = work / f"{task}_{arm}_{seed}"
        run_search(load_config(preset="quickstart", overrides=overrides), out)
        state = read_state(out / "state.json")
        rows[arm] = {
            "final_hypervolume": state["hypervolume"],
            "evaluations": len((out / "archive.jsonl").read_text().splitlines()),
            "seconds_to_front": round(state["elapsed_s"], 1),
            "surrogates": [h.get("surrogate") for h in state["history"] if "surrogate" in h],
            "models": [
                {k: m[k] for k in ("name", "madds", "test_top1")}
                for m in json.loads((out / "models.json").read_text())
            ],
        }
    cold = rows["cold"]
    for arm, row in rows.items():
        if arm == "cold":
            continue
        needed = evaluations_until(work / f"{task}_{arm}_{seed}", cold["final_hypervolume"])
        row["evaluations_to_cold_final"] = needed
        row["evaluations_ratio"] = None if needed is None else needed / cold["evaluations"]
        row["final_hypervolume_ratio"] = row["final_hypervolume"] / cold["final_hypervolume"]
        row["matched_madds_test_top1"] = matched(cold["models"], row["models"])
        print(
            f"{task} seed {seed} {arm}: evaluations ratio {row['evaluations_ratio']}, "
            f"final HV ratio {row['final_hypervolume_ratio']:.4f}, matched test top-1 "
            f"{row['matched_madds_test_top1']}",
            flush=True,
        )
    return {"source": source_task, "arms": rows}


def summarise(per_seed: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per target and arm, each ratio's per-seed values and mean (None where a seed never reached)."""
    out: dict[str, Any] = {}
    for seed, targets in per_seed.items():
        for task, result in targets.items():
            for arm, row in result["arms"].items():
                if arm == "cold":
                    continue
                cell = out.setdefault(task, {}).setdefault(arm, {})
                for key in ("evaluations_ratio", "final_hypervolume_ratio", "matched_madds_test_top1"):
                    cell.setdefault(key, {"per_seed": {}})["per_seed"][seed] = row[key]
    for arms_ in out.values():
        for cell in arms_.values():
            for stat in cell.values():
                known = [v for v in stat["per_seed"].values() if v is not None]
                stat["mean"] = float(np.mean(known)) if known else None
                stat["reached"] = f"{len(known)}/{len(stat['per_seed'])}"
    return out


def combine(files: list[Path], out: Path) -> int:
    parts = [json.loads(f.read_text()) for f in files]
    per_seed: dict[str, dict[str, Any]] = {}  # files may hold other targets or arms of a seed: merged
    for part in parts:
        for seed, targets in part["per_seed"].items():
            for task, result in targets.items():
                known = per_seed.setdefault(seed, {}).setdefault(task, {**result, "arms": {}})
                if known["arms"].get("cold", result["arms"]["cold"]) != result["arms"]["cold"]:
                    raise SystemExit(f"seed {seed}, {task}: the files hold different cold runs")
                known["arms"].update(result["arms"])
    result = {k: v for k, v in parts[0].items() if k not in ("per_seed", "targets")}
    commits: set[str] = set()  # a file combined before holds a list already
    for part in parts:
        commits.update(part["commit"] if isinstance(part["commit"], list) else [str(part["commit"])])
    result["commit"] = sorted(commits)
    result.update(
        {"targets": summarise(per_seed), "per_seed": per_seed, "combined_from": [f.name for f in files]}
    )
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", nargs="+", default=["digits"], choices=sorted(DATA))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--keep", type=Path)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--arms", nargs="+", help="run only these arms (cold is always run: the others compare with it)"
    )
    parser.add_argument("--combine", type=Path, nargs="+", metavar="FILE")
    args = parser.parse_args()
    if args.combine:
        return combine(args.combine, args.out or RESULTS / "warm_start.json")
    out = args.out or RESULTS / ("warm_start_quick.json" if args.quick else "warm_start.json")
    commit = code_version()  # the code this process runs (read before the runs, not after)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        per_seed = {str(s): {t: one(t, s, args, work) for t in args.targets} for s in args.seeds}
    result = {
        "question": "warm start from a run on another task vs a cold start of the same budget (issue 41)",
        "preset": "quickstart" + (" (--quick: cut to seconds)" if args.quick else ""),
        "machine": machine(),
        "threads": args.threads,
        "commit": commit,
        "targets": summarise(per_seed),
        "per_seed": per_seed,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    for task, arms_ in result["targets"].items():
        for arm, cell in arms_.items():
            ratios = {k: cell[k]["mean"] for k in cell}
            print(f"{task} {arm}: {ratios}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
