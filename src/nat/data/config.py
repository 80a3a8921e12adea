"""`DataConfig`: the data section of a run configuration (validated with pydantic, embeddable).

Every field maps to a `load_dataset` / `make_loader` argument, so a YAML ``data:`` block fully
describes where the images come from and how they are fed.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nat.data.loaders import FileLoader, InMemoryLoader, Resolution, make_loader
from nat.data.registry import get_entry
from nat.data.source import Split, TaskData
from nat.data.task import load_dataset
from nat.errors import DataError

#: what a task name may hold: it becomes a folder name (models/<name>/) and part of an objective's name
TASK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class DataConfig(BaseModel):
    """Which dataset, how it is split, and how batches are produced."""

    model_config = ConfigDict(extra="forbid")

    dataset: str = Field(description="registered dataset name, see `nat data list`")
    name: str | None = Field(
        None,
        description="the task's name in a many-task run (objective top1:<name>, models/<name>/); default: "
        "the dataset's name, made unique",
    )
    root: Path | None = Field(None, description="folder holding the dataset (not needed for offline sets)")
    val_size: float | int = Field(
        0.1, description="search-validation hold-out when the set has no official val: fraction or count"
    )
    split_seed: int | None = Field(
        None,
        description="seed of the train / search-val hold-out (None: the run seed); fix it to keep the "
        "same split across runs, e.g. the split a supernet was pretrained with",
    )
    train_batch_size: int = Field(128, ge=1, description="images per training step")
    eval_batch_size: int = Field(256, ge=1, description="images per evaluation batch")
    num_workers: int = Field(2, ge=0, description="DataLoader workers (file-based sets only)")
    pin_memory: bool | None = Field(None, description="None: pin when the device is CUDA")
    in_memory: bool | Literal["auto"] = Field("auto", description="decode file-based sets into uint8 tensors")
    memory_budget_gb: float = Field(4.0, gt=0, description="upper bound for in_memory='auto'")
    cache_size: int = Field(256, ge=8, description="square side for caching variable-size images in memory")
    normalization: Literal["dataset", "imagenet", "measured"] = Field(
        "dataset",
        description="per-channel mean/std: the dataset reader's (ImageNet's for photos and folders), "
        "ImageNet's, or measured on up to 1,000 training images",
    )
    rrc_scale: tuple[float, float] = Field((0.08, 1.0), description="random-resized-crop area range")
    hflip: bool | None = Field(None, description="None: the dataset's default (off for digits)")
    eval_crop_pct: float | None = Field(
        None,
        gt=0,
        le=1,
        description="centre crop (share of the shorter side) at evaluation and in the models' "
        "preprocessing; None: the dataset's default (1.0 for small-image sets, 0.875 for photo sets)",
    )

    @field_validator("dataset")
    @classmethod
    def _known(cls, v: str) -> str:
        try:
            return get_entry(v).name
        except DataError as exc:
            raise ValueError(str(exc)) from None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not TASK_NAME.fullmatch(v):
            raise ValueError(
                f"task name {v!r}: use letters, digits, '-', '_' and '.' (it names files and objectives)"
            )
        return v

    @field_validator("val_size")
    @classmethod
    def _val_size(cls, v: float | int) -> float | int:
        if isinstance(v, float) and not 0 < v < 1 and not (v >= 1 and v.is_integer()):
            raise ValueError("val_size must be a fraction in (0, 1) or a count >= 1")
        if isinstance(v, int) and v < 1:
            raise ValueError("val_size must be a fraction in (0, 1) or a count >= 1")
        return int(v) if isinstance(v, float) and v >= 1 else v

    @model_validator(mode="after")
    def _scale(self) -> DataConfig:
        lo, hi = self.rrc_scale
        if not 0 < lo <= hi <= 1:
            raise ValueError(f"rrc_scale must satisfy 0 < low <= high <= 1, got {self.rrc_scale}")
        return self


def load_from_config(cfg: DataConfig, seed: int) -> TaskData:
    """`load_dataset` with the config's settings; the split comes from ``split_seed`` or the run seed."""
    task = load_dataset(
        cfg.dataset,
        cfg.root,
        val_size=cfg.val_size,
        seed=seed if cfg.split_seed is None else cfg.split_seed,
        in_memory=cfg.in_memory,
        memory_budget_gb=cfg.memory_budget_gb,
        cache_size=cfg.cache_size,
        normalization=cfg.normalization,
    )
    if cfg.eval_crop_pct is not None:  # every evaluation and the models' preprocessing read it from here
        task.source.eval_crop_pct = cfg.eval_crop_pct
    return task


def loader_from_config(
    task: TaskData,
    cfg: DataConfig,
    split: str | Split,
    *,
    resolution: Resolution,
    seed: int,
    device: str | torch.device = "cpu",
    train: bool | None = None,
    rows: tuple[int, int] | None = None,
) -> InMemoryLoader | FileLoader:
    """`make_loader` with the config's batch sizes, workers and augmentation settings (``rows``: this
    process's share of every training batch under torchrun)."""
    is_train = split == "train" if train is None else train
    return make_loader(
        task,
        split,
        batch_size=cfg.train_batch_size if is_train else cfg.eval_batch_size,
        resolution=resolution,
        train=is_train,
        device=device,
        seed=seed,
        num_workers=cfg.num_workers,
        pin_memory=cfg.pin_memory,
        scale=cfg.rrc_scale,
        hflip=cfg.hflip,
        drop_last=True if rows is not None else None,
        rows=rows,
    )
