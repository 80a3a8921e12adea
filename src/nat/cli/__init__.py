"""The `nat` command line: one entry point, one module per sub-command.

Each command module exposes ``register(subparsers)`` which adds its parser and sets ``func`` (a callable
taking the parsed namespace and returning an exit code). Commands are imported lazily by name so that
``nat --help`` stays fast and a broken optional dependency only affects its own command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Sequence

from nat.cli.args import helper_rank, torchrun_world
from nat.errors import DistributedError, NATError

#: sub-command modules, in the order ``nat --help`` lists them
COMMAND_MODULES: tuple[str, ...] = (
    "nat.cli.profile",
    "nat.cli.data",
    "nat.cli.supernet",
    "nat.cli.search",
    "nat.cli.retarget",
    "nat.cli.export",
    "nat.cli.report",
    "nat.cli.eval",
    "nat.cli.predict",
    "nat.cli.pretrain",
    "nat.cli.latency",
    "nat.cli.quickstart",
)


#: sub-commands that run under torchrun (several processes sharing the work, docs/scale.md); the others
#: refuse, rather than run N copies of the same work against the same folders
TORCHRUN_COMMANDS = frozenset({"search", "retarget", "pretrain", "export"})


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nat",
        description="Neural Architecture Transfer: task-specific Pareto-optimal subnets from a supernet.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:  # command not shipped in this build
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    helper = helper_rank()  # under torchrun, rank 0 speaks for the job: the others log warnings only
    # nat's own progress lines at INFO; other libraries' (torch.onnx, onnxscript...) only when they warn,
    # unless -v asks for everything
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    if not args.verbose:
        logging.getLogger("nat").setLevel(logging.WARNING if helper else logging.INFO)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        if args.command not in TORCHRUN_COMMANDS and torchrun_world() > 1:
            raise DistributedError(
                f"nat {args.command} does not share work between processes: run it as one process, "
                f"without torchrun (nat search, nat retarget, nat pretrain and nat export run under torchrun)"
            )
        return int(args.func(args) or 0)
    except NATError as exc:
        return _fail(args.command, str(exc))
    except BrokenPipeError:  # e.g. `nat data list | head`
        sys.stderr.close()
        return 0
    except OSError as exc:  # the file system said no: a path, a permission, a full disk
        return _fail(args.command, os_error_message(exc))
    except UnicodeDecodeError as exc:
        return _fail(args.command, f"a file is not UTF-8 text (binary?): {exc.reason} at byte {exc.start}")
    except KeyboardInterrupt:
        hint = getattr(args, "continue_with", None)  # a command that can pick up where it stopped says how
        again = hint(args) if hint is not None else None
        print(
            f"nat {args.command}: interrupted{f'; continue with: {again}' if again else ''}", file=sys.stderr
        )
        return 130


def _fail(command: str, message: str) -> int:
    """One line on stderr, whatever the message holds (a newline inside would break the promise); under
    torchrun, a rank other than 0 says which it is."""
    who = f"(rank {os.environ['RANK']}) " if helper_rank() else ""
    print(f"nat {command}: error: {who}{' '.join(message.split())}", file=sys.stderr)
    return 1


def os_error_message(exc: OSError) -> str:
    """``what happened: PATH`` for an `OSError`, with advice for the cases a user can fix."""
    import errno

    where = f": {exc.filename}" if exc.filename else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"{reason}{where}; free some space, then run the same command again (runs resume)"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"{reason}{where}; choose a folder you can write to"
    return f"{reason}{where}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
