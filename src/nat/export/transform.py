"""`model_transform`: the preprocessing a model folder was evaluated with, as a torchvision transform.

Classify an image file in three lines::

    model = nat.load_model("runs/cifar10/models/natnet_1_96.3M")
    x = nat.model_transform("runs/cifar10/models/natnet_1_96.3M")(PIL.Image.open("cat.png"))
    print(model.info["class_names"][model(x[None]).argmax()])

The steps are those of nat's evaluation (``nat.data.transforms.eval_batch``, the same torch operations
on the one image): centre crop of ``crop_pct`` of the shorter side, one antialiased bilinear resize of
that square to R x R, scaling to [0, 1], per-channel normalisation, and for models trained on grayscale
data the grey channel repeated three times (the networks always take 3 channels).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms

from nat.errors import ConfigError
from nat.export.model_files import check_preprocessing, read_model_info
from nat.space.subnet import Subnet


class ConvertMode:
    """PIL image -> ``mode`` ("RGB" or "L")."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __call__(self, img: Image.Image) -> Image.Image:
        return img if img.mode == self.mode else img.convert(self.mode)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(mode={self.mode!r})"


class CenterCropResize:
    """uint8 ``C x H x W`` -> float ``C x R x R`` in [0, 255]: centre square of ``crop_pct`` x the shorter
    side, resized (antialiased when shrinking) exactly as ``nat.data.transforms.eval_batch`` does."""

    def __init__(self, resolution: int, crop_pct: float = 1.0, interpolation: str = "bilinear") -> None:
        self.resolution, self.crop_pct, self.interpolation = resolution, crop_pct, interpolation

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        side = max(1, round(min(height, width) * self.crop_pct))
        top, left = (height - side) // 2, (width - side) // 2
        x = x[..., top : top + side, left : left + side].float()
        if side == self.resolution:
            return x
        return F.interpolate(
            x[None],
            size=(self.resolution, self.resolution),
            mode=self.interpolation,
            align_corners=False,
            antialias=side > self.resolution,
        )[0]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(resolution={self.resolution}, crop_pct={self.crop_pct}, "
            f"interpolation={self.interpolation!r})"
        )


class Scale:
    """Multiply by ``factor`` (255-scale floats -> [0, 1])."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def __repr__(self) -> str:
        return f"{type(self).__name__}(factor={self.factor})"


class RepeatChannels:
    """1 x H x W -> ``channels`` x H x W (grayscale models take the grey channel three times)."""

    def __init__(self, channels: int = 3) -> None:
        self.channels = channels

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return x.expand(self.channels, -1, -1).contiguous() if x.shape[0] == 1 else x

    def __repr__(self) -> str:
        return f"{type(self).__name__}(channels={self.channels})"


def preprocessing_of(
    source: str | Path | nn.Module | Mapping[str, Any], resolution: int | None = None
) -> dict[str, Any]:
    """The preprocessing of a model folder, a model from `load_model`, or any nat/NAT network.

    A network without stored settings gets its own resolution (else ``resolution``) and the defaults.
    """
    if isinstance(source, str | Path):
        return read_model_info(source)["preprocessing"]
    if isinstance(source, Mapping):
        return dict(source)
    info = getattr(source, "info", None)
    if isinstance(info, Mapping) and "preprocessing" in info:
        return dict(info["preprocessing"])
    subnet = getattr(source, "subnet", None)
    own = subnet.r if isinstance(subnet, Subnet) else getattr(source, "resolution", None)
    resolution = own if own is not None else resolution
    if resolution is None:
        raise ConfigError("the model does not say its input resolution: pass resolution=...")
    return check_preprocessing(None, resolution)


def model_transform(
    folder_or_model: str | Path | nn.Module | Mapping[str, Any],
    *,
    resolution: int | None = None,
    crop_pct: float | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    interpolation: str | None = None,
) -> transforms.Compose:
    """A transform from a PIL image to the normalised ``3 x R x R`` float tensor the model expects.

    The settings come from the folder's ``model.json`` (or a loaded model's ``info``); a model without
    them (e.g. from `load_natnet`) gets its own resolution, ImageNet statistics, bilinear, no crop. Any
    keyword overrides its setting: NAT's released ImageNet models were evaluated with ``crop_pct=0.875``
    and ``interpolation="bicubic"`` (timm's defaults).
    """
    given = preprocessing_of(folder_or_model, resolution)
    overrides = {"resolution": resolution, "crop_pct": crop_pct, "interpolation": interpolation}
    overrides |= {
        "mean": list(mean) if mean is not None else None,
        "std": list(std) if std is not None else None,
    }
    given |= {k: v for k, v in overrides.items() if v is not None}
    p = check_preprocessing(given, given.get("resolution", 224))
    steps = [
        ConvertMode("L" if p["channels"] == 1 else "RGB"),
        transforms.PILToTensor(),
        CenterCropResize(p["resolution"], p["crop_pct"], p["interpolation"]),
        Scale(1 / 255),
        transforms.Normalize(p["mean"], p["std"]),
    ]
    if p["channels"] == 1:
        steps.append(RepeatChannels(3))
    return transforms.Compose(steps)
