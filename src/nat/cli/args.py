"""Argument types for numeric flags: a bad value is argparse's one-line usage error, before any work.

argparse then prints ``nat COMMAND: error: argument --models: ...`` and exits with code 2, so a negative
``--models`` or ``--finetune-epochs`` never reaches the code that would misread it.
"""

from __future__ import annotations

import argparse
import math
import os
import shlex
from pathlib import Path

#: choices of ``--precision`` (`nat.runtime.precision.PRECISIONS`, spelled out so that the CLI starts
#: without importing torch; a test keeps the two equal)
PRECISIONS = ("fp32", "bf16", "fp16")


def _number(text: str, kind: type) -> float | int:
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a{'n integer' if kind is int else ' number'}"
        ) from None
    if isinstance(value, float) and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


def non_negative_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def positive_int(text: str) -> int:
    value = int(_number(text, int))
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def non_negative_float(text: str) -> float:
    value = float(_number(text, float))
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value:g}")
    return value


def positive_float(text: str) -> float:
    value = float(_number(text, float))
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {value:g}")
    return value


def continue_command(command: str, folder: str | os.PathLike[str] | None) -> str | None:
    """``nat COMMAND --resume FOLDER``: how to continue work interrupted in ``folder`` (None before it
    held a run: its config.yaml is written first)."""
    if folder is None or not (Path(folder) / "config.yaml").is_file():
        return None
    return f"nat {command} --resume {shlex.quote(str(folder))}"


def continue_search(folder: str | os.PathLike[str] | None) -> str | None:
    """How to continue an interrupted search in ``folder``."""
    return continue_command("search", folder)


def torchrun_world() -> int:
    """The number of processes torchrun started (1 outside torchrun)."""
    value = os.environ.get("WORLD_SIZE", "1") or "1"
    return int(value) if value.isdigit() else 1


def helper_rank() -> bool:
    """Whether this process is a rank other than 0 of a torchrun job (rank 0 speaks for the job)."""
    return torchrun_world() > 1 and os.environ.get("RANK", "0") not in ("", "0")
