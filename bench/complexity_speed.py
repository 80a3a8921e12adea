"""Analytic complexity speed: MAdds and params of 10,000 genomes of the paper's space.

    python bench/complexity_speed.py [--out FILE]     # writes bench/results/complexity_speed.json

Target (issue 2): 10,000 subnets in well under a second.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.objectives import ComplexityTable  # noqa: E402
from nat.space import get_space, sample_genomes  # noqa: E402
from record import write_result  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "complexity_speed.json")
    args = parser.parse_args()
    space = get_space()
    start = time.perf_counter()
    table = ComplexityTable(space, 1000)
    build = time.perf_counter() - start
    genomes = sample_genomes(space, 10_000, np.random.default_rng(0))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        madds, params = table(genomes)
        times.append(time.perf_counter() - start)
    result = {
        "subnets": len(genomes),
        "table_build_seconds": build,
        "seconds_10k": statistics.median(times),
        "mean_madds_M": float(madds.mean() / 1e6),
        "mean_params_M": float(params.mean() / 1e6),
    }
    write_result(args.out, result, threads=1)
    print(
        f"10,000 subnets: {1000 * result['seconds_10k']:.2f} ms (table built once in {1000 * build:.0f} ms)"
    )


if __name__ == "__main__":
    main()
