"""``nat retarget``: a finished search aimed at new objectives or constraints, without training again."""

from __future__ import annotations

import argparse
from pathlib import Path

from nat.cli.args import continue_search, non_negative_float, non_negative_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "retarget",
        help="aim a finished search at new objectives or constraints (minutes, no new training)",
        description="Start a new run from a finished one: every subnet it measured keeps its top-1, "
        "complexity and latency are recomputed for the new objectives, and a short NAT search on its "
        "adapted supernet follows; then the front's models and report, as `nat search` delivers them. "
        "RUN_DIR is only read. Change the target with --set (e.g. --set constraints.params=2e6, --set "
        "objectives=[top1,latency] --set latency.table=phone.yaml). docs/transfer_search.md",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the finished search to start from")
    parser.add_argument("--out", type=Path, required=True, help="the new run folder (created)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="change a field of the source's config (objectives, constraints, latency, finalize, ...)",
    )
    parser.add_argument(
        "--iterations",
        type=non_negative_int,
        metavar="N",
        help="iterations of the search on the carried archive (default 2, each of twice the source's "
        "candidates; 0: the carried front only)",
    )
    parser.add_argument(
        "--adapt-epochs",
        type=non_negative_float,
        metavar="E",
        help="adapt the supernet E epochs per iteration on subnets that meet the new target (default 0)",
    )
    parser.set_defaults(func=run, continue_with=lambda args: continue_search(args.out))


def run(args: argparse.Namespace) -> int:
    from nat.cli.search import parse_overrides, print_result
    from nat.runs import run_retarget
    from nat.search.rundir import RunDir

    overrides = parse_overrides(args.set, None)
    result = run_retarget(
        args.run_dir, args.out, overrides, iterations=args.iterations, adapt_epochs=args.adapt_epochs
    )
    return print_result(RunDir.saved_config(result.run_dir), result)
