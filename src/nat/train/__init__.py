"""Supernet training: the shared engine (pretraining, online adaptation) and progressive shrinking."""

from nat.train.engine import (
    SupernetTrainer,
    cosine_lr,
    evaluate_top1,
    soft_cross_entropy,
    train_supernet,
)

__all__ = [
    "SupernetTrainer",
    "cosine_lr",
    "evaluate_top1",
    "soft_cross_entropy",
    "train_supernet",
]
