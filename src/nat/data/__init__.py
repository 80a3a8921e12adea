"""The data layer: dataset registry, splits, and fast loaders.

Typical use from the search loop::

    task = load_dataset("cifar10", root, val_size=0.1, seed=run_seed)
    train = make_loader(task, "train", batch_size=128, resolution=[192, 224, 256], seed=run_seed)
    val = make_loader(task, "val", batch_size=256, resolution=224)
    for images, labels in train: ...

See docs/data.md for layouts, splits and transforms.
"""

from nat.data.config import DataConfig, load_from_config, loader_from_config
from nat.data.formats import read_idx
from nat.data.loaders import BatchLoader, FileLoader, InMemoryLoader, Resolution, make_loader
from nat.data.registry import get_entry, get_source, list_datasets, register_dataset
from nat.data.source import DatasetSource, FileSplit, Split, TaskData, TensorSplit
from nat.data.splits import stratified_holdout
from nat.data.task import MAX_CLASSES, check_num_classes, load_dataset

__all__ = [
    "MAX_CLASSES",
    "BatchLoader",
    "DataConfig",
    "DatasetSource",
    "FileLoader",
    "FileSplit",
    "InMemoryLoader",
    "Resolution",
    "Split",
    "TaskData",
    "TensorSplit",
    "check_num_classes",
    "get_entry",
    "get_source",
    "list_datasets",
    "load_dataset",
    "load_from_config",
    "loader_from_config",
    "make_loader",
    "read_idx",
    "register_dataset",
    "stratified_holdout",
]
