"""``nat eval MODEL --data DATASET``: top-1 and top-5 of a model folder, or of one of its deployed files
(``.onnx``, ``.pte``) run in its own runtime, on a dataset split."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nat.cli.args import PRECISIONS, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="top-1/top-5 of a model folder or deployed file on a dataset",
        description="Evaluate a model folder (nat's, or a NAT release folder with net.config and "
        "net.weights), or one of its deployed files (model.onnx, model.int8.onnx, model.pte, "
        "model.int8.pte: run in ONNX Runtime or ExecuTorch, with its batch-1 latency), on a dataset split, "
        "with nat's evaluation preprocessing at the model's resolution. On the run's own dataset the split "
        "and normalisation are the run's, so the test figure equals the one in the run's models.json.",
    )
    parser.add_argument(
        "model_dir", type=Path, metavar="MODEL", help="a model folder, or a .onnx/.pte file in one"
    )
    parser.add_argument(
        "--format",
        default=None,
        choices=["pytorch", "onnx", "onnx_int8", "executorch", "executorch_int8"],
        help="which of the folder's files to run (default: the PyTorch weights, or the file given)",
    )
    parser.add_argument("--data", required=True, metavar="DATASET", help="dataset name (see `nat data list`)")
    parser.add_argument("--root", type=Path, default=None, help="dataset folder (for on-disk sets)")
    parser.add_argument("--split", choices=["test", "val"], default="test")
    parser.add_argument("--batch-size", type=positive_int, default=None, help="evaluation batch size")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto")
    parser.add_argument("--threads", type=positive_int, default=None, help="torch CPU threads")
    parser.add_argument(
        "--precision", choices=PRECISIONS, default="fp32", help="forward passes in fp32, bf16 or fp16"
    )
    parser.add_argument("--json", action="store_true", help='print {"top1": ..., "top5": ..., "images": ...}')
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch
    from pydantic import ValidationError

    from nat.config_io import validation_message
    from nat.data import load_from_config, loader_from_config
    from nat.data.config import DataConfig
    from nat.errors import ConfigError
    from nat.export.deploy import open_runner
    from nat.runtime.device import resolve_device
    from nat.runtime.threads import torch_threads
    from nat.train import evaluate_accuracy

    target = deployed_file(args.model_dir, args.format)  # None: the PyTorch model of a folder
    if target is not None:
        args.model_dir = target.parent
        if args.device != "cpu" or args.precision != "fp32":
            raise ConfigError(f"{target.name} runs on the CPU in fp32 (its runtime's own precision)")
    device = resolve_device(args.device)
    meta = model_metadata(args.model_dir)
    provenance = meta.get("provenance", {})
    same_task = provenance.get("dataset") == args.data and "data" in provenance
    data = dict(provenance["data"]) if same_task and provenance.get("data") else {"dataset": args.data}
    if args.root is not None:
        data["root"] = str(args.root)
    if args.batch_size is not None:
        data["eval_batch_size"] = args.batch_size
    try:
        data_config = DataConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"--data {args.data}: {validation_message(exc, model=DataConfig)}") from None
    seed = (provenance.get("seed") or 0) if same_task else 0
    with torch_threads(args.threads):
        if target is None:
            model = load_any_model(args.model_dir).to(device)
        else:
            model = open_runner(target, threads=args.threads or 1)
        task = load_from_config(
            data_config, data_config.split_seed if data_config.split_seed is not None else seed
        )
        classes = model_num_classes(model)
        if classes is not None and classes != task.num_classes:
            raise ConfigError(
                f"{args.model_dir} classifies {classes} classes but {args.data} has {task.num_classes}; "
                "evaluate it on the dataset it was made for"
            )
        resolution = meta["resolution"]
        loader = loader_from_config(
            task, data_config, args.split, resolution=resolution, train=False, seed=seed, device=device
        )
        scores = evaluate_accuracy(model, loader, device=device, precision=args.precision)
        if target is not None:  # a deployed file: also its batch-1 latency, as models.json reports it
            from nat.export.deploy import latency_ms

            example = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(0))
            scores.update(latency_ms(model, example), threads=model.threads, format=model.fmt.name)
    shown = target if target is not None else args.model_dir
    if args.json:
        print(json.dumps(scores))
    else:
        latency = (
            f"  latency {scores['latency_ms']:.3f} ms (batch 1, {scores['threads']} thread(s), "
            f"{model.fmt.label})"
            if target is not None
            else ""
        )
        print(
            f"{shown}: top-1 {100 * scores['top1']:.2f}%  top-5 {100 * scores['top5']:.2f}%  "
            f"({scores['images']} images, {args.split} split of {args.data}, {resolution} px){latency}"
        )
    return 0


def deployed_file(path: Path, fmt: str | None) -> Path | None:
    """The deployed file ``nat eval`` is asked to run: ``path`` itself (a ``.onnx``/``.pte`` file), or
    the ``--format`` file of the folder ``path``; None for the folder's PyTorch model."""
    from nat.errors import CheckpointError, ConfigError
    from nat.export.deploy import FORMATS, format_of

    if path.is_file() or path.suffix in (".onnx", ".pte"):
        if fmt is not None and format_of(path).name != fmt:
            raise ConfigError(f"--format {fmt} does not match the file {path.name}; give the folder instead")
        if not path.is_file():
            raise CheckpointError(f"model file not found: {path}")
        format_of(path)  # one line for a file nat cannot run
        if not (path.parent / "model.json").is_file():
            raise CheckpointError(
                f"{path} has no model.json beside it: nat eval reads the model's resolution and "
                "preprocessing there; evaluate the file inside the model folder nat wrote"
            )
        return path
    if fmt is None or fmt == "pytorch":
        return None
    file = path / FORMATS[fmt].file
    if not file.is_file():
        flags = "--onnx" if fmt.startswith("onnx") else "--executorch"
        raise CheckpointError(
            f"{path} has no {FORMATS[fmt].file} ({FORMATS[fmt].label}); make it with "
            f"`nat export RUN_DIR {flags}{' --int8' if fmt.endswith('int8') else ''}`"
        )
    return file


def model_num_classes(model) -> int | None:  # any classifier
    """Output classes of the model's last linear layer (None if it has none)."""
    import torch

    linear = [m for m in model.modules() if isinstance(m, torch.nn.Linear)]
    return linear[-1].out_features if linear else None


def model_metadata(folder: Path) -> dict:
    """The resolution (and, for nat's folders, the provenance) of a model folder: nat's ``model.json``
    (validated where it is read, `nat.export.read_model_info`), or a ``net.config`` with ``img_size``
    (NAT's release), or a ``net.subnet``'s ``r``."""
    from nat.errors import CheckpointError
    from nat.export import read_model_info

    if not folder.is_dir():
        raise CheckpointError(f"model folder not found: {folder}")
    if (folder / "model.json").is_file() or (folder / "model.safetensors").is_file():
        info = read_model_info(folder)  # a nat folder: checked field by field, or one clear line
        return {"resolution": info["preprocessing"]["resolution"], "provenance": info.get("provenance", {})}
    for name, key in (("net.config", "img_size"), ("net.subnet", "r")):
        if (folder / name).is_file():
            resolution = _release_resolution(folder / name, key)
            if resolution is not None:
                return {"resolution": resolution, "provenance": {}}
    raise CheckpointError(
        f"{folder} is not a model folder (no model.json, or net.config/net.subnet with the input resolution)"
    )


def _release_resolution(path: Path, key: str) -> int | None:
    """The input resolution a NAT release file states (``key``, or its subnet's ``r``); None if it
    states none; `CheckpointError` naming the file and field when it is not a positive integer."""
    from nat.config_io import read_json_file
    from nat.errors import CheckpointError

    data = read_json_file(path)
    if not isinstance(data, dict):
        raise CheckpointError(f"{path} is not a JSON object")
    field, value = key, data.get(key)
    if value is None and isinstance(data.get("subnet"), dict):
        field, value = "subnet.r", data["subnet"].get("r")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise CheckpointError(
            f"{path} is damaged: {field} must be a positive integer (pixels), got {value!r}"
        )
    return value


def load_any_model(folder: Path):  # an nn.Module
    """nat's model folder (``model.safetensors``), or a NAT release folder (net.config + net.weights)."""
    from nat.errors import CheckpointError
    from nat.export import load_model

    if (folder / "model.safetensors").is_file() or (folder / "model.json").is_file():
        return load_model(folder)  # a nat folder; one without its weights is told how to re-create it
    if (folder / "net.config").is_file():
        from nat.export import load_natnet

        weights = folder / "net.weights"
        if not weights.is_file():
            raise CheckpointError(
                f"{folder} holds a net.config but no net.weights: put the release's weights file there"
            )
        return load_natnet(folder / "net.config", weights=weights)
    raise CheckpointError(f"{folder} is not a model folder (no model.safetensors or net.config)")
