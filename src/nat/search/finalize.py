"""After the search: extract the front's NATNets, fine-tune them briefly, measure test top-1, save, report.

Each front member is fine-tuned inside its own copy of the adapted supernet (only that subnet is
trained, with the shared training engine), BN-recalibrated, extracted as a standalone network and
evaluated on the *test* split, which the search itself never saw.
"""

from __future__ import annotations

import copy
import logging
from pathlib import Path
from typing import Any

import numpy as np

from nat.data import loader_from_config
from nat.export import save_model
from nat.report import markdown_summary, plot_front
from nat.search.archive import Record, write_json_atomic
from nat.search.evaluator import supernet_for
from nat.search.loop import NATSearch
from nat.train import evaluate_top1, train_supernet

log = logging.getLogger("nat.search")


def spread(front: list[Record], k: int) -> list[Record]:
    """Up to ``k`` front members evenly spread in MAdds (always the smallest and the most accurate)."""
    ordered = sorted(front, key=lambda r: r.values.get("madds", 0.0))
    if len(ordered) <= k:
        return ordered
    idx = np.unique(np.round(np.linspace(0, len(ordered) - 1, k)).astype(int))
    return [ordered[i] for i in idx]


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
            loader = loader_from_config(
                task,
                cfg.data,
                "train",
                resolution=subnet.r,
                train=True,
                seed=cfg.seed + i,
                device=search.device,
            )
            net.train()
            train_supernet(
                net,
                loader,
                epochs=finetune_epochs,
                sample_subnet=lambda _rng, s=subnet: s,
                lr=lr,
                weight_decay=cfg.adaptation.weight_decay,
                label_smoothing=cfg.adaptation.label_smoothing,
                seed=cfg.seed + i,
                device=search.device,
                desc=f"fine-tune {i + 1}/{len(chosen)}",
            )
        search.evaluator.calibrator(net, subnet)
        model = net.extract(subnet).eval()
        test = loader_from_config(
            task, cfg.data, "test", resolution=subnet.r, train=False, seed=cfg.seed, device=search.device
        )
        top1 = evaluate_top1(model, test, device=search.device)
        name = f"natnet_{i + 1}_{record.values['madds'] / 1e6:.1f}M"
        cost = search.objectives.table.subnet(subnet)
        entry = {
            **record.to_json(),
            "madds": cost.madds,
            "params": cost.params,
            "name": name,
            "test_top1": top1,
            "finetune_epochs": finetune_epochs,
        }
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
        results.append(entry)
    write_json_atomic(out / "models.json", results)
    report(search, results)
    return results


def report(search: NATSearch, models: list[dict[str, Any]]) -> Path:
    archive = [r.to_json() for r in search.archive.current()]
    plot_front(
        archive,
        models or [r.to_json() for r in search.front()],
        search.out / "front.png",
        title=f"NAT on {search.task.name}",
    )
    best = max(models, key=lambda m: m["test_top1"]) if models else None
    facts = {
        "task": f"{search.task.name} ({search.task.num_classes} classes)",
        "strategy": search.config.strategy,
        "objectives": ", ".join(search.config.objectives),
        "evaluations": len(search.archive.records),
        "front size": len(search.front()),
    }
    if best:
        facts["best test top-1"] = f"{100 * best['test_top1']:.2f}% ({best['name']})"
    text = markdown_summary(f"NAT run: {search.out.name}", facts, models, "front.png")
    path = search.out / "summary.md"
    path.write_text(text)
    return path
