"""Training-step and inference time by precision (fp32, bf16, fp16) on this machine's CPU (or a GPU).

The same supernet weights, subnets and batches for every precision, run interleaved (fp32, bf16, fp32,
...) so that load from other processes hits all alike. Times are medians over the repeats; the ratios
(bf16 or fp16 time over fp32 time; below 1: faster) are medians of the per-round ratios, each round
running one subnet in every precision. Two settings: OFA's MobileNetV3 space at 128 px (the paper's
supernet, batch 8) and nat's ``tiny`` space at 28 px (the quickstart's scale, batch 64). One training
step is `nat.train.SupernetTrainer.train_step` (one sampled subnet, SGD); inference is a batch through
the active subnet in eval mode without gradients.

    python bench/precision_speed.py [--threads 1] [--repeats 15] [--device cpu] [--precisions fp32 bf16 fp16]

fp16 is left out by default: on a CPU it is 10-30x slower than fp32 (measured; see docs/scale.md).

Writes bench/results/precision_speed.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.runtime.precision import PRECISIONS, Precision, enable_cuda_fast_path  # noqa: E402
from nat.space import Subnet  # noqa: E402
from nat.supernet import Supernet  # noqa: E402
from nat.train import SupernetTrainer  # noqa: E402
from record import code_version, write_result  # noqa: E402

RESULT = ROOT / "bench" / "results" / "precision_speed.json"
SETTINGS = {  # name: (space, resolution, batch, classes)
    "ofa_mbv3_128px_b8": ("ofa_mbv3", 128, 8, 1000),
    "tiny_28px_b64": ("tiny", 28, 64, 10),
}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(setting: str, repeats: int, device: torch.device, precisions: list[str]) -> dict:
    space, resolution, batch, classes = SETTINGS[setting]
    torch.manual_seed(0)
    net = Supernet(space, 1.0, classes).to(device)
    initial = {k: v.clone() for k, v in net.state_dict().items()}
    rng = random.Random(0)
    subnets = [Subnet.sample(net.space, rng, w=1.0) for _ in range(repeats + 1)]
    g = torch.Generator().manual_seed(0)
    images = torch.randn(batch, 3, resolution, resolution, generator=g).to(device)
    labels = torch.randint(0, classes, (batch,), generator=g).to(device)
    trainers = {}
    for p in precisions:
        net_p = Supernet(space, 1.0, classes).to(device)
        net_p.load_state_dict(initial)
        plan = iter(subnets * 2)
        trainers[p] = SupernetTrainer(
            net_p,
            total_steps=10 * repeats,
            sample_subnet=lambda _rng, plan=plan: next(plan),
            device=device,
            precision=p,
        )
    train: dict[str, list[float]] = {p: [] for p in precisions}
    infer: dict[str, list[float]] = {p: [] for p in precisions}
    for i in range(repeats + 1):  # the first round warms up (allocations, kernels) and is dropped
        for p in precisions:
            t0 = time.perf_counter()
            trainers[p].train_step(images, labels)
            _sync(device)
            t1 = time.perf_counter()
            model = trainers[p].net
            model.set_active(subnets[i])
            model.eval()
            with torch.no_grad(), Precision(p, device).autocast():
                model(images)
            _sync(device)
            t2 = time.perf_counter()
            if i:
                train[p].append(t1 - t0)
                infer[p].append(t2 - t1)
    out: dict = {"space": space, "resolution": resolution, "batch": batch}
    for p in precisions:
        out[p] = {
            "train_step_s": round(statistics.median(train[p]), 4),
            "inference_s": round(statistics.median(infer[p]), 4),
            "train_step_s_all": [round(t, 4) for t in train[p]],
        }
    for p in precisions:
        if p != "fp32":  # medians of the per-round ratios: each round runs the same subnet in each precision
            for name, times in (("train", train), ("inference", infer)):
                ratios = [a / b for a, b in zip(times[p], times["fp32"], strict=True)]
                out[f"{p}_over_fp32_{name}"] = round(statistics.median(ratios), 3)
    return out


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        return next(line.split(":", 1)[1].strip() for line in lines if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    commit = code_version()  # the code this process runs (read before the runs, not after)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    enable_cuda_fast_path(device)
    precisions = ["fp32", *[p for p in args.precisions if p != "fp32"]]
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
        "threads": args.threads,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "settings": {s: measure(s, args.repeats, device, precisions) for s in args.settings},
    }
    print(json.dumps(result, indent=2))
    write_result(args.out, result, indent=2, threads=args.threads, commit=commit)


if __name__ == "__main__":
    main()
