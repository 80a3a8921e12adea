"""Training and running one extracted network (a `StaticMobileNetV3`), optionally under ``torch.compile``.

A front member is normally fine-tuned inside a copy of its supernet (the subnet's weights are slices of
the shared ones). With ``finalize.compile`` it is fine-tuned as the standalone network it is exported as:
a fixed graph of plain convolutions that ``torch.compile`` can trace once and fuse, which the supernet's
per-step slicing and elastic kernels cannot offer. `StandaloneTrainee` lets the same `SupernetTrainer`
(schedule, distillation, precision, DDP, resume) train it, so the two paths differ only in what is
trained: the standalone kernels directly, instead of the supernet's shared ones through OFA's kernel
transformations.

Whether compiling pays off depends on the device and on how long the model runs: compiling costs
tens of seconds to minutes per architecture (each front member is a new graph), and on CPU a compiled
training step was measured *slower* than eager (docs/scale.md, ``bench/compile_speed.py``). It is off by
default.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nat.errors import ConfigError
from nat.space.subnet import Subnet

#: what ``compile: true`` means: torch.compile's default backend
DEFAULT_BACKEND = "inductor"


def compile_backends(debug: bool = True) -> list[str]:
    """The backend names this torch accepts in ``torch.compile(backend=...)``; ``debug=False`` leaves
    out torch's debugging and experimental ones (``aot_eager`` and the like), as error messages do."""
    return sorted(torch.compiler.list_backends(exclude_tags=() if debug else ("debug", "experimental")))


def unknown_backend(name: str) -> str:
    return (
        f"unknown torch.compile backend {name!r}; use true (inductor), false, or one of: "
        f"{', '.join(compile_backends(debug=False))} (or one of torch's debug backends, e.g. aot_eager)"
    )


def backend_name(setting: bool | str) -> str | None:
    """The torch.compile backend a ``compile`` setting asks for (None: do not compile)."""
    if setting is False:
        return None
    return DEFAULT_BACKEND if setting is True else str(setting)


def compiled(module: nn.Module, backend: str | None) -> Callable[..., torch.Tensor]:
    """``module`` under ``torch.compile(backend=...)``, or ``module`` itself when ``backend`` is None.
    The compiled callable shares the module's parameters and buffers (and its train/eval mode)."""
    if backend is None:
        return module
    if backend not in compile_backends():
        raise ConfigError(unknown_backend(backend))
    return torch.compile(module, backend=backend)


class StandaloneTrainee(nn.Module):
    """A standalone network seen by `SupernetTrainer` as a supernet with a single subnet: its own.

    ``network`` is a `StaticMobileNetV3` (it owns the parameters, so the optimiser, DDP and state dicts
    see only its weights); forward passes go through ``forward_fn`` when given (its compiled form).
    Asking it to activate any other subnet is an error, never a silent substitution.
    """

    def __init__(self, network: nn.Module, forward_fn: Callable[..., torch.Tensor] | None = None) -> None:
        super().__init__()
        self.network = network
        self.space = network.space
        self.width_mult = network.subnet.w
        self.active: Subnet = network.subnet
        # a plain attribute, not a submodule: the compiled wrapper holds the same parameters again
        object.__setattr__(self, "_forward_fn", network if forward_fn is None else forward_fn)

    def set_active(self, subnet: Subnet) -> None:
        if subnet != self.active:
            raise ConfigError(f"this standalone network is {self.active}; it cannot run {subnet}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_fn(x)
