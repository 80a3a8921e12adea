"""The data containers every dataset reader returns and every loader consumes.

A split is held in one of two ways, and the rest of the data layer only has to know these two:

* `TensorSplit`: the whole split as one ``uint8`` tensor ``N x C x H x W`` plus ``int64`` labels. Small
  sets (CIFAR, MNIST, the offline sets, and file-based sets cached with `materialize`) live like this, so
  that a batch is one indexing operation followed by batched augmentation, with no per-sample Python.
* `FileSplit`: image paths plus labels, for sets too large for memory (ImageNet, Food-101); these go
  through a standard ``DataLoader`` with worker processes.

`DatasetSource` is what a registered reader returns: the *official* splits of a set plus the facts the
loaders need (classes, normalisation, whether flipping is label-preserving). `TaskData` is the view the
search uses: exactly ``train``, ``val`` (search-validation) and ``test``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

logger = logging.getLogger(__name__)

#: normalisation statistics of ImageNet, the default for natural-image sets transferred from ImageNet
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: the split names a `TaskData` always has; ``val`` is the search-validation split
TASK_SPLITS: tuple[str, str, str] = ("train", "val", "test")


def _as_label_tensor(labels: Any) -> torch.Tensor:
    return torch.as_tensor(np.asarray(labels), dtype=torch.int64).reshape(-1)


@dataclass(frozen=True, eq=False)
class TensorSplit:
    """A split held in memory: ``images`` uint8 ``N x C x H x W``, ``labels`` int64 ``N``."""

    images: torch.Tensor
    labels: torch.Tensor

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(
                f"images must be uint8 NxCxHxW, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        object.__setattr__(self, "labels", _as_label_tensor(self.labels))
        if len(self.labels) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.labels)} labels")

    def __len__(self) -> int:
        return int(self.labels.numel())

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])

    def subset(self, indices: np.ndarray | Sequence[int]) -> TensorSplit:
        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return TensorSplit(self.images[idx], self.labels[idx])


@dataclass(frozen=True, eq=False)
class FileSplit:
    """A split left on disk: one image path and one int64 label per sample."""

    paths: tuple[str, ...]
    labels: torch.Tensor

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(str(p) for p in self.paths))
        object.__setattr__(self, "labels", _as_label_tensor(self.labels))
        if len(self.labels) != len(self.paths):
            raise ValueError(f"{len(self.paths)} paths but {len(self.labels)} labels")

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices: np.ndarray | Sequence[int]) -> FileSplit:
        idx = np.asarray(indices, dtype=np.int64)
        return FileSplit(tuple(self.paths[i] for i in idx), self.labels[torch.as_tensor(idx)])


Split = TensorSplit | FileSplit


@dataclass
class DatasetSource:
    """One dataset as its reader found it: official splits plus what loaders need to know about it.

    ``splits`` holds the *published* splits: always ``train`` and ``test``, and ``val`` only where the set
    has an official validation split. ``image_size`` is the native size when all images share one (it lets
    ``in_memory="auto"`` estimate memory), else ``None``. ``hflip`` is False for sets whose labels a
    horizontal flip can change (digits). ``eval_crop_pct`` is the centre-crop fraction used at evaluation
    (1.0 keeps the whole image, the right choice for small images; 0.875 is the ImageNet habit).
    """

    name: str
    class_names: list[str]
    splits: dict[str, Split]
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    channels: int = 3
    image_size: tuple[int, int] | None = None
    hflip: bool = True
    eval_crop_pct: float = 1.0
    root: Path | None = None
    notes: list[str] = field(default_factory=list)
    skipped_files: int = 0

    def __post_init__(self) -> None:
        missing = {"train", "test"} - set(self.splits)
        if missing:
            raise ValueError(f"dataset {self.name!r} reader returned no {sorted(missing)} split")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError(f"dataset {self.name!r}: mean/std must have {self.channels} entries")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def storage(self) -> str:
        """``"memory"`` when every split is a `TensorSplit`, else ``"files"``."""
        return "memory" if all(isinstance(s, TensorSplit) for s in self.splits.values()) else "files"


@dataclass
class TaskData:
    """The three splits the search needs, plus the dataset facts the loaders use.

    ``val`` is the search-validation split: the official validation split where the set has one, else a
    stratified hold-out from the official train split (``val_origin`` says which). ``test`` is never used
    by the search; it is there for the final report.
    """

    source: DatasetSource
    train: Split
    val: Split
    test: Split
    val_origin: str

    def split(self, name: str) -> Split:
        if name not in TASK_SPLITS:
            raise ValueError(f"unknown split {name!r}; expected one of {TASK_SPLITS}")
        return getattr(self, name)

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def num_classes(self) -> int:
        return self.source.num_classes

    @property
    def class_names(self) -> list[str]:
        return self.source.class_names

    @property
    def storage(self) -> str:
        return "memory" if all(isinstance(self.split(s), TensorSplit) for s in TASK_SPLITS) else "files"

    def info(self) -> dict[str, Any]:
        """A JSON-ready summary (what ``nat data info --json`` prints)."""
        src = self.source
        return {
            "name": src.name,
            "num_classes": src.num_classes,
            "splits": {s: len(self.split(s)) for s in TASK_SPLITS},
            "official_splits": {s: len(v) for s, v in src.splits.items()},
            "val_origin": self.val_origin,
            "channels": src.channels,
            "image_size": list(src.image_size) if src.image_size else None,
            "storage": self.storage,
            "mean": list(src.mean),
            "std": list(src.std),
            "hflip": src.hflip,
            "root": str(src.root) if src.root else None,
            "skipped_files": src.skipped_files,
            "notes": list(src.notes),
            "class_names": list(src.class_names),
        }
