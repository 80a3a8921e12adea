"""Search efficiency: hypervolume after each real evaluation, NAT against random search.

One supernet, one task, the same evaluator, no adaptation (weights fixed), so the only difference is
how the subnets to evaluate are chosen. Hypervolume is over (top-1 error, MAdds / MAdds of the largest
subnet) with reference point 1.1. Target (issue 5): NAT reaches random search's final hypervolume
with at most 1/5 of random search's evaluations.

The supernet is bench/data/supernet_fmnist_tiny_s2.safetensors (Fashion-MNIST, bench/data/README.md);
every subnet is measured on its 10,000 held-out training images (``--split-seed`` and ``--val-images``
reproduce the hold-out it was pretrained with), so one measurement's standard error is ~0.35 points
and the fronts compare search strategies rather than lucky measurement noise.

    python bench/search_efficiency.py [--random-evals 200] [--nat-evals 64] [--selection hypervolume]
    python bench/search_efficiency.py --selection reference_directions \
        --random-cache bench/results/search_efficiency.json --out /tmp/paper_rule.json

Writes bench/results/search_efficiency.json (``--out``).
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
from record import code_version, write_result  # noqa: E402

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
        "data": {
            "dataset": args.dataset,
            "val_size": args.val_images,
            "split_seed": args.split_seed,
            "eval_batch_size": 500,
        },
        "objectives": ["top1", "madds"],
        "initial_samples": initial,
        "iterations": max(0, (evals - initial) // per_iter),
        "candidates_per_iteration": per_iter,
        "adaptation": {"initial_epochs": 0, "epochs": 0},
        "evaluation": {"calibration_images": args.calibration_images, "reevaluate": "none"},
        "nsga3": {"pop_size": args.pop_size, "generations": args.generations},
        "candidate_selection": args.selection,
        "finalize": {"models": 0},  # only the search is measured
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
    parser.add_argument("--supernet", default="bench/data/supernet_fmnist_tiny_s2.safetensors")
    parser.add_argument("--dataset", default="fashion-mnist")
    parser.add_argument("--random-evals", type=int, default=200)
    parser.add_argument("--nat-evals", type=int, default=64)
    parser.add_argument("--initial", type=int, default=16)
    parser.add_argument("--candidates", type=int, default=8)
    parser.add_argument(
        "--val-images",
        type=int,
        default=10000,
        help="held-out images every subnet is measured on (the supernet's own pretraining hold-out)",
    )
    parser.add_argument(
        "--split-seed", type=int, default=0, help="seed of that hold-out (the supernet's pretraining seed)"
    )
    parser.add_argument("--calibration-images", type=int, default=500)
    parser.add_argument("--pop-size", type=int, default=60, help="NSGA-III population on the surrogate")
    parser.add_argument("--generations", type=int, default=30, help="NSGA-III generations on the surrogate")
    parser.add_argument("--selection", choices=["hypervolume", "reference_directions"], default="hypervolume")
    parser.add_argument(
        "--random-cache",
        type=Path,
        default=None,
        help="reuse random search's curve from an earlier result JSON with the same settings",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    commit = code_version()  # the code this process runs (read before the runs, not after)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    settings = {
        k: getattr(args, k)
        for k in (
            "supernet",
            "dataset",
            "random_evals",
            "initial",
            "candidates",
            "val_images",
            "split_seed",
            "calibration_images",
            "seed",
        )
    }
    cached = json.loads(args.random_cache.read_text()) if args.random_cache else None
    with tempfile.TemporaryDirectory() as tmp:
        if cached is not None and cached.get("random_settings") == settings:
            random_hv, random_s = cached["random"]["hypervolume"], cached["random"]["seconds"]
            print(f"random search: reusing the curve in {args.random_cache}")
        else:
            if cached is not None:
                print(f"random search: {args.random_cache} was made with other settings; running it")
            random_hv, random_s = run("random", args.random_evals, args, Path(tmp))
        nat_hv, nat_s = run("nat", args.nat_evals, args, Path(tmp))
    target = random_hv[-1]
    reached = next((i + 1 for i, hv in enumerate(nat_hv) if hv >= target), None)
    result = {
        "supernet": args.supernet,
        "dataset": args.dataset,
        "seed": args.seed,
        "candidate_selection": args.selection,
        "nat_settings": {
            "candidate_selection": args.selection,
            "nsga3": {"pop_size": args.pop_size, "generations": args.generations},
            "evaluations": args.nat_evals,
        },
        "random_settings": settings,
        "objectives": ["top1_error", "madds"],
        "random": {"evaluations": len(random_hv), "hypervolume": random_hv, "seconds": random_s},
        "nat": {"evaluations": len(nat_hv), "hypervolume": nat_hv, "seconds": nat_s},
        "random_final_hypervolume": target,
        "nat_evaluations_to_reach_random_final": reached,
        "ratio": (reached / len(random_hv)) if reached else None,
        "target_ratio": 0.2,
        "target_met": bool(reached and reached <= 0.2 * len(random_hv)),
    }
    write_result(args.out, result, threads=args.threads, commit=commit)
    print(f"random search: {len(random_hv)} evaluations, final hypervolume {target:.4f}")
    print(f"NAT          : {len(nat_hv)} evaluations, final hypervolume {nat_hv[-1]:.4f}")
    if reached:
        print(
            f"NAT reached random search's final hypervolume after {reached} evaluations "
            f"({100 * reached / len(random_hv):.0f}% of random's budget; target <= 20%)"
        )
    else:
        print("NAT did not reach random search's final hypervolume within its budget")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
