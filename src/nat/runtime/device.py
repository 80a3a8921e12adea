"""Device names in configs (``auto``, ``cpu``, ``cuda``, ``cuda:N``): validated and resolved in one place.

`check_device_name` is the syntax check (what config validators call at load time, on any machine);
`resolve_device` is the runtime check (it also needs CUDA to be there when a CUDA device is named).
"""

from __future__ import annotations

import torch

from nat.errors import ConfigError

#: how the accepted names are spelled out in messages
ALLOWED = "auto, cpu, cuda or cuda:N (N: a CUDA device index)"


def _parse(name: str) -> torch.device | None:
    """The `torch.device` a name stands for (``None`` for ``auto``); `ConfigError` for any other name."""
    if not isinstance(name, str):
        raise ConfigError(f"device must be a name ({ALLOWED}), got {name!r}")
    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device {name!r}; use {ALLOWED}") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported; use {ALLOWED}")
    return device


def check_device_name(name: str) -> str:
    """``name`` if it is a device name nat accepts (whether or not this machine has it), else a
    `ConfigError` that lists the accepted names."""
    _parse(name)
    return name


def resolve_device(name: str | torch.device) -> torch.device:
    """The `torch.device` for a config's device name; a `ConfigError` for a name torch does not know
    or for CUDA on a machine without it. ``auto`` is CUDA when available, else the CPU."""
    if isinstance(name, torch.device):
        name = str(name)
    device = _parse(name)
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available; use device: cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
