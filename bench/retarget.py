"""Retarget against a fresh search for the same new target (issue 41): does `nat retarget` pay?

From a finished quickstart-sized run (the quickstart preset, no models delivered), two new targets:

* ``params``: ``params <= B``, B the median params of the source's front (cuts it in half);
* ``latency``: objectives ``[top1, latency]`` from a CPU latency table (built once by
  ``nat latency build``, bench/results/latency_tables/torch_quickstart.yaml), with ``latency <= L``,
  L the median predicted latency of the source's front.

For each target, ``nat retarget`` (default settings: 2 iterations, no adaptation) and a fresh search
with the quickstart's settings, the same seed and the target's objectives and constraint (the source
run's budget). Both deliver the quickstart's models (5, fine-tuned 3 epochs), so the fronts compare as
delivered: hypervolume over (test error, target objective / bound) with reference point (1, 1), pymoo's
HV. Time to the front is the wall time of the call minus finalisation (``finalize_seconds`` in
state.json, which both pay alike and is reported apart).

    python bench/retarget.py [--seeds 0 1 2] [--threads 1] [--quick] [--keep DIR] [--out FILE]

Writes bench/results/retarget.json: per target ``time_ratio`` and ``hypervolume_ratio`` (retarget /
fresh), each with ``per_seed`` and ``mean``, and every run's figures. ``--quick``: a smoke check (the
quickstart preset cut to seconds), written to bench/results/retarget_quick.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.objectives.latency_table import LatencyPredictor, LatencyTable  # noqa: E402
from nat.runs import run_retarget, run_search  # noqa: E402
from nat.search import load_config  # noqa: E402
from nat.search.run_files import read_state  # noqa: E402
from nat.search.supernets import planned_space  # noqa: E402
from nat.space.subnet import Subnet  # noqa: E402
from record import code_version, machine  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TABLE = RESULTS / "latency_tables" / "torch_quickstart.yaml"
QUICK = {
    "initial_samples": 6,
    "iterations": 1,
    "candidates_per_iteration": 2,
    "adaptation": {"max_steps": 3},
    "nsga3": {"pop_size": 12, "generations": 3},
    "evaluation": {"calibration_images": 32},
    "data": {"val_size": 100},
    "finalize": {"models": 2, "finetune_epochs": 0.05},
}


def base_overrides(seed: int, threads: int, quick: bool) -> tuple[str, dict[str, Any]]:
    """The preset and settings every run of one seed shares."""
    common = {"seed": seed, "threads": threads, "device": "cpu"}
    return "quickstart", ({**QUICK, **common} if quick else common)


def hypervolume(points: list[tuple[float, float]]) -> float:
    """Hypervolume of (error, objective / bound) points, reference (1, 1) (pymoo)."""
    from pymoo.indicators.hv import HV

    inside = [p for p in points if p[0] < 1 and p[1] < 1]
    return float(HV(ref_point=np.ones(2))(np.array(inside))) if inside else 0.0


def delivered(run_dir: Path, objective: str, bound: float, predictor: LatencyPredictor) -> dict:
    """The run's delivered models as (test error, objective / bound), its hypervolume and times."""
    models = json.loads((run_dir / "models.json").read_text())
    points = []
    for m in models:
        value = m["params"] if objective == "params" else predictor.subnet(Subnet.from_dict(m["subnet"]))
        points.append((1.0 - m["test_top1"], value / bound))
    state = read_state(run_dir / "state.json")
    return {
        "models": [
            {"name": m["name"], "test_top1": m["test_top1"], objective: p[1] * bound}
            for m, p in zip(models, points, strict=True)
        ],
        "hypervolume": hypervolume(points),
        "finalize_seconds": state.get("finalize_seconds", 0.0),
        "evaluations": len((run_dir / "archive.jsonl").read_text().splitlines()),
    }


def timed(call) -> tuple[Any, float]:
    start = time.monotonic()
    out = call()
    return out, time.monotonic() - start


def one_seed(seed: int, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    preset, common = base_overrides(seed, args.threads, args.quick)
    fresh_from = json.loads(args.fresh_from.read_text())["per_seed"] if args.fresh_from else {}
    source_config = load_config(preset=preset, overrides={**common, "finalize": {"models": 0}})
    source = work / f"source_{seed}"
    run_search(source_config, source)  # a finished source in --keep is reused (nothing is redone)
    source_seconds = read_state(source / "state.json")["elapsed_s"]
    # the models both deliver: the preset's (the source delivered none, and a retarget inherits that)
    finalize = {"finalize": load_config(preset=preset, overrides=common).finalize.model_dump(mode="json")}
    from nat.api import open_run

    front = open_run(source).front
    predictor = LatencyPredictor(LatencyTable.load(TABLE), planned_space(source_config), 10)
    params_bound = float(np.median([r.values["params"] for r in front]))
    latency_bound = float(np.median([predictor.subnet(r.subnet) for r in front]))
    targets = {
        "params": ({"constraints": {"params": params_bound}}, "params", params_bound),
        "latency": (
            {
                "objectives": ["top1", "latency"],
                "latency": {"table": str(TABLE)},
                "constraints": {"latency": latency_bound},
            },
            "latency",
            latency_bound,
        ),
    }
    out: dict[str, Any] = {"source_seconds_to_front": round(source_seconds, 1), "targets": {}}
    for name, (overrides, objective, bound) in targets.items():
        new = work / f"retarget_{name}_{seed}"
        _, r_seconds = timed(lambda: run_retarget(source, new, {**overrides, **finalize}))  # noqa: B023
        r = delivered(new, objective, bound, predictor)
        r["seconds_to_front"] = round(r_seconds - r["finalize_seconds"], 2)
        earlier = fresh_from.get(str(seed), {}).get("targets", {}).get(name)
        if earlier is not None and earlier["bound"] == bound:  # the same fresh search, measured before
            f = {**earlier["fresh"], "reused_from": str(args.fresh_from)}
        else:
            fresh_dir = work / f"fresh_{name}_{seed}"
            fresh_config = load_config(preset=preset, overrides={**common, **overrides})
            _, f_seconds = timed(lambda: run_search(fresh_config, fresh_dir))  # noqa: B023
            f = delivered(fresh_dir, objective, bound, predictor)
            f["seconds_to_front"] = round(f_seconds - f["finalize_seconds"], 2)
        out["targets"][name] = {
            "bound": bound,
            "retarget": r,
            "fresh": f,
            "time_ratio": r["seconds_to_front"] / f["seconds_to_front"],
            "hypervolume_ratio": r["hypervolume"] / f["hypervolume"] if f["hypervolume"] > 0 else None,
        }
        print(
            f"seed {seed} {name}: retarget {r['seconds_to_front']:.0f} s to the front, "
            f"HV {r['hypervolume']:.4f}; fresh {f['seconds_to_front']:.0f} s, HV {f['hypervolume']:.4f}",
            flush=True,
        )
    return out


def summarise(per_seed: dict[str, dict]) -> dict[str, Any]:
    targets = next(iter(per_seed.values()))["targets"]
    summary = {}
    for name in targets:
        row = {}
        for key in ("time_ratio", "hypervolume_ratio"):
            values = {s: r["targets"][name][key] for s, r in per_seed.items()}
            known = [v for v in values.values() if v is not None]
            row[key] = {"per_seed": values, "mean": float(np.mean(known)) if known else None}
        summary[name] = row
    return summary


def combine(files: list[Path], out: Path) -> int:
    """One result from several (each of other seeds, same settings and code)."""
    parts = [json.loads(f.read_text()) for f in files]
    per_seed = {seed: row for part in parts for seed, row in part["per_seed"].items()}
    result = {k: v for k, v in parts[0].items() if k not in ("per_seed", "params", "latency")}
    result["commit"] = sorted({p["commit"] for p in parts})
    result.update({**summarise(per_seed), "per_seed": per_seed, "combined_from": [f.name for f in files]})
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {out}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smoke preset: a seconds-long check")
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--fresh-from",
        type=Path,
        metavar="FILE",
        help="take the fresh searches' figures from an earlier result of the same settings (the search "
        "loop unchanged since) and run only the retargets",
    )
    parser.add_argument(
        "--combine",
        type=Path,
        nargs="+",
        metavar="FILE",
        help="no runs: combine earlier results (e.g. one process per seed) into --out",
    )
    args = parser.parse_args()
    if args.combine:
        return combine(args.combine, args.out or RESULTS / "retarget.json")
    if not TABLE.is_file():
        sys.exit(
            f"{TABLE} is missing: build it with `nat latency build --space builtin:fashion_mnist_tiny "
            f"--resolutions 24 28 32 --num-classes 10 --threads 1 --out {TABLE}`"
        )
    out = args.out or RESULTS / ("retarget_quick.json" if args.quick else "retarget.json")
    commit = code_version()  # the code this process runs (read before the runs, not after)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        per_seed = {str(seed): one_seed(seed, args, work) for seed in args.seeds}
    result = {
        "question": "retarget a finished run vs a fresh search for the same new target (issue 41)",
        "preset": "quickstart" + (" (--quick: cut to seconds)" if args.quick else ""),
        "machine": machine(),
        "threads": args.threads,
        "commit": commit,
        "table": str(TABLE.relative_to(ROOT)),
        **summarise(per_seed),
        "per_seed": per_seed,
    }
    out.write_text(json.dumps(result, indent=1) + "\n")
    for name in per_seed[str(args.seeds[0])]["targets"]:
        ratios = result[name]
        print(f"{name}: time ratio {ratios['time_ratio']['mean']:.3f}, ", end="")
        print(f"hypervolume ratio {ratios['hypervolume_ratio']['mean']}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
