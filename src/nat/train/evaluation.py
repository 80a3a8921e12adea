"""Top-1 accuracy of a classifier (a supernet with its active subnet, or any `nn.Module`) over a loader."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from nat.errors import ConfigError


@torch.no_grad()
def evaluate_top1(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: str | torch.device | None = None,
    max_batches: int | None = None,
) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` (a supernet with its active subnet, or any classifier) over
    ``loader``, in eval mode without gradients. Images are used at the loader's resolution; recalibrate BN
    first (`nat.supernet.BNCalibrator`) when evaluating a subnet with supernet weights."""
    was_training = model.training
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    correct = total = 0
    try:
        for i, (images, labels) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            logits = model(images.to(device))
            correct += int((logits.argmax(1) == labels.to(device)).sum())
            total += labels.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise ConfigError("evaluate_top1 got an empty loader")
    return correct / total


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    loader: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    device: str | torch.device | None = None,
) -> dict[str, float | int]:
    """``{"top1", "top5", "images"}`` of ``model`` over ``loader`` (eval mode, no gradients).

    Top-1 is counted exactly as `evaluate_top1` counts it (``argmax``, so ties resolve the same way and
    the two always agree); top-5 is whether the label is among the five highest logits (all of them
    with fewer than five classes).
    """
    was_training = model.training
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    top1 = top5 = total = 0
    try:
        for images, labels in loader:
            logits = model(images.to(device))
            labels = labels.to(device)
            top1 += int((logits.argmax(1) == labels).sum())
            best = logits.topk(min(5, logits.size(1)), dim=1).indices
            top5 += int((best == labels[:, None]).any(1).sum())
            total += labels.numel()
    finally:
        model.train(was_training)
    if total == 0:
        raise ConfigError("evaluate_accuracy got an empty loader")
    return {"top1": top1 / total, "top5": top5 / total, "images": total}
