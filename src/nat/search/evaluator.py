"""Real evaluation of subnets: supernet weights, BN recalibration, top-1 on search-validation data.

This is the expensive step the surrogates stand in for. For each subnet: activate it on the supernet
of its width, recalibrate BN on a fixed set of training images (cached per resolution), and measure
top-1 on the search-validation split at the subnet's resolution (batches cached per resolution when
they fit in memory). BN recalibration and the validation pass run in the run's ``precision`` (autocast;
the resized calibration images stay on the device up to ``evaluation.calibration_cache_mb``, least
recently used first out). Latency, when it is a measured objective, is measured outside autocast on the
extracted standalone model, as deployed.
A measurement that is not a finite number is a `ConfigError` naming the measure and the subnet.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch

from nat.data import TaskData, loader_from_config
from nat.errors import ConfigError
from nat.objectives.latency import measure_latency_ms
from nat.runtime import Runtime
from nat.runtime.device import resolve_device
from nat.search.config import SearchConfig
from nat.search.supernets import supernet_for
from nat.space.subnet import Subnet
from nat.supernet import BNCalibrator, Supernet, kept_bn_statistics
from nat.train import evaluate_top1

log = logging.getLogger(__name__)

CACHE_BYTES = 512 * 2**20
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
        self._val_cache: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}

    def _val_batches(self, resolution: int):
        if resolution in self._val_cache:
            return self._val_cache[resolution]
        loader = loader_from_config(
            self.task,
            self.config.data,
            self.val,
            resolution=resolution,
            train=False,
            device=self.device,
            seed=self.config.seed,
        )
        if len(self.val) * 3 * resolution * resolution * 4 > CACHE_BYTES:
            return loader
        batches = [(x, y) for x, y in loader]
        self._val_cache[resolution] = batches
        return batches

    def top1(self, subnet: Subnet) -> float:
        """Search-validation top-1 of ``subnet`` with shared weights, after BN recalibration."""
        net = supernet_for(self.supernets, subnet)
        # the supernet's own running statistics (those of training) are put back afterwards: what a
        # checkpoint holds then does not depend on which subnet was measured last, so a resumed run
        # continues from exactly the state an uninterrupted one had
        with kept_bn_statistics(net):
            self.calibrator(net, subnet)  # in the run's precision (the calibrator holds it)
            return evaluate_top1(
                net, self._val_batches(subnet.r), device=self.device, precision=self.precision
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
