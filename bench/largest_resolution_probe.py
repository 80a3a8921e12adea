"""Does input resolution lift the shipped supernet's largest subnet on Fashion-MNIST? (issue 19)

The supernet shipped until 2026-12-05 (`tiny-s2-wide`, 24-40 px) was pretrained at 24/28/32 px; its largest
subnet tested best at its largest trained resolution (32 px: 91.1%), short of issue 19's 92%; the figures
in bench/results/largest_resolution_probe.json are that file's (the probe runs on whatever is shipped now,
with the space widened to 24-40 px). Before paying for a whole
pretraining run at larger resolutions, this probe fine-tunes the largest subnet alone for one epoch at
each given resolution, from the shipped weights, with the library's own fine-tuning and test steps
(`bench/transfer.py`'s `finetune_fixed`: `finetune_subnet` then `extract_and_test`; lr 0.02, batch 64,
5,000 training images held out for BN calibration and validation) and tests it on the 10,000 test
images. The same epoch at 32 px is the control: what one more epoch buys without a change of resolution.

    python bench/largest_resolution_probe.py [--resolutions 40 32] [--epochs 1] [--out FILE]

Writes bench/results/largest_resolution_probe.json. About 20 min at 40 px and 15 min at 32 px on one
core of this project's machine (one torch thread).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from nat.objectives import profile_subnet  # noqa: E402
from nat.space import Subnet  # noqa: E402
from transfer import finetune_fixed, transfer_search  # noqa: E402

#: every resolution of the space, so that the untrained 36 and 40 px can be probed
RESOLUTIONS = (24, 28, 32, 36, 40)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolutions", type=int, nargs="+", default=[40, 32], choices=RESOLUTIONS)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--out", type=Path, default=ROOT / "bench" / "results" / "largest_resolution_probe.json"
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        # no search is run: only the pretrained supernet, the task's splits and its calibration images
        search, pretrained = transfer_search(
            "fashion-mnist",
            seed=0,
            val_size=5000,
            iterations=1,
            workdir=Path(workdir),
            resolutions=RESOLUTIONS,
        )
        for r in args.resolutions:
            start = time.time()
            subnet = Subnet.largest(search.space, r=r)
            top1 = finetune_fixed(
                search, pretrained, subnet, args.epochs, seed=0, lr=search.config.adaptation.lr
            )
            rows.append(
                {
                    "resolution": r,
                    "madds": profile_subnet(subnet, search.space, search.task.num_classes)["madds"],
                    "test_top1": top1,
                    "seconds": time.time() - start,
                }
            )
            print(
                f"largest subnet, {r} px, {args.epochs:g} epoch(s): test top-1 {100 * top1:.2f}%", flush=True
            )
        test_images = len(search.task.test)
    result = {
        "what": "the shipped supernet's largest subnet fine-tuned alone on Fashion-MNIST, by resolution",
        "supernet": search.config.supernet,
        "epochs": args.epochs,
        "lr": search.config.adaptation.lr,
        "train_batch": search.config.data.train_batch_size,
        "threads": args.threads,
        "test_images": test_images,
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
