"""Data layer: registry, hold-out splits, offline sets, batched transforms, loaders, config and CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from nat.cli import main
from nat.data import (
    DataConfig,
    TensorSplit,
    list_datasets,
    load_dataset,
    load_from_config,
    loader_from_config,
    make_loader,
    stratified_holdout,
)
from nat.data.datasets import FASHION_MNIST_DEFAULT_ROOT
from nat.data.transforms import eval_batch, rrc_boxes, train_batch
from nat.errors import DataError

PAPER_SETS = [
    "cifar10",
    "cifar100",
    "cinic10",
    "stl10",
    "flowers102",
    "pets",
    "dtd",
    "aircraft",
    "cars",
    "food101",
    "imagenet",
]


@pytest.fixture(scope="module")
def mnist5k():
    return load_dataset("mnist5k", seed=0)


# ----------------------------------------------------------------------------------------- registry


def test_registry_has_every_dataset_of_the_issue():
    names = set(list_datasets())
    assert set(PAPER_SETS) <= names
    assert {"mnist", "fashion-mnist", "mnist5k", "digits", "folder"} <= names


def test_unknown_dataset_suggests_close_name():
    with pytest.raises(DataError, match=r"unknown dataset 'cifar11'; did you mean 'cifar10'"):
        load_dataset("cifar11")


@pytest.mark.parametrize("name", PAPER_SETS + ["mnist", "folder"])
def test_sets_on_disk_need_a_root(name, tmp_path):
    with pytest.raises(DataError, match="needs the folder it is in: data.root in a run config, --root PATH"):
        load_dataset(name)
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(name, tmp_path / "absent")
    with pytest.raises(DataError, match="expected"):
        load_dataset(name, tmp_path)  # empty folder: wrong layout


# ----------------------------------------------------------------------------------------- hold-out


def test_stratified_holdout_is_exact_stratified_and_seeded():
    labels = np.repeat(np.arange(5), [50, 30, 10, 5, 1])
    keep, held = stratified_holdout(labels, 0.2, seed=3)
    assert len(held) == round(0.2 * len(labels)) and len(keep) + len(held) == len(labels)
    assert not set(keep) & set(held)
    counts = np.bincount(labels[held], minlength=5)
    assert counts[0] == 10 and counts[1] == 6 and counts[4] == 0  # proportional; singleton stays in train
    assert set(np.unique(labels[keep])) == set(range(5))
    again, _ = stratified_holdout(labels, 0.2, seed=3)
    other, _ = stratified_holdout(labels, 0.2, seed=4)
    assert np.array_equal(keep, again) and not np.array_equal(keep, other)
    _, held_n = stratified_holdout(labels, 7, seed=0)
    assert len(held_n) == 7


@pytest.mark.parametrize("size", [0, -1, 1.5, True, "0.1"])
def test_holdout_rejects_bad_sizes(size):
    with pytest.raises(DataError, match="validation size"):
        stratified_holdout(np.arange(10) % 2, size, seed=0)


def test_holdout_refuses_to_empty_a_class():
    with pytest.raises(DataError, match="at least one training sample"):
        stratified_holdout(np.array([0, 0, 1, 1]), 3, seed=0)


# ----------------------------------------------------------------------------------------- offline sets


def test_digits_and_mnist5k_shapes_and_counts(digits, mnist5k):
    for task, n, size in ((digits, 1797, 8), (mnist5k, 5000, 28)):
        info = task.info()
        assert info["num_classes"] == 10 and sum(info["splits"].values()) == n
        assert isinstance(task.train, TensorSplit) and task.train.images.shape[1:] == (1, size, size)
        assert task.train.images.dtype == torch.uint8 and int(task.train.images.max()) == 255
        assert info["splits"]["test"] == round(0.2 * n)


def test_offline_test_split_is_fixed_but_val_follows_the_seed(mnist5k):
    other = load_dataset("mnist5k", seed=1, val_size=500)
    assert torch.equal(other.test.images, mnist5k.test.images)
    assert len(other.val) == 500 and len(mnist5k.val) == 400
    assert not torch.equal(other.train.images[:100], mnist5k.train.images[:100])


def test_normalization_choice(digits):
    task = load_dataset("digits", normalization="imagenet")
    assert task.source.mean == (0.449,)
    assert digits.source.mean != (0.449,)


@pytest.mark.skipif(not FASHION_MNIST_DEFAULT_ROOT.is_dir(), reason="dataset-fashion-mnist not installed")
def test_installed_fashion_mnist():
    task = load_dataset("fashion-mnist", val_size=5000, seed=0)  # default root
    assert task.info()["official_splits"] == {"train": 60000, "test": 10000}
    assert len(task.val) == 5000 and task.num_classes == 10 and task.class_names[0] == "T-shirt/top"
    assert task.train.images.shape[1:] == (1, 28, 28)


# ----------------------------------------------------------------------------------------- transforms


def test_rrc_boxes_stay_inside_the_image():
    g = torch.Generator().manual_seed(0)
    boxes = rrc_boxes(2000, 20, 30, generator=g)
    x0, y0, w, h = boxes.unbind(1)
    assert (x0 >= 0).all() and (y0 >= 0).all() and (x0 + w <= 30 + 1e-9).all() and (y0 + h <= 20 + 1e-9).all()
    area = w * h / 600
    assert area.min() >= 0.08 - 1e-9 and area.max() <= 1 + 1e-9
    assert (w / h).min() >= 0.75 - 1e-6 and (w / h).max() <= 4 / 3 + 1e-6


def test_full_crop_train_transform_is_identity_or_flip():
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (16, 3, 12, 12), dtype=torch.uint8)
    kw = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    plain = eval_batch(imgs, 12, **kw)
    out = train_batch(imgs, 12, generator=g, scale=(1, 1), ratio=(1, 1), hflip=True, **kw)
    flipped = plain.flip(3)
    same = [
        (torch.allclose(o, p, atol=1e-4), torch.allclose(o, f, atol=1e-4))
        for o, p, f in zip(out, plain, flipped, strict=True)
    ]
    assert all(a or b for a, b in same) and any(a for a, _ in same) and any(b for _, b in same)
    expected = (imgs.float() / 255 - 0.5) / 0.25
    assert torch.allclose(plain, expected, atol=1e-5)


def test_grayscale_becomes_three_channels():
    g = torch.Generator().manual_seed(0)
    imgs = torch.full((4, 1, 64, 64), 200, dtype=torch.uint8)
    out = train_batch(imgs, 8, mean=(0.0,), std=(1.0,), generator=g)
    assert out.shape == (4, 3, 8, 8) and torch.allclose(out, torch.full_like(out, 200 / 255), atol=1e-5)


# ----------------------------------------------------------------------------------------- loaders


def test_train_loader_resolution_per_batch_and_determinism(mnist5k):
    def batches(seed):
        loader = make_loader(mnist5k, "train", batch_size=64, resolution=[16, 24, 32], seed=seed)
        return [b for _, b in zip(range(6), loader, strict=False)]

    a, b, c = batches(0), batches(0), batches(1)
    assert {x.shape[-1] for x, _ in a} <= {16, 24, 32} and len({x.shape[-1] for x, _ in a}) > 1
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(ya, yc) for (_, ya), (_, yc) in zip(a, c, strict=True))
    x, y = a[0]
    assert (
        x.shape == (64, 3, x.shape[-1], x.shape[-1]) and x.dtype == torch.float32 and y.dtype == torch.int64
    )


def test_loader_epochs_differ_and_callable_resolution(digits):
    seen = []
    loader = make_loader(
        digits, "train", batch_size=100, resolution=lambda step: seen.append(step) or 8 + step % 2
    )
    assert len(loader) == len(digits.train) // 100  # drop_last for training
    first = [y for _, y in loader]
    second = [y for _, y in loader]
    assert not all(torch.equal(a, b) for a, b in zip(first, second, strict=True))
    assert seen == list(range(2 * len(loader)))
    loader.set_epoch(0)
    assert all(torch.equal(a, b) for a, b in zip(first, (y for _, y in loader), strict=True))


def test_eval_loader_covers_split_in_order(digits):
    loader = make_loader(digits, "test", batch_size=100, resolution=8)
    labels = torch.cat([y for _, y in loader])
    assert torch.equal(labels, digits.test.labels) and len(loader) == 4
    x, _ = next(iter(loader))
    mean, std = digits.source.mean[0], digits.source.std[0]
    back = (x[:, 0] * std + mean) * 255
    assert torch.allclose(back, digits.test.images[:100, 0].float(), atol=1e-3)


# ----------------------------------------------------------------------------------------- config


def test_data_config_validates_and_drives_loading():
    cfg = DataConfig(dataset="DIGITS", val_size=200, train_batch_size=32, eval_batch_size=50)
    assert cfg.dataset == "digits"
    task = load_from_config(cfg, seed=0)
    assert len(task.val) == 200
    x, _ = next(iter(loader_from_config(task, cfg, "train", resolution=16, seed=0)))
    assert x.shape == (32, 3, 16, 16)
    assert len(loader_from_config(task, cfg, "val", resolution=8, seed=0)) == 4
    # the hold-out follows the run seed unless split_seed pins it
    other = load_from_config(cfg, seed=5)
    pinned = load_from_config(cfg.model_copy(update={"split_seed": 0}), seed=5)
    assert not torch.equal(other.val.images, task.val.images)
    assert torch.equal(pinned.val.images, task.val.images)
    for bad in (
        {"dataset": "nope"},
        {"dataset": "digits", "val_size": 0},
        {"dataset": "digits", "workers": 2},
        {"dataset": "digits", "rrc_scale": (0.5, 0.1)},
        {"dataset": "digits", "in_memory": "maybe"},
    ):
        with pytest.raises(ValidationError):
            DataConfig(**bad)


# ----------------------------------------------------------------------------------------- CLI


def test_cli_info_json(capsys):
    assert main(["data", "info", "digits", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["name"] == "digits" and info["num_classes"] == 10
    assert set(info["splits"]) == {"train", "val", "test"} and sum(info["splits"].values()) == 1797


def test_cli_info_text_and_list(capsys):
    assert main(["data", "info", "mnist5k", "--val-size", "500"]) == 0
    out = capsys.readouterr().out
    assert "mnist5k: 10 classes" in out and "val" in out and "5,000" in out
    assert main(["data", "list", "--json"]) == 0
    assert {row["name"] for row in json.loads(capsys.readouterr().out)} == set(list_datasets())


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["data", "info", "nosuchset"], "unknown dataset 'nosuchset'"),
        (["data", "info", "cifar10"], "--root PATH"),
        (["data", "info", "cifar10", "--root", "/definitely/not/here"], "does not exist"),
        (["data", "info", "imagenet", "--root", "{tmp}"], "expected ROOT/train/<wnid>"),
    ],
)
def test_cli_errors_are_one_line(argv, needle, capsys, tmp_path: Path):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 1
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("nat data: error: ") and needle in err
    assert len(err.splitlines()) == 1 and "Traceback" not in err and captured.out == ""
