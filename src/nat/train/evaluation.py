"""Top-1 accuracy of a classifier (a supernet with its active subnet, or any `nn.Module`) over a loader.

``precision`` (`nat.runtime.precision`) runs the forward passes under autocast for bf16/fp16. Counts are
accumulated on the device and read once at the end, so a GPU is not stopped after every batch.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from nat.errors import ConfigError
from nat.runtime.precision import Precision, as_precision


@torch.no_grad()
def evaluate_top1(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: str | torch.device | None = None,
    max_batches: int | None = None,
    precision: Precision | str | None = None,
) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (a supernet with its active subnet, or any classifier) over
    ``loader``, in eval mode without gradients. Images are used at the loader's resolution; recalibrate BN
    first (`nat.supernet.BNCalibrator`) when evaluating a subnet with supernet weights."""
    was_training = model.training
    device = torch.device(device) if device is not None else next(model.parameters()).device
    autocast = as_precision(precision, device).autocast
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    total = 0
    try:
        for i, (images, labels) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            with autocast():
                logits = model(images.to(device, non_blocking=True))
            correct += (logits.argmax(1) == labels.to(device, non_blocking=True)).sum()
            total += labels.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise ConfigError("evaluate_top1 got an empty loader")
    return int(correct) / total


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: str | torch.device | None = None,
    precision: Precision | str | None = None,
) -> dict[str, float | int]:
    """``{"top1", "top5", "images"}`` of ``model`` over ``loader`` (eval mode, no gradients).

    Top-1 is counted exactly as `evaluate_top1` counts it (``argmax``, so ties resolve the same way and
    the two always agree); top-5 is whether the label is among the five highest logits (all of them
    with fewer than five classes).
    """
    was_training = model.training
    device = torch.device(device) if device is not None else next(model.parameters()).device
    autocast = as_precision(precision, device).autocast
    model.eval()
    counts = torch.zeros(2, dtype=torch.long, device=device)  # top-1, top-5
    total = 0
    try:
        for images, labels in loader:
            with autocast():
                logits = model(images.to(device, non_blocking=True))
            labels = labels.to(device, non_blocking=True)
            counts[0] += (logits.argmax(1) == labels).sum()
            best = logits.topk(min(5, logits.size(1)), dim=1).indices
            counts[1] += (best == labels[:, None]).any(1).sum()
            total += labels.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise ConfigError("evaluate_accuracy got an empty loader")
    top1, top5 = counts.tolist()
    return {"top1": top1 / total, "top5": top5 / total, "images": total}
