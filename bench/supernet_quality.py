"""How good a pretrained supernet's subnets are: test top-1 of the extremes and of random subnets.

Every subnet is measured as `nat pretrain` measures its end-of-run figures (BN recalibration on fixed
training images, then the test split at the subnet's own resolution, supernet weights). Random subnets
are drawn uniformly over the space (resolution included) with a fixed seed; the Spearman correlation
between their MAdds and test top-1 says whether accuracy rises with capacity, which is what a
trade-off front needs.

    python bench/supernet_quality.py [--supernet builtin:fashion_mnist_tiny] [--config FILE.yaml]
                                     [--subnets 16] [--resolutions R ...] [--threads 1] [--out FILE.json]

``--resolutions`` draws the random subnets from those of the space's resolutions only (e.g. the ones
the supernet was trained at; the extremes stay at the space's own) and adds the largest subnet at each
of them.

The data settings (dataset, held-out split, calibration images) come from the pretraining config that
made the supernet (default: configs/pretrain_fashion_mnist.yaml). Writes
bench/results/supernet_quality.json.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from scipy.stats import spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.data import load_from_config  # noqa: E402
from nat.objectives import profile_subnet  # noqa: E402
from nat.search.supernets import supernet_path  # noqa: E402
from nat.space import Subnet  # noqa: E402
from nat.supernet import load_supernet  # noqa: E402
from nat.train.config import load_pretrain_config  # noqa: E402
from nat.train.progressive import evaluate_subnets, pretrain_calibrator  # noqa: E402
from record import code_version, write_result  # noqa: E402

RESULT = ROOT / "bench" / "results" / "supernet_quality.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--supernet", default="builtin:fashion_mnist_tiny")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "pretrain_fashion_mnist.yaml")
    parser.add_argument("--subnets", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--resolutions", type=int, nargs="+", default=None, help="default: the space's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    commit = code_version()  # the code this process runs (read before the runs, not after)
    torch.set_num_threads(args.threads)
    cfg = load_pretrain_config(args.config)
    path = supernet_path(args.supernet)
    net = load_supernet(path).eval()
    space = net.space
    task = load_from_config(cfg.data, cfg.seed)
    calibrator = pretrain_calibrator(task, cfg, space)
    lo, hi = min(space.resolutions), max(space.resolutions)
    extremes = {
        f"largest_r{hi}": Subnet.largest(space),
        "largest_r28": Subnet.largest(space, r=28),
        f"smallest_r{lo}": Subnet.smallest(space),
        "smallest_r28": Subnet.smallest(space, r=28),
    }
    sampled = space
    if args.resolutions is not None:
        unknown = sorted(set(args.resolutions) - set(space.resolutions))
        if unknown:
            parser.error(f"--resolutions {unknown} are not in the space's {list(space.resolutions)}")
        sampled = space.model_copy(update={"resolutions": tuple(sorted(set(args.resolutions)))})
        # the largest subnet at each chosen resolution: its best one is not always 28 px
        extremes.update({f"largest_r{r}": Subnet.largest(space, r=r) for r in sampled.resolutions})
    rng = random.Random(args.seed)
    randoms = {f"random_{i}": Subnet.sample(sampled, rng) for i in range(args.subnets)}
    subnets = {**extremes, **randoms}
    start = time.perf_counter()
    top1 = evaluate_subnets(net, task, subnets, calibrator, "test", None, cfg.data.eval_batch_size, "cpu")
    seconds = time.perf_counter() - start
    rows = {
        name: {
            "top1": top1[name],
            "madds": profile_subnet(s, space, task.num_classes)["madds"],
            "subnet": s.to_dict(),
        }
        for name, s in subnets.items()
    }
    random_rows = [rows[n] for n in randoms]
    rho = spearmanr([r["madds"] for r in random_rows], [r["top1"] for r in random_rows]).statistic
    result = {
        "supernet": args.supernet,
        "space": space.name,
        "random_resolutions": list(sampled.resolutions),
        "dataset": cfg.data.dataset,
        "test_images": len(task.split("test")),
        "bn_calibration_images": cfg.calibration_images,
        "threads": args.threads,
        "seconds": seconds,
        "extremes": {n: rows[n] for n in extremes},
        "random": random_rows,
        "random_top1_range": [min(r["top1"] for r in random_rows), max(r["top1"] for r in random_rows)],
        "spearman_madds_top1": rho,
    }
    write_result(args.out, result, threads=args.threads, commit=commit)
    for name in extremes:
        print(f"{name:<14} {rows[name]['madds'] / 1e6:6.2f} M  test top-1 {100 * rows[name]['top1']:.2f}%")
    lo_top1, hi_top1 = result["random_top1_range"]
    print(
        f"{args.subnets} random subnets: test top-1 {100 * lo_top1:.2f}-{100 * hi_top1:.2f}%, "
        f"Spearman(MAdds, top-1) {rho:.2f}"
    )
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
