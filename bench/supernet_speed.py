"""nat's supernet against OFA's package on CPU: training step, inference throughput, peak memory.

Both networks hold the same weights and run the same subnets on the same batches, in one process,
interleaved (nat, OFA, OFA, nat, ...) so that load from other processes hits both alike; figures are
medians. Two regimes:

* ``ofa``: OFA's MobileNetV3 space (w1.0) at 128 px, the photo-dataset setting;
* ``small``: nat's ``small`` preset (OFA's widths, stride-1 stem, stage strides 1,2,2,1,2: the paper's
  space for 28-64 px inputs) at 32 px; OFA's network gets the same strides by setting the stride of its
  stem and of the first block of stage 1 to 1.

Peak RSS of training is measured in two fresh child processes (one per implementation) that import the
same modules and run the same steps (``ofa`` regime). The training step's arithmetic rate is compared
with this machine's fp32 GEMM rate (one 1024x1024 matmul), as a fraction.

    python bench/supernet_speed.py [--threads 1] [--subnets 6] [--rounds 2]

Writes bench/results/supernet_speed.json.
"""

from __future__ import annotations

import argparse
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

from nat.objectives.complexity import profile_subnet  # noqa: E402
from nat.space import Subnet, get_space  # noqa: E402
from nat.supernet import Supernet, load_ofa_state_dict, native  # noqa: E402
from record import code_version, write_result  # noqa: E402

RESULT = ROOT / "bench" / "results" / "supernet_speed.json"
#: regime -> (nat space preset, resolution, training batch, inference batch)
REGIMES = {"ofa": ("ofa_mbv3", 128, 16, 32), "small": ("small", 32, 64, 128)}


def regime_space(preset: str, resolution: int):
    """The preset's space, with ``resolution`` allowed (OFA's supernet runs at any size)."""
    space = get_space(preset)
    return space.model_copy(update={"resolutions": tuple(sorted({*space.resolutions, resolution}))})


def build_pair(preset: str = "ofa_mbv3", resolution: int = 128, width: float = 1.0, classes: int = 1000):
    """OFA's supernet and nat's with the same weights; for the ``small`` preset both get its strides."""
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
    space = regime_space(preset, resolution)
    if preset != "ofa_mbv3":
        assert space.base_widths == get_space("ofa_mbv3").base_widths, "OFA's network has OFA's widths only"
        ofa.first_conv.conv.stride = (space.stem_stride, space.stem_stride)
        for stage, first in enumerate(group[0] for group in ofa.block_group_info):
            block = ofa.blocks[first].conv
            block.stride = block.depth_conv.conv.stride = space.stage_strides[stage]
    nat = Supernet(space, width, classes)
    load_ofa_state_dict(nat, ofa.state_dict())
    return ofa, nat


def subnets(n: int, resolution: int, seed: int = 0, preset: str = "ofa_mbv3") -> list[Subnet]:
    rng = random.Random(seed)
    space = regime_space(preset, resolution)
    return [
        Subnet(s.ks, s.e, s.d, resolution, 1.0) for s in (Subnet.sample(space, rng, w=1.0) for _ in range(n))
    ]


def gemm_gflops(size: int = 1024, repeats: int = 5) -> float:
    """This machine's fp32 matmul rate (best of ``repeats``), the yardstick of the training step."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * size**3 / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


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
            net = Supernet(regime_space("ofa_mbv3", resolution), 1.0, 1000)
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


def measure_regime(name: str, n_subnets: int, rounds: int) -> dict:
    preset, resolution, batch, infer_batch = REGIMES[name]
    ofa, nat = build_pair(preset, resolution)
    subs = subnets(n_subnets, resolution, preset=preset)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, resolution, resolution, generator=g)
    y = torch.randint(0, 1000, (batch,), generator=g)
    xi = torch.randn(infer_batch, 3, resolution, resolution, generator=g)
    nets = {"ofa": ofa, "nat": nat}
    opts = {k: torch.optim.SGD(n.parameters(), lr=0.01, momentum=0.9) for k, n in nets.items()}
    train = {k: [] for k in nets}
    inference = {k: [] for k in nets}
    for k, net in nets.items():  # warm-up (allocator, oneDNN primitive caches)
        net.train()
        train_step(net, opts[k], subs[0], x, y)
    for r in range(rounds):
        for i, sub in enumerate(subs):
            for k in ["nat", "ofa"] if (i + r) % 2 == 0 else ["ofa", "nat"]:
                nets[k].train()
                train[k].append(train_step(nets[k], opts[k], sub, x, y))
    for r in range(rounds):
        for i, sub in enumerate(subs):
            for k in ["nat", "ofa"] if (i + r) % 2 == 0 else ["ofa", "nat"]:
                nets[k].eval()
                inference[k].append(infer_batch * 2 / infer(nets[k], sub, xi, 2))
    step = {k: statistics.median(v) for k, v in train.items()}
    ips = {k: statistics.median(v) for k, v in inference.items()}
    # arithmetic of a training step: forward MAdds x 2 FLOPs x 3 (forward, input and weight gradients)
    space = regime_space(preset, resolution)
    madds = statistics.median(profile_subnet(s, space, 1000)["madds"] for s in subs)
    step_gflops = 6 * madds * batch / step["nat"] / 1e9
    return {
        "space": preset,
        "resolution": resolution,
        "batch": batch,
        "infer_batch": infer_batch,
        "train_step_seconds": step,
        "train_speedup": step["ofa"] / step["nat"],
        "inference_images_per_second": ips,
        "inference_speedup": ips["nat"] / ips["ofa"],
        "median_subnet_madds": madds,
        "nat_train_gflops": step_gflops,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--subnets", type=int, default=6)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rss-child", choices=["ofa", "nat"])
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    primary = "ofa"
    _, resolution, batch, _ = REGIMES[primary]
    if args.rss_child:
        rss_child(args.rss_child, batch, resolution, args.subnets)
        return
    commit = code_version()  # the code this process runs (read before the runs, not after)

    gemm = gemm_gflops()
    regimes = {name: measure_regime(name, args.subnets, args.rounds) for name in REGIMES}
    for r in regimes.values():
        r["gemm_fraction"] = r["nat_train_gflops"] / gemm
    rss = {}
    for k in ("ofa", "nat"):
        cmd = [sys.executable, __file__, "--rss-child", k, "--threads", str(args.threads), "--subnets", "3"]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True)
        rss[k] = float(out.stdout.strip().splitlines()[-1])
    main_regime = regimes[primary]
    result = {
        "device": "cpu",
        "threads": args.threads,
        "subnets": args.subnets,
        "rounds": args.rounds,
        "torch": torch.__version__,
        # nat's C kernel for the depthwise weight gradient (NAT_NATIVE_KERNELS=0 measures without it)
        "native_kernel": native.depthwise_weight_grad_library() is not None,
        "gemm_gflops": gemm,
        **{k: main_regime[k] for k in ("resolution", "batch", "infer_batch")},
        **{k: main_regime[k] for k in ("train_step_seconds", "train_speedup")},
        **{k: main_regime[k] for k in ("inference_images_per_second", "inference_speedup")},
        "train_peak_rss_mb": rss,
        "rss_ratio_nat_over_ofa": rss["nat"] / rss["ofa"],
        "regimes": regimes,
        "notes": "medians over interleaved runs; nat inference includes activating each subnet "
        "(BN folding) once per 2 batches; the top-level figures are the 'ofa' regime",
    }
    write_result(args.out, result, threads=args.threads, commit=commit)
    print(f"fp32 GEMM   : {gemm:.1f} GFLOP/s ({args.threads} thread(s))")
    for name, r in regimes.items():
        step, ips = r["train_step_seconds"], r["inference_images_per_second"]
        print(
            f"{name:5s} {r['resolution']:3d} px: train step OFA {step['ofa']:.3f} s nat {step['nat']:.3f} s "
            f"-> {r['train_speedup']:.2f}x; inference OFA {ips['ofa']:.1f} nat {ips['nat']:.1f} img/s -> "
            f"{r['inference_speedup']:.2f}x; nat step at {100 * r['gemm_fraction']:.0f}% of GEMM rate"
        )
    print(f"peak RSS    : OFA {rss['ofa']:.0f} MB  nat {rss['nat']:.0f} MB")


if __name__ == "__main__":
    main()
