"""``nat report RUN_DIR``: (re)write a run's report.html, front.png and summary.md from its folder alone."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "report",
        help="(re)write a run's report.html, front.png, summary.md",
        description="Write report.html (self-contained), front.png and summary.md of a run from its folder "
        "alone (config, archive, state, models.json): no data, no supernet; nothing else in it changes.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nat.search.finalize import write_run_report
    from nat.search.rundir import RunDir

    with RunDir.open(args.run_dir, lock=True) as run_dir:
        paths = write_run_report(run_dir)
    for kind in ("html", "png", "markdown"):
        if kind in paths:
            print(paths[kind])
    return 0
