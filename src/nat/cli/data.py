"""``nat data``: inspect datasets (``info``) and list the registered ones (``list``).

``info`` reads the set exactly as a run would (same layout checks, same hold-out) but does not decode
file-based sets into memory, so it is quick even for large folders.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from nat.errors import DataError


def _fmt_size(info: dict[str, Any]) -> str:
    size = info["image_size"]
    return f"{size[0]}x{size[1]}" if size else "variable size"


def cmd_info(args: argparse.Namespace) -> int:
    """Print a dataset's classes, split sizes and provenance (``--json``: one JSON object)."""
    from nat.data import load_dataset

    try:
        task = load_dataset(args.dataset, args.root, val_size=args.val_size, seed=args.seed, in_memory=False)
    except OSError as exc:  # e.g. permission denied deep inside a folder: still the user's data
        raise DataError(f"cannot read dataset {args.dataset!r}: {exc}") from None
    info = task.info()
    if args.json:
        json.dump(info, sys.stdout)
        sys.stdout.write("\n")
        return 0
    out = sys.stdout
    out.write(
        f"{info['name']}: {info['num_classes']} classes, {info['channels']} channel(s), {_fmt_size(info)}, "
        f"stored as {info['storage']}\n"
    )
    total = sum(info["splits"].values())
    for split, count in info["splits"].items():
        extra = f"  ({info['val_origin']})" if split == "val" else ""
        out.write(f"  {split:<5} {count:>9,}{extra}\n")
    out.write(f"  {'total':<5} {total:>9,}\n")
    if info["root"]:
        out.write(f"  root: {info['root']}\n")
    if info["skipped_files"]:
        out.write(f"  skipped files (not readable images): {info['skipped_files']}\n")
    for note in info["notes"]:
        out.write(f"  note: {note}\n")
    names = info["class_names"]
    shown = ", ".join(names[:10]) + (f", ... ({len(names) - 10} more)" if len(names) > 10 else "")
    out.write(f"  classes: {shown}\n")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List registered datasets with their expected layout."""
    from nat.data.registry import get_entry, list_datasets

    entries = [get_entry(n) for n in list_datasets()]
    if args.json:
        rows = [
            {"name": e.name, "needs_root": e.needs_root, "layout": e.layout, "description": e.description}
            for e in entries
        ]
        json.dump(rows, sys.stdout)
        sys.stdout.write("\n")
        return 0
    for e in entries:
        sys.stdout.write(f"{e.name:<14} {e.description}\n{'':<14} layout: {e.layout}\n")
    return 0


def _val_size(text: str) -> float | int:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1) or a count, got {text!r}") from None
    if 0 < value < 1:
        return value
    if value >= 1 and value.is_integer():
        return int(value)
    raise argparse.ArgumentTypeError(f"expected a fraction in (0, 1) or a count >= 1, got {text!r}")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``nat data {info,list}``."""
    parser = subparsers.add_parser("data", help="inspect datasets", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    info = sub.add_parser("info", help="classes and split sizes of a dataset")
    info.add_argument("dataset", help="dataset name (see `nat data list`)")
    info.add_argument("--root", default=None, help="folder holding the dataset (not needed for offline sets)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.add_argument(
        "--val-size",
        type=_val_size,
        default=0.1,
        help="search-validation hold-out where the set has no official val (default 0.1)",
    )
    info.add_argument("--seed", type=int, default=0, help="seed of the search-validation hold-out")
    info.set_defaults(func=cmd_info)

    lst = sub.add_parser("list", help="registered datasets and their expected layouts")
    lst.add_argument("--json", action="store_true", help="print a JSON list")
    lst.set_defaults(func=cmd_list)

    def _help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=_help)
