"""Version stamps: which libraries and machine a run folder was made with (its ``versions.json``)."""

from __future__ import annotations

import platform

import numpy
import torch


def library_versions() -> dict[str, str]:
    """nat, Python, torch, numpy, pydantic and the platform, as strings (a run's provenance).

    Also which kernel computes the CPU depthwise weight gradient (nat's C kernel or PyTorch's): the
    two agree up to float rounding, which a search can amplify, so a run records which one it had."""
    import pydantic

    import nat
    from nat.supernet import native

    return {
        "nat": getattr(nat, "__version__", "unknown"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "pydantic": pydantic.__version__,
        "platform": platform.platform(),
        "torch_threads": str(torch.get_num_threads()),
        "cpu_depthwise_weight_grad": "nat C kernel" if native.depthwise_weight_grad_library() else "PyTorch",
    }
