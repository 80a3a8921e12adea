"""Real evaluation of subnets: supernet weights, BN recalibration, top-1 on search-validation data.

This is the expensive step the surrogates stand in for. For each subnet: activate it on the supernet
of its width, recalibrate BN on a fixed set of training images (cached per resolution), and measure
top-1 on the search-validation split at the subnet's resolution. BN recalibration and the validation
pass run in the run's ``precision`` (autocast). Both image sets are prepared once per resolution and
kept on the device within a bound, least recently used resolution first out: the resized calibration
images up to ``evaluation.calibration_cache_mb``, the validation batches up to
``evaluation.validation_cache_mb`` (a file-based split's as decoded uint8, normalised per use).
Latency, when it is a measured objective, is measured outside autocast on the extracted standalone
model, as deployed.
A measurement that is not a finite number is a `ConfigError` naming the measure and the subnet.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator

import numpy as np
import torch

from nat.data import TaskData, loader_from_config
from nat.data.loaders import FileLoader, InMemoryLoader
from nat.errors import ConfigError
from nat.objectives.latency import measure_latency_ms
from nat.runtime import Runtime
from nat.runtime.cache import ResolutionCache
from nat.runtime.device import resolve_device
from nat.search.config import SearchConfig
from nat.search.supernets import supernet_for
from nat.space.subnet import Subnet
from nat.supernet import BNCalibrator, Supernet, kept_bn_statistics
from nat.train import evaluate_top1

log = logging.getLogger(__name__)

#: offset of the calibration-set and validation-cap draws from the run seed (part of every result)
SUBSET_SEED_OFFSET = 17


def calibration_images(
    task: TaskData, config: SearchConfig, resolution: int, rng: np.random.Generator, count: int | None = None
) -> torch.Tensor:
    """``count`` (default: ``evaluation.calibration_images``, at most the split) training images drawn
    by ``rng``, without augmentation, at ``resolution``, on the CPU: a BN calibration set."""
    count = min(config.evaluation.calibration_images if count is None else count, len(task.train))
    split = task.train.subset(np.sort(rng.choice(len(task.train), count, replace=False)))
    loader = loader_from_config(
        task, config.data, split, resolution=resolution, train=False, seed=config.seed
    )
    return torch.cat([x for x, _ in loader]).cpu()


Batch = tuple[torch.Tensor, torch.Tensor]
#: turns the images of a kept validation batch into what the loader's own iteration gives
Prepare = Callable[[torch.Tensor], torch.Tensor]


class ValidationCache:
    """The search-validation batches per resolution, kept on the device within ``max_bytes`` (least
    recently used resolution evicted first; one larger than the bound is streamed, never kept).

    Every subnet of a search is measured on the same images, so decoding and resizing them again for
    each repeats the same work: for 5,000 JPEGs at 224 px with no CPU core to spare, a validation pass
    took 1.41x as long uncached (docs/results/evaluation_speed.md), and a GPU's forward passes outrun
    the decoding by far. A file split's batches are kept as decoded (uint8, a quarter of the bytes) and
    normalised per use by the loader's own `FileLoader.normalize`, so a cached pass gives exactly the
    floats a fresh one gives; an in-memory split's are kept as the normalised floats its loader
    resamples on the device. What is cached changes speed, never results (`nat.runtime.cache`).
    """

    def __init__(self, make_loader: Callable[[int], FileLoader | InMemoryLoader], max_bytes: int) -> None:
        self.make_loader = make_loader
        #: per resolution: the batches as kept, and what turns a kept batch's images into the loader's
        self._cache: ResolutionCache[tuple[list[Batch], Prepare]] = ResolutionCache(max_bytes)
        self._streamed_noted = False

    def cached_resolutions(self) -> list[int]:
        """The resolutions held now, least recently used first."""
        return self._cache.resolutions()

    def cache_bytes(self) -> int:
        return self._cache.bytes()

    def batches(self, resolution: int) -> Iterable[Batch]:
        """The normalised validation batches at ``resolution``, on the device."""
        cached = self._cache.get(resolution)
        if cached is not None:
            kept, prepare = cached
            return ((prepare(x), y) for x, y in kept)
        loader = self.make_loader(resolution)
        size = _expected_bytes(loader, resolution)
        if not self._cache.fits(size):
            bound = self._cache.max_bytes or 0  # 0: the user keeps none, and knows it
            if not self._streamed_noted and bound > 0:  # once: a hint, not a fault
                self._streamed_noted = True
                log.info(
                    "the search-validation images at %d px take %.0f MB, more than "
                    "evaluation.validation_cache_mb (%.0f): they are read again for every subnet; a larger "
                    "bound keeps them (speed only, never results)",
                    resolution,
                    size / 2**20,
                    bound / 2**20,
                )
            return loader
        self._cache.make_room(size)
        return self._filling(resolution, loader)

    def _filling(self, resolution: int, loader: FileLoader | InMemoryLoader) -> Iterator[Batch]:
        """The first pass at ``resolution``: each batch is used as it arrives (the loader's workers
        still decode ahead of the forward passes) and kept; the whole set is cached once the pass ends."""
        if isinstance(loader, FileLoader):  # kept as decoded, normalised per use
            raw, prepare = loader.uint8_batches(), loader.normalize
        else:  # kept as the loader gives them
            raw, prepare = iter(loader), _as_given
        kept: list[Batch] = []
        for x, y in raw:
            kept.append((x, y))
            yield prepare(x), y
        self._cache.put(resolution, (kept, prepare), _bytes(kept))  # what the tensors take


def _as_given(images: torch.Tensor) -> torch.Tensor:
    return images


def _bytes(batches: list[Batch]) -> int:
    return sum(x.numel() * x.element_size() + y.numel() * y.element_size() for x, y in batches)


def _expected_bytes(loader: FileLoader | InMemoryLoader, resolution: int) -> int:
    """What keeping ``loader``'s batches would take: uint8 images of the file's channels, or
    normalised float32 RGB, plus int64 labels."""
    if isinstance(loader, FileLoader):
        n, per_image = loader.plan.n, loader.channels * resolution * resolution
    else:
        n, per_image = len(loader.labels), 3 * resolution * resolution * 4
    return n * (per_image + 8)


class SubnetEvaluator:
    """Measures top-1 (and latency) of subnets with shared supernet weights."""

    def __init__(
        self, supernets: dict[float, Supernet], task: TaskData, config: SearchConfig, runtime: Runtime
    ) -> None:
        self.supernets, self.task, self.config = supernets, task, config
        self.device = device = runtime.device
        # resolved now, so that a latency device this machine lacks fails before any training
        self.latency_device = resolve_device(config.latency.device) if config.latency.device else device
        space = next(iter(supernets.values())).space
        rng = np.random.default_rng(config.seed + SUBSET_SEED_OFFSET)
        images = calibration_images(task, config, max(space.resolutions), rng)
        self.precision = runtime.precision
        self.calibrator = BNCalibrator(
            images,
            batch_size=config.data.train_batch_size,
            device=device,
            channels_last=runtime.channels_last,
            max_cache_bytes=int(config.evaluation.calibration_cache_mb * 2**20),
            precision=self.precision,
        )
        val = task.val
        if config.evaluation.max_val_images and len(val) > config.evaluation.max_val_images:
            idx = np.sort(rng.choice(len(val), config.evaluation.max_val_images, replace=False))
            val = val.subset(idx)
        self.val = val
        self.validation = ValidationCache(
            lambda resolution: loader_from_config(
                task, config.data, val, resolution=resolution, train=False, device=device, seed=config.seed
            ),
            int(config.evaluation.validation_cache_mb * 2**20),
        )

    def validation_batches(self, resolution: int) -> Iterable[Batch]:
        """The search-validation batches at ``resolution``, normalised, on the device (cached)."""
        return self.validation.batches(resolution)

    def top1(self, subnet: Subnet) -> float:
        """Search-validation top-1 of ``subnet`` with shared weights, after BN recalibration."""
        net = supernet_for(self.supernets, subnet)
        # the supernet's own running statistics (those of training) are put back afterwards: what a
        # checkpoint holds then does not depend on which subnet was measured last, so a resumed run
        # continues from exactly the state an uninterrupted one had
        with kept_bn_statistics(net):
            self.calibrator(net, subnet)  # in the run's precision (the calibrator holds it)
            return evaluate_top1(
                net, self.validation_batches(subnet.r), device=self.device, precision=self.precision
            )

    def latency_ms(self, subnet: Subnet) -> float:
        model = supernet_for(self.supernets, subnet).extract(subnet)
        lat = self.config.latency
        return measure_latency_ms(
            model, subnet.r, lat.batch_size, lat.warmup, lat.repeats, self.latency_device
        )

    def evaluate(self, subnet: Subnet, measure_latency: bool) -> dict[str, float]:
        values = {"top1": _finite("top1", self.top1(subnet), subnet, TOP1_HINT)}
        if measure_latency:
            values["latency"] = _finite("latency", self.latency_ms(subnet), subnet, LATENCY_HINT)
        return values


TOP1_HINT = "the supernet weights may have diverged (lower adaptation.lr)"
LATENCY_HINT = "the timer gave no usable measurement; raise latency.repeats or measure on another device"


def _finite(name: str, value: float, subnet: Subnet, hint: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ConfigError(f"objective {name!r} measured {value} on subnet {subnet.to_dict()}: {hint}")
    return value
