"""Why a supernet's validation figure runs above its test figure: is the test split harder, or is the
pipeline wrong?

`nat pretrain`'s end-of-phase check scores subnets on training images held out from training
(``data.val_size``); its final figures, and issue 19's targets, are on the official test split. For
every Fashion-MNIST supernet measured the check ran 1.3-1.7 points above the test figure. This script
separates the candidate causes for one subnet (default: the shipped supernet's largest at 32 px,
its best resolution):

- **overfitting**: the subnet's top-1 on training images it was trained on (a fixed sample, eval
  transform) against the held-out images; equal figures mean it has not memorised anything;
- **a pipeline difference**: the same code path (BN recalibration, loader, eval transform) serves all
  three splits, and the mean/std of the tensors it feeds the network are reported;
- **near-duplicates** (a held-out image close to a training image is easy): the Euclidean pixel
  distance from every held-out and test image to its nearest training image, its quartiles, the
  subnet's top-1 per distance quartile, and the held-out top-1 reweighted to the test split's distance
  distribution;
- **the split itself**: a 1-nearest-neighbour classifier on raw pixels, which shares nothing with the
  network, scored on both.

    python bench/split_difficulty.py [--supernet builtin:fashion_mnist_tiny] [--config FILE.yaml]
                                     [--resolution 32] [--threads 1] [--out FILE.json]

The data settings come from the pretraining config that made the supernet. Writes
bench/results/split_difficulty.json; about a minute on one core.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.data import load_from_config  # noqa: E402
from nat.data.loaders import make_loader  # noqa: E402
from nat.search.supernets import supernet_path  # noqa: E402
from nat.space import Subnet  # noqa: E402
from nat.supernet import load_supernet  # noqa: E402
from nat.train.config import load_pretrain_config  # noqa: E402
from nat.train.progressive import pretrain_calibrator  # noqa: E402

RESULT = ROOT / "bench" / "results" / "split_difficulty.json"
TRAIN_SAMPLE = 5000


def pixels(split) -> torch.Tensor:
    """Raw pixels in [0, 1], one row per image (the nearest-neighbour features)."""
    return split.images.reshape(len(split), -1).float() / 255


def nearest_training_image(query: torch.Tensor, train: torch.Tensor, chunk: int = 500) -> tuple:
    """Distance to, and index of, each query row's nearest training row (squared-norm expansion)."""
    train_sq = (train * train).sum(1)
    dist, index = [], []
    for i in range(0, len(query), chunk):
        q = query[i : i + chunk]
        d2 = (q * q).sum(1, keepdim=True) - 2 * q @ train.T + train_sq
        m, j = d2.min(1)
        dist.append(m.clamp_min(0).sqrt())
        index.append(j)
    return torch.cat(dist).numpy(), torch.cat(index).numpy()


def per_class(pred: np.ndarray, labels: np.ndarray, classes: int) -> list[float]:
    return [round(float((pred[labels == c] == c).mean()), 4) for c in range(classes)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--supernet", default="builtin:fashion_mnist_tiny")
    parser.add_argument("--config", type=Path, default=ROOT / "configs" / "pretrain_fashion_mnist.yaml")
    parser.add_argument("--resolution", type=int, default=32, help="the largest subnet's input size")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULT)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    cfg = load_pretrain_config(args.config)
    task = load_from_config(cfg.data, cfg.seed)
    net = load_supernet(supernet_path(args.supernet)).eval()
    space = net.space
    if args.resolution not in space.resolutions:
        parser.error(f"--resolution {args.resolution} is not in the space's {list(space.resolutions)}")
    calibrator = pretrain_calibrator(task, cfg, space)
    subnet = Subnet.largest(space, r=args.resolution)
    calibrator(net, subnet)  # as nat pretrain's final figures: recalibrated on fixed training images

    sample = np.random.default_rng(cfg.seed).choice(len(task.train), TRAIN_SAMPLE, replace=False)
    splits = {"train_sample": task.train.subset(sample), "val": task.val, "test": task.test}
    train_px, train_labels = pixels(task.train), task.train.labels.numpy()
    rows: dict[str, dict] = {}
    found: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = {}
    for name, split in splits.items():
        loader = make_loader(
            task, split, batch_size=cfg.data.eval_batch_size, resolution=subnet.r, train=False
        )
        preds, inputs_sum, inputs_sq, count = [], 0.0, 0.0, 0
        with torch.no_grad():
            for x, _ in loader:
                preds.append(net(x).argmax(1))
                inputs_sum += float(x.sum())
                inputs_sq += float((x * x).sum())
                count += x.numel()
        pred, labels = torch.cat(preds).numpy(), split.labels.numpy()
        mean = inputs_sum / count
        row = {
            "images": len(labels),
            "subnet_top1": float((pred == labels).mean()),
            "subnet_top1_per_class": per_class(pred, labels, task.num_classes),
            "input_mean": mean,
            "input_std": (inputs_sq / count - mean * mean) ** 0.5,
        }
        if name != "train_sample":  # a training image's nearest training image is itself
            dist, idx = nearest_training_image(pixels(split), train_px)
            nn_pred = train_labels[idx]
            row["nn1_pixel_top1"] = float((nn_pred == labels).mean())
            row["nn_distance_quartiles"] = [float(np.quantile(dist, q)) for q in (0.25, 0.5, 0.75)]
            found[name] = (dist, pred, nn_pred, labels)
        rows[name] = row
        print(f"{name}: subnet {row['subnet_top1']:.2%}", end="")
        print(f", 1-NN {row['nn1_pixel_top1']:.2%}" if "nn1_pixel_top1" in row else "", flush=True)

    pooled = np.concatenate([found["val"][0], found["test"][0]])
    edges = np.quantile(pooled, [0.0, 0.25, 0.5, 0.75, 1.0])
    edges[-1] = np.inf
    for name, (dist, pred, nn_pred, labels) in found.items():
        bins = []
        for lo, hi in zip(edges[:-1], edges[1:], strict=True):
            m = (dist >= lo) & (dist < hi)
            bins.append(
                {
                    "distance": [float(lo), float(hi)],
                    "images": int(m.sum()),
                    "subnet_top1": float((pred[m] == labels[m]).mean()),
                    "nn1_pixel_top1": float((nn_pred[m] == labels[m]).mean()),
                }
            )
        rows[name]["by_nn_distance_quartile"] = bins
    # the held-out figure if its images were as far from the training set as the test images are
    deciles = np.quantile(pooled, np.linspace(0, 1, 11))
    deciles[-1] = np.inf
    dist_v, pred_v, _, labels_v = found["val"]
    share_v = np.histogram(dist_v, deciles)[0] / len(dist_v)
    share_t = np.histogram(found["test"][0], deciles)[0] / len(found["test"][0])
    weight = (share_t / np.maximum(share_v, 1e-12))[np.clip(np.digitize(dist_v, deciles) - 1, 0, 9)]
    reweighted = float(((pred_v == labels_v) * weight).sum() / weight.sum())

    result = {
        "supernet": args.supernet,
        "dataset": cfg.data.dataset,
        "subnet": subnet.to_dict(),
        "bn_calibration_images": cfg.calibration_images,
        "threads": args.threads,
        "seconds": time.perf_counter() - start,
        "splits": rows,
        "val_top1_reweighted_to_test_nn_distance": reweighted,
        "val_minus_test_points": {
            "subnet": 100 * (rows["val"]["subnet_top1"] - rows["test"]["subnet_top1"]),
            "nn1_pixel": 100 * (rows["val"]["nn1_pixel_top1"] - rows["test"]["nn1_pixel_top1"]),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    gap = result["val_minus_test_points"]
    print(
        f"held-out minus test: subnet {gap['subnet']:+.2f} points, 1-NN on pixels {gap['nn1_pixel']:+.2f}; "
        f"held-out reweighted to the test split's distances {reweighted:.2%} -> {args.out}"
    )


if __name__ == "__main__":
    main()
