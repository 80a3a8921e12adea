"""BN recalibration: running statistics for one subnet from a fixed set of training images.

Weight sharing leaves BN statistics that belong to no particular subnet, so every accuracy NAT
measures with supernet weights is taken after recalibration (OFA's ``set_running_statistics``): the
active subnet sees the calibration images with BN normalising by each batch's own statistics, and each
BN's running mean and (biased) variance become the batch-size weighted averages of those statistics.

The images are fixed (not freshly augmented as in OFA) so that the same subnet always gets the same
statistics: accuracies in the archive are then reproducible, and the resized copies can be cached per
resolution, which saves most of the work when many subnets are evaluated.

The cache lives on the evaluation device, so it is bounded: at most ``max_cached_resolutions``
resolutions and, when ``max_cache_bytes`` is set, at most that many bytes, the least recently used
resolution going first (OFA's space has 17 resolutions; 500 images at 224 px are 300 MB each). A
resolution evicted and needed again is simply resized again: the same images, the same statistics.

Under a ``precision`` of bf16/fp16 the forward passes run in autocast; the statistics themselves are
accumulated in float32 (`nat.supernet.dynamic.BatchNorm2d`).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager, nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from nat.errors import DataError
from nat.runtime.cache import ResolutionCache
from nat.runtime.precision import Precision, as_precision
from nat.space.subnet import Subnet
from nat.supernet.dynamic import BatchNorm2d, RunningAverage, normalise_by_batch


def _collect_statistics(stats: RunningAverage):  # a forward pre-hook
    """A forward pre-hook for a plain ``nn.BatchNorm2d`` (a standalone network's): the same batch
    statistics nat's elastic BN collects itself (`normalise_by_batch`: float32, biased variance)."""

    def hook(module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
        x = inputs[0]
        _, mean, var = normalise_by_batch(x, None, None, module.eps)
        stats.update(mean, var, x.size(0))

    return hook


@contextmanager
def bn_calibration(model: nn.Module) -> Iterator[None]:
    """Within the block, every BN collects batch statistics; on exit they become its running statistics
    (for an elastic BN only the channels that were used; the rest are left as they were).

    nat's elastic BNs (a supernet's) collect them themselves. Plain ``nn.BatchNorm2d`` layers (a
    standalone `StaticMobileNetV3`, e.g. one fine-tuned after extraction) collect them through a hook
    and, in training mode, normalise by the batch's own statistics exactly as the elastic ones do; their
    momentum update of the running statistics and batch counter during the block are undone, so both
    kinds end with the same statistics for the same images."""
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    plain = [m for m in norms if not isinstance(m, BatchNorm2d)]
    stats = {m: RunningAverage() for m in norms}
    counters = [(m, m.num_batches_tracked.clone()) for m in plain if m.num_batches_tracked is not None]
    hooks = [m.register_forward_pre_hook(_collect_statistics(stats[m])) for m in plain]
    for m in norms:
        if isinstance(m, BatchNorm2d):
            m.calibration = stats[m]
    try:
        yield
        with torch.no_grad():
            for m, s in stats.items():
                if s.count and s.mean_sum is not None and s.var_sum is not None:
                    c = s.mean_sum.numel()
                    m.running_mean[:c].copy_(s.mean_sum / s.count)
                    m.running_var[:c].copy_(s.var_sum / s.count)
    finally:
        for h in hooks:
            h.remove()
        with torch.no_grad():
            for m, count in counters:
                m.num_batches_tracked.copy_(count)
        for m in norms:
            if isinstance(m, BatchNorm2d):
                m.calibration = None


@contextmanager
def kept_bn_statistics(model: nn.Module) -> Iterator[None]:
    """Within the block, recalibrate and measure freely; on exit every BN's running mean and variance
    are what they were before, so measuring a subnet never changes the statistics a supernet is trained
    and checkpointed with."""
    saved = [
        (buffer, buffer.clone())
        for name, buffer in model.named_buffers()
        if name.endswith(("running_mean", "running_var"))
    ]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in saved:
                buffer.copy_(value)


@torch.no_grad()
def recalibrate_bn(
    model: nn.Module, batches: Iterable[torch.Tensor], precision: Precision | None = None
) -> None:
    """Recalibrate the BN statistics of ``model`` (a supernet with its active subnet, or a standalone
    network) on ``batches``, with the forward passes in ``precision`` (None: fp32)."""
    was_training = model.training
    model.train()
    try:
        with bn_calibration(model):
            seen = 0
            for images in batches:
                with precision.autocast() if precision is not None else nullcontext():
                    model(images)
                seen += images.size(0)
            if not seen:
                raise DataError("BN recalibration got no images; give it a non-empty calibration set")
    finally:
        model.train(was_training)


class BNCalibrator:
    """A fixed calibration set, resized once per resolution (cached) and cut into batches.

    ``images`` are normalised float images (N, 3, H, W) from the *training* split, at any size. The
    cache of resized copies on ``device`` holds at most ``max_cached_resolutions`` resolutions and, with
    ``max_cache_bytes``, at most that many bytes (least recently used first out; a single resolution
    larger than the bound is used without being cached). ``precision`` (a name or a `Precision`; None:
    fp32) is how the recalibration's forward passes run.
    """

    def __init__(
        self,
        images: torch.Tensor,
        batch_size: int = 200,
        device: torch.device | str = "cpu",
        channels_last: bool = False,
        max_cached_resolutions: int = 32,
        max_cache_bytes: int | None = None,
        precision: Precision | str | None = None,
    ) -> None:
        if images.dim() != 4 or images.size(1) != 3 or images.size(0) == 0:
            raise DataError(
                f"calibration images must be a non-empty (N, 3, H, W) tensor, got shape {tuple(images.shape)}"
            )
        self.images = images.float()
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.channels_last = channels_last
        self.precision = as_precision(precision, self.device)
        self._cache: ResolutionCache[list[torch.Tensor]] = ResolutionCache(
            max_cache_bytes, max_cached_resolutions
        )

    @property
    def max_cache_bytes(self) -> int | None:
        """The bound on the bytes of the cached resized images (None: no bound), as constructed."""
        return self._cache.max_bytes

    def cached_resolutions(self) -> list[int]:
        """The resolutions whose resized images are held now, least recently used first."""
        return self._cache.resolutions()

    def cache_bytes(self) -> int:
        """Bytes the cached resized images take on the device."""
        return self._cache.bytes()

    def batches(self, resolution: int) -> list[torch.Tensor]:
        """The calibration images at ``resolution`` on the device, in batches (cached, LRU)."""
        cached = self._cache.get(resolution)
        if cached is not None:
            return cached
        n, c = self.images.shape[:2]
        size = n * c * resolution * resolution * self.images.element_size()
        fits = self._cache.fits(size)
        if fits:
            self._cache.make_room(size)
        batches = self._resize(resolution)
        if fits:
            self._cache.put(resolution, batches, size)
        return batches

    def _resize(self, resolution: int) -> list[torch.Tensor]:
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
        return list(images.split(self.batch_size))

    def __call__(self, supernet: nn.Module, subnet: Subnet | None = None) -> None:
        """Activate ``subnet`` (if given) and recalibrate the supernet's BN statistics for it."""
        if subnet is not None:
            supernet.set_active(subnet)
        recalibrate_bn(supernet, self.batches(supernet.active.r), self.precision)

    def standalone(self, network: nn.Module) -> None:
        """Recalibrate a standalone network of one subnet (a `StaticMobileNetV3`, at its subnet's
        resolution) on the same images: the statistics its subnet would get inside the supernet."""
        recalibrate_bn(network, self.batches(network.subnet.r), self.precision)
