"""Code run inside the processes of the distributed tests (spawned, so it must be importable).

Each worker joins a job the way torchrun would start it (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR``/``MASTER_PORT`` in the environment) through `nat.runtime.distributed.distributed_session`,
does its part, and leaves what the test checks in ``out`` (a folder).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import torch


def join(rank: int, world: int, port: int) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)


def tiny_net():
    from nat.supernet import Supernet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = Supernet("micro", num_classes=10)
        net.reset_classifier(10, dropout_rate=0.0)
    return net


def batch(n: int = 8, resolution: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, resolution, resolution, generator=g), torch.randint(0, 10, (n,), generator=g)


def ddp_step(rank: int, world: int, port: int, out: str) -> None:
    """One optimiser step of the training engine on this rank's rows of a fixed batch (SGD, lr 1, no
    momentum or decay: the update is minus the gradient); rank r saves its weights."""
    from nat.runtime.distributed import batch_rows, distributed_session
    from nat.space.subnet import Subnet
    from nat.train.engine import SupernetTrainer

    join(rank, world, port)
    with distributed_session("cpu", timeout_minutes=1) as collective:
        net = tiny_net()
        subnet = Subnet.largest(net.space)
        trainer = SupernetTrainer(
            net,
            total_steps=1,
            sample_subnet=lambda rng: subnet,
            lr=1.0,
            momentum=0.0,
            weight_decay=0.0,
            label_smoothing=0.0,
            seed=0,
            device="cpu",
        )
        images, labels = batch()
        start, stop = batch_rows(len(labels), collective)
        trainer.train_step(images[start:stop], labels[start:stop])
        torch.save({k: v.detach() for k, v in net.named_parameters()}, Path(out) / f"rank{rank}.pt")


def collectives(rank: int, world: int, port: int, out: str) -> None:
    """broadcast, gather of dealt-out work, mean and sync_module, written to rank{r}.json."""
    from nat.runtime.distributed import balanced_shares, distributed_session

    join(rank, world, port)
    with distributed_session("cpu", timeout_minutes=1) as c:
        got = c.broadcast({"from": rank} if c.is_main else None)
        gathered = c.gather(rank * 10)
        shares = balanced_shares([1.0] * 7, c.world_size)
        mine = {i: i * i for i in shares[c.rank]}
        whole = [v for _, v in sorted((i, v) for part in c.gather(mine) for i, v in part.items())]
        mean = c.mean({"x": float(rank)})
        net = torch.nn.Linear(3, 2)
        with torch.no_grad():
            net.weight.fill_(float(rank))
        c.sync_module(net)
        result = {
            "rank": c.rank,
            "world": c.world_size,
            "broadcast": got,
            "gather": gathered,
            "unshard": whole,
            "mean": mean,
            "weight": net.weight.flatten().tolist(),
        }
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(result))


def peer_fails(rank: int, world: int, port: int, out: str) -> None:
    """Rank 1 leaves (``mode=exit``) or stalls (``mode=hang``) before a broadcast rank 0 waits in;
    rank 0 writes the error it gets."""
    from nat.errors import DistributedError
    from nat.runtime.distributed import distributed_session

    mode = Path(out, "mode").read_text()
    join(rank, world, port)
    with distributed_session("cpu", timeout_minutes=3 / 60) as c:
        c.barrier()
        if rank == 1:
            if mode == "exit":
                os._exit(3)  # dies without a word, as a killed process would
            time.sleep(12)
            return
        try:
            c.broadcast("anything")
            c.barrier()
            Path(out, "error.txt").write_text("no error")
        except DistributedError as exc:
            Path(out, "error.txt").write_text(str(exc))
        os._exit(0)  # leave without waiting for the missing peer in the group's teardown


def refusals(rank: int, world: int, port: int, out: str) -> None:
    """Rank 0 refuses (a `ConfigError`, then an `OSError`) inside `Collective.on_main`: every rank must
    end with that refusal, and a decision that succeeds reaches every rank."""
    join(rank, world, port)
    from nat.errors import ConfigError
    from nat.runtime.distributed import distributed_session

    def refuse() -> None:
        raise ConfigError(f"{out} already holds a run (decided on rank {rank})")

    def unreadable() -> None:
        raise PermissionError(13, "Permission denied", f"{out}/config.yaml")

    seen = {}
    with distributed_session("cpu") as c:
        for name, fn in (("nat", refuse), ("os", unreadable)):
            try:
                c.on_main(fn)
                seen[name] = "no error"
            except (ConfigError, OSError) as exc:
                seen[name] = f"{type(exc).__name__}: {exc}"
        seen["decided"] = c.decide(lambda: {"plan": rank})
        seen["kept"] = c.on_main(lambda: "rank 0's own object")
    Path(out, f"rank{rank}.json").write_text(json.dumps(seen))
