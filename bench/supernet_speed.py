"""nat's supernet against OFA's package on CPU: training step, inference throughput, peak memory.

Both networks hold the same weights and run the same subnets on the same batches, in one process,
interleaved (nat, OFA, OFA, nat, ...) so that load from other processes hits both alike; figures are
medians. Peak RSS of training is measured in two fresh child processes (one per implementation) that
import the same modules and run the same steps.

    python bench/supernet_speed.py [--threads N] [--batch 8] [--infer-batch 32] [--subnets 6]

Writes bench/results/supernet_speed.json.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.space import Subnet, get_space  # noqa: E402
from nat.supernet import Supernet, load_ofa_state_dict  # noqa: E402

RESULT = ROOT / "bench" / "results" / "supernet_speed.json"


def build_pair(width: float = 1.0, classes: int = 1000):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

        torch.manual_seed(0)
        ofa = OFAMobileNetV3(
            n_classes=classes,
            dropout_rate=0.1,
            width_mult=width,
            ks_list=[3, 5, 7],
            expand_ratio_list=[3, 4, 6],
            depth_list=[2, 3, 4],
        )
    nat = Supernet(get_space(), width, classes)
    load_ofa_state_dict(nat, ofa.state_dict())
    return ofa, nat


def subnets(n: int, resolution: int, seed: int = 0) -> list[Subnet]:
    rng = random.Random(seed)
    space = get_space()
    return [
        Subnet(s.ks, s.e, s.d, resolution, 1.0) for s in (Subnet.sample(space, rng, w=1.0) for _ in range(n))
    ]


def activate(net, sub: Subnet) -> None:
    if isinstance(net, Supernet):
        net.set_active(sub)
    else:
        ks, e = sub.padded(4)
        net.set_active_subnet(ks=ks, e=e, d=list(sub.d))


def train_step(net, opt, sub: Subnet, x: torch.Tensor, y: torch.Tensor) -> float:
    start = time.perf_counter()
    activate(net, sub)
    loss = torch.nn.functional.cross_entropy(net(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


@torch.no_grad()
def infer(net, sub: Subnet, x: torch.Tensor, batches: int) -> float:
    start = time.perf_counter()
    activate(net, sub)
    for _ in range(batches):
        net(x)
    return time.perf_counter() - start


def rss_child(which: str, batch: int, resolution: int, steps: int) -> None:
    """Peak RSS of training steps with one implementation only (both packages imported alike)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3

        if which == "ofa":
            net = OFAMobileNetV3(
                n_classes=1000,
                dropout_rate=0.1,
                width_mult=1.0,
                ks_list=[3, 5, 7],
                expand_ratio_list=[3, 4, 6],
                depth_list=[2, 3, 4],
            )
        else:
            net = Supernet(get_space(), 1.0, 1000)
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x, y = torch.randn(batch, 3, resolution, resolution), torch.randint(0, 1000, (batch,))
    for sub in subnets(steps, resolution):
        train_step(net, opt, sub, x, y)
    print(peak_rss_mb())


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux carries that over from the
    parent across fork+exec, so a child of a big parent would report the parent's peak."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--infer-batch", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=192)
    parser.add_argument("--subnets", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rss-child", choices=["ofa", "nat"])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child, args.batch, args.resolution, args.subnets)
        return

    ofa, nat = build_pair()
    subs = subnets(args.subnets, args.resolution)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution, generator=g)
    y = torch.randint(0, 1000, (args.batch,), generator=g)
    xi = torch.randn(args.infer_batch, 3, args.resolution, args.resolution, generator=g)
    nets = {"ofa": ofa, "nat": nat}
    opts = {k: torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9) for k, n in nets.items()}
    train = {k: [] for k in nets}
    inference = {k: [] for k in nets}
    for net in nets.values():  # warm-up (allocator, oneDNN primitive caches)
        net.train()
        train_step(net, opts["ofa" if net is ofa else "nat"], subs[0], x, y)
    for r in range(args.rounds):
        for i, sub in enumerate(subs):
            order = ["nat", "ofa"] if (i + r) % 2 == 0 else ["ofa", "nat"]
            for k in order:
                nets[k].train()
                train[k].append(train_step(nets[k], opts[k], sub, x, y))
    for r in range(args.rounds):
        for i, sub in enumerate(subs):
            order = ["nat", "ofa"] if (i + r) % 2 == 0 else ["ofa", "nat"]
            for k in order:
                nets[k].eval()
                inference[k].append(args.infer_batch * 2 / infer(nets[k], sub, xi, 2))
    rss = {}
    for k in nets:
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--rss-child",
                k,
                "--threads",
                str(args.threads),
                "--batch",
                str(args.batch),
                "--resolution",
                str(args.resolution),
                "--subnets",
                "3",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        rss[k] = float(out.stdout.strip().splitlines()[-1])
    step = {k: statistics.median(v) for k, v in train.items()}
    ips = {k: statistics.median(v) for k, v in inference.items()}
    result = {
        "device": "cpu",
        "threads": args.threads,
        "batch": args.batch,
        "infer_batch": args.infer_batch,
        "resolution": args.resolution,
        "subnets": args.subnets,
        "rounds": args.rounds,
        "torch": torch.__version__,
        "train_step_seconds": step,
        "train_speedup": step["ofa"] / step["nat"],
        "inference_images_per_second": ips,
        "inference_speedup": ips["nat"] / ips["ofa"],
        "train_peak_rss_mb": rss,
        "rss_ratio_nat_over_ofa": rss["nat"] / rss["ofa"],
        "notes": "medians over interleaved runs; nat inference includes activating each subnet "
        "(BN folding) once per 2 batches",
    }
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    RESULT.write_text(json.dumps(result, indent=1))
    print(
        f"train step  : OFA {step['ofa']:.3f} s  nat {step['nat']:.3f} s  -> {result['train_speedup']:.2f}x"
    )
    print(
        f"inference   : OFA {ips['ofa']:.1f} img/s  nat {ips['nat']:.1f} img/s  -> "
        f"{result['inference_speedup']:.2f}x"
    )
    print(f"peak RSS    : OFA {rss['ofa']:.0f} MB  nat {rss['nat']:.0f} MB")
    print(f"wrote {RESULT.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
