"""How fast can 2 processes train the shipped supernet on this CPU? The ceiling under the 1.6x target.

`bench/distributed_scaling.py` measures nat's adaptation on 2 processes against 1 (gloo, one thread
each, same global batch). For the shipped supernet (`builtin:fashion_mnist_tiny`, 2.2 M parameters,
28 px) it stays below issue 17's 1.6x. This benchmark splits a training step into what limits it, with a
plain loop on the shipped supernet (activate a random subnet, forward, cross-entropy, backward, SGD with
momentum; the same subnets on every rank, as nat's trainer draws them):

* ``one_process_ms``: one process, the global batch and half of it (one thread);
* ``two_process_ms``: two processes under torchrun, half the batch each: ``no_sync`` (no gradient
  exchange: the best two processes can do, with whatever they cost each other in cache and memory
  bandwidth), ``ddp`` (DistributedDataParallel as nat's trainer wraps the supernet:
  ``find_unused_parameters=True``, no buffer broadcast), and ``allreduce`` (one gloo all-reduce of a
  buffer the size of all gradients, alone);
* the speedups over one process: ``no_sync`` (the ceiling of any data-parallel scheme here),
  ``no_sync_plus_allreduce`` (that ceiling once the gradients are exchanged once per step, with nothing
  else in the way) and ``ddp``.

Rounds are interleaved (1 process, 2 processes, ...); figures are medians over rounds of per-step means.

    python bench/distributed_ceiling.py [--batch 64] [--steps 10] [--rounds 3]

Writes bench/results/distributed_ceiling.json. About a minute on this project's 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from distributed_scaling import torchrun  # noqa: E402
from record import code_version, write_result  # noqa: E402

RESULT = ROOT / "bench" / "results" / "distributed_ceiling.json"
MODES = ("no_sync", "ddp")


def seconds_per_step(batch: int, steps: int, mode: str, seed: int) -> float:
    """Seconds per step over ``steps`` steps on random subnets (same on every rank), ``mode`` in
    ``local`` (one process), ``no_sync`` or ``ddp``; each rank draws its own images."""
    import torch
    import torch.nn.functional as F

    from nat.search.supernets import builtin_supernet
    from nat.space import Subnet
    from nat.supernet import load_supernet

    torch.set_num_threads(1)
    net = load_supernet(builtin_supernet("fashion_mnist_tiny"), num_classes=10)
    model: torch.nn.Module = net
    rank = 0
    if mode != "local":
        import torch.distributed as dist

        rank = dist.get_rank()
        if mode == "ddp":
            from torch.nn.parallel import DistributedDataParallel

            from nat.train.engine import _no_buffer_sync

            model = DistributedDataParallel(net, find_unused_parameters=True, **_no_buffer_sync())
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    g = torch.Generator().manual_seed(rank)
    x = torch.randn(batch, 3, 28, 28, generator=g)
    y = torch.randint(0, 10, (batch,), generator=g)
    rng = random.Random(seed)
    subnets = [Subnet.sample(net.space, rng, w=1.0) for _ in range(steps + 1)]

    def one(subnet: Subnet) -> None:
        net.train()
        net.set_active(subnet)
        optimizer.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        optimizer.step()

    one(subnets[0])  # warm-up
    if mode != "local":
        torch.distributed.barrier()
    start = time.perf_counter()
    for subnet in subnets[1:]:
        one(subnet)
    if mode != "local":
        torch.distributed.barrier()
    return (time.perf_counter() - start) / steps


def allreduce_seconds(repeats: int = 12) -> float:
    """One gloo all-reduce of a float32 buffer with as many elements as the supernet has parameters."""
    import torch
    import torch.distributed as dist

    from nat.search.supernets import builtin_supernet
    from nat.supernet import load_supernet

    n = sum(p.numel() for p in load_supernet(builtin_supernet("fashion_mnist_tiny"), 10).parameters())
    buffer = torch.randn(n)
    times = []
    for _ in range(repeats):
        dist.barrier()
        start = time.perf_counter()
        dist.all_reduce(buffer)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:])


def worker(args: argparse.Namespace) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    out = {"seconds_per_step": seconds_per_step(args.batch // 2, args.steps, args.mode, args.seed)}
    if args.mode == "no_sync":
        out["allreduce_s"] = allreduce_seconds()
    if dist.get_rank() == 0:
        Path(args.out).write_text(json.dumps(out))
    dist.barrier()  # no rank leaves while another still talks to it
    dist.destroy_process_group()


def two_processes(args: argparse.Namespace, mode: str, seed: int, out: Path) -> dict:
    arguments = ["--worker", "--mode", mode, "--out", str(out), "--batch", str(args.batch)]
    arguments += ["--steps", str(args.steps), "--seed", str(seed)]
    torchrun(__file__, 2, arguments, f"2-process {mode} run")
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=64, help="global batch (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--result", type=Path, default=RESULT)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "src"))
    if args.worker:
        worker(args)
        return
    commit = code_version()  # the code this process runs (the launcher's; workers need none)
    one: dict[str, list[float]] = {"global_batch": [], "half_batch": []}
    two: dict[str, list[float]] = {mode: [] for mode in MODES}
    allreduce: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            one["global_batch"].append(seconds_per_step(args.batch, args.steps, "local", r))
            one["half_batch"].append(seconds_per_step(args.batch // 2, args.steps, "local", r))
            for mode in MODES:
                figures = two_processes(args, mode, r, Path(tmp) / f"{mode}_{r}.json")
                two[mode].append(figures["seconds_per_step"])
                if "allreduce_s" in figures:
                    allreduce.append(figures["allreduce_s"])
    ms = {k: 1000 * statistics.median(v) for k, v in one.items()}
    ms2 = {k: 1000 * statistics.median(v) for k, v in two.items()}
    ms2["allreduce"] = 1000 * statistics.median(allreduce)
    base = ms["global_batch"]
    result = {
        "what": "the shipped supernet's training step, 1 process vs 2 (gloo, CPU, one thread each), by part",
        "global_batch": args.batch,
        "steps": args.steps,
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
        "one_process_ms": ms,
        "two_process_ms": ms2,
        "speedup": {
            "half_batch_alone": base / ms["half_batch"],
            "no_sync": base / ms2["no_sync"],
            "no_sync_plus_allreduce": base / (ms2["no_sync"] + ms2["allreduce"]),
            "ddp": base / ms2["ddp"],
        },
        "raw": {"one_process_s": one, "two_process_s": two, "allreduce_s": allreduce},
    }
    write_result(args.result, result, indent=2, threads=1, commit=commit)
    s = result["speedup"]
    print(
        f"ms per step: 1 process {ms['global_batch']:.0f} (batch {args.batch}), "
        f"{ms['half_batch']:.0f} (half); 2 processes no sync {ms2['no_sync']:.0f}, DDP {ms2['ddp']:.0f}; "
        f"all-reduce of all gradients {ms2['allreduce']:.1f}. Speedup: half batch alone "
        f"{s['half_batch_alone']:.2f}x, 2 processes without sync {s['no_sync']:.2f}x, plus one all-reduce "
        f"{s['no_sync_plus_allreduce']:.2f}x, DDP {s['ddp']:.2f}x"
    )
    print(f"wrote {args.result}")


if __name__ == "__main__":
    main()
