"""Make the real (subnet, measured accuracy) data set the surrogate benchmark is judged on.

Trains a small weight-sharing supernet on Fashion-MNIST with this project's own code (`nat.supernet`,
`nat.data`) using the sandwich rule (largest + smallest + random subnets per step), then measures a few
hundred random subnets the way NAT's search does: activate the subnet, recalibrate BN on a fixed set of
training images, top-1 on held-out images (a stratified hold-out of the official train split; the test
split is never touched). Writes a CSV (genome columns, subnet JSON, top-1, MAdds, params) and a JSON
sidecar with the search space and every setting, so the benchmark can decode the genomes.

With ``--supernet PATH`` nothing is trained: the subnets of that (``nat pretrain``) supernet are measured,
on held-out images of the split ``--val-size``/``--seed`` define, which must be the split the supernet
was pretrained with (so that no measured image was trained on).

The space is the ``tiny`` preset with a stride-2 stem (``--space tiny-s2``, the default): the preset's
stride-1 stem keeps the first stage at full resolution, which made CPU training ~4x slower for no gain
on 28 px images. The genome layout is unchanged (22 variables, 21 of them free).

Training and top-1 are the library's (`nat.train.train_supernet` with ``always_train=[largest, smallest]``
plus ``--random-per-step`` sampled subnets, no distillation, SGD + Nesterov, warm-up over 5% of the steps
then cosine, label smoothing 0.1, weight decay 3e-5 off BN/biases, gradient clipping at 5;
`nat.train.evaluate_top1`). The recipe is the one the committed ``fmnist_tiny_subnets`` data set was made
with by an earlier hand-written loop, but remaking it now gives slightly different accuracies, not
bit-identical ones: the classifier's dropout draws from the trainer's own seeded RNG stream instead of the
global one (which the weight initialisation had advanced), and the schedule's learning rates can differ
in the last bit (the same formula, rounded in another order). With dropout off, both loops gave the same
CSV. Measuring a given supernet (``--supernet``, how ``fmnist_s2_subnets`` was made) is unchanged.

    python bench/make_surrogate_data.py                    # ~27 min on a busy 2-core machine
    python bench/make_surrogate_data.py --supernet runs/pretrain_fashion_mnist_s2/supernet.safetensors \
        --val-size 10000 --eval-images 10000 --out bench/data/fmnist_s2_subnets.csv   # measure only
    python bench/make_surrogate_data.py --steps 20 --subnets 10 --out /tmp/smoke.csv   # smoke test
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from nat.data import load_dataset, make_loader
from nat.objectives.complexity import ComplexityTable
from nat.space import SearchSpace, Subnet, decode, encode, genome_length, get_space, sample_genomes
from nat.supernet import BNCalibrator, Supernet
from nat.supernet.checkpoint import load_supernet
from nat.train import SupernetTrainer, evaluate_top1, train_supernet

HERE = Path(__file__).resolve().parent
DEVICE = torch.device("cpu")
DEFAULT_OUT = HERE / "data" / "fmnist_tiny_subnets.csv"
log = logging.getLogger("make_surrogate_data")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dataset", default="fashion-mnist", help="a nat.data dataset name")
    p.add_argument("--root", default=None, help="dataset root (default: the registry's default location)")
    p.add_argument("--space", default="tiny-s2", help="'tiny-s2' (default) or a nat.space preset name")
    p.add_argument(
        "--supernet",
        type=Path,
        default=None,
        help="measure this nat supernet file instead of training one (its own space is used)",
    )
    p.add_argument(
        "--val-size",
        type=int,
        default=None,
        help="held-out training images (default: max(eval-images, 1000)); with --supernet, the val_size "
        "it was pretrained with",
    )
    p.add_argument("--steps", type=int, default=500, help="sandwich-rule training steps")
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument(
        "--random-per-step",
        type=int,
        default=2,
        help="random subnets per step besides the largest and the smallest",
    )
    p.add_argument("--lr", type=float, default=0.08)
    p.add_argument("--subnets", type=int, default=350, help="random subnets to measure")
    p.add_argument("--calib-images", type=int, default=500, help="training images for BN recalibration")
    p.add_argument("--eval-images", type=int, default=2500, help="held-out images for top-1")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--threads", type=int, default=1, help="torch threads (1 is fastest on a shared 2-core machine)"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    return p.parse_args(argv)


class ChannelsLast:
    """A nat loader whose batches come in channels-last layout (that of the supernet's weights), keeping
    its ``len`` and ``set_epoch`` for `nat.train.train_supernet`."""

    def __init__(self, loader) -> None:
        self.loader = loader

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def __iter__(self):
        for images, labels in self.loader:
            yield images.contiguous(memory_format=torch.channels_last), labels


def train_sandwich(net: Supernet, task, space: SearchSpace, args: argparse.Namespace) -> dict:
    """Sandwich-rule training: each step sums the losses of the largest, the smallest and random subnets."""
    loader = make_loader(
        task,
        "train",
        batch_size=args.batch_size,
        resolution=list(space.resolutions),
        train=True,
        seed=args.seed,
        scale=(0.35, 1.0),
    )

    def log_progress(trainer: SupernetTrainer) -> None:
        if trainer.step % 25 == 0 or trainer.step == args.steps:
            window = trainer.averages(window=True)
            trainer.reset_window()
            log.info(
                "step %d/%d  loss %.3f  train top-1 %.1f%%  (means over the subnets of the last steps)",
                trainer.step,
                args.steps,
                window["loss"],
                100 * window["top1"],
            )

    return train_supernet(
        net,
        ChannelsLast(loader),
        steps=args.steps,
        sample_subnet=lambda rng: Subnet.sample(space, rng),
        subnets_per_batch=args.random_per_step,
        always_train=[Subnet.largest(space), Subnet.smallest(space)],
        distill_from=None,
        lr=args.lr,
        warmup_steps=max(1, args.steps // 20),
        momentum=0.9,
        nesterov=True,
        weight_decay=3e-5,
        label_smoothing=0.1,
        grad_clip=5.0,
        seed=args.seed,
        device=DEVICE,
        on_step=log_progress,
        progress=False,
        desc="sandwich training",
    )


def percent_top1(net: Supernet, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    """`nat.train.evaluate_top1` in percent, as ``100 * correct / total`` (the CSV's exact figures)."""
    total = sum(len(labels) for _, labels in batches)
    correct = round(evaluate_top1(net, batches, device=DEVICE) * total)
    return 100.0 * correct / total


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    np_rng = np.random.default_rng(args.seed)
    began = time.perf_counter()
    val_size = args.val_size if args.val_size is not None else max(args.eval_images, 1000)
    task = load_dataset(args.dataset, args.root, val_size=val_size, seed=args.seed)
    log.info("%s: train %d, held-out %d (%s)", task.name, len(task.train), len(task.val), task.val_origin)
    if args.supernet is not None:
        net = load_supernet(args.supernet, num_classes=task.num_classes).to(memory_format=torch.channels_last)
        space = net.space
        log.info("measuring %s (space %s): no training", args.supernet, space.name)
    else:
        space = get_space(args.space)
        net = Supernet(space, num_classes=task.num_classes).to(memory_format=torch.channels_last)
        train_sandwich(net, task, space, args)
    trained_s = time.perf_counter() - began

    # fixed calibration images (training split, eval transform) and held-out batches per resolution
    calib_idx = np_rng.choice(len(task.train), size=args.calib_images, replace=False)
    native = task.source.image_size[0] if task.source.image_size else max(space.resolutions)
    calib_loader = make_loader(
        task, task.train.subset(calib_idx), batch_size=args.calib_images, resolution=native, train=False
    )
    calib_images = next(iter(calib_loader))[0]
    calibrator = BNCalibrator(calib_images, batch_size=250, channels_last=True)
    held = task.val.subset(np.arange(min(args.eval_images, len(task.val))))
    eval_batches = {}
    for r in space.resolutions:
        loader = make_loader(task, held, batch_size=500, resolution=r, train=False)
        eval_batches[r] = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in loader]

    genomes = np.unique(sample_genomes(space, args.subnets * 2, np_rng), axis=0)
    genomes = genomes[np_rng.permutation(len(genomes))[: args.subnets]]
    madds, params = ComplexityTable(space, num_classes=task.num_classes)(genomes)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    start = time.perf_counter()
    for i, genome in enumerate(genomes):
        sub = decode(genome, space)
        assert np.array_equal(encode(sub, space), genome)
        calibrator(net, sub)
        acc = percent_top1(net, eval_batches[sub.r])
        rows.append(
            [i, *(int(v) for v in genome), sub.to_json(), f"{acc:.2f}", int(madds[i]), int(params[i])]
        )
        if (i + 1) % 25 == 0 or i + 1 == len(genomes):
            log.info(
                "measured %d/%d subnets (%.0f s), last top-1 %.2f",
                i + 1,
                len(genomes),
                time.perf_counter() - start,
                acc,
            )

    header = ["id", *(f"g{j}" for j in range(genome_length(space))), "subnet", "top1", "madds", "params"]
    with args.out.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
    accs = np.array([float(r[-3]) for r in rows])
    meta = {
        "description": (
            f"random subnets of the supernet {args.supernet}, top-1 after BN recalibration"
            if args.supernet is not None
            else "random subnets of a sandwich-trained supernet, top-1 after BN recalibration"
        ),
        "command": "python bench/make_surrogate_data.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "dataset": task.name,
        "held_out": task.val_origin,
        "eval_images": len(held),
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "space": space.model_dump(mode="json"),
        "top1": {
            "min": float(accs.min()),
            "max": float(accs.max()),
            "mean": float(accs.mean()),
            "std": float(accs.std()),
        },
        "seconds": {"train": round(trained_s, 1), "total": round(time.perf_counter() - began, 1)},
        "versions": {"torch": torch.__version__, "numpy": np.__version__},
    }
    args.out.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
    log.info(
        "wrote %s (%d subnets, top-1 %.2f..%.2f) in %.0f s",
        args.out,
        len(rows),
        accs.min(),
        accs.max(),
        time.perf_counter() - began,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
