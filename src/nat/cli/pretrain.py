"""``nat pretrain``: progressive-shrinking pretraining of a supernet (OFA), resumable from its folder."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nat.cli.args import PRECISIONS, continue_command, positive_int
from nat.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "pretrain",
        help="pretrain a supernet by progressive shrinking (OFA)",
        description="Train an elastic supernet phase by phase (full network, then elastic kernel, depth "
        "and expansion with in-place distillation). Everything goes into --out: the resolved config, "
        "metrics.jsonl, a checkpoint replaced at every epoch end and every checkpoint_every steps, and "
        "finally supernet.safetensors and summary.json. An interrupted run continues with --resume DIR.",
    )
    parser.add_argument("--config", metavar="FILE", help="YAML config (see configs/pretrain_*.yaml)")
    parser.add_argument("--out", metavar="DIR", help="run folder (created; must not hold another run)")
    parser.add_argument("--resume", metavar="DIR", help="continue the run in DIR from its last checkpoint")
    parser.add_argument("--seed", type=int, help="run seed (config field seed)")
    parser.add_argument("--device", help="cpu, cuda, cuda:N or auto (config field device)")
    parser.add_argument("--threads", type=positive_int, help="torch CPU threads (config field threads)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="forward passes in fp32, bf16 or fp16 (config field precision; default fp32)",
    )
    parser.add_argument(
        "--stop-after-steps",
        type=positive_int,
        metavar="N",
        help="checkpoint and exit after N optimiser steps of this process (resume later with --resume)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run, continue_with=_continue)


def run(args: argparse.Namespace) -> int:
    from nat.runtime import process_settings
    from nat.runtime.distributed import DEFAULT_TIMEOUT_MINUTES, distributed_session
    from nat.train.config import load_pretrain_config
    from nat.train.progressive import PretrainingTrainer

    overrides = {
        "seed": args.seed,
        "device": args.device,
        "threads": args.threads,
        "precision": args.precision,
    }
    if args.resume:
        if args.out and Path(args.out).resolve() != Path(args.resume).resolve():
            raise ConfigError("--out and --resume name different folders; --resume DIR alone is enough")
        out = Path(args.resume)
        cfg = load_pretrain_config(args.config, overrides) if args.config else None
        if cfg is None and any(v is not None for v in overrides.values()):
            raise ConfigError("--seed/--device/--threads/--precision cannot change a run being resumed")
    else:
        if not args.config or not args.out:
            raise ConfigError("give --config FILE and --out DIR (or --resume DIR to continue a run)")
        out = Path(args.out)
        cfg = load_pretrain_config(args.config, overrides)
    # under torchrun the processes join one job, with the device and timeout of the config (a resumed run
    # without --config: the saved one where this process can read it, else auto and the default)
    device, timeout = "auto", DEFAULT_TIMEOUT_MINUTES
    launch = cfg if cfg is not None else _saved_config_or_none(out)
    if launch is not None:
        device, timeout = launch.device, launch.distributed_timeout_minutes
    with distributed_session(device, timeout) as collective:
        # the folder and config are checked before anything is written (a search run's folder is refused)
        trainer = PretrainingTrainer(
            cfg,
            out,
            resume=bool(args.resume),
            progress=not args.no_progress,
            stop_after_steps=args.stop_after_steps,
            collective=collective,
        )
        with process_settings(trainer.cfg):
            summary = trainer.run()  # rank 0 holds the folder's lock (a second writer fails at once) and log
        if not collective.is_main:
            return 0
    print(json.dumps(summary, indent=2))
    return 0


def _saved_config_or_none(out: Path):
    """The config saved in a pretraining folder, or None if this process cannot read a valid one (the
    trainer then reports what is wrong, or, under torchrun, takes rank 0's)."""
    from nat.errors import NATError
    from nat.train.progressive import load_saved_config

    try:
        return load_saved_config(out)
    except (NATError, OSError):
        return None


def _continue(args: argparse.Namespace) -> str | None:
    return continue_command("pretrain", args.resume or args.out)
