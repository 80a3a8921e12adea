"""Probe for the transfer benchmark: how much does resolution, or training length, buy one fixed subnet?

Fine-tunes the *smallest* subnet of nat's shipped Fashion-MNIST supernet on a task (conventional
transfer, exactly as `bench/transfer.py` trains its baselines) at each given resolution and epoch count,
for several seeds, and reports test top-1. It explains why NAT's front in the transfer benchmark wins
only by a noise-level margin: the search's front collapses onto 24 px subnets, while the same
architecture at 32 px is clearly more accurate on mnist5k (docs/transfer.md).

    python bench/transfer_probe.py [--task mnist5k] [--resolutions 24 28 32] [--epochs 10] [--seeds 0 1]

Writes bench/results/transfer_probe_TASK.json. With ``--nat-resolutions 32`` it instead runs NAT itself
as `bench/transfer.py` does (search, then a 5-epoch fine-tune of up to 5 front models), with the search
space restricted to those resolutions: what the search would deliver if it kept the right resolution.
That writes bench/results/transfer_probe_nat_TASK_rR.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from nat.objectives import profile_subnet  # noqa: E402
from nat.search.finalize import finalize  # noqa: E402
from nat.space import Subnet  # noqa: E402
from transfer import (  # noqa: E402
    FINETUNE_EPOCHS,
    ITERATIONS,
    MODELS,
    VAL_SIZE,
    finetune_fixed,
    transfer_search,
)


def nat_runs(args: argparse.Namespace, workdir: Path) -> list[dict]:
    """NAT at `bench/transfer.py` settings with the space restricted to ``args.nat_resolutions``."""
    rows = []
    for seed in args.seeds:
        start = time.time()
        search, _ = transfer_search(
            args.task, seed, args.val_size, ITERATIONS, workdir / f"seed{seed}", tuple(args.nat_resolutions)
        )
        search.run()
        models = finalize(search, finetune_epochs=FINETUNE_EPOCHS, max_models=MODELS)
        for m in models:
            rows.append(
                {
                    "seed": seed,
                    "resolution": m["subnet"]["r"],
                    "madds": m["madds"],
                    "top1": m["test_top1"],
                    "val_top1": m["top1"],
                    "subnet": m["subnet"],
                }
            )
            print(
                f"{args.task} NAT restricted to {args.nat_resolutions} px, seed {seed}: "
                f"{m['madds'] / 1e6:.2f} M at {m['subnet']['r']} px, test top-1 {100 * m['test_top1']:.2f}%"
            )
        print(f"seed {seed}: {time.time() - start:.0f} s")
    return rows


def fixed_runs(args: argparse.Namespace, workdir: Path) -> tuple[list[dict], int]:
    """The smallest subnet fine-tuned like a transfer baseline before 2026-12-05 (lr 0.02, the
    adaptation lr, as its recorded figures were measured); also returns the test split's size."""
    # no search is run: only the pretrained supernet and the task's splits are used
    search, pretrained = transfer_search(
        args.task, seed=0, val_size=args.val_size, iterations=ITERATIONS, workdir=workdir
    )
    rows = []
    for r in args.resolutions:
        subnet = Subnet.smallest(search.space, r=r)
        madds = profile_subnet(subnet, search.space, search.task.num_classes)["madds"]
        for epochs in args.epochs:
            for seed in args.seeds:
                start = time.time()
                top1 = finetune_fixed(
                    search, pretrained, subnet, epochs, seed, lr=search.config.adaptation.lr
                )
                rows.append(
                    {
                        "resolution": r,
                        "epochs": epochs,
                        "seed": seed,
                        "madds": madds,
                        "top1": top1,
                        "seconds": time.time() - start,
                        "subnet": subnet.to_dict(),
                    }
                )
                print(f"{args.task} {r}px {epochs:g} epochs seed {seed}: test top-1 {100 * top1:.2f}%")
    return rows, len(search.task.test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="mnist5k")
    parser.add_argument("--resolutions", type=int, nargs="+", default=[24, 28, 32])
    parser.add_argument("--epochs", type=float, nargs="+", default=[10.0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--val-size", type=int, default=VAL_SIZE, help="as in bench/transfer.py")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--nat-resolutions", type=int, nargs="+", default=None, help="run NAT restricted to these instead"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        if args.nat_resolutions:
            tag = "-".join(map(str, args.nat_resolutions))
            name = f"transfer_probe_nat_{args.task}_r{tag}.json"
            result = {
                "task": args.task,
                "nat_resolutions": args.nat_resolutions,
                "runs": nat_runs(args, Path(tmp)),
            }
        else:
            name = f"transfer_probe_{args.task}.json"
            rows, test_images = fixed_runs(args, Path(tmp))
            result = {"task": args.task, "test_images": test_images, "runs": rows}
    out = args.out or ROOT / "bench" / "results" / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
