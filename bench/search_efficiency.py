"""Search efficiency: hypervolume after each real evaluation, NAT against random search.

One supernet, one task, the same evaluator, no adaptation (weights fixed), so the only difference is
how the subnets to evaluate are chosen. Hypervolume is over (top-1 error, MAdds / MAdds of the largest
subnet) with reference point 1.1. Target (issue 5): NAT reaches random search's final hypervolume
with at most 1/5 of random search's evaluations.

    python bench/search_efficiency.py [--random-evals 200] [--nat-evals 80] [--supernet builtin:...]

Writes bench/results/search_efficiency.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.search import Archive, NATSearch, load_config  # noqa: E402

RESULT = ROOT / "bench" / "results" / "search_efficiency.json"


def hv_curve(search: NATSearch) -> list[float]:
    """Hypervolume of the archive's front after each evaluation, in evaluation order."""
    records = Archive(search.out / "archive.jsonl").records
    return [search.hypervolume(records[: i + 1]) for i in range(len(records))]


def run(strategy: str, evals: int, args: argparse.Namespace, workdir: Path) -> tuple[list[float], float]:
    initial = args.initial
    per_iter = args.candidates
    overrides = {
        "seed": args.seed,
        "device": "cpu",
        "supernet": args.supernet,
        "strategy": strategy,
        "data": {"dataset": args.dataset, "val_size": args.val_images, "eval_batch_size": 500},
        "objectives": ["top1", "madds"],
        "initial_samples": initial,
        "iterations": max(0, (evals - initial) // per_iter),
        "candidates_per_iteration": per_iter,
        "adaptation": {"initial_epochs": 0, "epochs": 0},
        "evaluation": {"calibration_images": args.calibration_images, "reevaluate": "none"},
        "nsga3": {"pop_size": 60, "generations": 30},
    }
    config = load_config(overrides=overrides)
    out = workdir / strategy
    shutil.rmtree(out, ignore_errors=True)
    start = time.time()
    search = NATSearch(config, out)
    search.run()
    return hv_curve(search), time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--supernet", default="builtin:fashion_mnist_tiny")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--random-evals", type=int, default=200)
    parser.add_argument("--nat-evals", type=int, default=64)
    parser.add_argument("--initial", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument("--val-images", type=int, default=1000)
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        random_hv, random_s = run("random", args.random_evals, args, Path(tmp))
        nat_hv, nat_s = run("nat", args.nat_evals, args, Path(tmp))
    target = random_hv[-1]
    reached = next((i + 1 for i, hv in enumerate(nat_hv) if hv >= target), None)
    result = {
        "supernet": args.supernet,
        "dataset": args.dataset,
        "seed": args.seed,
        "objectives": ["top1_error", "madds"],
        "random": {"evaluations": len(random_hv), "hypervolume": random_hv, "seconds": random_s},
        "nat": {"evaluations": len(nat_hv), "hypervolume": nat_hv, "seconds": nat_s},
        "random_final_hypervolume": target,
        "nat_evaluations_to_reach_random_final": reached,
        "ratio": (reached / len(random_hv)) if reached else None,
        "target_ratio": 0.2,
        "target_met": bool(reached and reached <= 0.2 * len(random_hv)),
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=1))
    print(f"random search: {len(random_hv)} evaluations, final hypervolume {target:.4f}")
    print(f"NAT          : {len(nat_hv)} evaluations, final hypervolume {nat_hv[-1]:.4f}")
    if reached:
        print(
            f"NAT reached random search's final hypervolume after {reached} evaluations "
            f"({100 * reached / len(random_hv):.0f}% of random's budget; target <= 20%)"
        )
    else:
        print("NAT did not reach random search's final hypervolume within its budget")
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
