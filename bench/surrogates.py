"""Benchmark the accuracy surrogates on real supernet measurements.

For each training size (50, 100, 200 by default) and several random splits, every model is fitted on
``size`` measured subnets and judged on all the others (Kendall tau, Spearman rho, RMSE); ``ensemble``
is the mean of rbf/gp/cart/mlp, ``adaptive`` is NAT's switching over rbf/gp/cart/mlp/ensemble by
5-fold CV (3 repeats). The targets compare adaptive with the best *single* model (rbf, gp, cart, mlp,
ofa_mlp) and with OFA's recipe. Then each model, fitted on 200 points, predicts
10,000 random genomes and the wall time is recorded. Prints a summary and writes
``bench/results/surrogates.json``::

    {"sizes": {"50": {MODEL: {"tau": .., "rho": .., "rmse": .., ...}, ...}, "100": ..., "200": ...},
     "predict_10k_seconds": {MODEL: ..}, ...}

The data set is made by ``bench/make_surrogate_data.py`` (see bench/data/README.md).

    python bench/surrogates.py [--splits 10] [--seed 0] [--csv bench/data/fmnist_s2_subnets.csv]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from nat.space import SearchSpace, genome_length, get_space, sample_genomes
from nat.surrogates import kendall_tau, make_surrogate, rmse, spearman_rho
from record import write_result

HERE = Path(__file__).resolve().parent
DEFAULT_CSV = HERE / "data" / "fmnist_s2_subnets.csv"
DEFAULT_OUT = HERE / "results" / "surrogates.json"
SINGLE = ("rbf", "gp", "cart", "mlp", "ofa_mlp")
MODELS = (*SINGLE, "ensemble", "adaptive")
TAU_GAP = 0.02  # adaptive must be within this of the best single model
PREDICT_LIMIT_S = 0.5


def load_data(path: Path) -> tuple[SearchSpace, np.ndarray, np.ndarray, dict]:
    """Genomes, top-1 and metadata from the CSV and its JSON sidecar (which holds the search space)."""
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        sys.exit(
            f"error: surrogate data set not found: {path} (and its {meta_path.name} sidecar).\n"
            "Make it with `python bench/make_surrogate_data.py` (about 25 minutes on 2 CPU cores), "
            "see bench/data/README.md."
        )
    meta = json.loads(meta_path.read_text())
    space = get_space(meta["space"])
    length = genome_length(space)
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    genomes = np.array([[int(r[f"g{j}"]) for j in range(length)] for r in rows], dtype=np.int64)
    top1 = np.array([float(r["top1"]) for r in rows])
    return space, genomes, top1, meta


def evaluate(
    space: SearchSpace, genomes: np.ndarray, top1: np.ndarray, sizes: list[int], splits: int, seed: int
) -> dict[str, dict[str, dict]]:
    """Mean (and spread) of each metric over ``splits`` random train/test splits per size."""
    out: dict[str, dict[str, dict]] = {}
    for size in sizes:
        if size >= len(genomes):
            print(f"skipping size {size}: only {len(genomes)} subnets in the data set")
            continue
        per: dict[str, dict[str, list]] = {m: {"tau": [], "rho": [], "rmse": [], "fit_s": []} for m in MODELS}
        chosen: Counter[str] = Counter()
        for split in range(splits):
            perm = np.random.default_rng(seed + 1000 * split + size).permutation(len(genomes))
            train, test = perm[:size], perm[size:]
            for name in MODELS:
                start = time.perf_counter()
                model = make_surrogate(name, space, seed=seed + split).fit(genomes[train], top1[train])
                fit_s = time.perf_counter() - start
                pred = model.predict(genomes[test])
                per[name]["tau"].append(kendall_tau(top1[test], pred))
                per[name]["rho"].append(spearman_rho(top1[test], pred))
                per[name]["rmse"].append(rmse(top1[test], pred))
                per[name]["fit_s"].append(fit_s)
                if name == "adaptive":
                    chosen[model.report.chosen] += 1
            line = "  ".join(f"{m} {per[m]['tau'][-1]:.3f}" for m in MODELS)
            print(
                f"size {size:>3} split {split}: tau  {line}  (adaptive chose {model.report.chosen})",
                flush=True,
            )
        out[str(size)] = {
            name: {
                "tau": float(np.mean(v["tau"])),
                "rho": float(np.mean(v["rho"])),
                "rmse": float(np.mean(v["rmse"])),
                "tau_std": float(np.std(v["tau"])),
                "fit_seconds": float(np.mean(v["fit_s"])),
            }
            for name, v in per.items()
        }
        out[str(size)]["adaptive"]["chosen"] = dict(chosen)
    return out


def predict_times(space: SearchSpace, genomes: np.ndarray, top1: np.ndarray, seed: int) -> dict[str, float]:
    """Median of 3 timed predictions of 10,000 random genomes per model (fitted on up to 200 points)."""
    n = min(200, len(genomes))
    many = sample_genomes(space, 10_000, np.random.default_rng(seed))
    times = {}
    for name in MODELS:
        model = make_surrogate(name, space, seed=seed).fit(genomes[:n], top1[:n])
        model.predict(many[:10])  # warm-up (lazy imports, first-call allocations)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            model.predict(many)
            runs.append(time.perf_counter() - start)
        times[name] = float(np.median(runs))
    return times


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--csv", type=Path, default=DEFAULT_CSV)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--sizes", default="50,100,200")
    p.add_argument("--splits", type=int, default=10)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)

    space, genomes, top1, meta = load_data(args.csv)
    print(
        f"{len(genomes)} subnets of space '{space.name}' on {meta.get('dataset')}: top-1 "
        f"{top1.min():.2f}..{top1.max():.2f} (mean {top1.mean():.2f}, std {top1.std():.2f})"
    )
    began = time.perf_counter()
    sizes = evaluate(space, genomes, top1, [int(s) for s in args.sizes.split(",")], args.splits, args.seed)
    pred = predict_times(space, genomes, top1, args.seed)

    print(f"\nmean over {args.splits} splits (train on SIZE, test on the rest)")
    print(f"{'size':>5} {'model':<9} {'tau':>6} {'rho':>6} {'rmse':>6} {'fit s':>6}")
    checks = {}
    for size, res in sizes.items():
        for name in MODELS:
            r = res[name]
            print(
                f"{size:>5} {name:<9} {r['tau']:6.3f} {r['rho']:6.3f} {r['rmse']:6.3f} "
                f"{r['fit_seconds']:6.2f}"
            )
        best = max(SINGLE[:-1], key=lambda m: res[m]["tau"])
        best_any = max(SINGLE, key=lambda m: res[m]["tau"])
        checks[size] = {
            "best_single": best_any,
            "adaptive_minus_best_single": res["adaptive"]["tau"] - res[best_any]["tau"],
            "adaptive_within_0.02_of_best": res["adaptive"]["tau"] >= res[best_any]["tau"] - TAU_GAP,
            "adaptive_beats_ofa_mlp": res["adaptive"]["tau"] > res["ofa_mlp"]["tau"],
            "best_candidate": best,
        }
        print(f"      adaptive chose {res['adaptive']['chosen']}")
    print("\npredict 10,000 genomes (s): " + "  ".join(f"{m} {t:.3f}" for m, t in pred.items()))
    fast = {m: t < PREDICT_LIMIT_S for m, t in pred.items()}
    ok = all(c["adaptive_within_0.02_of_best"] and c["adaptive_beats_ofa_mlp"] for c in checks.values())
    print(
        f"targets: adaptive within {TAU_GAP} tau of the best and above ofa_mlp at every size: "
        f"{'yes' if ok else 'NO'}; every model predicts 10k in < {PREDICT_LIMIT_S} s: "
        f"{'yes' if all(fast.values()) else 'NO'}"
    )

    result = {
        "sizes": sizes,
        "predict_10k_seconds": pred,
        "targets": {"per_size": checks, "predict_under_0.5s": fast, "met": ok and all(fast.values())},
        "data": {
            "csv": str(args.csv.relative_to(HERE.parent))
            if args.csv.is_relative_to(HERE.parent)
            else str(args.csv),
            "subnets": len(genomes),
            "space": space.name,
            "top1_mean": float(top1.mean()),
            "top1_std": float(top1.std()),
        },
        "splits": args.splits,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - began, 1),
    }
    write_result(args.out, result, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
