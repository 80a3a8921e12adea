"""Many-task NAT against single-task runs with the same evaluation budget (issue 20).

One many-task run searches mnist5k, digits and Fashion-MNIST at once (objectives: each task's top-1 and
MAdds, 4 in all) from nat's shipped Fashion-MNIST supernet; three single-task runs search each task
alone with the same settings, so each evaluates as many subnets as the many-task run did (which
measures every subnet on all three tasks: the four runs cost about the same in all). Every run then
turns its front into models (as adapted, BN recalibrated, no fine-tuning) tested on the task's test
split. Per task, the many-task run's models are compared with the single-task run's at matched MAdds:
for each MAdds budget, the best test top-1 of a model within it.

    python bench/many_task.py [--seed 0] [--threads 1] [--tasks mnist5k digits fashion-mnist]
                              [--candidate-selection hypervolume|task_hypervolume|reference_directions]
                              [--single-from EARLIER.json] [--keep DIR] [--out FILE.json] [--quick]

``--candidate-selection`` is the many-task run's rule (a single-task run's ``task_hypervolume`` is its
``hypervolume``, so single-task runs always use that). ``--single-from`` reuses the single-task runs of an
earlier result with the same settings, seed and tasks instead of running them again (they do not depend
on the many-task run's rule).

Writes bench/results/many_task.json (``--quick``: a seconds-long smoke check, written to
bench/results/many_task_quick.json). Fashion-MNIST must be installed (Debian: dataset-fashion-mnist).
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.runtime.threads import torch_threads  # noqa: E402
from nat.search import NATSearch, load_config  # noqa: E402
from record import code_version, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TASKS = {
    "mnist5k": {"dataset": "mnist5k", "val_size": 500},
    "digits": {"dataset": "digits", "val_size": 300, "rrc_scale": [0.6, 1.0]},
    "fashion-mnist": {"dataset": "fashion-mnist", "val_size": 5000},
}
COMMON_DATA = {"train_batch_size": 64, "eval_batch_size": 500, "rrc_scale": [0.8, 1.0]}


def settings(seed: int, threads: int, quick: bool) -> dict[str, Any]:
    """The run settings every run shares (the quickstart's, smaller: four runs must fit in minutes)."""
    return {
        "seed": seed,
        "device": "cpu",
        "threads": threads,
        "supernet": "builtin:fashion_mnist_tiny",
        "space": {"resolutions": [24, 28, 32]},  # the shipped supernet's trained resolutions
        "initial_samples": 6 if quick else 16,
        "iterations": 1 if quick else 5,
        "candidates_per_iteration": 2 if quick else 6,
        "surrogate": {"folds": 3 if quick else 4},
        "nsga3": {"pop_size": 16 if quick else 60, "generations": 4 if quick else 30},
        "adaptation": {
            "initial_epochs": 3.0,
            "epochs": 1.0,
            "lr": 0.02,
            "uniform_mix": 0.3,
            "max_steps": 4 if quick else 120,  # per adaptation: Fashion-MNIST's epoch is 860 steps
        },
        "evaluation": {
            "calibration_images": 64 if quick else 256,
            "max_val_images": 200 if quick else 1000,
            "reevaluate": "front",
        },
        "finalize": {"models": 3 if quick else 6, "finetune_epochs": 0.0},
    }


def task_data(name: str) -> dict[str, Any]:
    return {**COMMON_DATA, **TASKS[name], "name": name}


def run(config: dict[str, Any], out: Path) -> tuple[NATSearch, float]:
    start = time.perf_counter()
    with NATSearch(load_config(overrides=config), out) as search:
        search.run()
    return search, time.perf_counter() - start


def model_rows(models: list[dict[str, Any]], task: str | None = None) -> list[dict[str, Any]]:
    return [
        {"name": m["name"], "madds": m["madds"], "val_top1": m["top1"], "test_top1": m["test_top1"]}
        for m in models
        if task is None or m.get("task") == task
    ]


def best_within(rows: list[dict[str, Any]], budget: float) -> float | None:
    fits = [r["test_top1"] for r in rows if r["madds"] <= budget]
    return max(fits) if fits else None


def compare(many: list[dict[str, Any]], single: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Best test top-1 within each MAdds budget (every model's MAdds of either run is a budget)."""
    budgets = sorted({r["madds"] for r in many + single})
    out = []
    for b in budgets:
        m, s = best_within(many, b), best_within(single, b)
        out.append(
            {
                "madds_budget": b,
                "many_task_test_top1": m,
                "single_task_test_top1": s,
                "difference": None if m is None or s is None else m - s,
            }
        )
    return out


def same_source(earlier: str | None, code: str) -> bool:
    """Whether two clean commits have the same ``src/`` tree: what a reused single-task run's figures
    depend on besides its settings (which the caller compares), so commits of documentation or of other
    benchmarks in between do not matter."""
    if not earlier or earlier.endswith("+changes") or earlier == "unknown":
        return False
    if earlier == code:
        return True
    try:
        trees = [
            subprocess.run(
                ["git", "rev-parse", f"{commit}:src"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            for commit in (earlier, code)
        ]
    except (OSError, subprocess.CalledProcessError):
        return False
    return trees[0] == trees[1]


def reusable_single_runs(path: Path, base: dict[str, Any], tasks: list[str], code: str) -> dict[str, Any]:
    """The per-task results of an earlier run of this benchmark, if it used these settings and tasks and
    the same code (a code change can change every measured figure: seen on 2026-12-04)."""
    try:
        earlier = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"--single-from {path}: cannot read it ({exc})") from None
    if earlier.get("settings") != base or earlier.get("tasks") != tasks:
        raise SystemExit(
            f"--single-from {path}: it was run with other settings, seed or tasks; its single-task runs "
            "are not the ones this run would make"
        )
    if code == "unknown" or code.endswith("+changes") or not same_source(earlier.get("code"), code):
        raise SystemExit(
            f"--single-from {path}: it was made by code {earlier.get('code', 'not recorded')}, this is "
            f"{code}; single-task runs are reused only from a clean commit with the same src/"
        )
    return earlier["per_task"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--tasks", nargs="+", choices=list(TASKS), default=list(TASKS), help="the tasks, in this order"
    )
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/many_task.json")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke check (seconds, not figures)")
    parser.add_argument(
        "--candidate-selection",
        choices=["hypervolume", "task_hypervolume", "reference_directions"],
        default="hypervolume",
        help="the many-task run's candidate selection (default: nat's default, hypervolume)",
    )
    parser.add_argument(
        "--many-elite-fraction",
        type=float,
        default=None,
        help="the many-task run's adaptation.elite_fraction (default: nat's, as in the single-task runs)",
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep the run folders here (default: a temporary folder)"
    )
    parser.add_argument(
        "--single-from",
        type=Path,
        default=None,
        help="reuse the single-task runs of this earlier result (same settings, seed and tasks)",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    base = settings(args.seed, args.threads, args.quick)
    code = code_version()
    earlier = reusable_single_runs(args.single_from, base, args.tasks, code) if args.single_from else None
    result: dict[str, Any] = {
        "settings": base,
        "tasks": args.tasks,
        "threads": args.threads,
        "candidate_selection": args.candidate_selection,
        "many_task_elite_fraction": args.many_elite_fraction,
        "code": code,
        "models": "front members as adapted (BN recalibrated, no fine-tuning), test split",
    }
    if earlier is not None:
        result["single_task_runs_from"] = str(args.single_from)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    folder = tempfile.TemporaryDirectory() if args.keep is None else nullcontext(str(args.keep))
    with (
        torch_threads(args.threads),
        folder as tmp,
    ):
        many_config = {**base, "candidate_selection": args.candidate_selection}
        if args.many_elite_fraction is not None:
            many_config["adaptation"] = {**base["adaptation"], "elite_fraction": args.many_elite_fraction}
        many, many_s = run({**many_config, "data": [task_data(t) for t in args.tasks]}, Path(tmp) / "many")
        evaluations = len(many.archive.current())
        result["many_task"] = {
            "seconds": round(many_s, 1),
            "objectives": many.objectives.names,
            "evaluated_subnets": evaluations,
            "measurements": len(many.archive.records),
            "front_size": len(many.front()),
        }
        per_task: dict[str, Any] = {}
        total_single = 0.0
        for task in args.tasks:
            if earlier is None:
                single, single_s = run({**base, "data": task_data(task)}, Path(tmp) / task)
                single_rows, single_evaluated = model_rows(single.models), len(single.archive.current())
            else:
                single_s = earlier[task]["single_task_seconds"]
                single_rows = earlier[task]["single_task_models"]
                single_evaluated = earlier[task]["single_task_evaluated_subnets"]
            total_single += single_s
            many_rows = model_rows(many.models, task)
            rows = compare(many_rows, single_rows)
            diffs = [r["difference"] for r in rows if r["difference"] is not None]
            per_task[task] = {
                "single_task_seconds": round(single_s, 1),
                "single_task_evaluated_subnets": single_evaluated,
                "many_task_models": many_rows,
                "single_task_models": single_rows,
                "matched_madds": rows,
                "mean_difference": sum(diffs) / len(diffs) if diffs else None,
                "best_test_top1": {
                    "many_task": max(r["test_top1"] for r in many_rows),
                    "single_task": max(r["test_top1"] for r in single_rows),
                },
            }
        result["per_task"] = per_task
        result["single_task_seconds_total"] = round(total_single, 1)
    out = args.out or RESULTS / ("many_task_quick.json" if args.quick else "many_task.json")
    write_result(out, result, indent=2, threads=args.threads, commit=code)
    print(
        f"many-task run: {result['many_task']['seconds']} s, {evaluations} subnets x "
        f"{len(args.tasks)} tasks; "
        f"single-task runs: {result['single_task_seconds_total']} s in all"
    )
    for task, r in per_task.items():
        mean = r["mean_difference"]
        print(
            f"  {task:<14} best test top-1 many {100 * r['best_test_top1']['many_task']:.2f}% / single "
            f"{100 * r['best_test_top1']['single_task']:.2f}%; mean difference at matched MAdds "
            f"{'-' if mean is None else f'{100 * mean:+.2f} points'}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
