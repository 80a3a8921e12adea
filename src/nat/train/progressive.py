"""Progressive shrinking (OFA): pretrain an elastic supernet phase by phase, resumable at any step.

`PretrainingTrainer` is the run: one object holding its state (config, run folder, supernet, data, BN
calibrator, the current phase index, the process-local step budget, the seconds of earlier processes,
the metrics log), with the run folder's I/O at the edges (opening the folder, checkpoints, metrics rows,
the final files). It trains each phase with `train_supernet`, passing itself as the `TrainCallback`:
``on_step`` writes metrics rows, checkpoints and, once the step budget is spent, sets
``trainer.should_stop``; ``on_epoch`` writes the epoch row and checkpoints. `run_pretraining` builds one
and runs it (`nat pretrain`).

Phases run in order; each is one `train_supernet` call with its own optimiser and cosine schedule (as in
OFA, where every phase restarts the learning rate). Within a phase every batch trains the largest
subnet on the labels (in-place distillation) and ``subnets_per_batch`` subnets sampled from the phase's
choices with a KD loss towards the largest's soft predictions (see `nat.train.engine`).

The run folder (`nat.run_folder.RunFolder`, kind ``pretrain``) holds ``run.json``, ``config.yaml``
(resolved), ``versions.json``, ``pretrain.log``, ``metrics.jsonl`` (one JSON object a
line: training rows every ``log_every`` steps, one row per epoch and per phase end), ``checkpoint.pt``
(supernet weights, optimiser, RNG streams, phase/epoch/step; replaced atomically at every epoch end and
every ``checkpoint_every`` steps), and at the end ``supernet.safetensors`` (`Supernet.load` reads it) and
``summary.json``. Killing the process loses at most the steps since the last checkpoint; resuming replays
the data stream up to the step reached, so the result equals an uninterrupted run on CPU. One process
writes a folder at a time (`run` holds an exclusive lock on ``.lock``, `nat.files.RunLock`), and a folder
that holds a search run is refused before anything is written.

Under torchrun (`nat.runtime.distributed`) every process trains, with DistributedDataParallel, its rows
of each configured batch; rank 0 alone holds the folder (config, lock, metrics, checkpoints, final
files) and broadcasts the config and, on resume, the checkpoint to the others. The phase-end
validation check runs on every process (the weights are the same everywhere; it needs no waiting);
the test figures at the end are rank 0's alone.
"""

from __future__ import annotations

import json
import logging
import pickle
import random
import time
import warnings
from pathlib import Path
from typing import Any

import torch

from nat.data import TaskData, load_from_config, loader_from_config, make_loader
from nat.errors import CheckpointError, ConfigError
from nat.files import append_line, make_folder, write_atomic, write_text_atomic
from nat.run_folder import PRETRAIN, RunFolder, kind_of
from nat.runtime import Runtime
from nat.runtime.distributed import Collective, batch_rows
from nat.runtime.precision import Precision
from nat.space.definition import SearchSpace
from nat.space.subnet import Subnet
from nat.supernet import BNCalibrator, Supernet, kept_bn_statistics
from nat.supernet.checkpoint import load_weights_from, save_supernet, unsafe_reason
from nat.train.config import PhaseConfig, PretrainConfig, parse_config
from nat.train.engine import SupernetTrainer, TrainCallback, train_supernet
from nat.train.evaluation import evaluate_top1

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
        "precision": cfg.precision,
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


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``state`` with `torch.save`, replacing ``path`` atomically (`nat.files.write_atomic`)."""
    write_atomic(path, lambda p: torch.save(state, p))


def load_checkpoint(path: Path) -> dict[str, Any]:
    if path.is_dir():
        raise CheckpointError(f"{path} is a folder, not a pretraining checkpoint file")
    if not path.is_file():
        raise CheckpointError(f"no checkpoint to resume from: {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"{path} is empty (not written by nat, which replaces checkpoints atomically); delete it to "
            "resume from the start of the run, or restore it from a copy"
        )
    try:
        with (
            warnings.catch_warnings()
        ):  # torch's notes on a foreign file's pickle protocol: our error says it
            warnings.simplefilter("ignore", UserWarning)
            state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise CheckpointError(
            f"{path} holds more than weights and was not loaded ({unsafe_reason(exc)}); it is not a nat "
            "pretraining checkpoint"
        ) from None
    except Exception as exc:  # noqa: BLE001 - any failure to read means an unusable file
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path} is not a readable pretraining checkpoint: {reason}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a nat pretraining checkpoint (format {FORMAT!r} expected)")
    return state


class MetricsLog:
    """Appends one JSON object a line, durably (`nat.files.append_line`), so a killed run keeps its log."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, row: dict[str, Any]) -> None:
        append_line(self.path, json.dumps(row) + "\n")


class _NoMetrics(MetricsLog):
    """The metrics log of a torchrun process other than rank 0: rows go nowhere (rank 0 writes them)."""

    def write(self, row: dict[str, Any]) -> None:
        pass


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


def pretrain_calibrator(
    task: TaskData,
    cfg: PretrainConfig,
    space: SearchSpace,
    *,
    device: torch.device | str = "cpu",
    channels_last: bool = False,
    precision: Precision | str | None = None,
) -> BNCalibrator:
    """The BN calibrator a pretraining run measures with: ``cfg.calibration_images`` training images fixed by
    the run seed, at ``space``'s largest resolution (so that every subnet resizes down from them)."""
    return BNCalibrator(
        calibration_images(task, cfg.calibration_images, max(space.resolutions), cfg.seed),
        batch_size=cfg.data.eval_batch_size,
        device=device,
        channels_last=channels_last,
        precision=precision,
    )


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
    are restored afterwards, so evaluation never changes the weights being trained. Both run in the
    calibrator's precision (the run's)."""
    data = task.split(split)
    if max_images is not None and max_images < len(data):
        data = data.subset(range(max_images))
    active = net.active
    out = {}
    try:
        with kept_bn_statistics(net):
            for name, subnet in subnets.items():
                calibrator(net, subnet)
                loader = make_loader(
                    task, data, batch_size=batch_size, resolution=subnet.r, train=False, device=device
                )
                out[name] = evaluate_top1(net, loader, device=device, precision=calibrator.precision)
    finally:
        net.set_active(active)
    return out


# ----------------------------------------------------------------------------------------- the run


class PretrainingTrainer(TrainCallback):
    """One progressive-shrinking run in one run folder, resumable at any step.

    ``resume=True`` continues the run in ``out_dir`` from its checkpoint (``cfg`` may then be None: the
    saved ``config.yaml`` is used; a different ``cfg`` is an error). ``stop_after_steps`` ends the
    process-local work after that many optimiser steps (counted over phases) with a checkpoint, as if
    killed right after it. The config is resolved (and checked against the folder) on construction; the
    folder is written, the data loaded and the supernet trained by `run`.
    """

    def __init__(
        self,
        cfg: PretrainConfig | None,
        out_dir: str | Path,
        *,
        resume: bool = False,
        progress: bool = True,
        stop_after_steps: int | None = None,
        collective: Collective | None = None,
    ) -> None:
        self.out = Path(out_dir)
        self.folder = RunFolder(self.out, PRETRAIN)
        self.resuming = resume
        self.progress = progress
        self.collective = Collective.current() if collective is None else collective
        main = self.collective.is_main
        # rank 0 checks the folder and reads a resumed run's config; the others take rank 0's
        self.cfg: PretrainConfig = self.collective.broadcast(self._resolve_config(cfg) if main else None)
        if self.collective.active:  # before anything is written: the batch must split over the processes
            batch_rows(self.cfg.data.train_batch_size, self.collective)
        self.metrics = MetricsLog(self.out / "metrics.jsonl") if main else _NoMetrics(self.out)
        self.phase_index = 0  # the phase being trained; len(cfg.phases) once all are done
        self.steps_left = stop_after_steps  # optimiser steps this process may still take (None: no limit)
        self.elapsed = 0.0  # training seconds of the earlier processes of this run
        self.phase_state: dict[str, Any] | None = None  # SupernetTrainer.state_dict() to continue from
        self._t_start = time.perf_counter()  # reset when training starts
        # set by `_setup` (in `run`): the device, the task's data, the supernet and the BN calibrator
        self.device: torch.device
        self.task: TaskData
        self.net: Supernet
        self.calibrator: BNCalibrator

    @property
    def checkpoint_path(self) -> Path:
        return self.out / CHECKPOINT

    def _resolve_config(self, cfg: PretrainConfig | None) -> PretrainConfig:
        """The run's config: the saved one when resuming (``cfg``, if given, must equal it), else ``cfg``
        for a folder that holds no run yet."""
        self._check_folder()
        if self.resuming:
            saved = load_saved_config(self.out)
            if cfg is not None and cfg.model_dump() != saved.model_dump():
                raise ConfigError(
                    f"the config differs from the one of the run in {self.out}; resume without --config (or "
                    "with the same file and flags), or start a new run in another folder"
                )
            return saved
        if cfg is None:
            raise ConfigError("a config is needed to start a run")
        return cfg

    def _check_folder(self) -> None:
        """Refuse (one `ConfigError`, nothing written) a folder that holds a run of another kind, and,
        for a new run, one that holds a pretraining run already."""
        self.folder.refuse_other_kind()
        if not self.resuming and kind_of(self.out) is PRETRAIN:
            raise ConfigError(
                f"{self.out} already holds a pretraining run; use --resume {self.out} or another --out"
            )

    # ------------------------------------------------------------------- the edges: folder, checkpoints
    def _open_folder(self) -> dict[str, Any] | None:
        """Read the checkpoint of a run being resumed (None if it has none yet), or create the folder of
        a new run with its ``config.yaml`` and ``versions.json``."""
        if self.resuming:
            return load_checkpoint(self.checkpoint_path) if self.checkpoint_path.is_file() else None
        self.folder.write_start(self.cfg.to_yaml())
        return None

    def _setup(self, state: dict[str, Any] | None) -> None:
        """Device, data, supernet (initial weights from the run seed, or the checkpoint's) and the BN
        calibrator; with a checkpoint, the phase, seconds and trainer state to continue from."""
        cfg = self.cfg
        self.runtime = Runtime.resolve(cfg, self.collective)  # device, precision, layout: decided once
        self.device, channels_last = self.runtime.device, self.runtime.channels_last
        space, width = cfg.search_space(), cfg.width()
        self.task = load_from_config(cfg.data, cfg.seed)
        with torch.random.fork_rng(devices=[]):  # initial weights from the run seed, global RNG untouched
            torch.manual_seed(cfg.seed)
            self.net = Supernet(space, width, self.task.num_classes, channels_last).to(self.device)
        if cfg.init_from is not None and state is None:
            load_weights_from(self.net, Path(cfg.init_from), "init_from")
            logger.info("initial weights from %s", cfg.init_from)
        if state is not None:
            self._restore(state)
        self.collective.sync_module(self.net)  # rank 0's weights everywhere (init_from, checkpoint)
        self.calibrator = pretrain_calibrator(
            self.task,
            cfg,
            space,
            device=self.device,
            channels_last=channels_last,
            precision=self.runtime.precision,
        )

    def _restore(self, state: dict[str, Any]) -> None:
        self.net.load_state_dict(state["supernet"])
        self.phase_index, self.elapsed = int(state["phase"]), float(state["elapsed"])
        self.phase_state = state["trainer"]
        step = self.phase_state["step"] if self.phase_state else 0
        logger.info("resuming %s at phase %d, step %d", self.out, self.phase_index, step)
        # rows written after this checkpoint by the interrupted process are superseded by what follows
        row = {"kind": "resume", "phase_index": self.phase_index, "step": step}
        self.metrics.write({**row, "seconds": round(self.elapsed, 1)})

    def seconds(self) -> float:
        """Training seconds of the whole run so far (earlier processes included)."""
        return self.elapsed + time.perf_counter() - self._t_start

    def checkpoint(self, trainer: SupernetTrainer | None) -> None:
        """Replace ``checkpoint.pt``: the weights, the phase index and, mid-phase, ``trainer``'s state
        (rank 0's, under torchrun: the others hold the same weights and optimiser state)."""
        if not self.collective.is_main:
            return
        phases = self.cfg.phases
        save_checkpoint(
            self.checkpoint_path,
            {
                "format": FORMAT,
                "phase": self.phase_index,
                "phase_name": phases[self.phase_index].name if self.phase_index < len(phases) else "done",
                "trainer": trainer.state_dict() if trainer is not None else None,
                "supernet": {k: v.detach().cpu() for k, v in self.net.state_dict().items()},
                "elapsed": self.seconds(),
            },
        )

    # ------------------------------------------------------------------- callbacks of train_supernet
    @property
    def phase(self) -> PhaseConfig:
        return self.cfg.phases[self.phase_index]

    def on_step(self, trainer: SupernetTrainer) -> None:
        """Metrics row every ``log_every`` steps; checkpoint every ``checkpoint_every`` steps and when the
        step budget runs out, which also stops the phase (a phase's last step is left to `_end_phase`)."""
        cfg = self.cfg
        end_of_phase = trainer.step == trainer.total_steps
        if trainer.step % cfg.log_every == 0 or end_of_phase:
            row = {
                "kind": "train",
                "phase": self.phase.name,
                "step": trainer.step,
                "epoch": trainer.epoch,
                "lr": trainer.optimizer.param_groups[0]["lr"],
                "seconds": round(self.seconds(), 1),
            }
            row.update({k: round(v, 5) for k, v in trainer.averages(window=True).items()})
            self.metrics.write(row)
            trainer.reset_window()
        if self.steps_left is not None:
            self.steps_left -= 1
        if end_of_phase:
            return
        if self.steps_left == 0 or (cfg.checkpoint_every and trainer.step % cfg.checkpoint_every == 0):
            self.checkpoint(trainer)
        if self.steps_left == 0:
            trainer.should_stop = True

    def on_epoch(self, trainer: SupernetTrainer) -> None:
        self.metrics.write(
            {
                "kind": "epoch",
                "phase": self.phase.name,
                "step": trainer.step,
                "epoch": trainer.epoch,
                "seconds": round(self.seconds(), 1),
            }
        )
        if trainer.step < trainer.total_steps:
            self.checkpoint(trainer)

    # ------------------------------------------------------------------- phases
    def run(self) -> dict[str, Any]:
        """Train the remaining phases and finish; returns the run summary (``finished: False`` and the
        seconds so far when the step budget ran out first). The folder's writer lock is held throughout
        (a second process writing it fails at once, naming this one's PID), and nat's log records go to
        the folder's ``pretrain.log``."""
        if not self.collective.is_main:
            return self._run()
        make_folder(self.out)
        with self.folder.lock:
            self._check_folder()  # again: the folder may have changed since the trainer was made
            with self.folder.logging():
                return self._run()

    def _run(self) -> dict[str, Any]:
        main = self.collective.is_main
        self._setup(self.collective.broadcast(self._open_folder() if main else None))
        self._t_start = time.perf_counter()
        while self.phase_index < len(self.cfg.phases):
            stats = self._train_phase()
            if stats["stopped"]:
                logger.info("stopped after the requested number of steps; resume with --resume %s", self.out)
                return {"finished": False, "seconds": self.seconds()}
            self._end_phase(stats)
            if self.steps_left == 0 and self.phase_index < len(self.cfg.phases):
                return {"finished": False, "seconds": self.seconds()}
        return self.finish()

    def _train_phase(self) -> dict[str, Any]:
        """One `train_supernet` call for the current phase (continuing ``phase_state`` if resumed)."""
        cfg, index, phase = self.cfg, self.phase_index, self.phase
        c = self.collective
        loader = loader_from_config(
            self.task,
            cfg.data,
            "train",
            resolution=cfg.resolutions(),
            seed=phase_seed(cfg.seed, index),
            device=self.device,
            rows=batch_rows(cfg.data.train_batch_size, c) if c.active else None,
        )
        kwargs = phase_trainer_kwargs(cfg, phase, index, len(loader))
        steps = max(1, round(phase.epochs * len(loader)))
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
        resume, self.phase_state = self.phase_state, None
        return train_supernet(
            self.net,
            loader,
            steps=steps,
            resume=resume,
            callbacks=[self],
            progress=self.progress,
            desc=phase.name,
            device=self.device,
            collective=c,
            **kwargs,
        )

    def _end_phase(self, stats: dict[str, Any]) -> None:
        """The phase row (with the validation check unless ``val_images`` is 0), then a checkpoint at the
        start of the next phase."""
        cfg, phase = self.cfg, self.phase
        row = {
            "kind": "phase",
            "phase": phase.name,
            "steps": stats["steps"],
            "seconds": round(self.seconds(), 1),
            "train_loss": round(stats.get("loss", float("nan")), 5),
        }
        if cfg.val_images != 0:
            space, width = cfg.search_space(), cfg.width()
            subnets = {
                "largest": Subnet.largest(space, w=width),
                "phase_smallest": PhaseSampler(space, phase, width).smallest(),
            }
            check = self._evaluate(subnets, "val", cfg.val_images)
            row.update({f"val_top1_{k}": round(v, 5) for k, v in check.items()})
        self.metrics.write(row)
        logger.info("phase %s done: %s", phase.name, json.dumps(row))
        self.phase_index += 1
        self.collective.sync_module(self.net)  # BN running statistics: rank 0's everywhere, as saved
        self.checkpoint(None)

    def _evaluate(self, subnets: dict[str, Subnet], split: str, max_images: int | None) -> dict[str, float]:
        return evaluate_subnets(
            self.net,
            self.task,
            subnets,
            self.calibrator,
            split,
            max_images,
            self.cfg.data.eval_batch_size,
            self.device,
        )

    # ------------------------------------------------------------------- the end
    def finish(self) -> dict[str, Any]:
        """Save the final supernet, evaluate its largest and smallest subnets on the test split (if
        ``test_eval``), write ``summary.json`` and the final metrics row; returns the summary (under
        torchrun: rank 0 does all this; the others return ``{"finished": True, "rank": r}``)."""
        if not self.collective.is_main:
            return {"finished": True, "rank": self.collective.rank}
        cfg, seconds = self.cfg, self.seconds()
        space, width = cfg.search_space(), cfg.width()
        path = save_supernet(
            self.net,
            self.out / "supernet.safetensors",
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
            summary.update(self._test_figures())
        write_text_atomic(self.out / "summary.json", json.dumps(summary, indent=2) + "\n")
        self.metrics.write({"kind": "final", **summary})
        return summary

    def _test_figures(self) -> dict[str, Any]:
        """Test top-1 of the largest and smallest subnets, each at its extreme and the native resolution."""
        space, width = self.cfg.search_space(), self.cfg.width()
        native = _native_resolution(self.task, space)
        subnets = {
            f"largest_r{max(space.resolutions)}": Subnet.largest(space, w=width),
            f"largest_r{native}": Subnet.largest(space, w=width, r=native),
            f"smallest_r{min(space.resolutions)}": Subnet.smallest(space, w=width),
            f"smallest_r{native}": Subnet.smallest(space, w=width, r=native),
        }
        t0 = time.perf_counter()
        top1 = {k: round(v, 5) for k, v in self._evaluate(subnets, "test", None).items()}
        logger.info("test top-1 (BN recalibrated, %.0f s): %s", time.perf_counter() - t0, json.dumps(top1))
        return {
            "test_top1": top1,
            "test_subnets": {k: s.to_dict() for k, s in subnets.items()},
            "calibration_images": self.cfg.calibration_images,
        }


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
    A thin wrapper: ``PretrainingTrainer(cfg, out_dir, ...).run()``.
    """
    trainer = PretrainingTrainer(
        cfg, out_dir, resume=resume, progress=progress, stop_after_steps=stop_after_steps
    )
    return trainer.run()


def _native_resolution(task: TaskData, space: SearchSpace) -> int:
    """The space resolution closest to the images' own size (e.g. 28 for Fashion-MNIST)."""
    size = task.source.image_size[0] if task.source.image_size else max(space.resolutions)
    return min(space.resolutions, key=lambda r: (abs(r - size), r))
