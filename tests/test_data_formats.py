"""On-disk formats: every reader is fed a tiny fake written in the dataset's real published layout."""

from __future__ import annotations

import gzip
import json
import logging
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from nat.cli import main
from nat.data import FileSplit, TensorSplit, load_dataset, make_loader, read_idx
from nat.errors import DataError

RNG = np.random.default_rng(0)


def _image(path: Path, size: tuple[int, int] = (14, 10), mode: str = "RGB") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = 3 if mode == "RGB" else 1
    arr = RNG.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode).save(path)


def _idx(path: Path, arr: np.ndarray, gz: bool) -> None:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = bytes([0, 0, codes[arr.dtype], arr.ndim]) + np.asarray(arr.shape, dtype=">i4").tobytes()
    data = header + arr.tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data) if gz else data)


# ----------------------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_roundtrip(tmp_path, gz):
    arr = RNG.integers(0, 256, (5, 4, 3), dtype=np.uint8)
    _idx(tmp_path / "x", arr, gz)
    assert np.array_equal(read_idx(tmp_path / "x"), arr)
    ints = np.arange(6, dtype=">i4").reshape(2, 3)
    _idx(tmp_path / "y", ints, gz)
    assert np.array_equal(read_idx(tmp_path / "y"), ints)


def test_read_idx_rejects_garbage_and_truncation(tmp_path):
    (tmp_path / "a").write_bytes(b"\x89PNG\r\n\x1a\n....")
    with pytest.raises(DataError, match="not an IDX file"):
        read_idx(tmp_path / "a")
    _idx(tmp_path / "b", np.zeros((4, 2, 2), dtype=np.uint8), gz=False)
    (tmp_path / "b").write_bytes((tmp_path / "b").read_bytes()[:-3])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "b")


def _write_mnist(folder: Path, gz: bool, sep: str = "-") -> None:
    ext = ".gz" if gz else ""
    for split, n in (("train", 30), ("t10k", 10)):
        _idx(
            folder / f"{split}-images{sep}idx3-ubyte{ext}",
            RNG.integers(0, 256, (n, 28, 28), dtype=np.uint8),
            gz,
        )
        _idx(folder / f"{split}-labels{sep}idx1-ubyte{ext}", (np.arange(n) % 10).astype(np.uint8), gz)


@pytest.mark.parametrize(
    ("name", "sub", "gz"),
    [
        ("mnist", "MNIST/raw", False),
        ("mnist", "", True),
        ("fashion-mnist", "FashionMNIST/raw", True),
        ("fashion-mnist", "", False),
    ],
)
def test_idx_sets_in_both_layouts(tmp_path, name, sub, gz):
    _write_mnist(tmp_path / sub if sub else tmp_path, gz)
    task = load_dataset(name, tmp_path, val_size=5)
    assert task.info()["splits"] == {"train": 25, "val": 5, "test": 10}
    assert isinstance(task.train, TensorSplit) and task.train.images.shape[1:] == (1, 28, 28)
    assert task.source.hflip == (name == "fashion-mnist")


def test_idx_dot_spelling_and_bad_labels(tmp_path):
    _write_mnist(tmp_path, gz=False, sep=".")
    assert len(load_dataset("mnist", tmp_path).test) == 10
    _idx(tmp_path / "t10k-labels.idx1-ubyte", np.full(10, 12, dtype=np.uint8), gz=False)
    with pytest.raises(DataError, match="labels must be in 0..9"):
        load_dataset("mnist", tmp_path)


# ----------------------------------------------------------------------------------------- CIFAR / STL


def _cifar_batch(path: Path, n: int, label_key: str, classes: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    batch = {
        b"data": RNG.integers(0, 256, (n, 3072), dtype=np.uint8),
        label_key.encode(): list(np.arange(n) % classes),
    }
    path.write_bytes(pickle.dumps(batch, protocol=2))


def _write_cifar10(root: Path) -> None:
    d = root / "cifar-10-batches-py"
    for i in range(1, 6):
        _cifar_batch(d / f"data_batch_{i}", 10, "labels", 10)
    _cifar_batch(d / "test_batch", 10, "labels", 10)
    (d / "batches.meta").write_bytes(pickle.dumps({"label_names": [f"c{i}" for i in range(10)]}))


def test_cifar10_and_cifar100(tmp_path):
    _write_cifar10(tmp_path)
    task = load_dataset("cifar10", tmp_path, val_size=10)
    assert task.info()["official_splits"] == {"train": 50, "test": 10} and task.class_names[0] == "c0"
    assert task.train.images.shape[1:] == (3, 32, 32)
    d = tmp_path / "c100" / "cifar-100-python"
    _cifar_batch(d / "train", 200, "fine_labels", 100)
    _cifar_batch(d / "test", 100, "fine_labels", 100)
    assert load_dataset("cifar100", d).num_classes == 100  # root may also be the set's own folder


def test_cifar_refuses_non_pickles_and_code(tmp_path):
    _write_cifar10(tmp_path)
    d = tmp_path / "cifar-10-batches-py"
    (d / "data_batch_3").write_bytes(b"this is not a pickle")
    with pytest.raises(DataError, match="data_batch_3 is not a CIFAR python batch"):
        load_dataset("cifar10", tmp_path)
    (d / "data_batch_3").write_bytes(pickle.dumps(Path("/etc")))  # a global outside the allow-list
    with pytest.raises(DataError, match="refusing"):
        load_dataset("cifar10", tmp_path)
    (d / "data_batch_3").unlink()
    with pytest.raises(DataError, match="missing .*data_batch_3"):
        load_dataset("cifar10", tmp_path)


def test_stl10_binary_is_read_column_major(tmp_path):
    d = tmp_path / "stl10_binary"
    d.mkdir()
    imgs = RNG.integers(0, 256, (4, 3, 96, 96), dtype=np.uint8)
    for split in ("train", "test"):
        imgs.transpose(0, 1, 3, 2).tofile(d / f"{split}_X.bin")  # STL-10 stores images column-major
        np.array([1, 1, 10, 10], dtype=np.uint8).tofile(d / f"{split}_y.bin")
    (d / "class_names.txt").write_text("\n".join(f"n{i}" for i in range(10)))
    task = load_dataset("stl10", tmp_path, val_size=0.25)
    assert torch.equal(task.test.images, torch.from_numpy(imgs)) and task.test.labels.tolist() == [0, 0, 9, 9]
    (d / "train_X.bin").write_bytes(b"123")
    with pytest.raises(DataError, match="not an STL-10 image file"):
        load_dataset("stl10", tmp_path)


# ----------------------------------------------------------------------------------------- file-listed sets


def _write_flowers(root: Path) -> None:
    d = root / "flowers-102"
    for i in range(1, 13):
        _image(d / "jpg" / f"image_{i:05d}.jpg")
    scipy.io.savemat(d / "imagelabels.mat", {"labels": np.array([[1, 2, 3] * 4])})
    scipy.io.savemat(
        d / "setid.mat",
        {
            "trnid": np.array([[1, 2, 3, 4, 5, 6]]),
            "valid": np.array([[7, 8, 9]]),
            "tstid": np.array([[10, 11, 12]]),
        },
    )


def _write_pets(root: Path) -> None:
    d = root / "oxford-iiit-pet"
    rows = {
        "trainval": [
            "Abyssinian_1 1 1 1",
            "Abyssinian_2 1 1 1",
            "great_pyrenees_1 2 2 1",
            "great_pyrenees_2 2 2 1",
        ],
        "test": ["Abyssinian_3 1 1 1", "great_pyrenees_3 2 2 1"],
    }
    for split, lines in rows.items():
        (d / "annotations").mkdir(parents=True, exist_ok=True)
        (d / "annotations" / f"{split}.txt").write_text(
            "#Image CLASS-ID SPECIES BREED ID\n" + "\n".join(lines)
        )
        for ln in lines:
            _image(d / "images" / f"{ln.split()[0]}.jpg")


def _write_dtd(root: Path) -> None:
    d = root / "dtd" / "dtd"
    for split, idx in (("train", (1, 2)), ("val", (3,)), ("test", (4,))):
        lines = [f"{c}/{c}_{i:04d}.jpg" for c in ("banded", "dotted") for i in idx]
        for ln in lines:
            _image(d / "images" / ln)
        (d / "labels").mkdir(parents=True, exist_ok=True)
        (d / "labels" / f"{split}1.txt").write_text("\n".join(lines) + "\n")


def _write_aircraft(root: Path) -> None:
    d = root / "fgvc-aircraft-2013b" / "data"
    d.mkdir(parents=True)
    (d / "variants.txt").write_text("707-320\nA300B4\nCessna 172\n")
    for split, base in (("train", 100), ("val", 200), ("test", 300)):
        lines = [f"{base + i} {v}" for i, v in enumerate(["707-320", "A300B4", "Cessna 172", "707-320"])]
        (d / f"images_variant_{split}.txt").write_text("\n".join(lines) + "\n")
        for ln in lines:
            _image(d / "images" / f"{ln.split()[0]}.jpg")


def _cars_annos(path: Path, fnames: list[str], classes: list[int]) -> None:
    rec = np.zeros(len(fnames), dtype=[("fname", object), ("class", object)])
    rec["fname"], rec["class"] = fnames, classes
    scipy.io.savemat(path, {"annotations": rec})


def _write_cars(root: Path) -> None:
    d = root / "stanford_cars"
    (d / "devkit").mkdir(parents=True)
    scipy.io.savemat(
        d / "devkit" / "cars_meta.mat", {"class_names": np.array(["AM General", "Acura RL"], dtype=object)}
    )
    for split, n in (("train", 4), ("test", 2)):
        fnames = [f"{i:05d}.jpg" for i in range(1, n + 1)]
        for f in fnames:
            _image(d / f"cars_{split}" / f)
        target = (
            d / "devkit" / "cars_train_annos.mat"
            if split == "train"
            else d / "cars_test_annos_withlabels.mat"
        )
        _cars_annos(target, fnames, [1 + i % 2 for i in range(n)])


def _write_food(root: Path) -> None:
    d = root / "food-101"
    listed = {
        "train": {"apple_pie": ["apple_pie/1", "apple_pie/2"], "ramen": ["ramen/3", "ramen/4"]},
        "test": {"apple_pie": ["apple_pie/5"], "ramen": ["ramen/6"]},
    }
    (d / "meta").mkdir(parents=True)
    (d / "meta" / "classes.txt").write_text("apple_pie\nramen\n")
    for split, by_class in listed.items():
        (d / "meta" / f"{split}.json").write_text(json.dumps(by_class))
        for entries in by_class.values():
            for e in entries:
                _image(d / "images" / f"{e}.jpg")


def _write_imagenet(root: Path) -> None:
    for split, n in (("train", 5), ("val", 2)):
        for wnid in ("n01440764", "n01443537"):
            for i in range(n):
                _image(root / split / wnid / f"{wnid}_{i}.JPEG")


def _write_cinic(root: Path) -> None:
    for split in ("train", "valid", "test"):
        for cls in ("airplane", "cat"):
            for i in range(3):
                _image(root / split / cls / f"{i}.png", size=(32, 32))


FAKES: dict[str, tuple[Callable[[Path], None], dict[str, int], int]] = {
    "flowers102": (_write_flowers, {"train": 6, "val": 3, "test": 3}, 3),
    "pets": (_write_pets, {"train": 2, "val": 2, "test": 2}, 2),
    "dtd": (_write_dtd, {"train": 4, "val": 2, "test": 2}, 2),
    "aircraft": (_write_aircraft, {"train": 4, "val": 4, "test": 4}, 3),
    "cars": (_write_cars, {"train": 2, "val": 2, "test": 2}, 2),
    "food101": (_write_food, {"train": 2, "val": 2, "test": 2}, 2),
    "imagenet": (_write_imagenet, {"train": 8, "val": 2, "test": 4}, 2),
    "cinic10": (_write_cinic, {"train": 6, "val": 6, "test": 6}, 2),
}


@pytest.mark.parametrize("name", sorted(FAKES))
def test_paper_sets_in_published_layouts(name, tmp_path):
    write, splits, classes = FAKES[name]
    write(tmp_path)
    task = load_dataset(name, tmp_path, val_size=2, in_memory=False)
    assert task.info()["splits"] == splits and task.num_classes == classes
    x, y = next(iter(make_loader(task, "train", batch_size=2, resolution=24)))
    assert x.shape == (2, 3, 24, 24) and y.dtype == torch.int64
    assert make_loader(task, "test", batch_size=8, resolution=16) is not None
    cached = load_dataset(name, tmp_path, val_size=2, cache_size=20)  # auto: tiny, so decoded into memory
    assert isinstance(cached.train, TensorSplit) and cached.info()["splits"] == splits
    size = 32 if name == "cinic10" else 20
    assert cached.train.images.shape[1:] == (3, size, size)


def test_pet_class_names_and_missing_listed_image(tmp_path):
    _write_pets(tmp_path)
    assert load_dataset("pets", tmp_path).class_names == ["Abyssinian", "Great Pyrenees"]
    (tmp_path / "oxford-iiit-pet" / "images" / "Abyssinian_3.jpg").unlink()
    with pytest.raises(DataError, match="1 of the 2 Pets test images .* missing"):
        load_dataset("pets", tmp_path)


def test_imagenet_with_flat_val_is_explained(tmp_path):
    _image(tmp_path / "train" / "n1" / "a.JPEG")
    _image(tmp_path / "val" / "ILSVRC2012_val_00000001.JPEG")
    with pytest.raises(DataError, match="sort them into one folder per class"):
        load_dataset("imagenet", tmp_path)


def test_cars_class_folder_repackaging(tmp_path):
    for split in ("train", "test"):
        for cls in ("Acura RL", "AM General"):
            for i in range(2):
                _image(tmp_path / "car_data" / split / cls / f"{i}.jpg")
    task = load_dataset("cars", tmp_path, val_size=2, in_memory=False)
    assert task.info()["splits"] == {"train": 2, "val": 2, "test": 4}


# ----------------------------------------------------------------------------------------- user folders


def _user_folder(root: Path) -> None:
    for cls in ("cats", "dogs"):
        for i in range(6):
            _image(
                root / cls / f"{i}.{'png' if i % 2 else 'jpg'}", size=(16 + i, 12), mode="RGB" if i else "L"
            )
    (root / "cats" / "notes.txt").write_text("not an image")
    (root / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    (root / ".DS_Store").write_bytes(b"junk")


def test_folder_skips_and_counts_bad_files(tmp_path, caplog):
    _user_folder(tmp_path)
    with caplog.at_level(logging.WARNING, logger="nat.data"):
        task = load_dataset("folder", tmp_path, val_size=2, in_memory=False)
    info = task.info()
    assert info["skipped_files"] == 2 and "skipped 2 file(s)" in caplog.text
    assert sum(info["splits"].values()) == 12 and info["splits"]["test"] == 2 and info["splits"]["val"] == 2
    assert any("no official test split" in n for n in info["notes"])
    assert isinstance(task.train, FileSplit)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: max(40, path.stat().st_size // 3)])


def test_a_truncated_image_is_found_when_the_folder_is_scanned(tmp_path, caplog):
    """A header that opens is not enough: the cut-short file is decoded, skipped and counted."""
    _user_folder(tmp_path)
    _truncate(tmp_path / "cats" / "3.png")
    _truncate(tmp_path / "dogs" / "2.jpg")
    with caplog.at_level(logging.WARNING, logger="nat.data"):
        task = load_dataset("folder", tmp_path, val_size=2, in_memory=False)
    assert task.info()["skipped_files"] == 4 and "skipped 4 file(s)" in caplog.text
    assert sum(task.info()["splits"].values()) == 10
    every = [*task.train.paths, *task.val.paths, *task.test.paths]
    assert not any(p.endswith(("cats/3.png", "dogs/2.jpg")) for p in every)


def test_a_large_folder_decodes_a_spread_sample_when_scanned(monkeypatch, tmp_path):
    from nat.data import images

    seen: list[str] = []
    monkeypatch.setattr(images, "_decodes", lambda p: seen.append(p) or True)
    paths = [f"{i:05d}.png" for i in range(images.FULL_DECODE_MAX + 1)]
    assert images.undecodable(paths) == set()
    assert len(seen) == images.DECODE_SAMPLE and seen[0] == paths[0] and seen[-1] > paths[-200]


@pytest.mark.parametrize("workers", [0, 2])
def test_an_image_that_fails_when_read_is_one_error_naming_it(tmp_path, workers):
    """An image broken after the scan (or outside a large folder's sample) stops the loader with one
    line naming the file, also when a DataLoader worker read it."""
    _user_folder(tmp_path)
    task = load_dataset("folder", tmp_path, val_size=2, in_memory=False)
    victim = Path(task.train.paths[1])
    _truncate(victim)
    loader = make_loader(task, "train", batch_size=3, resolution=16, seed=5, num_workers=workers)
    with pytest.raises(DataError) as caught:
        list(loader)
    message = str(caught.value)
    assert "\n" not in message and "Traceback" not in message
    assert message.startswith(f"cannot decode image {victim}")


def test_file_loader_is_deterministic_and_worker_independent(tmp_path):
    _user_folder(tmp_path)
    task = load_dataset("folder", tmp_path, val_size=2, in_memory=False)

    def run(workers: int) -> list[torch.Tensor]:
        loader = make_loader(task, "train", batch_size=3, resolution=[16, 20], seed=5, num_workers=workers)
        return [x for x, _ in loader]

    a, b = run(0), run(0)
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True)) and a[0].shape[1] == 3
    ev = [x for x, _ in make_loader(task, "test", batch_size=4, resolution=12)]
    assert ev[0].shape == (2, 3, 12, 12)


@pytest.mark.slow
def test_file_loader_with_workers_matches_in_process(tmp_path):
    _user_folder(tmp_path)
    task = load_dataset("folder", tmp_path, val_size=2, in_memory=False)
    runs = []
    for workers in (0, 2):
        loader = make_loader(task, "train", batch_size=3, resolution=[16, 20], seed=5, num_workers=workers)
        runs.append([x for x, _ in loader])
    assert all(torch.equal(x, y) for x, y in zip(*runs, strict=True))


def test_folder_with_split_dirs_and_in_memory_cache(tmp_path):
    for split, n in (("train", 4), ("val", 2), ("test", 2)):
        for cls in ("a", "b"):
            for i in range(n):
                _image(tmp_path / split / cls / f"{i}.png", size=(20, 30))
    task = load_dataset("folder", tmp_path, cache_size=16)
    assert task.val_origin == "official validation split" and task.info()["splits"] == {
        "train": 8,
        "val": 4,
        "test": 4,
    }
    assert task.storage == "memory" and task.train.images.shape[1:] == (3, 16, 16)
    (tmp_path / "test").rename(tmp_path / "unused")
    task = load_dataset("folder", tmp_path, val_size=2, in_memory=False)
    assert task.info()["splits"] == {"train": 6, "val": 2, "test": 4}  # val folder serves as test


def test_folder_errors(tmp_path, capsys):
    _user_folder(tmp_path)
    (tmp_path / "birds").mkdir()
    (tmp_path / "birds" / "readme.md").write_text("nothing here")
    assert main(["data", "info", "folder", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip()
    assert (
        "class folder" in err
        and "birds" in err
        and "no readable images" in err
        and len(err.splitlines()) == 1
    )
    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    with pytest.raises(DataError, match="holds no class folders"):
        load_dataset("folder", empty)
    split = tmp_path / "split"
    _image(split / "train" / "a" / "0.png")
    _image(split / "test" / "zzz" / "0.png")
    with pytest.raises(DataError, match="not present in the training split: zzz"):
        load_dataset("folder", split)


def test_cli_json_on_fake_cifar(tmp_path, capsys):
    _write_cifar10(tmp_path)
    assert main(["data", "info", "cifar10", "--root", str(tmp_path), "--json", "--val-size", "10"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["splits"] == {"train": 40, "val": 10, "test": 10} and info["num_classes"] == 10
