"""After the search: extract the front's NATNets, fine-tune them briefly, measure test top-1, save, report.

Each front member is fine-tuned inside its own copy of the adapted supernet (only that subnet is
trained, with the shared training engine), BN-recalibrated, extracted as a standalone network and
evaluated on the *test* split, which the search itself never saw. `finetune_subnet` and `test_subnet`
are the two steps on their own, so that a benchmark's fixed-architecture baselines go through exactly
the same code as NAT's models.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nat.data import TaskData, loader_from_config
from nat.data.config import DataConfig
from nat.export import save_model
from nat.files import write_json_atomic, write_text_atomic
from nat.report import markdown_summary, plot_front
from nat.search.archive import Record
from nat.search.loop import NATSearch
from nat.search.supernets import supernet_for
from nat.space.subnet import Subnet
from nat.supernet import BNCalibrator, Supernet
from nat.supernet.static import StaticMobileNetV3
from nat.train import evaluate_top1, train_supernet

log = logging.getLogger("nat.search")


def spread(front: list[Record], k: int) -> list[Record]:
    """Up to ``k`` front members evenly spread in MAdds (always the smallest and the most accurate)."""
    ordered = sorted(front, key=lambda r: r.values.get("madds", 0.0))
    if len(ordered) <= k:
        return ordered
    idx = np.unique(np.round(np.linspace(0, len(ordered) - 1, k)).astype(int))
    return [ordered[i] for i in idx]


def finetune_subnet(
    net: Supernet,
    subnet: Subnet,
    task: TaskData,
    data: DataConfig,
    *,
    epochs: float,
    lr: float,
    weight_decay: float,
    label_smoothing: float,
    seed: int,
    device: torch.device,
    desc: str = "fine-tune",
) -> None:
    """Train only ``subnet`` of ``net`` (in place) on the task's train split at the subnet's resolution."""
    net.set_active(subnet)
    loader = loader_from_config(
        task, data, "train", resolution=subnet.r, train=True, seed=seed, device=device
    )
    net.train()
    train_supernet(
        net,
        loader,
        epochs=epochs,
        sample_subnet=lambda _rng: subnet,
        lr=lr,
        weight_decay=weight_decay,
        label_smoothing=label_smoothing,
        seed=seed,
        device=device,
        desc=desc,
    )


def test_subnet(
    net: Supernet,
    subnet: Subnet,
    calibrator: BNCalibrator,
    task: TaskData,
    data: DataConfig,
    *,
    seed: int,
    device: torch.device,
) -> tuple[StaticMobileNetV3, float]:
    """Recalibrate BN, extract ``subnet`` as a standalone network and measure its test-split top-1."""
    calibrator(net, subnet)
    model = net.extract(subnet).eval()
    test = loader_from_config(task, data, "test", resolution=subnet.r, train=False, seed=seed, device=device)
    return model, evaluate_top1(model, test, device=device)


def finalize(
    search: NATSearch, finetune_epochs: float = 0.0, max_models: int = 5, lr: float = 0.01, onnx: bool = False
) -> list[dict[str, Any]]:
    """Fine-tune, evaluate on test, save and report up to ``max_models`` front members of ``search``."""
    cfg, task, out = search.config, search.task, search.out
    chosen = spread(search.front(), max_models)
    results = []
    for i, record in enumerate(chosen):
        subnet = record.subnet
        net = copy.deepcopy(supernet_for(search.supernets, subnet))
        net.set_active(subnet)
        if finetune_epochs > 0:
            finetune_subnet(
                net,
                subnet,
                task,
                cfg.data,
                epochs=finetune_epochs,
                lr=lr,
                weight_decay=cfg.adaptation.weight_decay,
                label_smoothing=cfg.adaptation.label_smoothing,
                seed=cfg.seed + i,
                device=search.device,
                desc=f"fine-tune {i + 1}/{len(chosen)}",
            )
        model, top1 = test_subnet(
            net, subnet, search.evaluator.calibrator, task, cfg.data, seed=cfg.seed, device=search.device
        )
        name = f"natnet_{i + 1}_{record.values['madds'] / 1e6:.1f}M"
        cost = search.objectives.table.subnet(subnet)
        save_model(
            model.cpu(),
            out / "models" / name,
            metrics={"test_top1": top1, "val_top1": record.top1},
            onnx=onnx,
        )
        log.info(
            "%s: MAdds %.2fM, search-val top1 %.4f, test top1 %.4f",
            name,
            record.values["madds"] / 1e6,
            record.top1,
            top1,
        )
        results.append(
            {
                **record.to_json(),
                "madds": cost.madds,
                "params": cost.params,
                "name": name,
                "test_top1": top1,
                "finetune_epochs": finetune_epochs,
            }
        )
    write_json_atomic(out / "models.json", results)
    report(search, results)
    return results


def report(search: NATSearch, models: list[dict[str, Any]]) -> Path:
    """``front.png`` and ``summary.md`` of a run (with its front models' test figures, if any)."""
    current = search.archive.current()
    front = search.front(current)
    plot_front(
        [r.to_json() for r in current],
        models or [r.to_json() for r in front],
        search.out / "front.png",
        title=f"NAT on {search.task.name}",
    )
    best = max(models, key=lambda m: m["test_top1"]) if models else None
    facts = {
        "task": f"{search.task.name} ({search.task.num_classes} classes)",
        "strategy": search.config.strategy,
        "objectives": ", ".join(search.config.objectives),
        "evaluations": len(search.archive.records),
        "front size": len(front),
    }
    if best:
        facts["best test top-1"] = f"{100 * best['test_top1']:.2f}% ({best['name']})"
    text = markdown_summary(f"NAT run: {search.out.name}", facts, models, "front.png")
    return write_text_atomic(search.out / "summary.md", text)
