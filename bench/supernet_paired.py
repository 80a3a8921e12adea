"""Two supernets' largest subnets on the same images: which one is right more often, and is it chance?

Two pretraining runs differ by a few tenths of a point on Fashion-MNIST's test split, about one
standard error of each figure, so their difference needs a paired test: both largest subnets (BN
recalibrated as `nat pretrain` does) classify the same held-out and test images at each resolution,
and an exact McNemar test on the images only one of them gets right says whether the gap is chance.

    python bench/supernet_paired.py [--b FILE.safetensors] [--a builtin:fashion_mnist_tiny]
                                    [--config FILE.yaml] [--resolutions 24 28 32] [--out FILE.json]

The data settings come from the pretraining config (default: configs/pretrain_fashion_mnist.yaml);
both supernets must share its dataset. ``--b`` defaults to the benchmarks' `tiny-s2` supernet
(bench/data/, an older recipe), so that a bare run compares two stored files. Writes
bench/results/supernet_paired.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.data import load_from_config  # noqa: E402
from nat.data.loaders import make_loader  # noqa: E402
from nat.search.supernets import supernet_path  # noqa: E402
from nat.space import Subnet  # noqa: E402
from nat.supernet import load_supernet  # noqa: E402
from nat.train.config import load_pretrain_config  # noqa: E402
from nat.train.progressive import pretrain_calibrator  # noqa: E402
from record import code_version, write_result  # noqa: E402

RESULT = ROOT / "bench" / "results" / "supernet_paired.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--a", default="builtin:fashion_mnist_tiny", help="the reference supernet")
    parser.add_argument("--b", default=str(ROOT / "bench" / "data" / "supernet_fmnist_tiny_s2.safetensors"))
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "pretrain_fashion_mnist.yaml")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[24, 28, 32])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    commit = code_version()  # the code this process runs (read before the runs, not after)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    cfg = load_pretrain_config(args.config)
    task = load_from_config(cfg.data, cfg.seed)
    splits = {"val": task.val, "test": task.test}
    right: dict[tuple[str, int, str], torch.Tensor] = {}
    for key in ("a", "b"):
        net = load_supernet(supernet_path(getattr(args, key))).eval()
        unknown = sorted(set(args.resolutions) - set(net.space.resolutions))
        if unknown:
            parser.error(f"--resolutions {unknown} are not in {key}'s space {list(net.space.resolutions)}")
        calibrator = pretrain_calibrator(task, cfg, net.space)
        for r in args.resolutions:
            calibrator(net, Subnet.largest(net.space, r=r))
            for name, split in splits.items():
                loader = make_loader(
                    task, split, batch_size=cfg.data.eval_batch_size, resolution=r, train=False
                )
                with torch.no_grad():
                    right[key, r, name] = torch.cat([net(x).argmax(1) == y for x, y in loader])
    rows = []
    for r in args.resolutions:
        for name in splits:
            a, b = right["a", r, name], right["b", r, name]
            only_b, only_a = int((b & ~a).sum()), int((a & ~b).sum())
            row = {
                "resolution": r,
                "split": name,
                "images": len(a),
                "a_top1": float(a.float().mean()),
                "b_top1": float(b.float().mean()),
                "only_b_right": only_b,
                "only_a_right": only_a,
                "mcnemar_exact_p": float(binomtest(only_b, only_b + only_a).pvalue)
                if only_a + only_b
                else 1.0,
            }
            rows.append(row)
            print(
                f"largest at {r} px, {name}: a {row['a_top1']:.2%}, b {row['b_top1']:.2%}; only b right "
                f"{only_b}, only a right {only_a}, exact McNemar p = {row['mcnemar_exact_p']:.3g}"
            )
    result = {
        "a": args.a,
        "b": args.b,
        "dataset": cfg.data.dataset,
        "calibration_images": cfg.calibration_images,
        "threads": args.threads,
        "seconds": time.perf_counter() - start,
        "rows": rows,
    }
    write_result(args.out, result, indent=2, threads=args.threads, commit=commit)


if __name__ == "__main__":
    main()
