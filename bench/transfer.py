"""The transfer experiment (the paper's central claim, at our scale).

From nat's Fashion-MNIST supernet to the mnist5k and digits tasks: NAT's front (search, then a short
fine-tune of each front model) against the conventional approach, fine-tuning a fixed architecture
(the largest subnet, and a subnet of MAdds similar to the middle of NAT's front) with the same training
budget as one NAT model received (its share of adaptation plus its own fine-tune) and the same
learning rate (the preset's ``finalize.lr``). Test-split top-1.

    python bench/transfer.py [--tasks mnist5k digits] [--seed 0] [--threads 1] [--out FILE.json] [--plot]

Writes bench/results/transfer/transfer_seedS.json (with the machine, threads and commit) and, with
--plot, the fronts beside it as a PNG; `bench/transfer_summary.py` summarises the seeds. Target
(issue 6): every baseline point is dominated by some NAT front member.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.objectives import profile_subnet  # noqa: E402
from nat.search import NATSearch, load_config  # noqa: E402
from nat.search.finalize import extract_and_test, finalize, finetune_subnet  # noqa: E402
from nat.search.supernets import load_supernets  # noqa: E402
from nat.space import Subnet  # noqa: E402
from nat.supernet import Supernet  # noqa: E402
from record import code_version, machine  # noqa: E402

RESULTS = ROOT / "bench" / "results" / "transfer"
#: the benchmark's NAT settings (command-line defaults)
ITERATIONS, FINETUNE_EPOCHS, MODELS, VAL_SIZE = 6, 5.0, 5, 300


def finetune_fixed(
    search: NATSearch, pretrained: Supernet, subnet: Subnet, epochs: float, seed: int, *, lr: float
) -> float:
    """Conventional transfer: fine-tune one fixed architecture from the *pretrained* supernet weights,
    with the same library steps (`finetune_subnet`, `extract_and_test`) as NAT's own front models."""
    cfg = search.config
    net = copy.deepcopy(pretrained)
    finetune_subnet(
        net,
        subnet,
        search.task,
        cfg.data,
        epochs=epochs,
        lr=lr,
        weight_decay=cfg.adaptation.weight_decay,
        label_smoothing=cfg.adaptation.label_smoothing,
        seed=seed,
        device=search.parts.device,
        desc=f"baseline {subnet.r}px",
    )
    _, scores = extract_and_test(
        net, subnet, search.evaluator.calibrator, search.task, cfg.data, seed=seed, device=search.parts.device
    )
    return float(scores["top1"])


def dominated(point: dict, front: list[dict]) -> bool:
    return any(
        f["madds"] <= point["madds"]
        and f["top1"] >= point["top1"]
        and (f["madds"] < point["madds"] or f["top1"] > point["top1"])
        for f in front
    )


def transfer_search(
    task: str,
    seed: int,
    val_size: int,
    iterations: int,
    workdir: Path,
    resolutions: tuple[int, ...] | None = None,
) -> tuple[NATSearch, Supernet]:
    """A quickstart-settings NAT search on ``task`` and, loaded on its own, the pretrained supernet it
    starts from (the starting point of the fixed-architecture baselines). ``resolutions`` restricts the
    search space to those input resolutions (default: the supernet's own)."""
    overrides: dict[str, Any] = {
        "seed": seed,
        "device": "cpu",
        "data": {"dataset": task, "val_size": val_size},
        "iterations": iterations,
        "adaptation": {"distill": False},  # the quickstart's settings when these figures were measured
        "finalize": {"models": 0},  # the benchmark delivers its models itself (its own fine-tune epochs)
    }
    if resolutions is not None:
        overrides["space"] = {"resolutions": list(resolutions)}
    config = load_config(preset="quickstart", overrides=overrides)
    search = NATSearch(config, workdir / task)
    _, pretrained = load_supernets(config, search.task.num_classes, search.parts.runtime)
    return search, next(iter(pretrained.values()))


def run_task(task: str, args: argparse.Namespace, workdir: Path) -> dict:
    search, pretrained = transfer_search(task, args.seed, args.val_size, args.iterations, workdir)
    config = search.config
    start = time.time()
    search.run()
    models = finalize(search, finetune_epochs=args.finetune_epochs, max_models=args.models)
    nat_seconds = time.time() - start
    steps_per_epoch = max(1, len(search.task.train) // config.data.train_batch_size)
    adaptation_epochs = config.adaptation.initial_epochs + config.adaptation.epochs * config.iterations
    budget_epochs = adaptation_epochs / max(1, len(models)) + args.finetune_epochs
    nat_points = [
        {"madds": m["madds"], "top1": m["test_top1"], "name": m["name"], "subnet": m["subnet"]}
        for m in models
    ]
    space = search.space
    largest = Subnet.largest(space)
    middle_madds = sorted(p["madds"] for p in nat_points)[len(nat_points) // 2]
    rng = random.Random(args.seed)
    pool = [Subnet.sample(space, rng) for _ in range(2000)]
    similar = min(
        pool, key=lambda s: abs(profile_subnet(s, space, search.task.num_classes)["madds"] - middle_madds)
    )
    baselines = []
    # the baselines are fine-tuned with the learning rate NAT's own models get (finalize.lr): one
    # fine-tuning recipe for every model compared (until 2026-12-05 they got adaptation.lr, 0.02)
    lr = config.finalize.lr
    for name, subnet in (("largest", largest), ("similar_madds", similar)):
        top1 = finetune_fixed(search, pretrained, subnet, budget_epochs, args.seed, lr=lr)
        madds = profile_subnet(subnet, space, search.task.num_classes)["madds"]
        baselines.append(
            {
                "name": name,
                "madds": madds,
                "top1": top1,
                "subnet": subnet.to_dict(),
                "epochs": budget_epochs,
                "lr": lr,
            }
        )
    for b in baselines:
        b["dominated_by_nat"] = dominated(b, nat_points)
    return {
        "seed": args.seed,
        "nat": nat_points,
        "baseline": baselines,
        "nat_seconds": nat_seconds,
        "test_images": len(search.task.test),
        "budget": {
            "baseline_epochs": budget_epochs,
            "steps_per_epoch": steps_per_epoch,
            "nat_adaptation_epochs": adaptation_epochs,
            "nat_finetune_epochs": args.finetune_epochs,
            "finetune_lr": lr,
        },
    }


def plot(results: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(results), 4), dpi=110)
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(results), squeeze=False)
    for ax, (task, res) in zip(axes[0], results.items(), strict=True):
        nat_pts = sorted(res["nat"], key=lambda p: p["madds"])
        ax.plot(
            [p["madds"] / 1e6 for p in nat_pts], [100 * p["top1"] for p in nat_pts], "o-", label="NAT front"
        )
        for b in res["baseline"]:
            ax.plot(b["madds"] / 1e6, 100 * b["top1"], "x", ms=10, label=f"fine-tune {b['name']}")
        ax.set_title(f"Fashion-MNIST supernet -> {task}")
        ax.set_xlabel("MAdds (M)")
        ax.set_ylabel("test top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["mnist5k", "digits"])
    parser.add_argument("--iterations", type=int, default=ITERATIONS)
    parser.add_argument("--finetune-epochs", type=float, default=FINETUNE_EPOCHS)
    parser.add_argument("--models", type=int, default=MODELS)
    parser.add_argument("--val-size", type=int, default=VAL_SIZE)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--out", type=Path, help="result JSON (default: transfer/transfer_seedS.json)")
    parser.add_argument("--plot", action="store_true", help="also plot the fronts (a PNG beside --out)")
    args = parser.parse_args()
    args.out = args.out or RESULTS / f"transfer_seed{args.seed}.json"
    torch.set_num_threads(args.threads)
    commit = code_version()  # the code this process runs (read before the runs, not after)
    logging.basicConfig(level=logging.WARNING)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for task in args.tasks:
            results[task] = run_task(task, args, Path(tmp))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    run = {"machine": machine(), "threads": args.threads, "commit": commit, "seed": args.seed}
    run["tasks"] = results
    args.out.write_text(json.dumps(run, indent=1))
    if args.plot:
        plot(results, args.out.with_suffix(".png"))
    for task, res in results.items():
        print(f"{task}:")
        for p in sorted(res["nat"], key=lambda p: p["madds"]):
            print(f"  NAT      {p['madds'] / 1e6:7.2f} M  test top-1 {100 * p['top1']:.2f}%")
        for b in res["baseline"]:
            print(
                f"  {b['name']:<8} {b['madds'] / 1e6:7.2f} M  test top-1 {100 * b['top1']:.2f}%  "
                f"dominated by NAT: {b['dominated_by_nat']}"
            )
    print(f"wrote {args.out}" + (f" and {args.out.with_suffix('.png')}" if args.plot else ""))


if __name__ == "__main__":
    main()
