"""Train and eval transforms, in two forms that produce the same kind of result.

* Batched (`train_batch`, `eval_batch`): for in-memory uint8 batches, on whatever device the batch is on.
  One random-resized-crop + flip per sample is expressed as one affine sampling grid per sample, and the
  whole batch is resampled by a single ``grid_sample`` call; normalisation is one fused multiply-add. No
  per-sample Python, no PIL.
* Per-sample PIL (`pil_train`, `pil_eval`): for file-based sets decoded in DataLoader workers; returns
  uint8 ``C x R x R`` so that conversion to float and normalisation happen once per batch on the device.

Both follow torchvision's ``RandomResizedCrop`` recipe (area fraction in ``scale``, log-uniform aspect
ratio in ``ratio``, ten attempts then a centre-crop fallback) and use explicit generators, so a fixed
seed gives the same batches whatever the device or worker count.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

DEFAULT_SCALE: tuple[float, float] = (0.08, 1.0)
DEFAULT_RATIO: tuple[float, float] = (3.0 / 4.0, 4.0 / 3.0)


# ------------------------------------------------------------------------------------------- batched


def rrc_boxes(
    n: int,
    height: int,
    width: int,
    *,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
    generator: torch.Generator,
    attempts: int = 10,
) -> torch.Tensor:
    """Sample ``n`` random-resized-crop boxes ``(x0, y0, w, h)`` in pixels (float64, CPU)."""
    area = float(height * width)
    target = (
        torch.empty(n, attempts, dtype=torch.float64).uniform_(scale[0], scale[1], generator=generator) * area
    )
    log_r = torch.empty(n, attempts, dtype=torch.float64).uniform_(
        math.log(ratio[0]), math.log(ratio[1]), generator=generator
    )
    r = torch.exp(log_r)
    w = torch.sqrt(target * r)
    h = torch.sqrt(target / r)
    ok = (w <= width) & (h <= height)
    first = ok.to(torch.int8).argmax(dim=1, keepdim=True)
    w = w.gather(1, first).squeeze(1)
    h = h.gather(1, first).squeeze(1)
    in_ratio = width / height  # torchvision's fallback: the largest centred crop within the ratio range
    if in_ratio < ratio[0]:
        fw, fh = float(width), width / ratio[0]
    elif in_ratio > ratio[1]:
        fw, fh = height * ratio[1], float(height)
    else:
        fw, fh = float(width), float(height)
    found = ok.any(dim=1)
    w = torch.where(found, w, torch.full_like(w, fw))
    h = torch.where(found, h, torch.full_like(h, fh))
    u = torch.rand(n, 2, dtype=torch.float64, generator=generator)
    x0 = u[:, 0] * (width - w)
    y0 = u[:, 1] * (height - h)
    return torch.stack([x0, y0, w, h], dim=1)


def _affine(
    boxes: torch.Tensor, height: int, width: int, flip: torch.Tensor | None, device: torch.device
) -> torch.Tensor:
    """Boxes (pixels) -> ``N x 2 x 3`` theta mapping output coords to input coords (align_corners=False)."""
    x0, y0, w, h = boxes.unbind(1)
    theta = torch.zeros(len(boxes), 2, 3, dtype=torch.float64)
    sx = w / width
    theta[:, 0, 0] = sx if flip is None else torch.where(flip, -sx, sx)
    theta[:, 0, 2] = (x0 + w / 2) / width * 2 - 1
    theta[:, 1, 1] = h / height
    theta[:, 1, 2] = (y0 + h / 2) / height * 2 - 1
    return theta.to(device=device, dtype=torch.float32)


def _norm_coeffs(
    mean: Sequence[float], std: Sequence[float], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """``x_uint8 * a - b`` == ``(x / 255 - mean) / std``, as ``1 x C x 1 x 1`` tensors."""
    s = torch.tensor(std, dtype=torch.float32)
    m = torch.tensor(mean, dtype=torch.float32)
    a = (1.0 / (255.0 * s)).view(1, -1, 1, 1).to(device)
    b = (m / s).view(1, -1, 1, 1).to(device)
    return a, b


def _to_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    if x.shape[1] == channels:
        return x
    if x.shape[1] == 1:
        return x.expand(-1, channels, -1, -1).contiguous()
    raise ValueError(f"cannot turn {x.shape[1]} channels into {channels}")


#: inputs up to this side are resampled with two small matrix products (fast on CPU, antialiased);
#: larger ones with ``grid_sample``, whose cost does not grow with the input size
SEPARABLE_MAX_SIDE = 96


def _interp_matrices(start: torch.Tensor, length: torch.Tensor, size_in: int, size_out: int) -> torch.Tensor:
    """Per-sample ``size_out x size_in`` resampling weights for the crop ``[start, start + length)``.

    A triangle (bilinear) filter whose support widens with the shrink factor, as PIL's antialiased resize
    does; rows sum to one, so edges clamp instead of darkening.
    """
    scale = length / size_out
    support = scale.clamp(min=1.0)
    j = torch.arange(size_out, dtype=start.dtype, device=start.device) + 0.5
    centers = start[:, None] + j[None, :] * scale[:, None]
    i = torch.arange(size_in, dtype=start.dtype, device=start.device) + 0.5
    w = (1 - (i[None, None, :] - centers[:, :, None]).abs() / support[:, None, None]).clamp_(min=0)
    return w / w.sum(dim=-1, keepdim=True)


def _separable_resample(
    x: torch.Tensor, boxes: torch.Tensor, resolution: int, flip: torch.Tensor | None
) -> torch.Tensor:
    """Crop-and-resize every sample as ``Wy @ X @ Wx^T`` (two batched matmuls)."""
    _, _, height, width = x.shape
    bx = boxes.to(device=x.device, dtype=torch.float32)
    wx = _interp_matrices(bx[:, 0], bx[:, 2], width, resolution)
    if flip is not None:
        wx = torch.where(flip.to(x.device)[:, None, None], wx.flip(1), wx)
    wy = _interp_matrices(bx[:, 1], bx[:, 3], height, resolution)
    cols = torch.matmul(x, wx.transpose(1, 2).unsqueeze(1))  # N x C x H x R
    return torch.matmul(wy.unsqueeze(1), cols)  # N x C x R x R


def _grid_resample(
    x: torch.Tensor, boxes: torch.Tensor, resolution: int, flip: torch.Tensor | None
) -> torch.Tensor:
    """Crop-and-resize with one affine ``grid_sample`` over the batch (large inputs)."""
    n, _, height, width = x.shape
    # cheap anti-aliasing: when every crop shrinks by >= 2x, pre-shrink the whole batch by an area filter
    shrink = int(min(float(boxes[:, 2].min()), float(boxes[:, 3].min())) // resolution)
    src = x
    if shrink >= 2:
        src = F.interpolate(x, size=(max(1, height // shrink), max(1, width // shrink)), mode="area")
    theta = _affine(boxes, height, width, flip, x.device)
    grid = F.affine_grid(theta, [n, x.shape[1], resolution, resolution], align_corners=False)
    return F.grid_sample(src, grid, mode="bilinear", padding_mode="border", align_corners=False)


def train_batch(
    images: torch.Tensor,
    resolution: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    generator: torch.Generator,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
    hflip: bool = True,
    out_channels: int = 3,
    rows: tuple[int, int] | None = None,
) -> torch.Tensor:
    """Random-resized-crop + horizontal flip + normalise a uint8 ``N x C x H x W`` batch, all at once.

    ``rows=(start, total)``: ``images`` are rows ``start .. start+N`` of a batch of ``total`` images (one
    process's share under torchrun); the random numbers are drawn for all ``total`` rows and this share's
    are used, so the shares of all processes together get the crops and flips one process would draw for
    the whole batch, and every process's generator stays in step.

    Random numbers come from ``generator`` (CPU), so results do not depend on the device. Small inputs
    (side <= `SEPARABLE_MAX_SIDE`) are resampled by two batched matmuls with antialiasing filters, larger
    ones by ``grid_sample``. Normalisation is applied on the smaller of input and output (resampling
    weights sum to one, so it commutes); grayscale is resampled on one channel, then widened.
    """
    n, _, height, width = images.shape
    start, total = (0, n) if rows is None else rows
    boxes = rrc_boxes(total, height, width, scale=scale, ratio=ratio, generator=generator)[start : start + n]
    flip = (torch.rand(total, generator=generator) < 0.5)[start : start + n] if hflip else None
    a, b = _norm_coeffs(mean, std, images.device)
    x = images.float()
    early = height * width <= resolution * resolution
    if early:
        x = torch.addcmul(-b, x, a)
    if max(height, width) <= SEPARABLE_MAX_SIDE:
        x = _separable_resample(x, boxes, resolution, flip)
    else:
        x = _grid_resample(x, boxes, resolution, flip)
    if not early:
        x = torch.addcmul(-b, x, a)
    return _to_channels(x, out_channels)


def eval_batch(
    images: torch.Tensor,
    resolution: int,
    *,
    mean: Sequence[float],
    std: Sequence[float],
    crop_pct: float = 1.0,
    out_channels: int = 3,
) -> torch.Tensor:
    """Centre-crop ``crop_pct`` of the shorter side, resize (antialiased bilinear) and normalise a batch."""
    _, _, height, width = images.shape
    side = max(1, round(min(height, width) * crop_pct))
    top, left = (height - side) // 2, (width - side) // 2
    x = images[:, :, top : top + side, left : left + side].float()
    a, b = _norm_coeffs(mean, std, images.device)
    if side != resolution:
        x = F.interpolate(
            x,
            size=(resolution, resolution),
            mode="bilinear",
            align_corners=False,
            antialias=side > resolution,
        )
    return _to_channels(torch.addcmul(-b, x, a), out_channels)


def normalize_batch(
    images: torch.Tensor, *, mean: Sequence[float], std: Sequence[float], out_channels: int = 3
) -> torch.Tensor:
    """uint8 batch already at its final size (from the file path) -> normalised float, ``out_channels``."""
    a, b = _norm_coeffs(mean, std, images.device)
    return _to_channels(torch.addcmul(-b, images.float(), a), out_channels)


# ------------------------------------------------------------------------------------------- PIL


def _pil_rrc_box(
    width: int, height: int, scale: Sequence[float], ratio: Sequence[float], rng: random.Random
) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params``, driven by a private ``random.Random``."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(scale[0], scale[1])
        r = math.exp(rng.uniform(*log_ratio))
        w = round(math.sqrt(target * r))
        h = round(math.sqrt(target / r))
        if 0 < w <= width and 0 < h <= height:
            x0 = rng.randint(0, width - w)
            y0 = rng.randint(0, height - h)
            return x0, y0, w, h
    in_ratio = width / height
    if in_ratio < ratio[0]:
        w, h = width, round(width / ratio[0])
    elif in_ratio > ratio[1]:
        w, h = round(height * ratio[1]), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def _pil_to_uint8(img: Image.Image) -> torch.Tensor:
    arr = np.asarray(img, dtype=np.uint8)
    t = torch.from_numpy(arr.copy())
    return t.unsqueeze(0) if t.dim() == 2 else t.permute(2, 0, 1).contiguous()


def pil_train(
    img: Image.Image,
    resolution: int,
    rng: random.Random,
    *,
    scale: Sequence[float] = DEFAULT_SCALE,
    ratio: Sequence[float] = DEFAULT_RATIO,
    hflip: bool = True,
) -> torch.Tensor:
    """Random-resized-crop (one antialiased PIL resize with a box) + flip -> uint8 ``C x R x R``."""
    x0, y0, w, h = _pil_rrc_box(img.width, img.height, scale, ratio, rng)
    out = img.resize((resolution, resolution), Image.Resampling.BILINEAR, box=(x0, y0, x0 + w, y0 + h))
    if hflip and rng.random() < 0.5:
        out = out.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    return _pil_to_uint8(out)


def pil_eval(img: Image.Image, resolution: int, *, crop_pct: float = 1.0) -> torch.Tensor:
    """Centre crop ``crop_pct`` of the shorter side and resize to ``R x R`` (one PIL resize)."""
    side = min(img.width, img.height) * crop_pct
    left, top = (img.width - side) / 2, (img.height - side) / 2
    out = img.resize(
        (resolution, resolution), Image.Resampling.BILINEAR, box=(left, top, left + side, top + side)
    )
    return _pil_to_uint8(out)
