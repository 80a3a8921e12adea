"""The transfer experiment over seeds: how often, and by how much, NAT's front beats each baseline.

One run of `bench/transfer.py` compares models whose test top-1 differ by a few tenths of a point on
1,000 (mnist5k) or 360 (digits) test images, so a single seed cannot say whether NAT's win is real.
This script reads every stored run (`bench/results/transfer/transfer_seedN.json`) and reports, per task
and baseline:

- how many seeds have the baseline point dominated by a NAT front member (the issue's target);
- the paired margin: NAT's best front model *with at most the baseline's MAdds* minus the baseline,
  per seed, with its mean and a t-based 95% confidence interval over seeds;
- the test split's own noise: the binomial standard error of one model's test top-1.

    python bench/transfer_summary.py [FILE.json ...] [--out bench/results/transfer_summary.json]

It trains nothing; it only summarises runs that `bench/transfer.py` already wrote.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
from pathlib import Path

from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
OUT = RESULTS / "transfer_summary.json"


def seed_of(path: Path, run: dict) -> int:
    """The run's seed: stored in the file by newer runs, else read from the name (`transfer.json` is
    what `bench/transfer.py` once wrote for its default seed 0)."""
    if "seed" in run:
        return int(run["seed"])
    for res in run.values():
        if "seed" in res:
            return int(res["seed"])
    match = re.fullmatch(r"transfer_seed(\d+)", path.stem)
    if match:
        return int(match.group(1))
    if path.stem == "transfer":
        return 0
    raise SystemExit(f"{path}: cannot tell which seed this run used (no 'seed' field, unexpected name)")


def best_within(nat: list[dict], madds: float) -> float | None:
    """NAT's best test top-1 among front models with at most ``madds`` (None: every model is larger)."""
    eligible = [p["top1"] for p in nat if p["madds"] <= madds]
    return max(eligible) if eligible else None


def interval(values: list[float]) -> dict:
    """Mean, standard error and two-sided 95% t-interval of per-seed margins (in points)."""
    n = len(values)
    mean = statistics.fmean(values)
    if n < 2:
        return {"mean": mean, "se": None, "ci95": None, "n": n}
    se = statistics.stdev(values) / math.sqrt(n)
    half = stats.t.ppf(0.975, n - 1) * se
    return {"mean": mean, "se": se, "ci95": [mean - half, mean + half], "n": n}


def summarise(runs: dict[int, dict]) -> dict:
    tasks = sorted({task for run in runs.values() for task in run})
    summary: dict = {"seeds": sorted(runs), "tasks": {}}
    met = [
        seed
        for seed, run in sorted(runs.items())
        if all(b["dominated_by_nat"] for r in run.values() for b in r["baseline"])
    ]
    summary["target_met_on_seeds"] = met
    for task in tasks:
        per_seed = {seed: run[task] for seed, run in sorted(runs.items()) if task in run}
        test_images = next((r["test_images"] for r in per_seed.values() if "test_images" in r), None)
        nat_best = [max(p["top1"] for p in r["nat"]) for r in per_seed.values()]
        entry: dict = {
            "nat_best_top1": {"per_seed": nat_best, "mean": statistics.fmean(nat_best)},
            "nat_madds_range": [
                min(p["madds"] for r in per_seed.values() for p in r["nat"]),
                max(p["madds"] for r in per_seed.values() for p in r["nat"]),
            ],
            "test_images": test_images,
            "baselines": {},
        }
        if test_images:
            p = statistics.fmean(nat_best)
            entry["test_top1_standard_error_points"] = 100 * math.sqrt(p * (1 - p) / test_images)
        names = sorted({b["name"] for r in per_seed.values() for b in r["baseline"]})
        for name in names:
            rows = []
            for seed, r in per_seed.items():
                b = next(b for b in r["baseline"] if b["name"] == name)
                nat = best_within(r["nat"], b["madds"])
                rows.append(
                    {
                        "seed": seed,
                        "baseline_madds": b["madds"],
                        "baseline_top1": b["top1"],
                        "nat_best_within_madds_top1": nat,
                        "margin_points": None if nat is None else 100 * (nat - b["top1"]),
                        "dominated_by_nat": b["dominated_by_nat"],
                    }
                )
            margins = [row["margin_points"] for row in rows if row["margin_points"] is not None]
            entry["baselines"][name] = {
                "dominated_on": sum(row["dominated_by_nat"] for row in rows),
                "seeds": len(rows),
                "baseline_top1_mean": statistics.fmean(row["baseline_top1"] for row in rows),
                "margin_points": interval(margins) if margins else None,
                "wins_ties_losses": [
                    sum(m > 0 for m in margins),
                    sum(m == 0 for m in margins),
                    sum(m < 0 for m in margins),
                ],
                "per_seed": rows,
            }
        summary["tasks"][task] = entry
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="default: every stored transfer run")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    files = args.files or sorted((RESULTS / "transfer").glob("transfer_seed*.json"))
    files = [f for f in files if f.exists()]
    if not files:
        raise SystemExit("no transfer runs found: run `python bench/transfer.py` first")
    runs: dict[int, dict] = {}
    provenance: dict[int, dict] = {}
    for path in files:
        run = json.loads(path.read_text())
        seed = seed_of(path, run)
        if seed in runs:
            raise SystemExit(f"{path}: seed {seed} appears twice among the runs given")
        runs[seed] = run.get("tasks", run)  # files before the machine was recorded hold the tasks alone
        recorded = {k: run[k] for k in ("machine", "threads", "commit") if k in run}
        provenance[seed] = {"file": path.name, **recorded}
    # the summary is made from the runs, so its machine, threads and commit are theirs (where they agree)
    shared = {}
    for key in ("machine", "threads", "commit"):
        values = [json.dumps(p.get(key), sort_keys=True) for p in provenance.values()]
        same = len(set(values)) == 1 and values[0] != "null"
        shared[key] = json.loads(values[0]) if same else "differs between runs: see runs"
    summary = {**shared, **summarise(runs)}
    summary["runs"] = {str(seed): provenance[seed] for seed in sorted(provenance)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=1))
    print(f"seeds {summary['seeds']}: target met on {summary['target_met_on_seeds']}")
    for task, entry in summary["tasks"].items():
        se = entry.get("test_top1_standard_error_points")
        noise = f", one model's test-split SE {se:.2f} points" if se else ""
        print(f"{task}: NAT best mean {100 * entry['nat_best_top1']['mean']:.2f}%{noise}")
        for name, b in entry["baselines"].items():
            m = b["margin_points"]
            if m is None:
                margin = "no NAT model within its MAdds on any seed"
            else:
                ci = m["ci95"]
                ci_text = f" [{ci[0]:+.2f}, {ci[1]:+.2f}] (95% CI)" if ci else ""
                w, t, lo = b["wins_ties_losses"]
                margin = f"margin {m['mean']:+.2f} points{ci_text}; {w} wins, {t} ties, {lo} losses"
            print(
                f"  vs {name:<13} mean {100 * b['baseline_top1_mean']:.2f}%: dominated on "
                f"{b['dominated_on']} of {b['seeds']} seeds; {margin}"
            )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
