"""``nat supernet``: OFA's published ImageNet supernets, fetched once and used by every search.

``download`` fetches one (resumable, checked, sha256 recorded) into nat's supernet folder or ``--to``;
``list`` shows which are there and the ``supernet:`` line that uses them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from nat.supernet.zoo import DIR_VARIABLE, ZOO, describe, downloaded, supernet_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "supernet",
        help="OFA's pretrained ImageNet supernets: download them, list what is here",
        description="The pretrained supernets a search starts from. A search without `supernet:` uses "
        f"the ones downloaded here (folder: ${DIR_VARIABLE}, default ~/.cache/nat/supernets), else nat's "
        "built-in one where it fits the data.",
    )
    commands = parser.add_subparsers(dest="supernet_command", metavar="ACTION")
    fetch = commands.add_parser(
        "download",
        help="fetch one of OFA's ImageNet supernets (resumable; checked before it is kept)",
        description="Fetch OFA's MobileNetV3 supernet from the address OFA's package uses, check that it "
        "loads as that architecture (weights only: every key and shape), record its sha256 beside it and "
        "print the `supernet:` line that uses it. An interrupted download continues where it stopped.",
    )
    fetch.add_argument("names", nargs="+", metavar="NAME", help=f"one or more of {', '.join(ZOO)}")
    fetch.add_argument(
        "--to", type=Path, help=f"folder to keep it in (default: ${DIR_VARIABLE} or ~/.cache/nat/supernets)"
    )
    fetch.add_argument("--url", help="download from this address instead of OFA's (a mirror; one NAME)")
    fetch.set_defaults(func=run_download)
    listing = commands.add_parser("list", help="the supernets nat can download and those already here")
    listing.add_argument("--dir", type=Path, help="folder to look in (default: nat's supernet folder)")
    listing.set_defaults(func=run_list)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def run_download(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from nat.errors import ConfigError
    from nat.supernet.zoo import download, zoo_entry

    if args.url and len(args.names) > 1:
        raise ConfigError("--url is the address of one supernet: give one NAME with it")
    entries = [zoo_entry(n) for n in args.names]  # every name checked before anything is fetched
    paths = []
    for entry in entries:
        with tqdm(desc=entry.name, unit="B", unit_scale=True, disable=None, leave=False) as bar:

            def progress(done: int, total: int | None, bar: tqdm = bar) -> None:
                bar.total = total
                bar.update(done - bar.n)

            path = download(entry.name, args.to, url=args.url, progress=progress)
        sha = describe(path).get("sha256", "?")
        print(f"{entry.name}: {path} (sha256 {sha})")
        paths.append(path)
    print("use it with:" if len(paths) == 1 else "use them with:")
    print(f"  supernet: {paths[0]}" if len(paths) == 1 else f"  supernet: [{', '.join(map(str, paths))}]")
    if args.to is not None and args.to.resolve() != supernet_dir().resolve():
        print(f"(a search finds it without a supernet: line when {DIR_VARIABLE}={args.to})", file=sys.stderr)
    return 0


def run_list(args: argparse.Namespace) -> int:
    folder = args.dir or supernet_dir()
    here = downloaded(folder)
    print(f"folder: {folder}")
    for name, entry in ZOO.items():
        state = f"{here[name]}" if name in here else f"not here (nat supernet download {name})"
        print(f"  {name:<14} width {entry.width}  {state}")
    return 0
