"""Readers for the published on-disk formats, written directly so no download or checksum is needed.

torchvision's dataset classes verify MD5 sums or insist on downloading; our users often hold copies that
were re-packed, trimmed or installed by a distribution package, so for the simple binary formats (IDX,
CIFAR pickles, STL-10 binaries, MATLAB annotation files) we read the documented format ourselves and fail
with a `DataError` that names the file and what was expected.
"""

from __future__ import annotations

import gzip
import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from nat.errors import DataError

# ----------------------------------------------------------------------------------------------- IDX

#: IDX type codes (http://yann.lecun.com/exdb/mnist/, "THE IDX FILE FORMAT")
_IDX_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_maybe_gzip(path: Path) -> bytes:
    """Read a file, transparently gunzipping it when it starts with the gzip magic (any extension)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise DataError(f"{path} is a damaged gzip file ({exc}); re-download or re-extract it") from None
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST / Fashion-MNIST format), gzipped or not, into a numpy array."""
    path = Path(path)
    raw = _read_maybe_gzip(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file: expected the header 0x00 0x00 TYPE NDIM (MNIST format)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DataError(f"{path} is not a valid IDX file: truncated header")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">i4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path} is truncated or damaged: header says shape {shape} ({expected} bytes of data), "
            f"file holds {len(raw) - header}"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx_pair(folder: Path, split: str) -> tuple[Path, Path] | None:
    """Locate ``{split}-images-idx3-ubyte[.gz]`` and ``{split}-labels-idx1-ubyte[.gz]`` in ``folder``.

    Accepts both the dash and the dot spelling (``train-images.idx3-ubyte``) found in the wild.
    """
    found: list[Path] = []
    for kind, dims in (("images", 3), ("labels", 1)):
        hit = None
        for sep in ("-", "."):
            for ext in ("", ".gz"):
                cand = folder / f"{split}-{kind}{sep}idx{dims}-ubyte{ext}"
                if cand.is_file():
                    hit = cand
                    break
            if hit:
                break
        if hit is None:
            return None
        found.append(hit)
    return found[0], found[1]


def read_idx_images(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read an IDX image/label pair into ``uint8 N x 1 x H x W`` images and int64 labels."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(
            f"{images_path}: expected uint8 images of shape N x H x W, got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise DataError(
            f"{labels_path}: expected {len(images)} labels (one per image), got shape {labels.shape}"
        )
    return images[:, None], labels.astype(np.int64)


# ------------------------------------------------------------------------------------- CIFAR pickles

#: the only globals a CIFAR batch pickle may reference (numpy array reconstruction); anything else is refused
_SAFE_GLOBALS: set[tuple[str, str]] = {
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("_codecs", "encode"),
}


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler that only rebuilds plain containers and numpy arrays, so a crafted file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _SAFE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}")


def read_pickle_dict(path: Path) -> dict[str, Any]:
    """Load a CIFAR-style pickle (Python 2 or 3) and return its dict with ``str`` keys."""
    try:
        with path.open("rb") as fh:
            obj = _SafeUnpickler(fh, encoding="latin1").load()
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    except Exception as exc:  # any unpickling failure means "not a CIFAR batch"
        raise DataError(f"{path} is not a CIFAR python batch file ({type(exc).__name__}: {exc})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{path} is not a CIFAR python batch file: expected a pickled dict")
    return {k.decode("latin1") if isinstance(k, bytes) else str(k): v for k, v in obj.items()}


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR batch: ``data`` (N x 3072 uint8, channel-major) -> ``N x 3 x 32 x 32``."""
    batch = read_pickle_dict(path)
    if "data" not in batch or label_key not in batch:
        raise DataError(
            f"{path} is not a CIFAR batch: expected keys 'data' and {label_key!r}, got {sorted(batch)}"
        )
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise DataError(f"{path}: expected 'data' uint8 N x 3072 and N labels, got {data.dtype} {data.shape}")
    return data.reshape(-1, 3, 32, 32), labels


# -------------------------------------------------------------------------------------- STL-10 binary


def read_stl10_binary(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read STL-10 ``*_X.bin`` (uint8, 3 x 96 x 96 column-major per image) and ``*_y.bin`` (labels 1..10)."""
    for p in (images_path, labels_path):
        if not p.is_file():
            raise DataError(f"missing STL-10 file {p}")
    raw = np.fromfile(images_path, dtype=np.uint8)
    per_image = 3 * 96 * 96
    if raw.size == 0 or raw.size % per_image:
        raise DataError(f"{images_path} is not an STL-10 image file: size is not a multiple of 3*96*96 bytes")
    images = raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)  # stored column-major (MATLAB order)
    labels = np.fromfile(labels_path, dtype=np.uint8).astype(np.int64) - 1
    if len(labels) != len(images) or labels.min(initial=0) < 0:
        raise DataError(f"{labels_path}: expected {len(images)} labels in 1..10, one byte each")
    return np.ascontiguousarray(images), labels


# ------------------------------------------------------------------------------------------ MATLAB


def read_mat(path: Path) -> dict[str, Any]:
    """Load a MATLAB v5 file (Flowers-102, Stanford Cars annotations) with squeezed arrays."""
    import scipy.io  # local import: only two readers need scipy

    if not path.is_file():
        raise DataError(f"missing annotation file {path}")
    try:
        return dict(scipy.io.loadmat(io.BytesIO(path.read_bytes()), squeeze_me=True))
    except Exception as exc:  # scipy raises several unrelated types for bad files
        raise DataError(f"{path} is not a readable MATLAB .mat file ({exc})") from None
