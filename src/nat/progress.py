"""Progress bars, one rule for every long piece of work: shown on a terminal, never in a log file.

A bar redrawn in a file is hundreds of lines of carriage returns (a redirected search log was 1,241 bar
lines out of 1,326), so bars appear only when stderr is a terminal (tqdm's own check). The environment
variable ``NAT_PROGRESS`` overrides it: ``1`` shows bars anyway, ``0`` hides them on a terminal too.
Each finished piece of work still logs one line of its own (steps, time, loss) wherever output goes.
"""

from __future__ import annotations

import os
from typing import Any

from tqdm import tqdm

VARIABLE = "NAT_PROGRESS"


def progress_bar(iterable: Any = None, *, show: bool = True, **kwargs: Any) -> tqdm:
    """A tqdm bar over ``iterable`` (or updated by hand), hidden unless stderr is a terminal or
    ``NAT_PROGRESS=1``; ``show=False`` hides it whatever the terminal (e.g. on ranks other than 0)."""
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(iterable, disable=_disable(show), **kwargs)


def _disable(show: bool) -> bool | None:
    """tqdm's ``disable``: True hides, False shows, None shows on a terminal only."""
    if not show:
        return True
    wanted = os.environ.get(VARIABLE, "").strip().lower()
    if wanted in ("0", "false", "no", "off"):
        return True
    if wanted in ("1", "true", "yes", "on"):
        return False
    return None
