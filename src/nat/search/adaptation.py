"""Online supernet adaptation (NAT section 3.4): train the supernet on the task, on promising subnets.

Every batch trains one subnet drawn from the archive distribution (`GenomeDistribution`) at that
subnet's own resolution, so the weights the search relies on improve exactly where the search looks.
SGD with Nesterov momentum, cosine decay over the adaptation's steps and label smoothing, as in OFA's
and NAT's fine-tuning recipes. Deterministic for a fixed seed: subnets, batches and dropout all flow
from ``seed`` (the global torch RNG is forked, not disturbed).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from nat.data import TaskData, loader_from_config
from nat.search.config import SearchConfig
from nat.search.distribution import GenomeDistribution
from nat.space.genome import decode
from nat.supernet import Supernet


def adapt_supernet(net: Supernet, task: TaskData, distribution: GenomeDistribution, width: float,
                   config: SearchConfig, epochs: float, seed: int, device: torch.device,
                   desc: str = "adapt") -> dict[str, float]:
    """Train ``net`` (the supernet of ``width``) for ``epochs`` on subnets sampled from ``distribution``."""
    cfg = config.adaptation
    batch_size = config.data.train_batch_size
    steps = max(1, math.ceil(epochs * max(1, len(task.train) // batch_size)))
    if cfg.max_steps is not None:
        steps = min(steps, cfg.max_steps)
    rng = np.random.default_rng(seed)
    genomes = distribution.sample(steps, rng)
    genomes[:, 1] = list(net.space.width_mults).index(width)
    subnets = [decode(g, net.space) for g in genomes]
    loader = loader_from_config(task, config.data, "train", resolution=lambda step: subnets[step % steps].r,
                                train=True, seed=seed, device=device)
    optimizer = torch.optim.SGD(net.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.momentum > 0,
                                weight_decay=cfg.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    net.train()
    losses: list[float] = []
    devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        progress = tqdm(total=steps, desc=desc, leave=False, disable=None)
        step = 0
        while step < steps:
            for images, labels in loader:
                net.set_active(subnets[step])
                loss = F.cross_entropy(net(images.to(device)), labels.to(device),
                                       label_smoothing=cfg.label_smoothing)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
                optimizer.step()
                schedule.step()
                losses.append(loss.item())
                step += 1
                progress.update(1)
                if step >= steps:
                    break
        progress.close()
    net.eval()
    return {"steps": steps, "loss": float(np.mean(losses[-max(1, steps // 10):]))}
