"""The supernet training engine shared by pretraining (progressive shrinking) and online adaptation.

One optimiser step per batch, OFA-style: the batch trains one or more subnets, their gradients are
summed, then SGD (Nesterov momentum) steps once. Optionally the batch first trains a *teacher* whose
soft predictions every other subnet of the batch is distilled towards:

* ``distill_from="largest"``: in-place distillation (BigNAS, also OFA's "sandwich" variants): the largest
  subnet is trained on the labels first, its detached softmax is the soft target of the others;
* ``distill_from=<nn.Module>``: a frozen teacher in eval mode, no gradient (OFA's recipe, where the
  teacher is the full network trained in the first phase);
* ``None``: label loss only.

A subnet's loss is ``CE(label smoothing) + kd_ratio * CE(softmax(teacher), student)`` (OFA's
``cross_entropy_loss_with_soft_target``, no temperature).

Resolution: the loader already samples a resolution per batch (``make_loader(resolution=[...])``), so by
default (``resolution="batch"``) every subnet of a batch runs at the batch's resolution and the subnet's
own ``r`` is ignored, as in OFA. ``resolution="subnet"`` resizes the batch to each subnet's ``r``
(bilinear, antialiased when shrinking); the teacher always sees the batch as it came.

Determinism: subnets are drawn from a ``random.Random(seed)`` owned by the trainer, dropout draws from a
torch RNG state owned by the trainer (swapped in around each step, so the global RNG is left exactly as
it was) and the loader is seeded by its own ``seed``. `SupernetTrainer.state_dict` captures all of it
(with the optimiser), so a run resumed from a checkpoint continues bit-for-bit on CPU.

Callbacks (Lightning-style): `train_supernet` calls each `TrainCallback`'s ``on_step(trainer)`` after
every optimiser step and ``on_epoch(trainer)`` after every full pass; a callback ends the call cleanly by
setting ``trainer.should_stop = True`` (checked once that step's callbacks have run), which is how a
caller checkpoints and stops mid-run without an exception. `evaluate_top1` lives in
`nat.train.evaluation` (re-exported here).

Precision (``precision="fp32" | "bf16" | "fp16"``, `nat.runtime.precision`): forward passes and losses run
under `torch.autocast` for bf16/fp16, backward and the optimiser step outside it; fp16 scales the loss
with a `torch.amp.GradScaler` (its state is part of `SupernetTrainer.state_dict`, so resume stays exact).
Parameters stay float32. fp32 runs exactly the code it ran before precision existed.

Several processes (torchrun, `nat.runtime.distributed`): when a process group of more than one process is
joined, the trainer wraps the supernet in `DistributedDataParallel`. Every rank draws the same subnets
(the same seed), trains them on its share of the batch (the loader's ``rows``), and DDP averages the
gradients, so all ranks take the same optimiser step. ``find_unused_parameters`` is on because a subnet
leaves whole blocks and kernel transforms of the supernet out of its graph. BatchNorm normalises by each
rank's own batch statistics (as OFA's Horovod training; no SyncBN: a subnet's batch of 64 or more per
rank gives usable statistics, and search-time accuracy is measured after BN recalibration anyway), and
running statistics are not exchanged during training (``forward_sync_buffers=False``); the caller aligns
them afterwards (`Collective.sync_module`). Loss and accuracy figures are each rank's own; the averages
`train_supernet` returns are means over the ranks.

Host synchronisation: a step's losses and accuracies stay device tensors; on CPU they are read at once,
on a GPU only when `averages` (or `state_dict`) is called, i.e. at log points, so the GPU is never made to
wait inside a step. The figures are the same float32 values either way.
"""

from __future__ import annotations

import copy
import logging
import math
import random
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nat.errors import ConfigError
from nat.progress import progress_bar
from nat.runtime.distributed import Collective
from nat.runtime.precision import Precision, as_precision
from nat.space.subnet import Subnet
from nat.train.evaluation import evaluate_top1 as evaluate_top1  # re-exported (its former home)

logger = logging.getLogger(__name__)

SubnetSampler = Callable[[random.Random], Subnet]
Teacher = Literal["largest"] | nn.Module | None
Batch = tuple[torch.Tensor, torch.Tensor]
StepHook = Callable[["SupernetTrainer"], None]

#: per-batch figures, in the order they are summed (and listed by `SupernetTrainer.averages`)
FIGURES = ("loss", "top1", "loss_largest", "top1_largest")
#: batches whose figures may wait on the device before being read (bounds the tensors kept)
MAX_PENDING = 256


def cosine_lr(step: int, total: int, lr: float, lr_min: float = 0.0, warmup_steps: int = 0) -> float:
    """Learning rate of optimiser step ``step`` (0-based): linear warm-up, then cosine to ``lr_min``."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    t = (step - warmup_steps) / max(1, total - warmup_steps)
    return lr_min + 0.5 * (lr - lr_min) * (1.0 + math.cos(math.pi * min(1.0, t)))


def soft_cross_entropy(logits: torch.Tensor, soft_target: torch.Tensor) -> torch.Tensor:
    """Cross-entropy against a probability vector, averaged over the batch (OFA's
    ``cross_entropy_loss_with_soft_target``): `F.cross_entropy` with probability targets."""
    return F.cross_entropy(logits, soft_target)


def resize_batch(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution and images.shape[-2] == resolution:
        return images
    return F.interpolate(
        images,
        size=(resolution, resolution),
        mode="bilinear",
        align_corners=False,
        antialias=resolution < images.shape[-1],
    )


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Weight decay on weights only: BN affine parameters and biases (1-d tensors) are not decayed, which
    is OFA's ``no_decay_keys='bn#bias'``. The kernel transformation matrices are decayed, as in OFA."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.dim() <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def _no_buffer_sync() -> dict[str, bool]:
    """DDP's switch for not broadcasting buffers before each forward: ``forward_sync_buffers=False`` in
    recent torch, ``broadcast_buffers=False`` (deprecated there) in older releases."""
    import inspect

    from torch.nn.parallel import DistributedDataParallel

    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters:
        return {"forward_sync_buffers": False}
    return {"broadcast_buffers": False}


def _check_settings(
    total_steps: int,
    subnets_per_batch: int,
    always_train: Sequence[Subnet],
    distill_from: Teacher,
    distill_every: int,
    resolution: str,
) -> None:
    """`SupernetTrainer`'s settings that no type states: one `ConfigError` naming the first bad one."""
    if total_steps < 1:
        raise ConfigError(f"total_steps must be >= 1, got {total_steps}")
    if subnets_per_batch < 0:
        raise ConfigError(f"subnets_per_batch must be >= 0, got {subnets_per_batch}")
    if resolution not in ("batch", "subnet"):
        raise ConfigError(f"resolution must be 'batch' or 'subnet', got {resolution!r}")
    if distill_from is not None and distill_from != "largest" and not isinstance(distill_from, nn.Module):
        raise ConfigError(
            f"distill_from must be 'largest', a teacher nn.Module or None, got {distill_from!r}"
        )
    if subnets_per_batch == 0 and not always_train and distill_from != "largest":
        raise ConfigError("nothing to train: subnets_per_batch=0 and no always_train subnets")
    if distill_every < 1:
        raise ConfigError(f"distill_every must be >= 1, got {distill_every}")


def _ddp(supernet: nn.Module, device: torch.device) -> nn.Module:
    """The supernet wrapped for DistributedDataParallel (under torchrun)."""
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(
        supernet,
        device_ids=[device.index] if device.type == "cuda" else None,
        find_unused_parameters=True,
        **_no_buffer_sync(),
    )


class SupernetTrainer:
    """Trains a supernet one batch at a time; holds the optimiser, schedule position and RNG streams.

    ``total_steps`` fixes the learning-rate schedule (warm-up then cosine). ``sample_subnet(rng)`` draws
    the subnets of a batch (default: uniform over the supernet's space at its width); ``always_train``
    subnets are trained on every batch as well (e.g. ``[Subnet.smallest(space)]`` for the sandwich
    rule). With ``distill_from="largest"`` the largest subnet is trained on the labels first and teaches
    the rest; set ``subnets_per_batch=0`` to train only it. ``distill_every=n`` does that on every n-th
    step only (steps 0, n, 2n, ...); the others train on the labels alone, at a fraction of the cost.
    """

    def __init__(
        self,
        supernet: nn.Module,
        *,
        total_steps: int,
        sample_subnet: SubnetSampler | None = None,
        subnets_per_batch: int = 1,
        always_train: Sequence[Subnet] = (),
        distill_from: Teacher = None,
        distill_every: int = 1,
        kd_ratio: float = 1.0,
        lr: float = 0.025,
        lr_min: float = 0.0,
        warmup_steps: int = 0,
        momentum: float = 0.9,
        nesterov: bool = True,
        weight_decay: float = 3e-5,
        label_smoothing: float = 0.1,
        grad_clip: float | None = None,
        resolution: Literal["batch", "subnet"] = "batch",
        seed: int = 0,
        device: str | torch.device | None = None,
        precision: Precision | str | None = None,
        collective: Collective | None = None,
    ) -> None:
        _check_settings(total_steps, subnets_per_batch, always_train, distill_from, distill_every, resolution)
        self.net = supernet
        self.device = torch.device(device) if device is not None else next(supernet.parameters()).device
        self.net.to(self.device)
        self.collective = Collective.current() if collective is None else collective
        # what forward passes go through: the supernet itself, or its DDP wrapper under torchrun
        self.model: nn.Module = _ddp(supernet, self.device) if self.collective.active else supernet
        self.precision = as_precision(precision, self.device)
        self.scaler = self.precision.grad_scaler()  # fp16 only
        # per-batch figures are device tensors until read; on CPU reading them costs nothing, so they
        # are read at once (and returned by `train_step`), elsewhere only at log points (`averages`)
        self.sync_each_step = self.device.type == "cpu"
        self._pending: list[dict[str, list[torch.Tensor]]] = []
        self.total_steps = total_steps
        self.subnets_per_batch = subnets_per_batch
        self.always_train = list(always_train)
        self.distill_from = distill_from
        #: with ``distill_from="largest"``: the largest subnet trains (and teaches) on every n-th step only
        self.distill_every = distill_every
        if isinstance(distill_from, nn.Module):
            distill_from.to(self.device).eval()
            distill_from.requires_grad_(False)
        self.kd_ratio, self.label_smoothing, self.grad_clip = kd_ratio, label_smoothing, grad_clip
        self.lr, self.lr_min, self.warmup_steps = lr, lr_min, warmup_steps
        self.resolution = resolution
        space, width = supernet.space, supernet.width_mult
        self.largest = Subnet.largest(space, w=width)
        self.sample_subnet: SubnetSampler = sample_subnet or (lambda rng: Subnet.sample(space, rng, w=width))
        self.optimizer = torch.optim.SGD(
            param_groups(supernet, weight_decay), lr=lr, momentum=momentum, nesterov=nesterov and momentum > 0
        )
        self.rng = random.Random(seed)
        self._torch_rng = torch.Generator().manual_seed(seed).get_state()
        self._cuda_rng: torch.Tensor | None = None
        if self.device.type == "cuda":
            self._cuda_rng = torch.Generator(self.device).manual_seed(seed).get_state()
        self.step = 0  # optimiser steps done
        self.epoch = 0  # completed passes over the loader
        self.batch_in_epoch = 0  # batches consumed in the current pass
        self.totals: dict[str, float] = {}  # per-batch figures summed over the run
        self.window: dict[str, float] = {}  # the same since the last reset_window()
        self.should_stop = False  # set by a callback to end `train_supernet` after the current step

    # ----------------------------------------------------------------- randomness
    @contextmanager
    def _own_rng(self) -> Iterator[None]:
        """Run with the trainer's torch RNG streams (dropout) and put the caller's back afterwards."""
        saved = torch.get_rng_state()
        torch.set_rng_state(self._torch_rng)
        saved_cuda = None
        if self._cuda_rng is not None:
            saved_cuda = torch.cuda.get_rng_state(self.device)
            torch.cuda.set_rng_state(self._cuda_rng, self.device)
        try:
            yield
        finally:
            self._torch_rng = torch.get_rng_state()
            torch.set_rng_state(saved)
            if saved_cuda is not None:
                self._cuda_rng = torch.cuda.get_rng_state(self.device)
                torch.cuda.set_rng_state(saved_cuda, self.device)

    # ----------------------------------------------------------------- one batch
    def _add(self, key: str, value: float) -> None:
        for sums in (self.totals, self.window):
            sums[key] = sums.get(key, 0.0) + value
            sums[key + "#n"] = sums.get(key + "#n", 0.0) + 1

    def _flush(self) -> dict[str, float]:
        """Read the pending per-batch figures (one device-to-host transfer) into the sums; returns the
        last batch's figures. Each figure is the same Python arithmetic on the same float32 values
        whenever it is read, so the sums do not depend on when (or on which device) this runs."""
        pending, self._pending = self._pending, []
        tensors = [t.float() for figures in pending for key in FIGURES for t in figures.get(key, ())]
        if not tensors:
            return {}
        values = iter(torch.stack(tensors).tolist())
        last: dict[str, float] = {}
        for figures in pending:
            last = {}
            for key in FIGURES:
                batch = [next(values) for _ in figures.get(key, ())]
                if batch:
                    last[key] = sum(batch) / len(batch)
                    self._add(key, last[key])
        return last

    def _backward(self, loss: torch.Tensor) -> None:
        scaled = loss if self.scaler is None else self.scaler.scale(loss)
        if self.model is self.net:
            scaled.backward()
            return
        with warnings.catch_warnings():
            # DDP notes once that a gradient's layout differs from its bucket's: the channels-last
            # depthwise weights get channels-last gradients; DDP copies them, which is all it means
            warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
            scaled.backward()

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """Train on one batch (one optimiser step); returns the learning rate and, on CPU, this batch's
        losses and accuracies. On a GPU those stay on the device (no host synchronisation inside the
        step) and reach `averages` when it is called; ``sync_each_step = True`` returns them here too."""
        net = self.net
        net.train()
        images = images.to(self.device, non_blocking=True)
        labels = labels.to(self.device, non_blocking=True)
        lr = cosine_lr(self.step, self.total_steps, self.lr, self.lr_min, self.warmup_steps)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        out: dict[str, float] = {"lr": lr}
        figures: dict[str, list[torch.Tensor]] = {}
        autocast = self.precision.autocast
        with self._own_rng():
            self.optimizer.zero_grad(set_to_none=True)
            soft: torch.Tensor | None = None
            if self.distill_from == "largest" and self.step % self.distill_every == 0:
                net.set_active(self.largest)
                with autocast():
                    logits = self.model(images)
                    loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
                self._backward(loss)
                soft = F.softmax(logits.detach().float(), dim=1)  # float32 targets (no-op in fp32)
                figures["loss_largest"] = [loss.detach()]
                figures["top1_largest"] = [(logits.argmax(1) == labels).float().mean()]
            elif isinstance(self.distill_from, nn.Module):
                with torch.no_grad(), autocast():
                    soft = F.softmax(self.distill_from(images).float(), dim=1)
            sampled = [self.sample_subnet(self.rng) for _ in range(self.subnets_per_batch)]
            subnets = self.always_train + sampled
            for subnet in subnets:
                net.set_active(subnet)
                x = resize_batch(images, subnet.r) if self.resolution == "subnet" else images
                with autocast():
                    logits = self.model(x)
                    loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
                    if soft is not None and self.kd_ratio > 0:
                        loss = loss + self.kd_ratio * soft_cross_entropy(logits, soft)
                self._backward(loss)
                figures.setdefault("loss", []).append(loss.detach())
                figures.setdefault("top1", []).append((logits.argmax(1) == labels).float().mean())
            if self.scaler is not None:
                if self.grad_clip is not None:
                    self.scaler.unscale_(self.optimizer)  # clip the true gradients, not the scaled ones
                    torch.nn.utils.clip_grad_norm_(net.parameters(), self.grad_clip)
                self.scaler.step(self.optimizer)  # skipped when the scaled gradients overflowed
                self.scaler.update()
            else:
                if self.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(net.parameters(), self.grad_clip)
                self.optimizer.step()
        self._pending.append(figures)
        if self.sync_each_step or len(self._pending) >= MAX_PENDING:
            out.update(self._flush())
        self.step += 1
        self.batch_in_epoch += 1
        return out

    def averages(self, window: bool = False) -> dict[str, float]:
        """Mean of each per-batch figure (loss, top1, ...) over the whole run, or with ``window=True``
        since the last `reset_window` (for periodic logging)."""
        self._flush()
        sums = self.window if window else self.totals
        return {k: sums[k] / max(1.0, sums[k + "#n"]) for k in sums if not k.endswith("#n")}

    def reset_window(self) -> None:
        self._flush()  # figures of batches before the reset belong to the old window
        self.window = {}

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Everything but the supernet weights needed to continue exactly (tensors and plain containers,
        loadable with ``torch.load(weights_only=True)``)."""
        self._flush()
        version, internal, gauss = self.rng.getstate()
        state = {
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "total_steps": self.total_steps,
            "optimizer": copy.deepcopy(self.optimizer.state_dict()),  # a snapshot, not live buffers
            "python_rng": [version, list(internal), gauss],
            "torch_rng": self._torch_rng.clone(),
            "cuda_rng": None if self._cuda_rng is None else self._cuda_rng.clone(),
            "totals": dict(self.totals),
            "window": dict(self.window),
        }
        if self.scaler is not None:  # fp16's loss scale and its growth counter (absent otherwise)
            state["grad_scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state["total_steps"]) != self.total_steps:
            raise ConfigError(
                f"the saved training state is for {state['total_steps']} steps but this run has "
                f"{self.total_steps}; resume with the same configuration"
            )
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.optimizer.load_state_dict(state["optimizer"])
        version, internal, gauss = state["python_rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self._torch_rng = state["torch_rng"].clone()
        if self._cuda_rng is not None and state.get("cuda_rng") is not None:
            self._cuda_rng = state["cuda_rng"].clone()
        self.totals = dict(state.get("totals", {}))
        self.window = dict(state.get("window", {}))
        self._pending = []
        if self.scaler is not None and state.get("grad_scaler") is not None:
            self.scaler.load_state_dict(state["grad_scaler"])


class TrainCallback:
    """Hooks of `train_supernet` (Lightning's ``Callback`` in small): override what you need.

    ``on_step(trainer)`` runs after every optimiser step, ``on_epoch(trainer)`` after every full pass
    over the loader (right after the ``on_step`` of the pass's last step). Either may read the
    `SupernetTrainer` (``step``, ``epoch``, ``total_steps``, ``averages()``, ``optimizer``), checkpoint
    with ``trainer.state_dict()`` plus the supernet's weights, or set ``trainer.should_stop = True`` to end
    the call once the step's callbacks have run.
    """

    def on_step(self, trainer: SupernetTrainer) -> None:
        pass

    def on_epoch(self, trainer: SupernetTrainer) -> None:
        pass


class _FunctionCallbacks(TrainCallback):
    """The bare ``on_step=``/``on_epoch=`` functions of `train_supernet` as a callback."""

    def __init__(self, on_step: StepHook | None, on_epoch: StepHook | None) -> None:
        self._on_step, self._on_epoch = on_step, on_epoch

    def on_step(self, trainer: SupernetTrainer) -> None:
        if self._on_step is not None:
            self._on_step(trainer)

    def on_epoch(self, trainer: SupernetTrainer) -> None:
        if self._on_epoch is not None:
            self._on_epoch(trainer)


def _num_batches(loader: Iterable[Batch]) -> int | None:
    try:
        return len(loader)  # type: ignore[arg-type]
    except TypeError:
        return None


def train_supernet(
    supernet: nn.Module,
    loader: Iterable[Batch],
    *,
    steps: int | None = None,
    epochs: float | None = None,
    resume: dict[str, Any] | None = None,
    callbacks: Sequence[TrainCallback] = (),
    on_step: StepHook | None = None,
    on_epoch: StepHook | None = None,
    progress: bool = True,
    desc: str = "train",
    **trainer_kwargs: Any,
) -> dict[str, Any]:
    """Train ``supernet`` on ``loader`` for ``steps`` optimiser steps or ``epochs`` passes (may be
    fractional); returns averages over the run (``loss``, ``top1``, and ``loss_largest``/``top1_largest``
    with in-place distillation), ``steps``, ``steps_this_call``, ``epochs``, ``seconds`` and ``stopped``
    (True when a callback's ``should_stop`` ended the call before ``steps``).

    ``trainer_kwargs`` are `SupernetTrainer`'s (``sample_subnet``, ``subnets_per_batch``, ``always_train``,
    ``distill_from``, ``kd_ratio``, ``lr``, ``lr_min``, ``warmup_steps``, ``momentum``, ``nesterov``,
    ``weight_decay``, ``label_smoothing``, ``grad_clip``, ``resolution``, ``seed``, ``device``,
    ``precision``).

    ``loader`` yields ``(images, labels)``; with ``set_epoch`` (nat's loaders) each pass ``e`` is
    ``set_epoch(e)`` so that a pass depends only on the loader's seed and ``e``. ``callbacks``
    (`TrainCallback`s, in order, then the bare ``on_step``/``on_epoch`` functions) run after every
    optimiser step and every full pass; they may checkpoint with ``trainer.state_dict()`` (plus the
    supernet's weights) and stop the call with ``trainer.should_stop = True``. ``resume`` (such a state
    dict, from a run with the same arguments) continues where it stopped: the interrupted pass is replayed
    up to the batch reached and training goes on from there, giving the same weights as an uninterrupted
    run.
    """
    n_batches = _num_batches(loader)
    if (steps is None) == (epochs is None):
        raise ConfigError("give exactly one of steps or epochs")
    if epochs is not None:
        if n_batches is None:
            raise ConfigError("epochs needs a loader with a length; give steps instead")
        steps = max(1, round(epochs * n_batches))
    assert steps is not None
    trainer = SupernetTrainer(supernet, total_steps=steps, **trainer_kwargs)
    if resume is not None:
        trainer.load_state_dict(resume)
    hooks = [*callbacks, _FunctionCallbacks(on_step, on_epoch)]
    was_training = supernet.training
    start, t0 = trainer.step, time.perf_counter()
    show = progress and trainer.collective.is_main  # under torchrun, rank 0's bar speaks for all
    bar = progress_bar(total=steps, initial=trainer.step, desc=desc, show=show)
    try:
        _fit(trainer, loader, n_batches, hooks, bar)
    finally:
        bar.close()
        supernet.train(was_training)
    seconds = time.perf_counter() - t0
    result: dict[str, Any] = trainer.collective.mean(trainer.averages())
    result.update(
        steps=trainer.step,
        steps_this_call=trainer.step - start,
        epochs=trainer.step / n_batches if n_batches else None,
        seconds=seconds,
        stopped=trainer.should_stop and trainer.step < steps,
    )
    logger.info(
        "%s: %d steps in %.0f s, loss %.4f", desc, trainer.step - start, seconds, result.get("loss", math.nan)
    )
    return result


def _fit(
    trainer: SupernetTrainer,
    loader: Iterable[Batch],
    n_batches: int | None,
    callbacks: Sequence[TrainCallback],
    bar: tqdm,
) -> None:
    """The pass loop of `train_supernet`: train until ``total_steps`` or until a callback stops it."""
    while trainer.step < trainer.total_steps and not trainer.should_stop:
        if hasattr(loader, "set_epoch"):
            loader.set_epoch(trainer.epoch)
        batches = iter(loader)
        for _ in range(trainer.batch_in_epoch):  # replay an interrupted pass up to where it stopped
            next(batches)
        seen = trainer.batch_in_epoch
        for images, labels in batches:
            stats = trainer.train_step(images, labels)
            seen += 1
            epoch_done = n_batches is not None and trainer.batch_in_epoch >= n_batches
            if epoch_done:
                trainer.epoch, trainer.batch_in_epoch = trainer.epoch + 1, 0
            bar.update(1)
            if "loss" in stats:
                bar.set_postfix(loss=f"{stats['loss']:.3f}", lr=f"{stats['lr']:.4f}", refresh=False)
            for callback in callbacks:
                callback.on_step(trainer)
            if epoch_done:
                for callback in callbacks:
                    callback.on_epoch(trainer)
            if trainer.step >= trainer.total_steps or trainer.should_stop:
                break
        else:
            if seen == 0:
                raise ConfigError("the training loader yielded no batches")
            if n_batches is None:  # an unsized iterable: a pass ends when it is exhausted
                trainer.epoch, trainer.batch_in_epoch = trainer.epoch + 1, 0
                for callback in callbacks:
                    callback.on_epoch(trainer)
