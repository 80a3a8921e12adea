"""Device names in configs (``auto``, ``cpu``, ``cuda``, ``cuda:N``): validated and resolved in one place."""

from __future__ import annotations

import torch

from nat.errors import ConfigError


def resolve_device(name: str | torch.device) -> torch.device:
    """The `torch.device` for a config's device name; a `ConfigError` for a name torch does not know
    or for CUDA on a machine without it. ``auto`` is CUDA when available, else the CPU."""
    if isinstance(name, torch.device):
        name = str(name)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda, cuda:N or auto") from None
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"device {name!r} is not supported; use cpu, cuda, cuda:N or auto")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {name!r} requested but CUDA is not available; use device: cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(f"device {name!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device
