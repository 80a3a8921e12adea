"""Image files: scanning class folders, decoding, and caching a file split in memory.

Scanning is where user folders go wrong (stray ``.DS_Store``, a README, a truncated download), so the
scanner skips anything that is not a readable image, logs one warning with the count and a few examples,
and only fails when a whole class ends up empty, because then the labels would silently shift. A header
that opens is not enough: a truncated file opens and fails only when decoded, so every image of a
folder of up to `FULL_DECODE_MAX` images is decoded when it is scanned, and a sample of a larger one;
an image that still fails later, when a loader reads it, is an error naming the file.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from nat.data.source import FileSplit, TensorSplit
from nat.errors import DataError
from nat.progress import progress_bar

logger = logging.getLogger(__name__)

#: file name endings treated as images (lower case)
IMG_EXTENSIONS: tuple[str, ...] = (
    ".jpg",
    ".jpeg",
    ".png",
    ".ppm",
    ".pgm",
    ".pbm",
    ".bmp",
    ".tif",
    ".tiff",
    ".webp",
)

#: folders with more files than this are scanned with a progress bar
_PROGRESS_MIN_FILES = 20_000


def _is_readable_image(path: str) -> bool:
    """Cheap check: PIL can identify the file from its header (does not decode the pixels)."""
    try:
        with Image.open(path) as img:
            img.size  # noqa: B018 - touching size forces header parsing
        return True
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return False


def _warn_skipped(skipped: list[str], where: Path) -> None:
    if skipped:
        examples = ", ".join(os.path.basename(p) for p in skipped[:3])
        logger.warning(
            "skipped %d file(s) under %s that are not readable images (e.g. %s)",
            len(skipped),
            where,
            examples,
        )


def list_images(directory: Path, *, verify: bool) -> tuple[list[str], list[str]]:
    """Return (image paths, skipped paths) found recursively under ``directory``, sorted for determinism."""
    images: list[str] = []
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(directory, followlinks=True):
        dirnames.sort()
        for fn in sorted(filenames):
            if fn.startswith("."):
                skipped.append(os.path.join(dirpath, fn))
                continue
            full = os.path.join(dirpath, fn)
            if fn.lower().endswith(IMG_EXTENSIONS):
                images.append(full)
            else:
                skipped.append(full)
    if verify and images:
        bar = progress_bar(
            images, desc=f"checking {directory.name}", unit="img", show=len(images) >= _PROGRESS_MIN_FILES
        )
        ok = [_is_readable_image(p) for p in bar]
        skipped.extend(p for p, good in zip(images, ok, strict=True) if not good)
        images = [p for p, good in zip(images, ok, strict=True) if good]
    return images, skipped


#: folders of at most this many images have every image decoded when scanned; larger ones a sample
FULL_DECODE_MAX = 2_000
#: images decoded from a larger folder, spread evenly over it
DECODE_SAMPLE = 256


def _decodes(path: str) -> bool:
    """Whether the whole image decodes (a truncated or corrupt file passes the header check only)."""
    try:
        with Image.open(path) as img:
            img.draft(img.mode, (512, 512))  # JPEG: decode at a reduced scale, still every byte read
            img.load()
        return True
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError, SyntaxError):
        return False


def undecodable(paths: Sequence[str]) -> set[str]:
    """The images among ``paths`` that do not decode: every one of a small folder, an evenly spread
    sample of a large one (the rest are checked when they are read, `nat.data.loaders`)."""
    if len(paths) > FULL_DECODE_MAX:
        step = len(paths) / DECODE_SAMPLE
        paths = [paths[int(i * step)] for i in range(DECODE_SAMPLE)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        ok = list(pool.map(_decodes, paths))
    return {p for p, good in zip(paths, ok, strict=True) if not good}


def class_folders(directory: Path) -> list[str]:
    """Sorted names of the visible sub-folders of ``directory`` (the class names of an ImageFolder)."""
    try:
        return sorted(e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith("."))
    except OSError as exc:
        raise DataError(f"cannot list {directory}: {exc.strerror or exc}") from None


def scan_class_folders(
    directory: Path,
    *,
    verify: bool,
    class_names: Sequence[str] | None = None,
) -> tuple[list[str], FileSplit, int]:
    """Scan an ImageFolder-style directory (one sub-folder per class).

    With ``class_names`` given (e.g. the train split's classes when scanning test), folders must be a
    subset of those, so label indices agree across splits. Returns (class names, split, skipped count).
    """
    found = class_folders(directory)
    if not found:
        raise DataError(
            f"{directory} holds no class folders: expected one sub-folder per class with images inside "
            "(e.g. DIR/cat/001.jpg, DIR/dog/002.jpg)"
        )
    names = list(class_names) if class_names is not None else found
    index = {c: i for i, c in enumerate(names)}
    unknown = [c for c in found if c not in index]
    if unknown:
        raise DataError(
            f"{directory} has class folders not present in the training split: {', '.join(unknown[:5])}; "
            "every split must use the training split's class names"
        )
    paths: list[str] = []
    labels: list[int] = []
    skipped_all: list[str] = []
    empty: list[tuple[str, int]] = []  # class folders without a readable image, with their skipped count
    many = len(found) > 50
    listed = [
        (cls, *list_images(directory / cls, verify=verify))
        for cls in progress_bar(found, desc=f"scanning {directory.name}", unit="class", show=many)
    ]
    broken = undecodable([p for _, imgs, _ in listed for p in imgs]) if verify else set()
    for cls, found_imgs, skipped in listed:
        imgs = [p for p in found_imgs if p not in broken]
        skipped = [*skipped, *(p for p in found_imgs if p in broken)]
        skipped_all.extend(skipped)
        if not imgs:
            empty.append((cls, len(skipped)))
        paths.extend(imgs)
        labels.extend([index[cls]] * len(imgs))
    kinds = f"{', '.join(IMG_EXTENSIONS[:4])}, ..."
    if not paths:
        raise DataError(
            f"none of the {len(skipped_all)} file(s) in the {len(found)} class folder(s) of {directory} is a "
            f"readable image ({kinds}): all are missing, undecodable or of another type"
        )
    if empty:
        cls, n_skipped = empty[0]
        raise DataError(
            f"class folder {directory / cls} has no readable images ({n_skipped} file(s) there are not "
            f"readable images; {len(empty)} such class folder(s) in all); expected at least one image file "
            f"({kinds}) per class, or remove the folder"
        )
    _warn_skipped(skipped_all, directory)
    return names, FileSplit(tuple(paths), torch.tensor(labels, dtype=torch.int64)), len(skipped_all)


def decode_image(path: str, channels: int) -> Image.Image:
    """Open and fully decode an image as RGB (``channels=3``) or grayscale (``channels=1``)."""
    with Image.open(path) as img:
        img.draft("RGB" if channels == 3 else "L", (512, 512))  # cheap JPEG downscale hint for huge photos
        return img.convert("RGB" if channels == 3 else "L")


def _square_resize(img: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` and centre-crop a square: the cache format for variable sizes."""
    w, h = img.size
    scale = size / min(w, h)
    nw, nh = max(size, round(w * scale)), max(size, round(h * scale))
    img = img.resize((nw, nh), Image.Resampling.BILINEAR, reducing_gap=3.0)
    left, top = (nw - size) // 2, (nh - size) // 2
    return img.crop((left, top, left + size, top + size))


def materialize(
    split: FileSplit,
    *,
    channels: int,
    size: int | None,
    desc: str = "caching",
    workers: int | None = None,
) -> tuple[TensorSplit, int]:
    """Decode a whole `FileSplit` into a `TensorSplit` so the fast in-memory loader can use it.

    ``size=None`` keeps the native size (all images must share it, as in CINIC-10); otherwise every image
    is resized (shorter side) and centre-cropped to ``size x size``. Unreadable files are skipped, counted
    and logged. Decoding runs in a thread pool: PIL releases the GIL while decoding.
    """
    n = len(split)
    if n == 0:
        return TensorSplit(
            torch.zeros((0, channels, size or 1, size or 1), dtype=torch.uint8), split.labels
        ), 0

    def load(path: str) -> np.ndarray | None:
        try:
            img = decode_image(path, channels)
            if size is not None:
                img = _square_resize(img, size)
            arr = np.asarray(img, dtype=np.uint8)
            return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
            return None

    workers = workers or min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        arrays = list(
            progress_bar(
                pool.map(load, split.paths, chunksize=64),
                total=n,
                desc=desc,
                unit="img",
                show=n >= _PROGRESS_MIN_FILES // 4,
            )
        )
    good = [i for i, a in enumerate(arrays) if a is not None]
    bad = [split.paths[i] for i, a in enumerate(arrays) if a is None]
    _warn_skipped(bad, Path(os.path.commonpath(split.paths)) if n > 1 else Path(split.paths[0]).parent)
    if not good:
        raise DataError(f"none of the {n} images under {os.path.commonpath(split.paths)} could be decoded")
    shapes = {arrays[i].shape for i in good}  # type: ignore[union-attr]
    if len(shapes) > 1:
        raise DataError(
            f"images have different sizes {sorted(shapes)[:3]}; cannot cache them at native size "
            "(set a cache size, e.g. in_memory with cache_size=256)"
        )
    images = torch.from_numpy(np.stack([arrays[i] for i in good]))  # type: ignore[misc]
    return TensorSplit(images, split.labels[torch.as_tensor(good, dtype=torch.int64)]), len(bad)
