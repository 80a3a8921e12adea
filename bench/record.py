"""What every benchmark's result file records besides its figures: the machine, the threads, the commit.

A figure is only worth quoting with the machine and code that produced it (docs/results/), so every
`bench/NAME.py` writes its JSON through `write_result`, which adds them where the record does not hold
them already.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    """What a benchmark's result file records of the machine it ran on."""
    import torch

    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }


def code_version() -> str:
    """The commit of this checkout, with ``+changes`` if files differ from it ('unknown' outside git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"], cwd=ROOT, capture_output=True, text=True
        )
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head.stdout.strip() + ("+changes" if dirty.stdout.strip() else "")


def write_result(
    out: Path,
    record: dict[str, Any],
    indent: int = 1,
    *,
    threads: int | None = None,
    commit: str | None = None,
) -> None:
    """Write a benchmark's result file (JSON, folders made as needed) and say where. The machine, the
    torch threads (``threads``, else this process's) and the commit (``commit``: read when the benchmark
    started; else now) come first, unless ``record`` holds its own."""
    import torch

    known = {
        "machine": machine(),
        "threads": torch.get_num_threads() if threads is None else threads,
        "commit": commit or code_version(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**known, **record}, indent=indent) + "\n")
    print(f"wrote {out}")
