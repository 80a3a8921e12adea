"""Re-evaluation policies after each adaptation: what they cost and what they give up (issue 43, part 2).

The paper re-measures every archive member after every adaptation (``evaluation.reevaluate: all``); at
the paper's scale those re-measurements are most of a search's evaluations (docs/scale.md). This
benchmark runs whole searches (the quickstart preset, to the end: fine-tuned, tested models) under each
policy and seed and reports, per run:

* ``evaluations``: subnet measurements in the archive (predicted values are not measurements), and the
  re-measurements among them; ``reevaluation_s``: seconds the runs spent re-measuring (the run's own
  phase clock);
* ``archive_tau``: Kendall tau between the archive's final top-1 values (as the surrogate saw them:
  measured or predicted) and every member re-measured on the final supernet (1.0 for ``all``, whose
  values were all measured on it);
* ``test_hypervolume``: of the delivered models' (test error, MAdds / MAdds of the largest subnet),
  reference point 1.1: the front a user gets; ``paired``: ``predicted`` minus ``all`` per seed, its mean
  and 95% t-interval.

    python bench/reevaluation.py [--policies all predicted] [--seeds 0 1 2 3 4 5] [--jobs 2] [--quick]
        [--initial-samples N] [--iterations N] [--candidates N] [--adaptation-epochs E]

Writes bench/results/reevaluation.json (``--out``). ``--quick``: the smoke preset, one seed. The count
options replace the preset's: ``--initial-samples 100 --iterations 30 --candidates 8
--adaptation-epochs 1`` are the paper's counts (an archive of 100 growing to 340), where the
re-evaluations are most of a search (bench/results/reevaluation_paper_counts.json).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

RESULT = ROOT / "bench" / "results" / "reevaluation.json"


def config_for(policy: str, seed: int, quick: bool, counts: dict[str, Any] | None = None):
    """The run's config: the preset, the policy and seed, and ``counts`` (top-level settings such as
    ``iterations``, and ``adaptation_epochs``) replacing the preset's."""
    from nat.search import load_config

    counts = dict(counts or {})
    overrides: dict[str, Any] = {
        "seed": seed,
        "device": "cpu",
        "threads": 1,
        "evaluation": {"reevaluate": policy},
    }
    if "adaptation_epochs" in counts:
        overrides["adaptation"] = {"epochs": counts.pop("adaptation_epochs")}
    overrides.update(counts)
    if quick:
        return load_config(preset="smoke", overrides=overrides)
    overrides["evaluation"]["calibration_images"] = 256  # the quickstart's own setting, kept
    return load_config(preset="quickstart", overrides=overrides)


def one_run(policy: str, seed: int, quick: bool, work: str, counts: dict[str, Any]) -> dict[str, Any]:
    """One search to the end, then its archive re-measured on the final supernet."""
    from scipy.stats import kendalltau

    from nat.runs import run_search
    from nat.search.archive import Archive, Phase
    from nat.search.front import hypervolume
    from nat.search.parts import RunParts
    from nat.search.rundir import RunDir
    from nat.space import Subnet

    torch.set_num_threads(1)
    config = config_for(policy, seed, quick, counts)
    out = Path(work) / f"{policy}_seed{seed}"
    start = time.perf_counter()
    result = run_search(config, out)
    seconds = time.perf_counter() - start
    archive = Archive(out / "archive.jsonl", read_only=True)
    history = json.loads((out / "state.json").read_text())["history"]
    current = archive.current()
    parts = RunParts.build(config, RunDir.open(out))
    truth = [parts.evaluator.top1(r.subnet) for r in current]
    largest = parts.objectives.exact_values(Subnet.largest(parts.space))["madds"]
    models = result.models
    F = np.array([[1 - m["test_top1"], m["madds"] / largest] for m in models])
    return {
        "policy": policy,
        "seed": seed,
        "seconds": seconds,
        "evaluations": archive.evaluations(),
        "reevaluations": sum(r.phase == Phase.REEVAL for r in archive.records),
        "predicted": sum(r.phase == Phase.PREDICTED for r in archive.records),
        "reevaluation_s": float(sum(h.get("seconds", {}).get("reevaluation", 0.0) for h in history)),
        "archive_members": len(current),
        "archive_tau": float(kendalltau([r.top1 for r in current], truth).statistic),
        "archive_mean_abs_gap_points": float(
            100 * np.mean(np.abs(np.array([r.top1 for r in current]) - truth))
        ),
        "test_hypervolume": hypervolume(F),
        "best_test_top1": max(m["test_top1"] for m in models),
        "models": [{"name": m["name"], "madds": m["madds"], "test_top1": m["test_top1"]} for m in models],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--policies", nargs="+", default=["all", "predicted"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--jobs", type=int, default=2, help="runs at once, one torch thread each")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--initial-samples", type=int, help="replaces the preset's initial_samples")
    parser.add_argument("--iterations", type=int, help="replaces the preset's iterations")
    parser.add_argument("--candidates", type=int, help="replaces the preset's candidates_per_iteration")
    parser.add_argument("--adaptation-epochs", type=float, help="replaces the preset's adaptation.epochs")
    args = parser.parse_args()
    given = {
        "initial_samples": args.initial_samples,
        "iterations": args.iterations,
        "candidates_per_iteration": args.candidates,
        "adaptation_epochs": args.adaptation_epochs,
    }
    counts = {k: v for k, v in given.items() if v is not None}
    from record import code_version, machine, write_result

    seeds = args.seeds[:1] if args.quick else args.seeds
    todo = [(p, s) for s in seeds for p in args.policies]
    with tempfile.TemporaryDirectory() as work, ProcessPoolExecutor(args.jobs) as pool:
        futures = [pool.submit(one_run, p, s, args.quick, work, counts) for p, s in todo]
        runs = [f.result() for f in futures]
    summary = {}
    for policy in args.policies:
        rows = [r for r in runs if r["policy"] == policy]
        summary[policy] = {
            key: float(np.mean([r[key] for r in rows]))
            for key in (
                "evaluations",
                "reevaluations",
                "reevaluation_s",
                "seconds",
                "archive_tau",
                "test_hypervolume",
            )
        }
        summary[policy]["test_hypervolume_std"] = float(np.std([r["test_hypervolume"] for r in rows]))
        print(f"{policy}: " + ", ".join(f"{k} {v:.3f}" for k, v in summary[policy].items()), flush=True)
    paired = {}
    if {"all", "predicted"} <= set(args.policies) and len(seeds) > 1:
        from scipy.stats import t

        by = {(r["policy"], r["seed"]): r for r in runs}
        diffs = np.array(
            [by["predicted", s]["test_hypervolume"] - by["all", s]["test_hypervolume"] for s in seeds]
        )
        half = t.ppf(0.975, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
        paired = {
            "test_hypervolume_difference": float(diffs.mean()),
            "ci95": [float(diffs.mean() - half), float(diffs.mean() + half)],
            "per_seed": diffs.tolist(),
        }
        print(f"predicted - all, test hypervolume: {diffs.mean():+.4f} (95% CI {paired['ci95']})", flush=True)
    record = {
        "question": "re-evaluation policies after adaptation: cost against fidelity (issue 43, part 2)",
        "preset": "smoke" if args.quick else "quickstart",
        "counts": counts,
        "seeds": seeds,
        "threads": 1,
        "jobs": args.jobs,
        "commit": code_version(),
        "machine": machine(),
        "summary": summary,
        "paired": paired,
        "runs": runs,
    }
    out = args.out or (RESULT.with_name("reevaluation_quick.json") if args.quick else RESULT)
    write_result(out, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
