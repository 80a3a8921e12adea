"""The paper-scale path end to end at tiny budgets, and what a paper-sized run would cost on this machine.

What runs (once per precision in ``--precisions``): a full `nat search` loop, iteration 0 and one more
iteration, with finalisation (one model fine-tuned and tested), on

* OFA's two ImageNet supernets' architectures, w1.0 and w1.2 (OFA's own package builds them with random
  weights; they are saved in OFA's checkpoint format, ``{"state_dict": ...}`` through ``torch.save``, and
  nat loads them the way it loads OFA's published files, classifier replaced for the task);
* an ImageFolder of generated JPEGs of about 300 px (10 classes), read through the file path, at the
  paper's resolutions 192-256.

Measured: the training images/s of adaptation, the seconds per subnet evaluation (BN recalibration and
top-1, with the images each took), the surrogate fit and NSGA-III at the *paper's* size (archives of
100 and 340 subnets, NSGA-III 100 x 50, nat's defaults), and the training loader's images/s alone at
224 px. From them, the projected wall time of a paper-sized CIFAR-10 run on this machine (nat's
defaults, which are the paper's: 100 initial subnets, 30 iterations of 8 candidates, one adaptation
epoch per iteration, every archive member re-evaluated after each adaptation, BN recalibration on 500
images, 5,000 search-validation images, 45,000 training images), by precision.

    python bench/paper_scale.py [--precisions fp32 bf16] [--device cpu|cuda] [--threads 1] [--out FILE]

Writes bench/results/paper_scale.json (bench/results/paper_scale_cuda.json with --device cuda).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.runtime import process_settings  # noqa: E402
from nat.search import NATSearch, load_config  # noqa: E402
from nat.search.archive import Phase, Record  # noqa: E402
from nat.search.problem import run_nsga3  # noqa: E402
from nat.search.strategies.surrogate import surrogate_problem  # noqa: E402
from nat.space.genome import encode  # noqa: E402
from nat.space.subnet import Subnet  # noqa: E402
from record import code_version, write_result  # noqa: E402

#: the paper-sized CIFAR-10 run the projection is for (nat's defaults; CIFAR-10's 50,000 training
#: images less the 10% search-validation hold-out)
PAPER = {
    "initial_samples": 100,
    "iterations": 30,
    "candidates_per_iteration": 8,
    "initial_epochs": 1.0,
    "epochs": 1.0,
    "train_images": 45_000,
    "val_images": 5_000,
    "calibration_images": 500,
}
CLASSES, PER_CLASS_TRAIN, PER_CLASS_TEST = 10, 24, 6


def make_jpegs(root: Path, seed: int = 0, per_class_train: int = PER_CLASS_TRAIN) -> None:
    """``root/train|test/class_k/*.jpg``: about 300 px, a class-coloured blob on noise (JPEG quality 90)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for split, n in (("train", per_class_train), ("test", PER_CLASS_TEST)):
        for k in range(CLASSES):
            folder = root / split / f"class_{k}"
            folder.mkdir(parents=True)
            colour = np.array([(k * 73) % 256, (k * 151) % 256, (k * 29) % 256], dtype=np.float32)
            for i in range(n):
                h, w = rng.integers(280, 321, size=2)
                img = rng.normal(128, 40, size=(h, w, 3)).astype(np.float32)
                cy, cx, r = rng.integers(60, h - 60), rng.integers(60, w - 60), rng.integers(40, 80)
                yy, xx = np.ogrid[:h, :w]
                img[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = colour
                Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"{i}.jpg", quality=90)


def make_ofa_checkpoints(folder: Path) -> list[Path]:
    """OFA's w1.0 and w1.2 supernets with random weights, in OFA's checkpoint format."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from ofa.imagenet_classification.elastic_nn.networks import OFAMobileNetV3
    paths = []
    for width in (1.0, 1.2):
        torch.manual_seed(0)
        net = OFAMobileNetV3(
            n_classes=1000,
            dropout_rate=0.1,
            width_mult=width,
            ks_list=[3, 5, 7],
            expand_ratio_list=[3, 4, 6],
            depth_list=[2, 3, 4],
        )
        path = folder / f"ofa_mbv3_d234_e346_k357_w{width}"
        torch.save({"state_dict": net.state_dict()}, path)
        paths.append(path)
    return paths


def recorded_rates(search: NATSearch) -> tuple[float, float]:
    """Training images per second and seconds per evaluated subnet, from the run's own record: the
    seconds per phase and subnets measured that each iteration's history entry holds
    (`nat.search.phases.PhaseClock`)."""
    cfg = search.config
    history = search.folder.read_state()["history"]
    batches = max(1, len(search.task.train) // cfg.data.train_batch_size)

    def images(epochs: float) -> int:  # what one adaptation trains on, as `adapt_supernet` plans it
        steps = min(math.ceil(epochs * batches), cfg.adaptation.max_steps or 10**9) if epochs > 0 else 0
        return steps * cfg.data.train_batch_size * len(search.supernets)

    adapt_s = sum(h["seconds"].get("adaptation", 0.0) for h in history)
    adapt_images = sum(
        images(cfg.adaptation.initial_epochs if h["iteration"] == 0 else cfg.adaptation.epochs)
        for h in history
    )
    eval_s = sum(h["seconds"].get("evaluation", 0.0) + h["seconds"].get("reevaluation", 0.0) for h in history)
    eval_n = sum(sum(h.get("measured", {}).values()) for h in history)
    return adapt_images / adapt_s, eval_s / eval_n


def search_config(root: Path, checkpoints: list[Path], precision: str, args: argparse.Namespace):
    """The tiny-budget search; ``args`` gives the device and the sizes (a GPU gets batches that fill it)."""
    return load_config(
        overrides={
            "seed": 0,
            "device": args.device,
            "threads": args.threads,
            "precision": precision,
            "supernet": [str(p) for p in checkpoints],
            "space": {"resolutions": list(range(192, 257, 4))},
            "data": {
                "dataset": "folder",
                "root": str(root),
                "val_size": 0.2,
                "train_batch_size": args.train_batch,
                "eval_batch_size": args.eval_batch,
                "num_workers": args.workers,
            },
            "initial_samples": 4,
            "iterations": 1,
            "candidates_per_iteration": 2,
            "surrogate": {"folds": 2},
            "nsga3": {"pop_size": 20, "generations": 5},
            "adaptation": {"initial_epochs": 1.0, "epochs": 1.0, "max_steps": args.max_steps},
            "evaluation": {
                "calibration_images": args.calibration_images,
                "max_val_images": args.val_images,
                "reevaluate": "all",
            },
            "finalize": {"models": 1, "finetune_epochs": 0.1},
        }
    )


def loader_images_per_s(search: NATSearch, resolution: int = 224, batches: int = 6) -> dict:
    """The training loader alone at ``resolution`` (decoding, random-resized crop, flip, batching)."""
    from nat.data import loader_from_config

    loader = loader_from_config(
        search.task, search.config.data, "train", resolution=resolution, seed=0, device=search.parts.device
    )
    it = iter(loader)
    next(it)  # workers started, first batch out
    t0, n = time.perf_counter(), 0
    for _ in range(batches):
        try:
            x, _ = next(it)
        except StopIteration:
            break
        n += x.shape[0]
    return {"images_per_s": n / (time.perf_counter() - t0), "storage": search.task.source.storage}


def paper_sized_strategy_costs(search: NATSearch, sizes: tuple[int, ...] = (100, 340)) -> dict:
    """Surrogate fit (adaptive switching over nat's default models) and NSGA-III (100 x 50) on archives
    of the paper's sizes; top-1 values are synthetic (a noisy function of MAdds), since only the cost of
    fitting and searching is measured here."""
    cfg = load_config(overrides={**search.config.model_dump(mode="json"), "surrogate": {}, "nsga3": {}})
    strategy_problem = search.objectives
    rng = random.Random(0)
    out = {}
    for size in sizes:
        records, seen = [], set()
        while len(records) < size:
            s = Subnet.sample(search.space, rng)
            if s in seen:
                continue
            seen.add(s)
            values = search.objectives.exact_values(s)
            values["top1"] = 0.6 + 0.1 * math.log10(values["madds"] / 1e8) + rng.gauss(0, 0.01)
            genome = tuple(int(g) for g in encode(s, search.space))
            records.append(Record(0, Phase.INITIAL, s, genome, values["top1"], values))
        t0 = time.perf_counter()
        evaluate, _ = surrogate_problem(records, strategy_problem, cfg.surrogate, cfg.seed, 1)
        t1 = time.perf_counter()
        run_nsga3(
            search.space,
            evaluate,
            len(strategy_problem.names),
            len(strategy_problem.constraints),
            np.array([r.genome for r in records]),
            cfg.nsga3.pop_size,
            cfg.nsga3.generations,
            cfg.seed,
            cfg.nsga3.crossover_prob,
            cfg.nsga3.mutation_eta,
            cfg.nsga3.n_partitions,
        )
        t2 = time.perf_counter()
        out[str(size)] = {"surrogate_fit_s": t1 - t0, "nsga3_s": t2 - t1}
    return out


def projection(train_images_per_s: float, eval_images_per_s: float, strategy: dict) -> dict:
    """Hours of a paper-sized CIFAR-10 run from the measured rates (see `PAPER`)."""
    p = PAPER
    per_eval = (p["calibration_images"] + p["val_images"]) / eval_images_per_s
    train_s = (p["initial_epochs"] + p["iterations"] * p["epochs"]) * p["train_images"] / train_images_per_s
    archive = [p["initial_samples"] + p["candidates_per_iteration"] * i for i in range(p["iterations"])]
    evaluations = p["initial_samples"] + p["iterations"] * p["candidates_per_iteration"] + sum(archive)
    small, large = strategy["100"], strategy["340"]
    strat_s = 0.0
    for n in archive:  # linear in the archive size between the two measured sizes
        f = (n - 100) / 240
        strat_s += sum((1 - f) * small[k] + f * large[k] for k in ("surrogate_fit_s", "nsga3_s"))
    total = train_s + evaluations * per_eval + strat_s
    return {
        "evaluations": evaluations,
        "seconds_per_evaluation": per_eval,
        "training_hours": train_s / 3600,
        "evaluation_hours": evaluations * per_eval / 3600,
        "surrogate_and_nsga3_hours": strat_s / 3600,
        "total_hours": total / 3600,
        "total_days": total / 86400,
    }


def run_one(
    precision: str,
    args: argparse.Namespace,
    data: Path,
    checkpoints: list[Path],
    tmp: Path,
    strategy: dict | None,
) -> dict:
    """One tiny search at ``precision``; the paper-sized surrogate and NSGA-III costs (CPU work, the same
    for every precision) are measured only when ``strategy`` is None."""
    torch.set_num_threads(args.threads)
    cfg = search_config(data, checkpoints, precision, args)
    t0 = time.perf_counter()
    search = NATSearch(cfg, tmp / f"run_{precision}")
    setup_s = time.perf_counter() - t0
    with search, process_settings(cfg):  # as `nat search` holds them (threads, host memory reuse)
        t0 = time.perf_counter()
        front = search.run()
        loop_s = time.perf_counter() - t0
        models = search.models
        per_subnet_images = cfg.evaluation.calibration_images + min(
            cfg.evaluation.max_val_images, len(search.task.val)
        )
        train_rate, eval_s_per_subnet = recorded_rates(search)
        eval_rate = per_subnet_images / eval_s_per_subnet
        loader = loader_images_per_s(search)
        if strategy is None:
            strategy = paper_sized_strategy_costs(search)
    result = {
        "setup_s": setup_s,
        "loop_s": loop_s,
        "front_size": len(front),
        "models": [{k: m[k] for k in ("name", "madds", "test_top1") if k in m} for m in models],
        "archive_size": len(search.archive.records),
        "adaptation_images_per_s": train_rate,
        "seconds_per_subnet_evaluation": eval_s_per_subnet,
        "evaluation_images_per_subnet": per_subnet_images,
        "evaluation_images_per_s": eval_rate,
        "loader_224px": loader,
        "paper_sized_surrogate_and_nsga3": strategy,
        "projected_paper_cifar10_run": projection(train_rate, eval_rate, strategy),
    }
    proj = result["projected_paper_cifar10_run"]
    print(
        f"{precision}: loop {loop_s:.0f} s; training {train_rate:.1f} img/s, evaluation "
        f"{eval_s_per_subnet:.1f} s per subnet ({eval_rate:.1f} img/s), loader at 224 px "
        f"{loader['images_per_s']:.0f} img/s ({loader['storage']}); surrogate + NSGA-III at 100 / 340 "
        f"records: {sum(strategy['100'].values()):.1f} / {sum(strategy['340'].values()):.1f} s; "
        f"projected paper-sized CIFAR-10 run: {proj['total_days']:.1f} days "
        f"({proj['evaluations']} evaluations, {proj['evaluation_hours']:.0f} h of them)"
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"], choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--train-batch", type=int, default=8)
    parser.add_argument("--eval-batch", type=int, default=32)
    parser.add_argument("--workers", type=int, default=1, help="DataLoader workers")
    parser.add_argument("--max-steps", type=int, default=3, help="adaptation steps per iteration")
    parser.add_argument("--calibration-images", type=int, default=32)
    parser.add_argument("--val-images", type=int, default=48, help="search-validation images per evaluation")
    parser.add_argument("--per-class", type=int, default=PER_CLASS_TRAIN, help="training JPEGs per class")
    parser.add_argument(
        "--strategy-from",
        type=Path,
        default=None,
        help="take the paper-sized surrogate + NSGA-III costs (CPU work) from this earlier result",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="default: bench/results/paper_scale[_cuda].json"
    )
    args = parser.parse_args()
    commit = code_version()  # the code this process runs (read before the runs, not after)
    result: dict = {
        "what": "paper-scale path at tiny budgets (OFA w1.0 + w1.2, 192-256 px, JPEG ImageFolder) and the "
        "projected cost of a paper-sized CIFAR-10 run",
        "device": args.device,
        "device_name": torch.cuda.get_device_name()
        if args.device.startswith("cuda")
        else platform.processor(),
        "threads": args.threads,
        "paper_run": PAPER,
        "torch": torch.__version__,
        "sizes": {
            k: getattr(args, k)
            for k in ("train_batch", "eval_batch", "workers", "max_steps", "calibration_images", "val_images")
        }
        | {"train_jpegs": args.per_class * CLASSES},
    }
    strategy = None
    if args.strategy_from is not None:
        earlier = json.loads(args.strategy_from.read_text())
        strategy = next(
            v["paper_sized_surrogate_and_nsga3"]
            for v in earlier.values()
            if isinstance(v, dict) and "paper_sized_surrogate_and_nsga3" in v
        )
        result["strategy_costs_from"] = f"{args.strategy_from.name} ({earlier.get('device_name') or 'cpu'})"
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        make_jpegs(tmp / "data", per_class_train=args.per_class)
        checkpoints = make_ofa_checkpoints(tmp)
        for precision in args.precisions:
            result[precision] = run_one(precision, args, tmp / "data", checkpoints, tmp, strategy)
            strategy = result[precision]["paper_sized_surrogate_and_nsga3"]
    result["seconds"] = time.perf_counter() - t0
    name = "paper_scale" if args.device == "cpu" else "paper_scale_cuda"
    path = args.out or ROOT / "bench" / "results" / f"{name}.json"
    print(f"{result['seconds']:.0f} s in all")
    write_result(path, result, indent=2, threads=args.threads, commit=commit)


if __name__ == "__main__":
    main()
