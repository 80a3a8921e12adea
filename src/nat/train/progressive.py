"""Progressive shrinking (OFA): pretrain an elastic supernet phase by phase, resumable at any step.

Phases run in order; each is one `train_supernet` call with its own optimiser and cosine schedule (as in
OFA, where every phase restarts the learning rate). Within a phase every batch trains the largest
subnet on the labels (in-place distillation) and ``subnets_per_batch`` subnets sampled from the phase's
choices with a KD loss towards the largest's soft predictions (see `nat.train.engine`).

The run folder holds ``config.yaml`` (resolved), ``versions.json``, ``metrics.jsonl`` (one JSON object a
line: training rows every ``log_every`` steps, one row per epoch and per phase end), ``checkpoint.pt``
(supernet weights, optimiser, RNG streams, phase/epoch/step; replaced atomically at every epoch end and
every ``checkpoint_every`` steps), and at the end ``supernet.safetensors`` (`Supernet.load` reads it) and
``summary.json``. Killing the process loses at most the steps since the last checkpoint; resuming replays
the data stream up to the step reached, so the result equals an uninterrupted run on CPU.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from nat.data import TaskData, load_from_config, loader_from_config, make_loader
from nat.errors import CheckpointError, ConfigError
from nat.space.definition import SearchSpace
from nat.space.subnet import Subnet
from nat.supernet import BNCalibrator, Supernet
from nat.supernet.checkpoint import save_supernet
from nat.train.config import PhaseConfig, PretrainConfig, parse_config
from nat.train.engine import SupernetTrainer, evaluate_top1, train_supernet

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
FORMAT = "nat.pretrain/1"


# ----------------------------------------------------------------------------------------- phases


def phase_space(space: SearchSpace, phase: PhaseConfig) -> SearchSpace:
    """The space restricted to a phase's choices (a list left out means the largest value only)."""
    return space.model_copy(
        update={
            "kernel_sizes": tuple(sorted(phase.kernel_sizes or [max(space.kernel_sizes)])),
            "depths": tuple(sorted(phase.depths or [max(space.depths)])),
            "expand_ratios": tuple(sorted(phase.expand_ratios or [max(space.expand_ratios)])),
        }
    )


class PhaseSampler:
    """Samples subnets uniformly over a phase's choices (per stage depth, per block kernel/expansion)."""

    def __init__(self, space: SearchSpace, phase: PhaseConfig, width: float) -> None:
        self.space = phase_space(space, phase)
        self.width = width

    def __call__(self, rng: random.Random) -> Subnet:
        return Subnet.sample(self.space, rng, w=self.width)

    def smallest(self) -> Subnet:
        return Subnet.smallest(self.space, w=self.width)

    def largest(self) -> Subnet:
        return Subnet.largest(self.space, w=self.width)


def phase_trainer_kwargs(cfg: PretrainConfig, phase: PhaseConfig, index: int, steps_per_epoch: int) -> dict:
    """`train_supernet` keyword arguments of one phase."""
    space, width = cfg.search_space(), cfg.width()
    sampler = PhaseSampler(space, phase, width)
    kwargs: dict[str, Any] = {
        "lr": phase.lr,
        "lr_min": phase.lr_min,
        "warmup_steps": round(phase.warmup_epochs * steps_per_epoch),
        "momentum": cfg.momentum,
        "nesterov": cfg.nesterov,
        "weight_decay": cfg.weight_decay,
        "label_smoothing": cfg.label_smoothing,
        "grad_clip": cfg.grad_clip,
        "seed": phase_seed(cfg.seed, index),
    }
    if not phase.elastic():  # the full network only
        kwargs.update(sample_subnet=lambda rng: sampler.largest(), subnets_per_batch=1)
        return kwargs
    kwargs.update(
        sample_subnet=sampler,
        subnets_per_batch=phase.subnets_per_batch,
        always_train=[sampler.smallest()] if phase.sandwich else [],
        distill_from="largest" if phase.uses_distillation() else None,
        kd_ratio=cfg.kd_ratio,
    )
    return kwargs


def phase_seed(seed: int, index: int) -> int:
    """Each phase gets its own data order and subnet stream, all derived from the run seed."""
    return (seed * 1_000_003 + 7_919 * (index + 1)) % (2**62)


# ----------------------------------------------------------------------------------------- run folder


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    with tmp.open("rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    _write_atomic(path, lambda p: torch.save(state, p))


def load_checkpoint(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read means an unusable file
        raise CheckpointError(f"{path} is not a readable pretraining checkpoint: {exc}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a nat pretraining checkpoint (format {FORMAT!r} expected)")
    return state


def library_versions() -> dict[str, str]:
    import numpy
    import pydantic

    import nat

    return {
        "nat": getattr(nat, "__version__", "unknown"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pydantic": pydantic.__version__,
        "platform": platform.platform(),
    }


class MetricsLog:
    """Appends one JSON object a line; each row is flushed so a killed run keeps its log."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, row: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available; use device: cpu")
    return device


def _load_initial_weights(net: Supernet, path: Path) -> None:
    """Copy a saved supernet's weights into ``net`` (same space and width; the classifier too if the
    class counts agree, else it stays freshly initialised)."""
    from nat.supernet import load_supernet

    source = load_supernet(path)
    if source.space != net.space or source.width_mult != net.width_mult:
        raise CheckpointError(
            f"init_from {path} is a supernet of space '{source.space.name}' width {source.width_mult}; "
            f"this run trains space '{net.space.name}' width {net.width_mult}"
        )
    state = source.state_dict()
    if source.num_classes != net.num_classes:
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    net.load_state_dict(state, strict=False)
    logger.info("initial weights from %s", path)


def load_saved_config(out: Path) -> PretrainConfig:
    """The resolved config a run folder was started with."""
    import yaml

    path = Path(out) / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{out} is not a pretraining run folder (no config.yaml); nothing to resume")
    return parse_config(yaml.safe_load(path.read_text()), str(path))


# ----------------------------------------------------------------------------------------- evaluation


def calibration_images(task: TaskData, n: int, resolution: int, seed: int) -> torch.Tensor:
    """``n`` training images (eval transform, fixed by ``seed``) for BN recalibration."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(task.train), generator=g)[: min(n, len(task.train))]
    loader = make_loader(
        task, task.train.subset(idx.numpy()), batch_size=500, resolution=resolution, train=False
    )
    return torch.cat([x for x, _ in loader])


def evaluate_subnets(
    net: Supernet,
    task: TaskData,
    subnets: dict[str, Subnet],
    calibrator: BNCalibrator,
    split: str,
    max_images: int | None,
    batch_size: int,
    device: torch.device,
) -> dict[str, float]:
    """Top-1 of each subnet at its own resolution, after BN recalibration; the supernet's BN statistics
    are restored afterwards, so evaluation never changes the weights being trained."""
    data = task.split(split)
    if max_images is not None and max_images < len(data):
        data = data.subset(range(max_images))
    saved = {k: v.clone() for k, v in net.state_dict().items() if "running_" in k}
    active = net.active
    out = {}
    try:
        for name, subnet in subnets.items():
            calibrator(net, subnet)
            loader = make_loader(
                task, data, batch_size=batch_size, resolution=subnet.r, train=False, device=device
            )
            out[name] = evaluate_top1(net, loader, device=device)
    finally:
        net.load_state_dict(saved, strict=False)
        net.set_active(active)
    return out


# ----------------------------------------------------------------------------------------- the run


def run_pretraining(
    cfg: PretrainConfig | None,
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after_steps: int | None = None,
) -> dict[str, Any]:
    """Pretrain a supernet by progressive shrinking into ``out_dir``; returns the run summary.

    ``resume=True`` continues the run in ``out_dir`` from its checkpoint (``cfg`` may then be None: the
    saved ``config.yaml`` is used; a different ``cfg`` is an error). ``stop_after_steps`` ends the
    process-local work after that many optimiser steps (counted over phases) with a checkpoint, as if
    killed right after it (for tests and time-sliced runs); the summary then has ``finished: False``.
    """
    out = Path(out_dir)
    ckpt_path = out / CHECKPOINT
    saved_cfg_path = out / "config.yaml"
    if resume:
        saved = load_saved_config(out)
        if cfg is not None and cfg.model_dump() != saved.model_dump():
            raise ConfigError(
                f"the config differs from the one of the run in {out}; resume without --config (or with "
                "the same file and flags), or start a new run in another folder"
            )
        cfg = saved
        state = load_checkpoint(ckpt_path) if ckpt_path.is_file() else None
    else:
        if cfg is None:
            raise ConfigError("a config is needed to start a run")
        if ckpt_path.exists() or (out / "supernet.safetensors").exists():
            raise ConfigError(f"{out} already holds a pretraining run; use --resume {out} or another --out")
        out.mkdir(parents=True, exist_ok=True)
        saved_cfg_path.write_text(cfg.to_yaml())
        (out / "versions.json").write_text(json.dumps(library_versions(), indent=2) + "\n")
        state = None

    device = resolve_device(cfg.device)
    space, width = cfg.search_space(), cfg.width()
    task = load_from_config(cfg.data, cfg.seed)
    with torch.random.fork_rng(devices=[]):  # initial weights from the run seed, global RNG untouched
        torch.manual_seed(cfg.seed)
        net = Supernet(space, width, task.num_classes).to(device)
    if cfg.init_from is not None and state is None:
        _load_initial_weights(net, Path(cfg.init_from))
    metrics = MetricsLog(out / "metrics.jsonl")
    start_phase, elapsed, trainer_state = 0, 0.0, None
    if state is not None:
        net.load_state_dict(state["supernet"])
        start_phase, elapsed, trainer_state = int(state["phase"]), float(state["elapsed"]), state["trainer"]
        step = trainer_state["step"] if trainer_state else 0
        logger.info("resuming %s at phase %d, step %d", out, start_phase, step)
        # rows written after this checkpoint by the interrupted process are superseded by what follows
        metrics.write(
            {"kind": "resume", "phase_index": start_phase, "step": step, "seconds": round(elapsed, 1)}
        )
    calibrator = BNCalibrator(
        calibration_images(task, cfg.calib_images, max(space.resolutions), cfg.seed),
        batch_size=cfg.data.eval_batch_size,
        device=device,
    )
    t_start = time.perf_counter()
    budget = [stop_after_steps]  # remaining process-local steps, if limited

    def now() -> float:
        return elapsed + time.perf_counter() - t_start

    def checkpoint(phase_index: int, trainer: SupernetTrainer | None) -> None:
        save_checkpoint(
            ckpt_path,
            {
                "format": FORMAT,
                "phase": phase_index,
                "phase_name": cfg.phases[phase_index].name if phase_index < len(cfg.phases) else "done",
                "trainer": trainer.state_dict() if trainer is not None else None,
                "supernet": {k: v.detach().cpu() for k, v in net.state_dict().items()},
                "elapsed": now(),
            },
        )

    class _Stop(Exception):
        pass

    for index in range(start_phase, len(cfg.phases)):
        phase = cfg.phases[index]
        loader = loader_from_config(
            task,
            cfg.data,
            "train",
            resolution=cfg.resolutions(),
            seed=phase_seed(cfg.seed, index),
            device=device,
        )
        kwargs = phase_trainer_kwargs(cfg, phase, index, len(loader))
        steps = max(1, round(phase.epochs * len(loader)))

        def on_step(trainer: SupernetTrainer, index: int = index, phase: PhaseConfig = phase) -> None:
            if trainer.step % cfg.log_every == 0 or trainer.step == trainer.total_steps:
                row = {
                    "kind": "train",
                    "phase": phase.name,
                    "step": trainer.step,
                    "epoch": trainer.epoch,
                    "lr": trainer.optimizer.param_groups[0]["lr"],
                    "seconds": round(now(), 1),
                }
                row.update({k: round(v, 5) for k, v in trainer.averages(window=True).items()})
                metrics.write(row)
                trainer.reset_window()
            end_of_phase = trainer.step == trainer.total_steps
            if budget[0] is not None:
                budget[0] -= 1
            if not end_of_phase and (
                (cfg.checkpoint_every and trainer.step % cfg.checkpoint_every == 0) or budget[0] == 0
            ):
                checkpoint(index, trainer)
            if budget[0] == 0 and not end_of_phase:
                raise _Stop

        def on_epoch(trainer: SupernetTrainer, index: int = index, phase: PhaseConfig = phase) -> None:
            metrics.write(
                {
                    "kind": "epoch",
                    "phase": phase.name,
                    "step": trainer.step,
                    "epoch": trainer.epoch,
                    "seconds": round(now(), 1),
                }
            )
            if trainer.step < trainer.total_steps:
                checkpoint(index, trainer)

        logger.info(
            "phase %d/%d %s: %d steps (%.2f epochs of %d batches), lr %g, %s",
            index + 1,
            len(cfg.phases),
            phase.name,
            steps,
            phase.epochs,
            len(loader),
            phase.lr,
            "distillation from the largest" if kwargs.get("distill_from") else "no distillation",
        )
        try:
            stats = train_supernet(
                net,
                loader,
                steps=steps,
                resume=trainer_state,
                on_step=on_step,
                on_epoch=on_epoch,
                progress=progress,
                desc=phase.name,
                device=device,
                **kwargs,
            )
        except _Stop:
            logger.info("stopped after the requested number of steps; resume with --resume %s", out)
            return {"finished": False, "seconds": now()}
        trainer_state = None
        row = {
            "kind": "phase",
            "phase": phase.name,
            "steps": stats["steps"],
            "seconds": round(now(), 1),
            "train_loss": round(stats.get("loss", float("nan")), 5),
        }
        if cfg.val_images != 0:
            sampler = PhaseSampler(space, phase, width)
            check = evaluate_subnets(
                net,
                task,
                {"largest": Subnet.largest(space, w=width), "phase_smallest": sampler.smallest()},
                calibrator,
                "val",
                cfg.val_images,
                cfg.data.eval_batch_size,
                device,
            )
            row.update({f"val_top1_{k}": round(v, 5) for k, v in check.items()})
        metrics.write(row)
        logger.info("phase %s done: %s", phase.name, json.dumps(row))
        checkpoint(index + 1, None)
        if budget[0] == 0 and index + 1 < len(cfg.phases):
            return {"finished": False, "seconds": now()}

    return finish(net, task, cfg, out, calibrator, device, now())


def finish(
    net: Supernet,
    task: TaskData,
    cfg: PretrainConfig,
    out: Path,
    calibrator: BNCalibrator,
    device: torch.device,
    seconds: float,
) -> dict[str, Any]:
    """Save the final supernet and evaluate its largest and smallest subnets on the test split."""
    space, width = cfg.search_space(), cfg.width()
    path = save_supernet(
        net,
        out / "supernet.safetensors",
        extra={
            "trained_on": cfg.data.dataset,
            "pretrain": "progressive shrinking",
            "seed": cfg.seed,
            "phases": [p.name for p in cfg.phases],
            "train_seconds": round(seconds, 1),
        },
    )
    summary: dict[str, Any] = {
        "finished": True,
        "supernet": str(path),
        "train_seconds": round(seconds, 1),
        "dataset": cfg.data.dataset,
        "space": space.name,
        "width_mult": width,
    }
    if cfg.test_eval:
        native = _native_resolution(task, space)
        subnets = {
            f"largest_r{max(space.resolutions)}": Subnet.largest(space, w=width),
            f"largest_r{native}": Subnet.largest(space, w=width, r=native),
            f"smallest_r{min(space.resolutions)}": Subnet.smallest(space, w=width),
            f"smallest_r{native}": Subnet.smallest(space, w=width, r=native),
        }
        t0 = time.perf_counter()
        summary["test_top1"] = {
            k: round(v, 5)
            for k, v in evaluate_subnets(
                net, task, subnets, calibrator, "test", None, cfg.data.eval_batch_size, device
            ).items()
        }
        summary["test_subnets"] = {k: s.to_dict() for k, s in subnets.items()}
        summary["bn_calibration_images"] = cfg.calib_images
        logger.info(
            "test top-1 (BN recalibrated, %.0f s): %s",
            time.perf_counter() - t0,
            json.dumps(summary["test_top1"]),
        )
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    MetricsLog(out / "metrics.jsonl").write({"kind": "final", **summary})
    return summary


def _native_resolution(task: TaskData, space: SearchSpace) -> int:
    """The space resolution closest to the images' own size (e.g. 28 for Fashion-MNIST)."""
    size = task.source.image_size[0] if task.source.image_size else max(space.resolutions)
    return min(space.resolutions, key=lambda r: (abs(r - size), r))
