"""``nat export RUN_DIR``: front members of a finished or interrupted run as model folders, no searching."""

from __future__ import annotations

import argparse
import shutil
from contextlib import nullcontext
from pathlib import Path

from nat.cli.args import (
    PRECISIONS,
    helper_rank,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)
from nat.errors import NATError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="extract (fine-tune, test) front models of a run folder",
        description="Extract front members of a finished or interrupted run as standalone model folders "
        "(optionally fine-tuned and tested), without searching. Without --out the models go into "
        "RUN_DIR/models/ (and the run's report is rewritten); with --out DIR the run folder is only read.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR")
    parser.add_argument(
        "--models", type=non_negative_int, default=None, help="front members to extract (default: the run's)"
    )
    parser.add_argument(
        "--finetune-epochs", type=non_negative_float, default=None, help="fine-tuning epochs per model"
    )
    parser.add_argument("--lr", type=positive_float, default=None, help="fine-tuning learning rate")
    parser.add_argument(
        "--distill",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="distil from the adapted supernet's largest subnet when fine-tuning (default: on)",
    )
    parser.add_argument(
        "--onnx", action="store_true", default=None, help="also write model.onnx (ONNX Runtime)"
    )
    parser.add_argument(
        "--executorch",
        action="store_true",
        default=None,
        help="also write model.pte (ExecuTorch, XNNPACK, batch 1; needs pip install 'nat[deploy]')",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        default=None,
        help="also write the int8 file of each runtime asked for (model.int8.onnx, model.int8.pte)",
    )
    parser.add_argument(
        "--calibration-images",
        type=non_negative_int,
        default=None,
        metavar="N",
        help="training images that calibrate the int8 quantization (default: the run's, 256)",
    )
    parser.add_argument(
        "--latency-threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads for each file's batch-1 latency (default: 1)",
    )
    parser.add_argument(
        "--no-test", dest="test", action="store_false", default=None, help="skip the test split"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="write the models here instead of RUN_DIR/models"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="torch CPU threads (default: the run's)"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="fine-tune and test in fp32, bf16 or fp16 (default: the run's precision)",
    )
    parser.add_argument(
        "--compile",
        nargs="?",
        const=True,
        default=None,
        metavar="BACKEND",
        help="fine-tune and test each model as its standalone network under torch.compile (default "
        "backend: inductor); slower than eager on CPU (docs/scale.md)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nat.runtime.distributed import DEFAULT_TIMEOUT_MINUTES, distributed_session
    from nat.runtime.threads import torch_threads
    from nat.search.finalize import MODELS_DIR, MODELS_INDEX, export_run_models, write_run_report
    from nat.search.parts import RunParts
    from nat.search.rundir import RunDir

    _check_request(args)
    if _refits(args) is False:  # nothing asked that changes the models: the delivered ones, as they are
        delivered = _delivered_models(args)
        if delivered is not None:
            return delivered
    # under torchrun every process fine-tunes (DDP); rank 0 alone reads the run folder and writes
    try:
        saved = RunDir.saved_config(args.run_dir)
        device, timeout = saved.device, saved.distributed_timeout_minutes
    except (NATError, OSError):  # rank 0 reports what is wrong with the folder; the others follow it
        device, timeout = "auto", DEFAULT_TIMEOUT_MINUTES
    with distributed_session(device, timeout) as collective:
        # rank 0 alone reads the folder; a refusal there ends every rank with the same line
        run_dir = collective.on_main(lambda: RunDir.open(args.run_dir, lock=args.out is None))
        try:
            config, settings, front = collective.decide(lambda: _plan(args, run_dir))
            if args.out is None:
                folder, index = args.run_dir / MODELS_DIR, args.run_dir / MODELS_INDEX
            else:
                folder, index = args.out, args.out / MODELS_INDEX
            with (
                torch_threads(args.threads or config.threads),
                run_dir.logging() if run_dir is not None and args.out is None else nullcontext(),
            ):
                parts = RunParts.build(config, run_dir, collective)
                models = export_run_models(parts, front, settings, folder, args.run_dir, index, collective)
                if run_dir is not None and args.out is None:
                    write_run_report(run_dir, models)
        finally:
            if run_dir is not None:
                run_dir.close()
        if not collective.is_main:
            return 0
    print(f"{len(models)} model(s) in {folder} (index {index})")
    _print_models(models)
    return 0


#: the flags that make new models (another selection, fine-tuning or precision) instead of converting
#: the delivered ones
REFIT_FLAGS = ("models", "finetune_epochs", "lr", "distill", "compile", "precision")


def _refits(args: argparse.Namespace) -> bool:
    return any(getattr(args, flag) is not None for flag in REFIT_FLAGS)


def _delivered_models(args: argparse.Namespace) -> int | None:
    """Export the models the run delivered as they are (same names, weights and figures): copied to
    ``--out`` and/or given the runtime files asked for, each measured in its runtime. None when the run
    delivered none yet (then they are made)."""
    from nat.files import write_json_atomic
    from nat.search.finalize import MODELS_DIR, MODELS_INDEX, read_index, write_run_report
    from nat.search.rundir import RunDir

    if helper_rank():  # under torchrun rank 0 alone copies; nothing to share
        return 0
    run_dir = RunDir.open(args.run_dir, lock=args.out is None)
    try:
        run_dir.read_state()
        entries = read_index(run_dir.path / MODELS_INDEX, run_dir.path)
        if not entries:
            return None
        settings = _settings(args, run_dir.config)
        tasks = _checked_tasks(entries, settings, run_dir.config) if settings.deploys else {}
        source = run_dir.path / MODELS_DIR
        folder = source if args.out is None else args.out
        index = run_dir.path / MODELS_INDEX if args.out is None else args.out / MODELS_INDEX
        if args.out is not None:
            entries = _copied(entries, source, folder)
            write_json_atomic(index, entries)
        if settings.deploys:
            entries = _with_formats(entries, folder, settings, run_dir.config, tasks)
            write_json_atomic(index, entries)
            if args.out is None:
                write_run_report(run_dir, entries)
    finally:
        run_dir.close()
    where = "copied to" if args.out is not None else "in"
    print(f"{len(entries)} model(s) as the run delivered them, {where} {folder} (index {index})")
    _print_models(entries)
    print("(new models from the front: --models, --finetune-epochs, --lr, --distill, --precision, --compile)")
    return 0


def _checked_tasks(entries: list[dict], settings, config) -> dict:
    """The data of every task the entries were made for (read once each), with the request checked
    against it (runtime packages, calibration count) before anything is copied or written."""
    from nat.data import load_from_config
    from nat.search.formats import check_request

    tasks: dict = {}
    for entry in entries:
        if entry.get("task") not in tasks:
            cfg = config.for_task(entry["task"]) if entry.get("task") else config
            tasks[entry.get("task")] = task = load_from_config(cfg.data, cfg.seed)
            check_request(settings, task)
    return tasks


def _with_formats(entries: list[dict], folder: Path, settings, config, tasks: dict) -> list[dict]:
    """The entries with their runtime files written and measured on their task's data."""
    from nat.search.formats import deliver_formats

    out = []
    for entry in entries:
        cfg = config.for_task(entry["task"]) if entry.get("task") else config
        formats = deliver_formats(
            folder / entry["name"], entry, settings, tasks[entry.get("task")], cfg.data, cfg.seed
        )
        out.append({**entry, "formats": formats} if formats else entry)
    return out


def _print_models(models: list[dict]) -> None:
    for m in models:
        test = f"  test top-1 {100 * m['test_top1']:.2f}%" if "test_top1" in m else ""
        print(f"  {m['name']:<22} MAdds {m['madds'] / 1e6:7.2f}M  params {m['params'] / 1e6:.3f}M{test}")
        for name, f in (m.get("formats") or {}).items():
            top1 = f"top-1 {100 * f['test_top1']:.2f}%  " if f.get("test_top1") is not None else ""
            print(
                f"    {name:<16} {f['file']:<18} {f['size_bytes'] / 1e6:7.2f} MB  {top1}"
                f"{f['latency_ms']:.3f} ms (batch 1, {f['threads']} thread(s))"
            )


def _copied(entries: list[dict], source: Path, out: Path) -> list[dict]:
    """The delivered models copied into ``out``; a folder there that already holds the same weights (an
    earlier export of this run) is kept with its runtime files and their figures, so they are not made
    and measured again."""
    from nat.files import sha256_file
    from nat.search.finalize import MODELS_INDEX, read_index

    earlier = {e["name"]: e for e in read_index(out / MODELS_INDEX)} if (out / MODELS_INDEX).is_file() else {}
    copied = []
    for entry in entries:
        name = entry["name"]
        kept = out / name / "model.safetensors"
        if kept.is_file() and sha256_file(kept) == sha256_file(source / name / "model.safetensors"):
            formats = (earlier.get(name) or {}).get("formats")
            copied.append({**entry, "formats": formats} if formats else entry)
            continue
        _copy_folder(source / name, out / name)
        copied.append(entry)
    return copied


def _copy_folder(source: Path, target: Path) -> None:
    """``source`` copied to ``target`` whole: into a temporary sibling first, then moved into place."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def _check_request(args: argparse.Namespace) -> None:
    """Refuse, before anything is read or written, an export that would change what it was not asked
    to: no models (``--models 0`` would empty the run's delivered models), or an ``--out`` inside the
    run folder or any other run folder (it would overwrite that run's own models and index)."""
    from nat.errors import ConfigError
    from nat.run_folder import enclosing_run

    if args.models == 0:
        raise ConfigError(
            "--models 0 exports nothing (and would remove the run's delivered models); give --models 1 or "
            "more, or leave it out for the run's own number"
        )
    if args.out is None:
        return
    out, run = args.out.resolve(), args.run_dir.resolve()
    if out == run:
        raise ConfigError("--out is the run folder itself; leave --out out to write into RUN_DIR/models")
    if out.is_relative_to(run):
        raise ConfigError(
            f"--out {args.out} is inside the run folder {args.run_dir}; with --out the run folder is only "
            "read: choose a folder outside it, or leave --out out to write into RUN_DIR/models"
        )
    holder = enclosing_run(out)
    if holder is not None:
        raise ConfigError(
            f"--out {args.out} is inside the run folder {holder}, whose files an export must not replace; "
            "choose a folder outside any run folder"
        )


def _settings(args: argparse.Namespace, config):
    """The run's ``finalize`` settings with the flags' changes, validated as the config is (a refusal
    names the flag)."""
    from nat.search.config import finalize_settings

    changes = {
        "models": args.models,
        "finetune_epochs": args.finetune_epochs,
        "lr": args.lr,
        "distill": args.distill,
        "onnx": args.onnx,
        "executorch": args.executorch,
        "int8": args.int8,
        "calibration_images": args.calibration_images,
        "latency_threads": args.latency_threads,
        "test": args.test,
        "compile": args.compile,
    }
    return finalize_settings(
        config.finalize, changes, name=lambda path: path and f"--{path.replace('_', '-')}"
    )


def _plan(args: argparse.Namespace, run_dir):
    """The config, fine-tuning settings and front of the export (the run's, with the flags' changes)."""
    from nat.errors import ConfigError
    from nat.search.finalize import MODELS_INDEX, read_index
    from nat.search.objective_set import pareto_front

    config = run_dir.config
    if args.out is None:  # the run's own index and report are rewritten: check what they hold first
        run_dir.read_state()
        read_index(run_dir.path / MODELS_INDEX, run_dir.path)
    if args.precision is not None:  # the models' precision only: the run's own config is not changed
        config = config.model_copy(update={"precision": args.precision})
    settings = _settings(args, config)
    front = pareto_front(run_dir.archive.current(), config.objective_names, config.constraints)
    if not front:
        raise ConfigError(
            f"{args.run_dir} has no evaluated subnets within its constraints yet; nothing to export"
        )
    return config, settings, front
