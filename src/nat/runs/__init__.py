"""The run layer: the one entry point that starts, resumes and finishes a search (`run_search`), and
the kinds of run built on it (`run_retarget`: a finished search aimed at a new target).

`nat search`, `nat quickstart` and `nat.search(...)` all run a search through `run_search`, so a run
folder is opened, resumed, locked and run under torchrun by one piece of code with one rule:

* ``resume=None`` (the library's and the quickstart's rule): a folder that already holds a run's
  records continues it; an empty or new folder starts one;
* ``resume=True`` (``nat search --resume``): the folder must hold a run;
* ``resume=False`` (``nat search --out``): the folder must not hold one.
"""

from nat.runs.entry import SearchResult, holds_run, run_search
from nat.runs.retarget import run_retarget

__all__ = ["SearchResult", "holds_run", "run_retarget", "run_search"]
