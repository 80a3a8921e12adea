"""Online supernet adaptation (NAT section 3.4): train the supernet on the task, on promising subnets.

Every batch trains one subnet drawn from the archive distribution (`GenomeDistribution`) at that
subnet's own resolution (the loader produces each batch at the resolution of the subnet planned for
it), so the weights the search relies on improve exactly where the search looks. The optimisation
itself is nat's shared training engine (`nat.train.train_supernet`): SGD with Nesterov momentum,
cosine decay, label smoothing; deterministic for a fixed seed; forward passes in the run's
``precision``.
"""

from __future__ import annotations

import math
import random

import numpy as np

from nat.data import TaskData, loader_from_config
from nat.runtime import Runtime
from nat.runtime.distributed import batch_rows
from nat.search.config import SearchConfig
from nat.search.distribution import GenomeDistribution
from nat.space.genome import decode
from nat.space.subnet import Subnet
from nat.supernet import Supernet
from nat.train import train_supernet


def adapt_supernet(
    net: Supernet,
    task: TaskData,
    distribution: GenomeDistribution,
    width: float,
    config: SearchConfig,
    epochs: float,
    seed: int,
    runtime: Runtime,
    desc: str = "adapt",
) -> dict[str, float]:
    """Train ``net`` (the supernet of ``width``) for ``epochs`` on subnets sampled from ``distribution``.

    Under torchrun every rank plans the same subnets (same seed) and loads its share of each batch;
    the training engine averages the gradients (DistributedDataParallel)."""
    collective, device = runtime.collective, runtime.device
    cfg = config.adaptation
    steps = max(1, math.ceil(epochs * max(1, len(task.train) // config.data.train_batch_size)))
    if cfg.max_steps is not None:
        steps = min(steps, cfg.max_steps)
    genomes = distribution.sample(steps, np.random.default_rng(seed))
    genomes[:, 1] = list(net.space.width_mults).index(width)
    subnets = [decode(g, net.space) for g in genomes]
    loader = loader_from_config(
        task,
        config.data,
        "train",
        resolution=lambda step: subnets[step % steps].r,
        train=True,
        seed=seed,
        device=device,
        rows=batch_rows(config.data.train_batch_size, collective) if collective.active else None,
    )
    planned = iter(subnets)

    def next_subnet(_rng: random.Random) -> Subnet:
        return next(planned)

    was_training = net.training
    net.train()
    stats = train_supernet(
        net,
        loader,
        steps=steps,
        sample_subnet=next_subnet,
        lr=cfg.lr,
        momentum=cfg.momentum,
        weight_decay=cfg.weight_decay,
        label_smoothing=cfg.label_smoothing,
        grad_clip=5.0,
        seed=seed,
        device=device,
        precision=runtime.precision,
        desc=desc,
        collective=collective,
        **({"distill_from": "largest", "distill_every": cfg.distill_every} if cfg.distill else {}),
    )
    net.train(was_training)
    return stats
