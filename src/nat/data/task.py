"""`load_dataset`: from a dataset name to the three splits the search uses, cached in memory if it fits.

Order matters for determinism: the search-validation hold-out is drawn from the labels alone (before any
caching), so the same seed gives the same split whether a set is read from files or from memory.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Literal

from nat.data.images import materialize
from nat.data.registry import get_source
from nat.data.source import IMAGENET_MEAN, IMAGENET_STD, DatasetSource, FileSplit, Split, TaskData
from nat.data.splits import stratified_holdout
from nat.errors import DataError

logger = logging.getLogger(__name__)

InMemory = bool | Literal["auto"]

#: the most classes a task may have (far above any real set; a larger count is a mistake, not a task)
MAX_CLASSES = 1_000_000


def check_num_classes(n: int, what: str = "number of classes") -> int:
    """``n`` if it is a usable class count for NAT (2 to `MAX_CLASSES`), else a `DataError`."""
    if isinstance(n, bool) or not isinstance(n, int) or not 2 <= n <= MAX_CLASSES:
        raise DataError(f"{what} must be an integer from 2 to {MAX_CLASSES:,}, got {n!r}")
    return n


def check_classes(source: DatasetSource) -> None:
    """A `DataError` unless the set has 2 to `MAX_CLASSES` classes, its training split holds at least
    two of them, and every label is a valid class index (checked before anything is decoded)."""
    n = source.num_classes
    if n < 2:
        which = f" ({source.class_names[0]!r})" if source.class_names else ""
        raise DataError(
            f"the dataset {source.name!r} has a single class{which}; NAT needs at least 2 "
            "(e.g. one sub-folder per class for a folder dataset)"
        )
    check_num_classes(n, f"dataset {source.name!r}: the number of classes")
    for split_name, split in source.splits.items():
        labels = split.labels
        if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= n):
            raise DataError(
                f"dataset {source.name!r}: {split_name} labels range over "
                f"[{int(labels.min())}, {int(labels.max())}], outside the {n} classes [0, {n - 1}]"
            )
    present = int(source.splits["train"].labels.unique().numel())
    if present < 2:
        raise DataError(
            f"the training split of dataset {source.name!r} holds images of {present} class(es); NAT needs "
            "at least 2"
        )


def cache_bytes(source: DatasetSource, cache_size: int) -> int:
    """Bytes the whole set takes as uint8 tensors (native size if fixed, else ``cache_size`` squares)."""
    h, w = source.image_size or (cache_size, cache_size)
    return sum(len(s) for s in source.splits.values()) * source.channels * h * w


def wants_memory(
    source: DatasetSource, in_memory: InMemory, memory_budget_gb: float, cache_size: int
) -> bool:
    """Decide whether file-based splits are decoded into memory (``"auto"``: when they fit the budget)."""
    if in_memory == "auto":
        return cache_bytes(source, cache_size) <= memory_budget_gb * 2**30
    return bool(in_memory)


#: training images whose pixels give ``normalization: measured`` its statistics (a spread sample)
MEASURE_IMAGES = 1_000


def _apply_normalization(source: DatasetSource, normalization: str) -> None:
    if normalization == "imagenet":
        if source.channels == 3:
            source.mean, source.std = IMAGENET_MEAN, IMAGENET_STD
        else:
            source.mean, source.std = (0.449,), (0.226,)
    elif normalization == "measured":
        source.mean, source.std = measured_statistics(source.splits["train"], source.channels)
        source.notes.append(f"mean/std measured on up to {MEASURE_IMAGES:,} training images")
    elif normalization != "dataset":
        raise ValueError(f"normalization must be 'dataset', 'imagenet' or 'measured', got {normalization!r}")


def measured_statistics(split: Split, channels: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std, in [0, 1] units, of the pixels of a spread sample of ``split`` (every
    image up to `MEASURE_IMAGES`; the same sample every time)."""
    import numpy as np

    from nat.data.images import decode_image

    def pixels_of(i: int) -> np.ndarray:
        if isinstance(split, FileSplit):
            return np.asarray(decode_image(split.paths[i], channels), dtype=np.float64).reshape(-1, channels)
        return split.images[i].double().reshape(channels, -1).T.numpy()

    step = max(1, len(split) // MEASURE_IMAGES)
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for i in range(0, len(split), step)[:MEASURE_IMAGES]:
        pixels = pixels_of(i) / 255.0
        total += pixels.sum(axis=0)
        squares += (pixels**2).sum(axis=0)
        count += len(pixels)
    mean = total / count
    std = np.sqrt(np.maximum(squares / count - mean**2, 1e-6))
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(max(v, 1e-3)), 4) for v in std)


def load_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    val_size: float | int = 0.1,
    seed: int = 0,
    in_memory: InMemory = "auto",
    memory_budget_gb: float = 4.0,
    cache_size: int = 256,
    normalization: Literal["dataset", "imagenet", "measured"] = "dataset",
) -> TaskData:
    """Read dataset ``name`` and return its ``train`` / ``val`` (search-validation) / ``test`` splits.

    ``val`` is the official validation split when the set has one; otherwise ``val_size`` (a fraction of
    train in (0, 1), or a count) is held out of train, stratified by class, drawn from ``seed``.
    ``in_memory`` applies to file-based sets: ``"auto"`` decodes them into uint8 tensors when the result
    fits ``memory_budget_gb`` (variable-size images are cached at ``cache_size`` squares, shorter side
    resized then centre-cropped). Raises `DataError` for anything wrong with the data, among it a set
    of fewer than 2 classes (checked before anything is decoded).
    """
    source = get_source(name, root)
    check_classes(source)
    _apply_normalization(source, normalization)
    train = source.splits["train"]
    if "val" in source.splits:
        val: Split = source.splits["val"]
        origin = "official validation split"
    else:
        keep, held = stratified_holdout(train.labels.numpy(), val_size, seed)
        train, val = train.subset(keep), train.subset(held)
        origin = f"held out of train: {len(held)} images, stratified by class, seed {seed}"
    splits: dict[str, Split] = {"train": train, "val": val, "test": source.splits["test"]}
    if source.storage == "files" and wants_memory(source, in_memory, memory_budget_gb, cache_size):
        size = None if source.image_size else cache_size
        logger.info(
            "decoding %s into memory (%.2f GiB)", source.name, cache_bytes(source, cache_size) / 2**30
        )
        for split_name, split in splits.items():
            if isinstance(split, FileSplit):
                splits[split_name], bad = materialize(
                    split, channels=source.channels, size=size, desc=f"{source.name} {split_name}"
                )
                source.skipped_files += bad
        if size is not None:
            source.notes.append(f"cached in memory at {size}x{size} (shorter side resized, centre-cropped)")
    return TaskData(source, splits["train"], splits["val"], splits["test"], origin)
