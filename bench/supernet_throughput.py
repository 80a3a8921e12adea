"""Supernet training and inference throughput on one device, nat vs OFA's package, by precision.

The GPU figure of issue 17 ("the supernet throughput of fp32 vs bf16 vs OFA's package"): OFA's
MobileNetV3 supernet (w1.0, 1000 classes) at the paper's 224 px, the same weights in both packages, the
same sampled subnets and batches. nat trains through its real step, `nat.train.SupernetTrainer.train_step`
(autocast, no host synchronisation inside the step), once channels-last (``nat_nhwc``) and once in the
default layout (``nat_nchw``: nat's CUDA default, ``memory_format: auto``); OFA's network runs the plain
loop its own training script does (``set_active_subnet``, forward, cross-entropy, backward, SGD step),
NCHW, under the same `torch.autocast` so that precision is not what differs. nat's CUDA fast path (TF32;
``cudnn.benchmark`` only with ``--cudnn-benchmark on``) is process-wide, so every variant gets it.

Protocol: each variant (package x layout x precision) first runs one *cold* pass over all the subnets
(first kernels, cuDNN's kernel builds and autotuning for every new layer shape, allocator growth: what
the first steps of a run pay), then ``--rounds`` timed passes, interleaved across variants so that
clock and load drift hit all alike; a pass is timed between two device synchronisations. Figures are
images/s, medians over the rounds. Inference is a batch of ``--infer-batch`` per subnet in eval mode
without gradients. With ``--sequence N``, each nat layout (NCHW first) and then OFA's network train N steps
on N new random subnets at random resolutions (192-256 px), one step timed at a time: how the cost of new
shapes decays in a run. ``--sequence-only`` skips the throughput passes (the first GPU runs showed a
channels-last sequence alone can take minutes); the JSON is rewritten after each contender's sequence,
so a run cut off by a time limit keeps what finished.

    python bench/supernet_throughput.py [--device cuda] [--resolution 224] [--batch 128]
        [--infer-batch 256] [--subnets 8] [--rounds 3] [--precisions fp32 bf16]
        [--memory-formats channels_last contiguous] [--cudnn-benchmark off] [--sequence 0]
        [--sequence-only] [--out FILE]

It runs on a CPU too (pass small sizes: ``--batch 4 --infer-batch 8 --resolution 128``); nat's CPU
comparison with OFA is ``bench/supernet_speed.py``.
Writes bench/results/supernet_throughput[_cuda].json.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from nat.objectives.complexity import profile_subnet  # noqa: E402
from nat.runtime.precision import PRECISIONS, Precision, enable_cuda_fast_path  # noqa: E402
from nat.space import Subnet, get_space  # noqa: E402
from nat.train import SupernetTrainer  # noqa: E402
from record import code_version, write_result  # noqa: E402
from supernet_speed import activate, build_pair, regime_space, subnets  # noqa: E402

CLASSES = 1000


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def ofa_step(net, optimizer, precision: Precision) -> Callable[[Subnet, torch.Tensor, torch.Tensor], None]:
    """One training step of OFA's network the way its training loop does it, under ``precision``."""
    scaler = precision.grad_scaler()

    def step(sub: Subnet, x: torch.Tensor, y: torch.Tensor) -> None:
        net.train()
        activate(net, sub)
        optimizer.zero_grad(set_to_none=True)
        with precision.autocast():
            loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    return step


def nat_step(
    layout: str, precision: str, resolution: int, device: torch.device
) -> tuple[Callable[[Subnet, torch.Tensor, torch.Tensor], None], torch.nn.Module]:
    """nat's own training step on a supernet with OFA's weights in ``layout``, and that supernet; the
    trainer samples from a queue, so each call trains exactly the ``sub`` it is given."""
    _, nat = build_pair("ofa_mbv3", resolution, 1.0, CLASSES)
    nat.channels_last = layout == "channels_last"
    queue: list[Subnet] = []
    trainer = SupernetTrainer(
        nat, total_steps=10**6, sample_subnet=lambda _rng: queue.pop(0), device=device, precision=precision
    )

    def step(sub: Subnet, x: torch.Tensor, y: torch.Tensor) -> None:
        queue.append(sub)
        trainer.train_step(x, y)

    return step, nat


def ofa_train_step(
    precision: Precision, resolution: int, device: torch.device
) -> tuple[Callable[[Subnet, torch.Tensor, torch.Tensor], None], torch.nn.Module]:
    """OFA's training step (`ofa_step`) on OFA's network with the shared weights, on ``device``, and that
    network: the counterpart of `nat_step`."""
    ofa, _ = build_pair("ofa_mbv3", resolution, 1.0, CLASSES)
    ofa.to(device)
    opt = torch.optim.SGD(ofa.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=3e-5)
    return ofa_step(ofa, opt, precision), ofa


#: nat's supernet layouts measured: channels-last (NHWC) and the default NCHW ("contiguous")
LAYOUTS = {"channels_last": "nat_nhwc", "contiguous": "nat_nchw"}


def build_variants(args: argparse.Namespace, device: torch.device) -> dict:
    """``{"nat_nhwc_fp32": (train_step, net, precision), "ofa_fp32": ...}``, all with the same weights."""
    variants = {}
    for p in args.precisions:
        precision = Precision(p, device)
        for layout in args.memory_formats:
            step, nat = nat_step(layout, p, args.resolution, device)
            variants[f"{LAYOUTS[layout]}_{p}"] = (step, nat, precision)
        step, ofa = ofa_train_step(precision, args.resolution, device)
        variants[f"ofa_{p}"] = (step, ofa, precision)
    return variants


def new_shapes_cost(args: argparse.Namespace, device: torch.device, save: Callable[[dict], None]) -> dict:
    """Seconds per training step over ``--sequence`` steps, each on a new random subnet at a random one of
    the paper's resolutions (192-256 px), for each of nat's layouts in ``--memory-formats`` (NCHW first:
    it is nat's CUDA default and the quicker one) and then OFA's network (first precision only): how the
    cost of newly seen layer shapes (kernel builds, autotuning) decays over a run. The contenders run one
    after the other, each in a fresh network; convolution plans may be shared between the two NCHW
    contenders, so OFA's sequence (run last) is, if anything, favoured. ``save`` gets the partial result
    after each contender."""
    p = args.precisions[0]
    precision = Precision(p, device)
    rng = random.Random(1)
    space = get_space("ofa_mbv3")
    plan = [Subnet.sample(space, rng, w=1.0) for _ in range(args.sequence)]
    contenders: list[tuple[str, Callable[[], Callable[[Subnet, torch.Tensor, torch.Tensor], None]]]] = [
        (LAYOUTS[layout], lambda layout=layout: nat_step(layout, p, 224, device)[0])
        for layout in sorted(args.memory_formats, key=lambda layout: layout != "contiguous")
    ]
    contenders.append(("ofa", lambda: ofa_train_step(precision, 224, device)[0]))
    out: dict = {}
    for name, make in contenders:
        step = make()
        g = torch.Generator().manual_seed(0)
        times = []
        for sub in plan:
            x = torch.randn(args.batch, 3, sub.r, sub.r, generator=g).to(device)
            y = torch.randint(0, CLASSES, (args.batch,), generator=g).to(device)
            times.append(timed_pass(lambda sub=sub, x=x, y=y, step=step: step(sub, x, y), device))
        quarter = max(1, len(times) // 4)
        out[name] = {
            "precision": p,
            "step_seconds": times,
            "first_quarter_median_s": statistics.median(times[:quarter]),
            "last_quarter_median_s": statistics.median(times[-quarter:]),
            "total_s": sum(times),
        }
        print(f"  {args.sequence} new subnets, {name} {p}: {sum(times):.1f} s", flush=True)
        save(out)
    return out


def timed_pass(fn: Callable[[], None], device: torch.device) -> float:
    sync(device)
    t0 = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - t0


def measure(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    fast = enable_cuda_fast_path(device, cudnn_benchmark=args.cudnn_benchmark == "on")
    if args.sequence_only:
        return {"cuda_fast_path": fast}
    subs = subnets(args.subnets, args.resolution)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(args.batch, 3, args.resolution, args.resolution, generator=g).to(device)
    y = torch.randint(0, CLASSES, (args.batch,), generator=g).to(device)
    xi = torch.randn(args.infer_batch, 3, args.resolution, args.resolution, generator=g).to(device)
    variants = build_variants(args, device)

    def train_pass(name: str) -> None:
        step = variants[name][0]
        for sub in subs:
            step(sub, x, y)

    @torch.no_grad()
    def infer_pass(name: str) -> None:
        _, net, precision = variants[name]
        net.eval()
        for sub in subs:
            activate(net, sub)
            with precision.autocast():
                net(xi)

    train_imgs, infer_imgs = args.batch * len(subs), args.infer_batch * len(subs)
    cold: dict[str, dict] = {}
    for name in variants:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t_train = timed_pass(lambda name=name: train_pass(name), device)
        peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
        t_infer = timed_pass(lambda name=name: infer_pass(name), device)
        cold[name] = {
            "train_images_per_s": train_imgs / t_train,
            "inference_images_per_s": infer_imgs / t_infer,
            "train_peak_memory_mib": peak,
        }
        print(f"  cold {name}: train {cold[name]['train_images_per_s']:.0f} img/s", flush=True)
    train = {name: [] for name in variants}
    infer = {name: [] for name in variants}
    names = list(variants)
    for r in range(args.rounds):
        order = names if r % 2 == 0 else names[::-1]
        for name in order:
            train[name].append(train_imgs / timed_pass(lambda name=name: train_pass(name), device))
        for name in order:
            infer[name].append(infer_imgs / timed_pass(lambda name=name: infer_pass(name), device))
    space = regime_space("ofa_mbv3", args.resolution)
    madds = statistics.median(profile_subnet(s, space, CLASSES)["madds"] for s in subs)
    out: dict = {
        "median_subnet_madds": madds,
        "cold": cold,
        "train_images_per_s": {k: statistics.median(v) for k, v in train.items()},
        "inference_images_per_s": {k: statistics.median(v) for k, v in infer.items()},
        "train_images_per_s_all": train,
        "inference_images_per_s_all": infer,
        "cuda_fast_path": fast,
        "cudnn_benchmark": bool(torch.backends.cudnn.benchmark) if device.type == "cuda" else None,
    }
    # training arithmetic: forward MAdds x 2 FLOPs x 3 (forward, input gradients, weight gradients)
    nats = [LAYOUTS[layout] for layout in args.memory_formats]
    out["nat_train_tflops"] = {
        f"{nat}_{p}": 6 * madds * out["train_images_per_s"][f"{nat}_{p}"] / 1e12
        for nat in nats
        for p in args.precisions
    }
    for kind in ("train", "inference"):
        figures = out[f"{kind}_images_per_s"]
        out[f"nat_over_ofa_{kind}"] = {
            f"{nat}_{p}": figures[f"{nat}_{p}"] / figures[f"ofa_{p}"] for nat in nats for p in args.precisions
        }
        if "fp32" in args.precisions:
            out[f"over_fp32_{kind}"] = {
                f"{impl}_{p}": figures[f"{impl}_{p}"] / figures[f"{impl}_fp32"]
                for impl in [*nats, "ofa"]
                for p in args.precisions
                if p != "fp32"
            }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--resolution", type=int, default=224)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--infer-batch", type=int, default=256)
    parser.add_argument("--subnets", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=PRECISIONS)
    parser.add_argument("--memory-formats", nargs="+", default=list(LAYOUTS), choices=list(LAYOUTS))
    parser.add_argument("--cudnn-benchmark", choices=["on", "off"], default="off")
    parser.add_argument(
        "--sequence", type=int, default=0, help="then time this many steps on new subnets (0: skip)"
    )
    parser.add_argument(
        "--sequence-only", action="store_true", help="only the --sequence measurement, no throughput passes"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.sequence_only and not args.sequence:
        parser.error("--sequence-only needs --sequence N")
    device = torch.device(args.device)
    commit = code_version()  # the code this process runs (read before the runs, not after)
    t0 = time.perf_counter()
    result: dict = {
        "what": "supernet training/inference images/s, nat vs OFA's package, OFA MobileNetV3 w1.0",
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
        "torch": torch.__version__,
        "resolution": args.resolution,
        "batch": args.batch,
        "infer_batch": args.infer_batch,
        "subnets": args.subnets,
        "rounds": args.rounds,
        "threads": args.threads,
    }
    suffix = "" if device.type == "cpu" else f"_{device.type}"
    path = args.out or ROOT / "bench" / "results" / f"supernet_throughput{suffix}.json"
    path.parent.mkdir(parents=True, exist_ok=True)

    def save(partial: dict | None = None) -> None:
        if partial is not None:
            result["new_shapes"] = partial
        result["seconds"] = time.perf_counter() - t0
        write_result(path, result, indent=2, threads=args.threads, commit=commit)

    result.update(measure(args))
    if args.sequence:
        result["new_shapes"] = new_shapes_cost(args, device, save)
    save()
    if args.sequence_only:
        print(f"took {result['seconds']:.0f} s")
        return
    print(
        f"{result['device_name']} {args.resolution} px, "
        f"train batch {args.batch}, inference batch {args.infer_batch}"
    )
    for kind in ("train", "inference"):
        figures = result[f"{kind}_images_per_s"]
        row = ", ".join(f"{k} {v:.0f}" for k, v in figures.items())
        ratios = ", ".join(f"{k} {v:.2f}" for k, v in result[f"nat_over_ofa_{kind}"].items())
        print(f"{kind} img/s: {row}; over OFA's: {ratios}")
    print(f"took {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()
