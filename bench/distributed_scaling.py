"""Two processes against one under torchrun (gloo, CPU, one thread each): adaptation and evaluation.

The same global work on 1 and on 2 processes, through the search loop's own phases (`NATSearch.adapt`
with DistributedDataParallel and the loader's per-rank rows, `NATSearch.evaluate` with subnets dealt
out by cost and gathered on rank 0):

* adaptation: optimiser steps on subnets drawn uniformly, global batch ``--batch`` (each of 2 processes
  trains half of it);
* evaluation: distinct random subnets, BN recalibration and top-1 on the search-validation images.

Two regimes (`REGIMES`): the shipped supernet (``builtin:fashion_mnist_tiny``, 2.2 M parameters,
24-40 px), whose steps on one CPU thread are dominated by per-operation overhead, so halving the batch
saves less than half the time; and a fresh supernet of the ``small`` preset (OFA's widths, 28-44 px),
whose steps are dominated by arithmetic, as at the photo resolutions users run on GPUs.

Each world size runs ``--rounds`` times, interleaved (1, 2, 1, 2, ...) so that load from other jobs on
the machine hits both alike; the figures are each world size's best round (the least disturbed).
Speedup = one-process seconds / two-process seconds. Data: sklearn's digits at the supernet's
resolutions (the images' content does not change the cost).

    python bench/distributed_scaling.py [--regime shipped|small] [--batch 64] [--rounds 2] [--result FILE]

Writes bench/results/distributed_scaling.json (adaptation_speedup, evaluation_speedup, images/s of each).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from record import code_version, write_result

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "distributed_scaling.json"
TARGET = 1.6


#: per regime: the supernet (source, space), adaptation steps, subnets evaluated and the evaluation's
#: images. ``shipped``: nat's shipped supernet (2.2 M parameters, 24-40 px), whose steps on one CPU
#: thread are bound by per-operation overhead more than by arithmetic; ``small``: a fresh supernet of the
#: ``small`` preset (OFA's widths at w1.0, 28-44 px), bound by arithmetic as photo-size inputs are.
#: Sized so that the whole benchmark takes about 5 minutes on a 2-core machine.
REGIMES = {
    "shipped": {"supernet": "builtin:fashion_mnist_tiny", "space": None, "steps": 40, "subnets": 8,
                "calibration_images": 256, "val_size": 500},
    "small": {"supernet": "random", "space": "small", "steps": 8, "subnets": 4,
              "calibration_images": 128, "val_size": 250},
}  # fmt: skip


def config(args: argparse.Namespace):
    from nat.search import load_config
    from nat.space import get_space

    regime = REGIMES[args.regime]
    space = regime["space"]
    extra = {"space": {**get_space(space).model_dump(mode="json"), "width_mults": [1.0]}} if space else {}
    return load_config(
        overrides={
            "seed": 0,
            "device": "cpu",
            "threads": 1,
            "supernet": regime["supernet"],
            **extra,
            "data": {
                "dataset": "digits",
                "val_size": regime["val_size"],
                "train_batch_size": args.batch,
                "eval_batch_size": 500,
            },
            "initial_samples": 3,
            "iterations": 0,
            "adaptation": {"max_steps": args.steps, "lr": 0.02},
            "evaluation": {"calibration_images": regime["calibration_images"], "reevaluate": "none"},
            "finalize": {"models": 0},
        }
    )


def worker(args: argparse.Namespace) -> None:
    """One process of the job (started by torchrun): time the two phases, rank 0 writes the figures."""
    import random

    import numpy as np
    import torch

    from nat.runtime.distributed import distributed_session
    from nat.search import NATSearch
    from nat.search.archive import Phase
    from nat.space.genome import encode
    from nat.space.subnet import Subnet

    torch.set_num_threads(1)
    cfg = config(args)
    with distributed_session("cpu") as collective, NATSearch(cfg, args.out, collective=collective) as search:
        space = search.space
        rng = random.Random(1)
        subnets: list[Subnet] = []
        while len(subnets) < args.subnets:
            s = Subnet.sample(space, rng)
            if s not in subnets:
                subnets.append(s)
        genomes = np.array([encode(s, space) for s in subnets])
        search.evaluator.evaluate(subnets[0], False)  # calibration images resized once, untimed
        collective.barrier()
        t0 = time.perf_counter()
        search.evaluate(subnets, 1, Phase.CANDIDATE)  # first: the pretrained weights, on any world size
        collective.barrier()
        t1 = time.perf_counter()
        tasks = {name: genomes for name in search.parts.tasks}
        search.adapt(1, tasks, epochs=float(args.steps))  # max_steps caps it at exactly --steps
        collective.barrier()
        t2 = time.perf_counter()
        if collective.is_main:
            result = {
                "world_size": collective.world_size,
                "evaluation_s": t1 - t0,
                "adaptation_s": t2 - t1,
                "adaptation_images_per_s": args.steps * args.batch / (t2 - t1),
                "evaluation_subnets_per_s": len(subnets) / (t1 - t0),
                "top1": [r.top1 for r in search.archive.records],
            }
            Path(args.out, "timing.json").write_text(json.dumps(result))


def torchrun(script: str, world: int, arguments: list[str], what: str) -> None:
    """Run ``script`` with ``arguments`` as ``world`` processes under torchrun on this machine (one torch
    thread each, nat from this checkout's src/); a failed run ends the benchmark with its stderr."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}"]
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT / "src"))
    done = subprocess.run([*cmd, script, *arguments], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")


def launch(world: int, args: argparse.Namespace, out: Path) -> dict:
    arguments = ["--worker", "--out", str(out), "--steps", str(args.steps), "--batch", str(args.batch)]
    arguments += ["--subnets", str(args.subnets), "--regime", args.regime]
    torchrun(__file__, world, arguments, f"{world}-process run")
    return json.loads((out / "timing.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, help="adaptation steps (default: the regime's)")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--subnets", type=int, help="subnets evaluated (default: the regime's)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--regime", choices=sorted(REGIMES), help="one regime only (default: both)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument(
        "--result", type=Path, default=RESULT, help="where the JSON goes (default: %(default)s)"
    )
    args = parser.parse_args()
    if args.worker:
        sys.path.insert(0, str(ROOT / "src"))
        worker(args)
        return
    commit = code_version()  # the code this process runs (the launcher's; workers need none)
    regimes = [args.regime] if args.regime else list(REGIMES)
    steps, subnets = args.steps, args.subnets
    result = {
        "what": "2 processes vs 1 under torchrun (gloo, CPU), same global work, one thread each",
        "global_batch": args.batch,
        "rounds": args.rounds,
        "threads_per_process": 1,
        "target": TARGET,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
    }
    for regime in regimes:
        args.regime = regime
        args.steps = steps or REGIMES[regime]["steps"]
        args.subnets = subnets or REGIMES[regime]["subnets"]
        figures = {"steps": args.steps, "subnets": args.subnets, **measure(args)}
        result[regime] = figures
        images, rate = figures["adaptation_images_per_s"], figures["evaluation_subnets_per_s"]
        print(
            f"{regime}: adaptation speedup {figures['adaptation_speedup']:.2f}x "
            f"({images['1']:.0f} -> {images['2']:.0f} images/s), "
            f"evaluation speedup {figures['evaluation_speedup']:.2f}x "
            f"({rate['1']:.2f} -> {rate['2']:.2f} subnets/s); target >= {TARGET}; evaluations identical "
            f"on 1 and 2 processes: {figures['evaluations_identical_across_world_sizes']}"
        )
    # the headline figures: the shipped supernet, the regime `make run` and the tests use
    head = result[regimes[0]]
    result["adaptation_speedup"] = head["adaptation_speedup"]
    result["evaluation_speedup"] = head["evaluation_speedup"]
    write_result(args.result, result, indent=2, threads=1, commit=commit)


def measure(args: argparse.Namespace) -> dict:
    """One regime: ``rounds`` interleaved runs of each world size; the best round of each."""
    runs: dict[int, list[dict]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for world in (1, 2):
                timing = launch(world, args, Path(tmp) / f"w{world}_{r}")
                runs[world].append(timing)
                print(
                    f"{args.regime} round {r} world {world}: adaptation {timing['adaptation_s']:.1f} s, "
                    f"evaluation {timing['evaluation_s']:.1f} s"
                )
    best = {w: {k: min(t[k] for t in runs[w]) for k in ("adaptation_s", "evaluation_s")} for w in runs}
    return {
        "adaptation_speedup": best[1]["adaptation_s"] / best[2]["adaptation_s"],
        "evaluation_speedup": best[1]["evaluation_s"] / best[2]["evaluation_s"],
        "adaptation_images_per_s": {str(w): args.steps * args.batch / best[w]["adaptation_s"] for w in best},
        "evaluation_subnets_per_s": {str(w): args.subnets / best[w]["evaluation_s"] for w in best},
        "seconds": {str(w): best[w] for w in best},
        "evaluations_identical_across_world_sizes": all(
            t["top1"] == runs[1][0]["top1"] for w in runs for t in runs[w]
        ),
        "rounds_raw": {
            str(w): [{k: t[k] for k in ("adaptation_s", "evaluation_s")} for t in runs[w]] for w in runs
        },
    }


if __name__ == "__main__":
    main()
