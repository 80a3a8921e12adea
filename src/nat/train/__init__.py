"""Supernet training: the shared engine (pretraining, online adaptation) and progressive shrinking."""

from nat.train.engine import (
    SupernetTrainer,
    TrainCallback,
    cosine_lr,
    soft_cross_entropy,
    train_supernet,
)
from nat.train.evaluation import evaluate_accuracy, evaluate_top1

__all__ = [
    "SupernetTrainer",
    "TrainCallback",
    "cosine_lr",
    "evaluate_accuracy",
    "evaluate_top1",
    "soft_cross_entropy",
    "train_supernet",
]
