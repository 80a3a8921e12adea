"""BN recalibration: running statistics for one subnet from a fixed set of training images.

Weight sharing leaves BN statistics that belong to no particular subnet, so every accuracy NAT
measures with supernet weights is taken after recalibration (OFA's ``set_running_statistics``): the
active subnet sees the calibration images with BN normalising by each batch's own statistics, and each
BN's running mean and (biased) variance become the batch-size weighted averages of those statistics.

The images are fixed (not freshly augmented as in OFA) so that the same subnet always gets the same
statistics: accuracies in the archive are then reproducible, and the resized copies can be cached per
resolution, which saves most of the work when many subnets are evaluated.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from nat.errors import DataError
from nat.space.subnet import Subnet
from nat.supernet.dynamic import BatchNorm2d, RunningAverage


@contextmanager
def bn_calibration(model: nn.Module) -> Iterator[None]:
    """Within the block, every elastic BN collects batch statistics; on exit they become its running
    statistics (only the channels that were used; the rest are left as they were)."""
    norms = [m for m in model.modules() if isinstance(m, BatchNorm2d)]
    for m in norms:
        m.calibration = RunningAverage()
    try:
        yield
        with torch.no_grad():
            for m in norms:
                stats = m.calibration
                if stats is not None and stats.count:
                    c = stats.mean_sum.numel()
                    m.running_mean[:c].copy_(stats.mean_sum / stats.count)
                    m.running_var[:c].copy_(stats.var_sum / stats.count)
    finally:
        for m in norms:
            m.calibration = None


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable[torch.Tensor]) -> None:
    """Recalibrate the BN statistics of ``model`` (a supernet with its active subnet) on ``batches``."""
    was_training = model.training
    model.train()
    try:
        with bn_calibration(model):
            seen = 0
            for images in batches:
                model(images)
                seen += images.size(0)
            if not seen:
                raise DataError("BN recalibration got no images; give it a non-empty calibration set")
    finally:
        model.train(was_training)


class BNCalibrator:
    """A fixed calibration set, resized once per resolution (cached) and cut into batches.

    ``images`` are normalised float images (N, 3, H, W) from the *training* split, at any size.
    """

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int = 200,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        max_cached_resolutions: int = 32,
    ) -> None:
        if images.dim() != 4 or images.size(1) != 3 or images.size(0) == 0:
            raise DataError(
                f"calibration images must be a non-empty (N, 3, H, W) tensor, got shape {tuple(images.shape)}"
            )
        self.images = images.float()
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.max_cached = max_cached_resolutions
        self._cache: dict[int, list[torch.Tensor]] = {}

    def batches(self, resolution: int) -> list[torch.Tensor]:
        if resolution not in self._cache:
            if len(self._cache) >= self.max_cached:
                self._cache.pop(next(iter(self._cache)))
            images = self.images
            if images.shape[-2:] != (resolution, resolution):
                images = F.interpolate(
                    images,
                    size=(resolution, resolution),
                    mode="bilinear",
                    align_corners=False,
                    antialias=resolution < images.size(-1),
                )
            images = images.to(self.device)
            if self.channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            self._cache[resolution] = list(images.split(self.batch_size))
        return self._cache[resolution]

    def __call__(self, supernet: nn.Module, subnet: Subnet | None = None) -> None:
        """Activate ``subnet`` (if given) and recalibrate the supernet's BN statistics for it."""
        if subnet is not None:
            supernet.set_active(subnet)
        recalibrate_bn(supernet, self.batches(supernet.active.r))
