"""The search-validation cache: the same floats as a fresh pass, in a quarter of the bytes for files,
bounded, least recently used resolution out first."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from nat.data.loaders import FileLoader, InMemoryLoader
from nat.data.source import FileSplit, TensorSplit
from nat.search.evaluator import ValidationCache

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


@pytest.fixture(scope="module")
def jpegs(tmp_path_factory) -> FileSplit:
    root = tmp_path_factory.mktemp("jpegs")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(10):
        h, w = rng.integers(30, 50, size=2)
        path = root / f"{i}.jpg"
        Image.fromarray(rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)).save(path, quality=90)
        paths.append(str(path))
    return FileSplit(tuple(paths), torch.arange(10) % 3)


def file_loader(split: FileSplit, resolution: int) -> FileLoader:
    return FileLoader(split, batch_size=4, resolution=resolution, train=False, mean=MEAN, std=STD, channels=3)


def same(a, b) -> bool:
    a, b = list(a), list(b)
    pairs = zip(a, b, strict=False)
    return len(a) == len(b) and all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in pairs)


def test_file_split_kept_as_uint8_gives_the_floats_of_a_fresh_pass(jpegs: FileSplit) -> None:
    made = []
    cache = ValidationCache(lambda r: made.append(r) or file_loader(jpegs, r), max_bytes=2**20)
    first = list(cache.batches(24))
    assert same(first, file_loader(jpegs, 24))  # exactly what the loader gives
    assert first[0][0].dtype == torch.float32
    assert same(cache.batches(24), first) and made == [24]  # the second pass decodes nothing
    assert cache.cache_bytes() == 10 * 3 * 24 * 24 + 10 * 8  # uint8 images and int64 labels
    unfinished = cache.batches(16)
    next(iter(unfinished))  # a first pass stopped early keeps nothing
    assert cache.cached_resolutions() == [24]


def test_bounded_least_recently_used_out_first_and_too_large_streamed(jpegs: FileSplit, caplog) -> None:
    per = {r: 10 * (3 * r * r + 8) for r in (16, 20, 24, 28)}
    made = []
    cache = ValidationCache(lambda r: made.append(r) or file_loader(jpegs, r), per[24] + per[20] + 10)
    reference = {r: list(file_loader(jpegs, r)) for r in (16, 20, 24, 28)}
    for r in (24, 20, 24, 16):  # 16 needs room: 20 (least recently used) goes, 24 stays
        assert same(cache.batches(r), reference[r])
    assert cache.cached_resolutions() == [24, 16]
    assert cache.cache_bytes() <= per[24] + per[20] + 10
    assert same(cache.batches(20), reference[20])  # evicted, read again: the same batches
    assert made == [24, 20, 16, 20]

    small = ValidationCache(lambda r: file_loader(jpegs, r), per[24] - 1)
    with caplog.at_level(logging.INFO, logger="nat.search.evaluator"):
        assert same(small.batches(24), reference[24]) and small.cached_resolutions() == []  # streamed
        small.batches(24)
    hints = [r.getMessage() for r in caplog.records if "validation_cache_mb" in r.getMessage()]
    assert len(hints) == 1 and "at 24 px" in hints[0]  # said once, naming the setting
    assert same(small.batches(16), reference[16]) and small.cached_resolutions() == [16]
    none = ValidationCache(lambda r: file_loader(jpegs, r), 0)
    assert same(none.batches(16), reference[16]) and none.cached_resolutions() == []


def test_in_memory_split_kept_as_its_normalised_batches() -> None:
    split = TensorSplit(torch.randint(0, 256, (10, 3, 12, 12), dtype=torch.uint8), torch.arange(10) % 2)

    def loader(r: int) -> InMemoryLoader:
        return InMemoryLoader(split, batch_size=4, resolution=r, train=False, mean=MEAN, std=STD)

    cache = ValidationCache(loader, max_bytes=2**20)
    assert same(cache.batches(16), loader(16)) and same(cache.batches(16), loader(16))
    assert cache.cached_resolutions() == [16]
    assert cache.cache_bytes() == 10 * (3 * 16 * 16 * 4 + 8)
