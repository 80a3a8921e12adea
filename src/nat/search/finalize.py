"""After the search: the front's NATNets as standalone, tested model folders, and the run's report.

Each chosen front member is fine-tuned (optionally, with knowledge distillation from the adapted
supernet's largest subnet, as OFA fine-tunes its specialised subnets) inside its own copy of the
adapted supernet, BN-recalibrated, extracted as a standalone network and evaluated on the *test*
split, which the search itself never saw. `finetune_subnet` and `extract_and_test` are the steps on their
own, so that a benchmark's fixed-architecture baselines go through exactly the same code.

With ``finalize.compile`` a member is instead extracted first and fine-tuned and tested as that
standalone network under ``torch.compile`` (`nat.train.standalone`); its BN statistics are recalibrated
on the same images, so without fine-tuning both paths give the same model and the same test top-1.

Models are written one by one, and ``models.json`` (the index) is rewritten after each, so a killed
finalisation loses at most the model in progress and a rerun redoes only what is missing: an index
entry is reused when its subnet, its fine-tuning settings and its folder are all still there.

Under torchrun every process fine-tunes each model together (DistributedDataParallel, each on its rows
of every batch, as in adaptation); rank 0 decides which models to build, then tests and writes them.
"""

from __future__ import annotations

import copy
import logging
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

import nat
from nat.data import TaskData, loader_from_config
from nat.data.config import DataConfig
from nat.export import save_model
from nat.files import write_json_atomic
from nat.report import write_report
from nat.runtime.distributed import Collective, batch_rows
from nat.runtime.precision import Precision
from nat.search.archive import Record
from nat.search.config import FinalizeConfig, finalize_settings
from nat.search.formats import check_request, deliver_formats, remove_stale_files
from nat.search.objective_set import is_accuracy, pareto_front
from nat.search.parts import RunParts
from nat.search.run_files import read_models_index
from nat.search.rundir import RunDir
from nat.search.supernets import supernet_for
from nat.space.subnet import Subnet
from nat.supernet import BNCalibrator, Supernet
from nat.supernet.static import StaticMobileNetV3
from nat.train import evaluate_accuracy, train_supernet
from nat.train.standalone import StandaloneTrainee, backend_name, compiled

log = logging.getLogger("nat.search")

MODELS_DIR, MODELS_INDEX = "models", "models.json"


# --------------------------------------------------------------------------------- choosing
def spread_key(objectives: Sequence[str]) -> str:
    """The objective front members are spread along: the first complexity objective (MAdds when the
    run has only top-1 and measured ones)."""
    return next((n for n in objectives if not is_accuracy(n)), "madds")


def task_records(records: Sequence[Record], objective: str) -> list[Record]:
    """A many-task run's records as one task's: ``top1`` is the task's accuracy (``objective``), the
    other tasks' accuracies are left out, everything else is kept."""
    out = []
    for r in records:
        values = {k: v for k, v in r.values.items() if not is_accuracy(k)}
        values["top1"] = r.values[objective]
        out.append(Record(r.iteration, r.phase, r.subnet, r.genome, values["top1"], values))
    return out


def spread(front: Sequence[Record], k: int, key: str = "madds") -> list[Record]:
    """Up to ``k`` front members evenly spread in ``key`` (always both ends of the front)."""
    if k <= 0:
        return []
    ordered = sorted(front, key=lambda r: (r.values.get(key, 0.0), -r.top1))
    if len(ordered) <= k:
        return ordered
    idx = np.unique(np.round(np.linspace(0, len(ordered) - 1, k)).astype(int))
    return [ordered[i] for i in idx]


# --------------------------------------------------------------------------------- the two steps
def finetune_subnet(
    net: Supernet | StandaloneTrainee,
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
    teacher: torch.nn.Module | None = None,
    kd_ratio: float = 1.0,
    desc: str = "fine-tune",
    precision: Precision | str | None = None,
    collective: Collective | None = None,
) -> None:
    """Train only ``subnet`` of ``net`` (in place; a supernet, or a `StandaloneTrainee` holding that
    subnet's standalone network) on the task's train split at the subnet's resolution;
    with a ``teacher``, the loss adds ``kd_ratio`` times the cross-entropy to its soft predictions.
    ``precision``: how the forward passes run (None: fp32). Under torchrun (``collective``, default:
    the job this process is in) every process trains its rows of each batch, with DDP."""
    collective = Collective.current() if collective is None else collective
    net.set_active(subnet)
    rows = batch_rows(data.train_batch_size, collective) if collective.active else None
    loader = loader_from_config(
        task, data, "train", resolution=subnet.r, train=True, seed=seed, device=device, rows=rows
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
        precision=precision,
        collective=collective,
        **({"distill_from": teacher, "kd_ratio": kd_ratio} if teacher is not None else {}),
    )


def extract_and_test(
    net: Supernet,
    subnet: Subnet,
    calibrator: BNCalibrator,
    task: TaskData,
    data: DataConfig,
    *,
    seed: int,
    device: torch.device,
    test: bool = True,
    precision: Precision | str | None = None,
) -> tuple[StaticMobileNetV3, dict[str, float | int]]:
    """Recalibrate BN, extract ``subnet`` as a standalone network and measure it on the test split:
    ``{"top1", "top5", "images"}`` (``{}`` when ``test`` is False). The test pass runs in ``precision``
    (None: fp32); BN recalibration in the calibrator's own."""
    calibrator(net, subnet)
    model = net.extract(subnet).eval()
    if not test:
        return model, {}
    loader = loader_from_config(
        task, data, "test", resolution=subnet.r, train=False, seed=seed, device=device
    )
    return model, evaluate_accuracy(model, loader, device=device, precision=precision)


def distillation_teacher(parts: RunParts, resolution: int) -> StaticMobileNetV3:
    """The adapted supernet's largest subnet (widest width) at ``resolution``, BN recalibrated there,
    as a standalone frozen network (the supernet itself is left untouched)."""
    width = max(parts.supernets)
    net = copy.deepcopy(parts.supernets[width])
    largest = Subnet.largest(parts.space, w=width, r=resolution)
    parts.evaluator.calibrator(net, largest)
    return net.extract(largest).eval()


# --------------------------------------------------------------------------------- model folders
def model_info(parts: RunParts, subnet: Subnet, run_path: Path, record: Record) -> dict[str, Any]:
    """What a model folder's ``model.json`` says besides the network: classes, preprocessing, origin."""
    source, cfg = parts.task.source, parts.config
    return {
        "class_names": list(parts.task.class_names),
        "preprocessing": {
            "resolution": subnet.r,
            "mean": list(source.mean),
            "std": list(source.std),
            "channels": source.channels,
            "interpolation": "bilinear",
            "crop_pct": source.eval_crop_pct,
        },
        "provenance": {
            "dataset": cfg.data.dataset,
            "data": cfg.data.model_dump(mode="json"),
            "run": str(run_path.resolve()),
            "seed": cfg.seed,
            "iteration": record.iteration,
            "nat_version": nat.__version__,
        },
    }


def _settings(settings: FinalizeConfig, precision: str = "fp32") -> dict[str, Any]:
    """The fine-tuning settings an index entry was made with (what makes a model reusable). The
    precision is listed only when it is not fp32, so fp32 indexes read exactly as before it existed."""
    out = {
        "finetune_epochs": settings.finetune_epochs,
        "lr": settings.lr if settings.finetune_epochs > 0 else None,
        "distill": settings.distills,
        "kd_ratio": settings.kd_ratio if settings.distills else None,
        "tested": settings.test,
    }
    if precision != "fp32":
        out["precision"] = precision
    if settings.compile is not False:  # listed only when on, so earlier indexes read as before
        out["compile"] = backend_name(settings.compile)
    return out


def _reusable(entry: dict[str, Any] | None, record: Record, settings: dict, folder: Path) -> bool:
    """An earlier model of the same subnet and fine-tuning settings, still on disk (its runtime files
    are completed and measured afterwards, `deliver_formats`)."""
    return (
        entry is not None
        and Subnet.from_dict(entry["subnet"]) == record.subnet
        and entry.get("settings") == settings
        and (folder / "model.safetensors").is_file()
    )


def read_index(path: Path, run: Path | None = None) -> list[dict[str, Any]]:
    """A ``models.json`` ([] when there is none), validated (`nat.search.run_files.read_models_index`)."""
    return read_models_index(path, run)


def finetuned_copy(
    parts: RunParts,
    record: Record,
    index: int,
    count: int,
    settings: FinalizeConfig,
    collective: Collective,
) -> Supernet:
    """A copy of the front member's supernet with the member fine-tuned (if asked); every process of
    a torchrun job takes part."""
    subnet = record.subnet
    net = copy.deepcopy(supernet_for(parts.supernets, subnet))
    net.set_active(subnet)
    if settings.finetune_epochs > 0:
        teacher = distillation_teacher(parts, subnet.r) if settings.distills else None
        _finetune_front_member(
            parts, net, subnet, index, settings, collective, teacher, f"fine-tune {index + 1}/{count}"
        )
    return net


def _finetune_front_member(
    parts: RunParts,
    trainee: Supernet | StandaloneTrainee,
    subnet: Subnet,
    index: int,
    settings: FinalizeConfig,
    collective: Collective,
    teacher: torch.nn.Module | None,
    desc: str,
) -> None:
    """The run's fine-tuning of its ``index``-th front model, the same for both paths (a supernet copy
    or the compiled standalone network): schedule and seed from ``finalize``, regularisation from
    ``adaptation``."""
    cfg = parts.config
    finetune_subnet(
        trainee,
        subnet,
        parts.task,
        cfg.data,
        epochs=settings.finetune_epochs,
        lr=settings.lr,
        weight_decay=cfg.adaptation.weight_decay,
        label_smoothing=cfg.adaptation.label_smoothing,
        seed=cfg.seed + index,
        device=parts.device,
        teacher=teacher,
        kd_ratio=settings.kd_ratio,
        desc=desc,
        precision=parts.runtime.precision,
        collective=collective,
    )


def finetuned_standalone(
    parts: RunParts,
    record: Record,
    index: int,
    count: int,
    settings: FinalizeConfig,
    collective: Collective,
) -> StaticMobileNetV3:
    """``finalize.compile``'s path: the front member extracted from its supernet as a standalone network,
    then fine-tuned as that network under ``torch.compile`` (the same trainer, schedule, seed and data
    as `finetuned_copy`; the teacher compiled too). Its BN statistics are recalibrated later, on the
    same images as the supernet path's (`save_built_model`)."""
    subnet = record.subnet
    model = supernet_for(parts.supernets, subnet).extract(subnet)
    if settings.finetune_epochs > 0:
        backend = backend_name(settings.compile)
        trainee = StandaloneTrainee(model, compiled(model, backend))
        teacher = None
        if settings.distills:
            teacher_net = distillation_teacher(parts, subnet.r)
            teacher = StandaloneTrainee(teacher_net, compiled(teacher_net, backend))
        desc = f"fine-tune {index + 1}/{count} (compiled)"
        _finetune_front_member(parts, trainee, subnet, index, settings, collective, teacher, desc)
    return model.eval()


def measure_standalone(
    parts: RunParts, model: StaticMobileNetV3, settings: FinalizeConfig
) -> dict[str, float | int]:
    """Recalibrate a standalone network's BN on the run's calibration images and measure it on the test
    split, compiled as ``settings.compile`` asks (``{}`` when ``settings.test`` is False)."""
    cfg = parts.config
    parts.evaluator.calibrator.standalone(model)
    model.eval()
    if not settings.test:
        return {}
    loader = loader_from_config(
        parts.task,
        cfg.data,
        "test",
        resolution=model.subnet.r,
        train=False,
        seed=cfg.seed,
        device=parts.device,
    )
    runner = StandaloneTrainee(model, compiled(model, backend_name(settings.compile))).eval()
    return evaluate_accuracy(runner, loader, device=parts.device, precision=parts.runtime.precision)


def save_built_model(
    parts: RunParts,
    net: Supernet | StaticMobileNetV3,
    record: Record,
    settings: FinalizeConfig,
    folder: Path,
    run_path: Path,
) -> dict[str, Any]:
    """Test the (fine-tuned) member and write its model folder; returns its index entry. ``net`` is the
    supernet copy holding it, or (``finalize.compile``) the standalone network itself."""
    cfg, subnet = parts.config, record.subnet
    if isinstance(net, StaticMobileNetV3):
        model, scores = net, measure_standalone(parts, net, settings)
    else:
        model, scores = extract_and_test(
            net,
            subnet,
            parts.evaluator.calibrator,
            parts.task,
            cfg.data,
            seed=cfg.seed,
            device=parts.device,
            test=settings.test,
            precision=parts.runtime.precision,
        )
    cost = parts.objectives.table.subnet(subnet)
    metrics = {"val_top1": record.top1, **{f"test_{k}": v for k, v in scores.items() if k != "images"}}
    remove_stale_files(folder)  # runtime files of the model this one replaces (written again below)
    save_model(model.cpu(), folder, metrics=metrics, info=model_info(parts, subnet, run_path, record))
    entry = {
        **record.to_json(),
        "name": folder.name,
        "madds": cost.madds,
        "params": cost.params,
        **{k: v for k, v in metrics.items() if k != "val_top1"},
        "test_images": scores.get("images"),
        "finetune_epochs": settings.finetune_epochs,
        "settings": _settings(settings, cfg.precision),
    }
    tested = f", test top1 {scores['top1']:.4f}" if scores else ""
    log.info("%s: MAdds %.2fM, search-val top1 %.4f%s", folder.name, cost.madds / 1e6, record.top1, tested)
    return {k: v for k, v in entry.items() if v is not None}


def with_formats(parts: RunParts, entry: dict[str, Any], folder: Path, settings: FinalizeConfig) -> dict:
    """``entry`` with the runtime files ``settings`` ask for written and measured (`deliver_formats`)."""
    cfg = parts.config
    formats = deliver_formats(folder, entry, settings, parts.task, cfg.data, cfg.seed)
    return {**entry, "formats": formats} if formats else {k: v for k, v in entry.items() if k != "formats"}


def export_models(
    parts: RunParts,
    front: Sequence[Record],
    settings: FinalizeConfig,
    out: Path,
    run_path: Path,
    index_path: Path,
    collective: Collective | None = None,
) -> list[dict[str, Any]]:
    """Models for up to ``settings.models`` front members in ``out/<name>/``, indexed in ``index_path``;
    entries of an earlier call that still fit are reused, folders of ones that no longer do removed.
    ``settings.models == 0`` asks for nothing and changes nothing: models delivered earlier are kept.

    Under torchrun (``collective`` of several processes) rank 0 makes the plan (which members, which
    folders are reusable) and writes; every process fine-tunes. Ranks other than 0 return ``[]``."""
    c = collective or Collective()
    check_request(settings, parts.task)  # one line before any model is made, not after the first
    plan = None
    if settings.models == 0:  # nothing asked for: models delivered earlier stay as they are
        kept = read_index(index_path, run_path) if c.is_main else []
        if kept:
            log.info("finalize.models is 0: the %d model(s) already in %s are kept", len(kept), out)
        elif c.is_main:
            out.mkdir(parents=True, exist_ok=True)
            write_json_atomic(index_path, [])
        return kept
    if c.is_main:
        chosen = spread(front, settings.models, spread_key(parts.config.objectives))
        previous = {e["name"]: e for e in read_index(index_path, run_path)}
        wanted = _settings(settings, parts.config.precision)
        out.mkdir(parents=True, exist_ok=True)
        plan = []
        for i, record in enumerate(chosen):
            name = f"natnet_{i + 1}_{parts.objectives.table.subnet(record.subnet).madds / 1e6:.1f}M"
            old = previous.get(name)
            plan.append((record, name, old if _reusable(old, record, wanted, out / name) else None))
    plan = c.broadcast(plan)
    results: list[dict[str, Any]] = []
    for i, (record, name, old) in enumerate(plan):
        if old is None:
            build = finetuned_copy if settings.compile is False else finetuned_standalone
            net = build(parts, record, i, len(plan), settings, c)
        if not c.is_main:
            continue
        entry = old or save_built_model(parts, net, record, settings, out / name, run_path)
        if old is None:  # indexed before its runtime files are made: a kill there loses no fine-tuning
            write_json_atomic(index_path, [*results, entry])
        results.append(with_formats(parts, entry, out / name, settings))
        write_json_atomic(index_path, results)
    if not c.is_main:
        return []
    for name in set(previous) - {e["name"] for e in results}:
        if isinstance(name, str) and name and "/" not in name and (out / name).is_dir():
            shutil.rmtree(out / name)  # a model of an earlier front, listed by our own index
    write_json_atomic(index_path, results)
    return results


def export_run_models(
    parts: RunParts,
    front: Sequence[Record],
    settings: FinalizeConfig,
    out: Path,
    run_path: Path,
    index_path: Path,
    collective: Collective | None = None,
) -> list[dict[str, Any]]:
    """`export_models` for a run of one or several tasks. A many-task run gets, per task, models chosen
    from the members of the (many-objective) front that are non-dominated on that task's own problem
    (its top-1 and the complexity objectives), built from that task's supernet, fine-tuned and tested
    on that task, in ``out/<task>/`` with that task's index; ``index_path`` lists them all, each entry
    with its ``task`` and its folder relative to ``out`` as ``name`` (``<task>/<model>``)."""
    if not parts.many_task:
        return export_models(parts, front, settings, out, run_path, index_path, collective)
    c = collective or Collective()
    results: list[dict[str, Any]] = []
    for name, part in parts.tasks.items():
        view = parts.for_task(name)
        own_front = view.objectives.front(task_records(front, part.objective))
        folder = out / name
        made = export_models(view, own_front, settings, folder, run_path, folder / MODELS_INDEX, c)
        results += [{**m, "task": name, "name": f"{name}/{m['name']}"} for m in made]
    if c.is_main:
        write_json_atomic(index_path, results)
    return results


# --------------------------------------------------------------------------------- the report
def report_facts(config: Any, task_name: str, archive_size: int, front_size: int, models: list[dict]) -> dict:
    facts: dict[str, Any] = {
        "task": task_name,
        "strategy": config.strategy,
        "objectives": ", ".join(getattr(config, "objective_names", config.objectives)),
        "constraints": ", ".join(f"{k} <= {v:g}" for k, v in config.constraints.items()) or "none",
        "evaluations": archive_size,
        "front size": front_size,
    }
    retarget, warm = getattr(config, "retarget", None), getattr(config, "warm_start", None)
    if retarget is not None:  # where its carried measurements and starting weights came from
        facts["retargeted from"] = retarget.run
    if warm is not None:
        facts["warm-started from"] = ", ".join(warm.runs)
    if models:  # why the front's points and the delivered models differ in number
        key = spread_key(getattr(config, "objective_names", config.objectives))
        many = any("task" in m for m in models)
        chosen = f"up to {config.finalize.models} per task" if many else f"{len(models)} of the {front_size}"
        facts["models"] = (
            f"{chosen} front members (finalize.models: {config.finalize.models}), spread evenly along "
            f"{key}; every member is in front.json, and nat export RUN --models N makes more"
        )
    tested = [m for m in models if "test_top1" in m]
    for task in dict.fromkeys(m.get("task") for m in tested):  # None: a single-task run
        best = max((m for m in tested if m.get("task") == task), key=lambda m: m["test_top1"])
        key = "best test top-1" if task is None else f"best test top-1 ({task})"
        facts[key] = f"{100 * best['test_top1']:.2f}% ({best['name']})"
    return facts


def write_run_report(run: RunDir, models: list[dict[str, Any]] | None = None) -> dict[str, Path]:
    """``front.png``, ``summary.md`` and ``report.html`` of a run, from its folder alone."""
    config = run.config
    current = run.archive.current()
    problem_front = pareto_front(current, config.objective_names, config.constraints)
    if models is None:
        models = read_index(run.path / MODELS_INDEX, run.path)
    history = run.read_state().get("history", [])
    task = ", ".join(
        f"{n} ({d.dataset})" if n != d.dataset else n
        for n, d in zip(config.task_names, config.tasks, strict=True)
    )
    facts = report_facts(config, task, run.archive.evaluations(), len(problem_front), models)
    return write_report(
        run.path,
        title=f"NAT run: {run.path.resolve().name}",
        facts=facts,
        objectives=list(config.objective_names),
        archive=[r.to_json() for r in current],
        front=[r.to_json() for r in problem_front],
        models=models,
        history=history,
    )


# --------------------------------------------------------------------------------- one call
def finalize(
    search: Any,
    finetune_epochs: float | None = None,
    max_models: int | None = None,
    lr: float | None = None,
    onnx: bool | None = None,
    executorch: bool | None = None,
    int8: bool | None = None,
) -> list[dict[str, Any]]:
    """Models and report of a `NATSearch` (its config's ``finalize`` section, with these overrides)."""
    changes = {
        "finetune_epochs": finetune_epochs,
        "models": max_models,
        "lr": lr,
        "onnx": onnx,
        "executorch": executorch,
        "int8": int8,
    }
    settings = finalize_settings(search.config.finalize, changes)
    run = search.run_dir
    models = export_run_models(
        search.parts, search.front(), settings, run.path / MODELS_DIR, run.path, run.path / MODELS_INDEX
    )
    write_run_report(run, models)
    return models
