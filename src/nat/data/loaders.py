"""Batch loaders: the fast in-memory path and the standard DataLoader path, behind one factory.

Both yield ``(images, labels)`` with images float ``N x 3 x R x R`` normalised and on ``device``, labels
int64 on ``device``. NAT trains the supernet at a resolution picked per batch, so ``resolution`` may be
an int, a sequence of ints (one is drawn per batch from the loader's seeded generator) or a callable
``step -> int`` (``step`` counts batches planned by this loader across epochs).

Determinism: shuffling, crops and flips come from generators seeded by ``(seed, epoch)``; each full pass
advances the epoch (or call ``set_epoch``). The file path passes a per-sample seed to the workers, so the
result is the same for any ``num_workers``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from nat.data.images import decode_image
from nat.data.source import FileSplit, Split, TaskData, TensorSplit
from nat.data.transforms import (
    DEFAULT_RATIO,
    DEFAULT_SCALE,
    eval_batch,
    normalize_batch,
    pil_eval,
    pil_train,
    train_batch,
)
from nat.errors import DataError
from nat.runtime.threads import torch_threads

Resolution = int | Sequence[int] | Callable[[int], int]
Batch = tuple[torch.Tensor, torch.Tensor]


class BatchLoader(Protocol):
    """What `make_loader` returns: an iterable of batches with a length and an epoch."""

    batch_size: int

    def __iter__(self) -> Iterator[Batch]: ...

    def __len__(self) -> int: ...

    def set_epoch(self, epoch: int) -> None: ...


def _epoch_generator(seed: int, epoch: int) -> torch.Generator:
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch * 7_919) % (2**63))


class _ResolutionPicker:
    """Turns the ``resolution`` argument into one int per batch."""

    def __init__(self, resolution: Resolution) -> None:
        if callable(resolution):
            self._fn: Callable[[int], int] | None = resolution
            self._choices: tuple[int, ...] = ()
        else:
            self._fn = None
            self._choices = (
                (resolution,) if isinstance(resolution, int) else tuple(int(r) for r in resolution)
            )
            if not self._choices or any(r < 1 for r in self._choices):
                raise ValueError(
                    f"resolution must be a positive int, a non-empty list of them, or a callable; "
                    f"got {resolution!r}"
                )

    def __call__(self, step: int, generator: torch.Generator) -> int:
        if self._fn is not None:
            res = int(self._fn(step))
            if res < 1:
                raise ValueError(f"resolution callable returned {res} for step {step}")
            return res
        if len(self._choices) == 1:
            return self._choices[0]
        return self._choices[int(torch.randint(len(self._choices), (1,), generator=generator))]


def _num_batches(n: int, batch_size: int, drop_last: bool) -> int:
    return n // batch_size if drop_last else -(-n // batch_size)


def _check_rows(
    rows: tuple[int, int] | None, batch_size: int, n: int, drop_last: bool
) -> tuple[int, int] | None:
    """Validate a per-process share ``(start, stop)`` of every batch."""
    if rows is None:
        return None
    start, stop = int(rows[0]), int(rows[1])
    if not 0 <= start < stop <= batch_size:
        raise ValueError(f"rows must satisfy 0 <= start < stop <= batch_size ({batch_size}), got {rows}")
    if n < batch_size:
        raise DataError(
            f"the split holds {n} images, fewer than one batch of {batch_size}: too few to share out "
            "between processes; lower data.train_batch_size or run one process"
        )
    if not drop_last:
        raise ValueError("rows (a per-process share of each batch) needs drop_last=True")
    return start, stop


# ----------------------------------------------------------------------------------------- in memory


class InMemoryLoader:
    """Batches from a `TensorSplit`: index the uint8 tensor, then transform the whole batch at once.

    The images are moved to ``device`` once, so on a GPU the host is out of the loop entirely.
    """

    def __init__(
        self,
        split: TensorSplit,
        *,
        batch_size: int,
        resolution: Resolution,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        device: str | torch.device = "cpu",
        seed: int = 0,
        shuffle: bool | None = None,
        drop_last: bool = False,
        hflip: bool = True,
        crop_pct: float = 1.0,
        scale: Sequence[float] = DEFAULT_SCALE,
        ratio: Sequence[float] = DEFAULT_RATIO,
        out_channels: int = 3,
        cpu_threads: int | None = 1,
        rows: tuple[int, int] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.rows = _check_rows(rows, batch_size, len(split.labels), drop_last)
        # the batched transforms are many small, memory-bound ops: on a CPU, intra-op threads cost more in
        # synchronisation than they gain (and collapse when cores are shared), so they run single-threaded
        self.cpu_threads = cpu_threads if self.device.type == "cpu" else None
        self.images = split.images.to(self.device)
        self.labels = split.labels.to(self.device)
        self.batch_size = batch_size
        self.train = train
        self.shuffle = train if shuffle is None else shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.step = 0
        self._pick = _ResolutionPicker(resolution)
        self._kw = {"mean": tuple(mean), "std": tuple(std), "out_channels": out_channels}
        self._train_kw = {"hflip": hflip, "scale": tuple(scale), "ratio": tuple(ratio)}
        self.crop_pct = crop_pct

    def __len__(self) -> int:
        return _num_batches(len(self.labels), self.batch_size, self.drop_last)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        g = _epoch_generator(self.seed, self.epoch)
        self.epoch += 1
        n = len(self.labels)
        order = torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            total = len(idx)
            if self.rows is not None:
                idx = idx[self.rows[0] : self.rows[1]]
            idx = idx.to(self.device)
            res = self._pick(self.step, g)
            self.step += 1
            with torch_threads(self.cpu_threads):
                imgs = self.images.index_select(0, idx)
                if self.train:
                    rows = None if self.rows is None else (self.rows[0], total)
                    x = train_batch(imgs, res, generator=g, rows=rows, **self._kw, **self._train_kw)  # type: ignore[arg-type]
                else:
                    x = eval_batch(imgs, res, crop_pct=self.crop_pct, **self._kw)  # type: ignore[arg-type]
                y = self.labels.index_select(0, idx)
            yield x, y


# ----------------------------------------------------------------------------------------- files


class _FileImages(Dataset[tuple[torch.Tensor, int]]):
    """Decodes one image per key ``(index, resolution, sample_seed)``; runs inside DataLoader workers."""

    def __init__(
        self,
        split: FileSplit,
        *,
        channels: int,
        train: bool,
        hflip: bool,
        crop_pct: float,
        scale: Sequence[float],
        ratio: Sequence[float],
    ) -> None:
        self.paths = split.paths
        self.labels = split.labels.tolist()
        self.channels, self.train, self.hflip, self.crop_pct = channels, train, hflip, crop_pct
        self.scale, self.ratio = tuple(scale), tuple(ratio)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: tuple[int, int, int]) -> tuple[torch.Tensor, int]:  # type: ignore[override]
        index, res, sample_seed = key
        path = self.paths[index]
        try:
            img = decode_image(path, self.channels)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
            # an error, not a silent substitute: the file is named and the run stops before it trains
            # or measures on images it never saw (the scan decoded only a sample of a large folder)
            raise DataError(
                f"cannot decode image {path} ({' '.join(str(exc).split())}); remove or replace the file, "
                "then run the same command again (a search resumes with --resume)"
            ) from None
        if self.train:
            rng = random.Random(sample_seed)
            x = pil_train(img, res, rng, scale=self.scale, ratio=self.ratio, hflip=self.hflip)
        else:
            x = pil_eval(img, res, crop_pct=self.crop_pct)
        return x, self.labels[index]


class _BatchPlan(Sampler[list[tuple[int, int, int]]]):
    """Plans batches in the main process: indices, one resolution per batch, one seed per sample."""

    def __init__(
        self,
        n: int,
        batch_size: int,
        shuffle: bool,
        drop_last: bool,
        seed: int,
        pick: _ResolutionPicker,
        rows: tuple[int, int] | None = None,
    ):
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.seed, self.pick, self.rows = seed, pick, rows
        self.epoch = 0
        self.step = 0

    def __len__(self) -> int:
        return _num_batches(self.n, self.batch_size, self.drop_last)

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        g = _epoch_generator(self.seed, self.epoch)
        self.epoch += 1
        order = torch.randperm(self.n, generator=g) if self.shuffle else torch.arange(self.n)
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size].tolist()
            res = self.pick(self.step, g)
            self.step += 1
            seeds = torch.randint(0, 2**62, (len(idx),), generator=g).tolist()
            keys = [(i, res, s) for i, s in zip(idx, seeds, strict=True)]
            yield keys if self.rows is None else keys[self.rows[0] : self.rows[1]]


def _worker_errors_unwrapped(loader: DataLoader) -> Iterator[Any]:
    """``loader``'s batches; a `DataError` raised in a worker process (whose text DataLoader wraps in
    the worker's traceback) is raised again with its own one-line message."""
    try:
        yield from loader
    except DataError as exc:
        _stop_workers(loader)
        lines = [ln for ln in str(exc).splitlines() if ln.strip()]
        tagged = [ln for ln in lines if "DataError: " in ln]
        message = tagged[-1].split("DataError: ", 1)[1] if tagged else (lines[-1] if lines else str(exc))
        raise DataError(message) from None


def _stop_workers(loader: DataLoader) -> None:
    """End a loader's persistent workers now: after a worker's error they would otherwise linger until
    garbage collection, whose shutdown then waits out a timeout per worker."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
        loader._iterator = None


class FileLoader:
    """Batches from a `FileSplit` through a standard ``DataLoader`` (workers, pinned memory).

    Workers return uint8 tensors; conversion to float and normalisation happen per batch on ``device``,
    which moves 4x fewer bytes to the GPU than shipping float images.
    """

    def __init__(
        self,
        split: FileSplit,
        *,
        batch_size: int,
        resolution: Resolution,
        train: bool,
        mean: Sequence[float],
        std: Sequence[float],
        channels: int,
        device: str | torch.device = "cpu",
        seed: int = 0,
        shuffle: bool | None = None,
        drop_last: bool = False,
        hflip: bool = True,
        crop_pct: float = 0.875,
        scale: Sequence[float] = DEFAULT_SCALE,
        ratio: Sequence[float] = DEFAULT_RATIO,
        out_channels: int = 3,
        num_workers: int = 0,
        pin_memory: bool | None = None,
        rows: tuple[int, int] | None = None,
    ) -> None:
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.channels = channels  # of the decoded uint8 images (`uint8_batches`)
        rows = _check_rows(rows, batch_size, len(split), drop_last)
        dataset = _FileImages(
            split, channels=channels, train=train, hflip=hflip, crop_pct=crop_pct, scale=scale, ratio=ratio
        )
        self.plan = _BatchPlan(
            len(split),
            batch_size,
            train if shuffle is None else shuffle,
            drop_last,
            seed,
            _ResolutionPicker(resolution),
            rows,
        )
        pin = self.device.type == "cuda" if pin_memory is None else pin_memory
        self._non_blocking = pin
        self._loader = DataLoader(
            dataset,
            batch_sampler=self.plan,
            num_workers=num_workers,
            pin_memory=pin,
            persistent_workers=num_workers > 0,
        )
        self._kw = {"mean": tuple(mean), "std": tuple(std), "out_channels": out_channels}

    def __len__(self) -> int:
        return len(self.plan)

    def set_epoch(self, epoch: int) -> None:
        self.plan.epoch = epoch

    def __iter__(self) -> Iterator[Batch]:
        for x, y in self.uint8_batches():
            yield self.normalize(x), y

    def uint8_batches(self) -> Iterator[Batch]:
        """The batches as decoded, uint8 at their final size, on the device: a quarter of the bytes of
        the normalised images, so a cache of them (the search-validation split's, per resolution) holds
        four times as many; `normalize` turns one into exactly what iterating the loader gives."""
        for x, y in _worker_errors_unwrapped(self._loader):
            yield (
                x.to(self.device, non_blocking=self._non_blocking),
                y.to(self.device, non_blocking=self._non_blocking),
            )

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """A uint8 batch of `uint8_batches` -> the normalised float batch (``out_channels``)."""
        return normalize_batch(images, **self._kw)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------- factory


def make_loader(
    task: TaskData,
    split: str | Split,
    *,
    batch_size: int,
    resolution: Resolution,
    train: bool | None = None,
    device: str | torch.device = "cpu",
    seed: int = 0,
    shuffle: bool | None = None,
    drop_last: bool | None = None,
    num_workers: int = 0,
    pin_memory: bool | None = None,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
    hflip: bool | None = None,
    rows: tuple[int, int] | None = None,
) -> InMemoryLoader | FileLoader:
    """A loader over one split of ``task`` (``"train"``, ``"val"``, ``"test"``, or a `Split` such as a
    subset for BN recalibration). In-memory splits get the fast path; file splits the DataLoader path.

    ``train`` (default: ``split == "train"``) selects random-resized-crop + flip and shuffling; otherwise
    centre-crop, fixed order. ``drop_last`` defaults to True for training when the split holds more than
    one batch (a trailing batch of 1 upsets BatchNorm). ``hflip=None`` uses the dataset's default.

    ``rows=(start, stop)``: yield only those rows of every batch (this process's share of the batch under
    torchrun, `nat.runtime.distributed.batch_rows`). Order, resolutions and augmentation are drawn for the
    whole batch as one process would, so the shares together are the one-process batches. Needs
    ``drop_last`` (every batch full, so no share is ever empty).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    data = task.split(split) if isinstance(split, str) else split
    is_train = (split == "train") if train is None else train
    if drop_last is None:
        drop_last = is_train and len(data) > batch_size
    src = task.source
    common = {
        "batch_size": batch_size,
        "resolution": resolution,
        "train": is_train,
        "mean": src.mean,
        "std": src.std,
        "device": device,
        "seed": seed,
        "shuffle": shuffle,
        "drop_last": drop_last,
        "hflip": src.hflip if hflip is None else hflip,
        "crop_pct": src.eval_crop_pct,
        "scale": scale,
        "ratio": ratio,
        "rows": rows,
    }
    if isinstance(data, TensorSplit):
        return InMemoryLoader(data, **common)  # type: ignore[arg-type]
    return FileLoader(data, channels=src.channels, num_workers=num_workers, pin_memory=pin_memory, **common)  # type: ignore[arg-type]
