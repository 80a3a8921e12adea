"""Running nat under ``torchrun``: one process per device, PyTorch's torch.distributed underneath.

``torchrun --nproc_per_node N -m nat search ...`` starts N copies of the command; torchrun sets
``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` and the rendezvous address in each one's environment.
`distributed_session` reads them, joins the process group (NCCL on CUDA, gloo on CPU, with a timeout on
every collective) and gives back a `Collective`: this process's rank and the few collective operations
nat needs. A plain ``nat search`` (no torchrun, or ``WORLD_SIZE=1``) gets the one-process `Collective`,
whose operations are identities, so the search code has one path for both.

What each part does with more than one process:

* training (adaptation, pretraining): `DistributedDataParallel` in the training engine; every rank
  trains the *same* subnet each step, on its share of the configured batch (`batch_rows`);
* evaluation: the subnets to measure are dealt out (`balanced_shares`), each rank measures its share
  with its own replica of the supernet, the values are gathered (`Collective.gather`);
* everything else (surrogates, NSGA-III, the run folder, finalisation) runs on rank 0, which
  broadcasts what the others need (`Collective.broadcast`).

A collective that fails or waits longer than the timeout (a rank died or hangs) becomes a
`DistributedError`: one line naming the operation, never a silent hang.
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

import nat.errors
from nat.errors import ConfigError, DistributedError, NATError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: default seconds a collective may wait for the other processes (rank 0's surrogate fit and NSGA-III
#: run while the others wait, so this bounds that too)
DEFAULT_TIMEOUT_MINUTES = 30.0


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(
            f"environment variable {name}={value!r} is not an integer (set by torchrun)"
        ) from None


@dataclass(frozen=True)
class Collective:
    """This process's place in the job and the collectives nat uses (identities for one process)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def active(self) -> bool:
        """More than one process: collectives really communicate."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files and runs the serial parts of a search."""
        return self.rank == 0

    @classmethod
    def current(cls) -> Collective:
        """The job as torch.distributed sees it now (one process when no group is initialised)."""
        if not (dist.is_available() and dist.is_initialized()):
            return cls()
        return cls(dist.get_rank(), dist.get_world_size(), _env_int("LOCAL_RANK", 0))

    # ----------------------------------------------------------------- devices
    def device_for(self, device: torch.device) -> torch.device:
        """The device of this process: on CUDA, one GPU per local rank (``cuda`` -> ``cuda:LOCAL_RANK``)."""
        if not self.active or device.type != "cuda":
            return device
        if device.index is not None and device.index != self.local_rank:
            raise ConfigError(
                f"device {str(device)!r} names one GPU, but under torchrun every process takes the GPU of "
                "its local rank; use device: cuda (or auto)"
            )
        return torch.device("cuda", self.local_rank)

    # ----------------------------------------------------------------- collectives
    def broadcast(self, obj: T | None) -> T:
        """Rank 0's ``obj`` on every rank (other ranks pass anything, usually None)."""
        if not self.active:
            return obj  # type: ignore[return-value]
        box = [obj]
        _collective("broadcast", lambda: dist.broadcast_object_list(box, src=0))
        return box[0]  # type: ignore[return-value]

    def on_main(self, fn: Callable[[], T]) -> T | None:
        """``fn()`` on rank 0 only (its result there, None elsewhere), and its refusal on every rank.

        A `NATError` or `OSError` that ``fn`` raises on rank 0 (a folder that is not a run, one that
        holds another run, a damaged file) is raised on every rank with the same message, so the
        whole job ends with rank 0's one-line reason before any collective work, instead of the other
        ranks failing later at a collective they wait for in vain."""
        if not self.active:
            return fn()
        result: T | None = None
        failure: BaseException | None = None
        outcome: tuple[str, ...] | None = None
        if self.is_main:
            try:
                result = fn()
            except NATError as exc:
                failure, outcome = exc, ("nat", type(exc).__name__, str(exc))
            except OSError as exc:
                failure = exc
                outcome = ("os", str(exc.errno or 0), exc.strerror or str(exc), str(exc.filename or ""))
        outcome = self.broadcast(outcome)
        if failure is not None:
            raise failure
        if outcome is not None:
            raise _rebuilt_failure(outcome)
        return result

    def decide(self, fn: Callable[[], T]) -> T:
        """``fn()`` computed on rank 0 and its result broadcast to every rank (`on_main`'s refusals)."""
        return self.broadcast(self.on_main(fn))

    def gather(self, obj: T) -> list[T]:
        """Every rank's ``obj``, in rank order, on every rank."""
        if not self.active:
            return [obj]
        out: list[Any] = [None] * self.world_size
        _collective("gather", lambda: dist.all_gather_object(out, obj))
        return out

    def sync_module(self, module: nn.Module) -> None:
        """Give every rank rank 0's parameters and buffers (after loading a checkpoint on rank 0, or to
        align BN running statistics after training)."""
        if not self.active:
            return

        def run() -> None:
            tensors = [t.data for t in [*module.parameters(), *module.buffers()]]
            by_kind: dict[tuple[torch.dtype, torch.device], list[torch.Tensor]] = {}
            for t in tensors:
                by_kind.setdefault((t.dtype, t.device), []).append(t)
            with torch.no_grad():
                for group in by_kind.values():  # one broadcast per dtype, not one per tensor
                    flat = torch.cat([t.reshape(-1) for t in group])
                    dist.broadcast(flat, src=0)
                    offset = 0
                    for t in group:
                        t.copy_(flat[offset : offset + t.numel()].view_as(t))
                        offset += t.numel()

        _collective("broadcast of the supernet weights", run)

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Each value averaged over the ranks (the same keys on every rank)."""
        if not self.active or not values:
            return values
        keys = sorted(values)
        gathered = self.gather([float(values[k]) for k in keys])
        return {k: sum(g[i] for g in gathered) / len(gathered) for i, k in enumerate(keys)}

    def barrier(self) -> None:
        if self.active:
            _collective("barrier", dist.barrier)


def _rebuilt_failure(outcome: tuple[str, ...]) -> BaseException:
    """On a rank other than 0, the exception rank 0 raised (as `Collective.on_main` broadcast it)."""
    if outcome[0] == "os":
        _, number, reason, filename = outcome
        return OSError(int(number), reason, filename or None)
    _, kind, message = outcome
    cls = getattr(nat.errors, kind, NATError)
    return cls(message) if isinstance(cls, type) and issubclass(cls, NATError) else NATError(message)


def _collective(what: str, op: Any) -> None:
    """Run a collective; a failure (peer gone, timeout) becomes a `DistributedError`."""
    try:
        op()
    except RuntimeError as exc:  # DistBackendError and DistError are RuntimeErrors: timeouts, closed sockets
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistributedError(
            f"rank {dist.get_rank() if dist.is_initialized() else '?'}: the {what} across processes failed "
            f"({first[:200]}); another process has probably died or hangs. Check its log; rerun the same "
            "torchrun command with --resume to continue"
        ) from None


def balanced_shares(costs: Sequence[float], world_size: int) -> list[list[int]]:
    """Indices of ``costs`` dealt out to ``world_size`` processes, longest first, each to the process
    with the least work so far (ties: the lowest rank); deterministic, so every rank computes the same
    deal. Each share is in increasing index order."""
    load = [0.0] * world_size
    shares: list[list[int]] = [[] for _ in range(world_size)]
    for i in sorted(range(len(costs)), key=lambda i: (-float(costs[i]), i)):
        rank = min(range(world_size), key=lambda r: (load[r], r))
        shares[rank].append(i)
        load[rank] += float(costs[i])
    return [sorted(s) for s in shares]


def batch_rows(batch_size: int, collective: Collective) -> tuple[int, int]:
    """The rows ``(start, stop)`` of a global batch that this rank trains on: contiguous equal shares,
    so that the ranks together see exactly the batch one process would."""
    if batch_size % collective.world_size:
        raise ConfigError(
            f"the training batch size {batch_size} does not split evenly over {collective.world_size} "
            f"processes; use a multiple of {collective.world_size} (data.train_batch_size)"
        )
    per = batch_size // collective.world_size
    return collective.rank * per, (collective.rank + 1) * per


def torchrun_world_size() -> int:
    """``WORLD_SIZE`` as torchrun set it (1 outside torchrun)."""
    return _env_int("WORLD_SIZE", 1)


@contextmanager
def distributed_session(
    device: str | torch.device, timeout_minutes: float = DEFAULT_TIMEOUT_MINUTES
) -> Iterator[Collective]:
    """Join torchrun's process group for the block (NCCL when ``device`` is CUDA, with gloo for CPU
    tensors; gloo otherwise) and leave it afterwards; outside torchrun, or inside a group already
    joined, nothing to do."""
    world = torchrun_world_size()
    if world <= 1 or dist.is_initialized():
        yield Collective.current()
        return
    from nat.runtime.device import resolve_device

    device = resolve_device(device)
    if not dist.is_available():
        raise DistributedError("this torch build has no torch.distributed; run without torchrun")
    rank, local_rank = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    # CUDA runs: NCCL for the GPU tensors, gloo for anything left on the CPU
    backend = "cpu:gloo,cuda:nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise DistributedError(
                f"local rank {local_rank} has no GPU: this machine has {torch.cuda.device_count()}; start at "
                "most that many processes per node (torchrun --nproc_per_node)"
            )
        torch.cuda.set_device(local_rank)
    try:
        dist.init_process_group(
            backend=backend, timeout=datetime.timedelta(minutes=timeout_minutes), rank=rank, world_size=world
        )
    except (RuntimeError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DistributedError(
            f"rank {rank} could not join the {world}-process job ({first[:200]}); start nat with torchrun "
            "(torchrun --nproc_per_node N -m nat ...) and check the rendezvous address"
        ) from None
    log.info("process %d of %d (local rank %d, %s)", rank, world, local_rank, backend)
    try:
        yield Collective.current()
    finally:
        dist.destroy_process_group()
