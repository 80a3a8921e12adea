"""Where each task's online adaptation spends its steps, many-task run against single-task runs.

Reads the run folders that ``python bench/many_task.py --keep DIR`` keeps (``DIR/many``, ``DIR/<task>``)
and rebuilds, for every iteration, the distribution that iteration's adaptation drew subnets from: the
task's elite (``elite_fraction`` of the archive before the iteration, best fronts first, on the task's
error and MAdds) mixed with the uniform distribution by ``uniform_mix``, as the search loop does. It
draws 3,000 subnets from each and reports their median MAdds and the share at or below ``--small``
MAdds (default 6 M).

    python bench/many_task_elite.py DIR [--small 6e6] [--out bench/results/many_task_elite.json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.objectives.complexity import ComplexityTable  # noqa: E402
from nat.search.archive import Archive  # noqa: E402
from nat.search.distribution import GenomeDistribution, elite  # noqa: E402
from nat.supernet.checkpoint import load_supernet  # noqa: E402


def adaptation_draws(run: Path, column: str, small: float, rng: np.random.Generator) -> list[dict]:
    config = yaml.safe_load((run / "config.yaml").read_text())
    fraction, mix = config["adaptation"]["elite_fraction"], config["adaptation"]["uniform_mix"]
    supernet = next(run.glob("supernet_*.safetensors"))
    space = load_supernet(supernet).space.model_copy(
        update={"resolutions": tuple(config["space"]["resolutions"])}
    )
    table = ComplexityTable(space, 10)
    records = Archive(run / "archive.jsonl", read_only=True)
    rows = []
    for iteration in sorted({r.iteration for r in records.records})[1:]:
        archive = records.current(before_iteration=iteration)
        genomes = np.array([r.genome for r in archive])
        F = np.array([[1.0 - r.values[column], r.values["madds"]] for r in archive])
        distribution = GenomeDistribution.from_genomes(elite(genomes, F, fraction), space)
        madds, _ = table(distribution.mixed_with_uniform(mix).sample(3000, rng))
        rows.append(
            {
                "iteration": iteration,
                "archive": len(archive),
                "median_madds": float(np.median(madds)),
                "share_small": float((madds <= small).mean()),
            }
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the folder of bench/many_task.py --keep")
    parser.add_argument("--small", type=float, default=6e6)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "many_task_elite.json")
    args = parser.parse_args()
    many = args.runs / "many"
    tasks = [d["name"] for d in yaml.safe_load((many / "config.yaml").read_text())["data"]]
    result: dict = {"small_madds": args.small, "tasks": {}}
    for task in tasks:
        rng = np.random.default_rng(0)
        result["tasks"][task] = {
            "many_task": adaptation_draws(many, f"top1:{task}", args.small, rng),
            "single_task": adaptation_draws(args.runs / task, "top1", args.small, rng),
        }
        for kind, rows in result["tasks"][task].items():
            cells = ", ".join(f"{r['median_madds'] / 1e6:.1f} M / {r['share_small']:.0%}" for r in rows)
            print(
                f"{task:<14} {kind:<11} by iteration, median MAdds / share <= {args.small / 1e6:g} M: {cells}"
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
