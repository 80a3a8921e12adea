"""``nat latency``: latency lookup tables for a device (``build``), predictions from them (``predict``) and
end-to-end measurements to check them against (``measure``).

``build`` times every layer configuration a search space can produce on one device (PyTorch on the CPU
or a GPU, or ONNX Runtime's CPU provider) and writes a YAML table (OFA's key layout; docs/latency.md);
it is resumable and extends an existing table. ``predict`` sums a network's layers from a table (nat's
or OFA's published ones); ``measure`` times the whole network on a device.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nat.cli.args import non_negative_int, positive_float, positive_int
from nat.errors import ConfigError
from nat.space import PRESETS

DEFAULT_CLASSES = 1000
SUPERNET_SUFFIXES = (".safetensors", ".pth", ".pt", ".tar")


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "latency",
        help="latency lookup tables: build one on a device, predict from it, measure end to end",
        description="Latency of networks of the search space on a deployment device: `build` a lookup "
        "table of every layer configuration, `predict` a network's latency from a table (nat's or "
        "OFA's), `measure` it end to end. See docs/latency.md.",
    )
    commands = parser.add_subparsers(dest="latency_command", metavar="ACTION")

    build = commands.add_parser(
        "build",
        help="time every layer configuration of a space on a device into a table (resumable)",
        description="Time every distinct layer configuration (stem, each block's input size, channels, "
        "kernel, expansion, stride, SE, activation; final layers; classifier) of a search space at the "
        "given resolutions on one device, then measure random subnets end to end to calibrate the "
        "sum-of-layers prediction. Writes --out every few seconds: an interrupted build keeps its "
        "entries, and running it again (or with more resolutions, widths, class counts or another "
        "space) adds only what is missing.",
    )
    build.add_argument(
        "--space",
        default="ofa_mbv3",
        help=f"a space preset ({', '.join(PRESETS)}), builtin:NAME or a supernet file (its own space), "
        "or a YAML/JSON file of space fields (default: ofa_mbv3)",
    )
    build.add_argument("--resolutions", type=positive_int, nargs="+", help="default: all of the space's")
    build.add_argument("--widths", type=positive_float, nargs="+", help="width multipliers (default: all)")
    build.add_argument(
        "--num-classes",
        type=positive_int,
        nargs="+",
        default=[DEFAULT_CLASSES],
        help=f"classifier sizes to time (default: {DEFAULT_CLASSES}); a search needs its task's",
    )
    _device_args(build)
    build.add_argument(
        "--calibration-subnets",
        type=non_negative_int,
        default=20,
        help="random subnets measured end to end to fit the table's correction (default: 20)",
    )
    build.add_argument("--seed", type=int, default=0, help="seed of the calibration subnets")
    build.add_argument("--out", required=True, help="the table's YAML file (created or extended)")
    build.set_defaults(func=cmd_build)

    predict = commands.add_parser(
        "predict",
        help="a network's latency from a table",
        description="Predicted latency of a network: the sum of its layers' table entries, with the "
        "table's calibration (nat tables) applied.",
    )
    predict.add_argument(
        "table", metavar="TABLE", help="a table's YAML file, or a folder of them (OFA's per-resolution files)"
    )
    predict.add_argument("subnet_file", metavar="FILE", help=_NETWORK_HELP)
    _network_args(predict)
    predict.add_argument("--json", action="store_true", help='print {"latency_ms": ...} and details')
    predict.set_defaults(func=cmd_predict)

    measure = commands.add_parser(
        "measure",
        help="a network's end-to-end latency on a device",
        description="Time a whole network on a device, with the same timing as `build` (warm-up, then "
        "rounds of timed blocks of calls; the median per-call time). Random weights for a net.subnet.",
    )
    measure.add_argument("subnet_file", metavar="FILE", help=_NETWORK_HELP)
    _network_args(measure)
    _device_args(measure)
    measure.add_argument("--json", action="store_true", help='print {"latency_ms": ...} and details')
    measure.set_defaults(func=cmd_measure)
    parser.set_defaults(func=lambda args: _usage(parser))


_NETWORK_HELP = "a net.subnet JSON (with --space), a net.config, or a model folder"


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _device_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--device",
        default="cpu",
        help="cpu, cuda, cuda:N (PyTorch), onnxruntime (ONNX Runtime's CPU provider) or executorch "
        "(ExecuTorch with XNNPACK, batch 1); default: cpu",
    )
    parser.add_argument(
        "--int8",
        action="store_true",
        help="time the int8 form (with --device onnxruntime or executorch), as nat export --int8 makes it",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=1, help="images per forward pass (default 1)"
    )
    parser.add_argument(
        "--threads", type=positive_int, default=None, help="intra-op threads (default: torch's current count)"
    )
    parser.add_argument("--warmup", type=non_negative_int, default=5, help="untimed calls first (default 5)")
    parser.add_argument("--repeats", type=positive_int, default=5, help="timed blocks per round (default 5)")
    parser.add_argument(
        "--rounds",
        type=positive_int,
        default=3,
        help="interleaved rounds: every layer (network) is timed once per round, so a burst of load "
        "from other processes spreads over many entries (default 3)",
    )
    parser.add_argument(
        "--min-block-ms",
        type=positive_float,
        default=5.0,
        help="a timed block repeats the call until it lasts this long (default 5 ms)",
    )
    parser.add_argument(
        "--no-drift-correction",
        action="store_true",
        help="do not rescale timings by a reference layer timed after each (the correction keeps "
        "entries consistent on a machine whose speed changes, e.g. shared with other jobs)",
    )


def _network_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--space",
        default=None,
        help="the space of a net.subnet (as for build; default: the model.json beside it, required for a "
        "bare one)",
    )
    parser.add_argument(
        "--num-classes",
        type=positive_int,
        default=None,
        help="classifier outputs (default: the network's own, or the model.json beside a net.subnet; "
        "required for a bare one)",
    )
    parser.add_argument(
        "--resolution", type=positive_int, default=None, help="input side for a net.config without img_size"
    )


def _backend(args: argparse.Namespace):
    import torch

    from nat.objectives.latency_build import TimingSettings, make_backend

    threads = args.threads or torch.get_num_threads()
    settings = TimingSettings(
        args.warmup, args.repeats, args.min_block_ms, args.rounds, not args.no_drift_correction
    )
    return make_backend(args.device, threads, args.batch_size, settings, int8=args.int8)


def resolve_space(text: str):
    """A search space from a preset name, ``builtin:NAME`` or a supernet file, or a YAML/JSON file."""
    from nat.config_io import read_yaml_mapping
    from nat.space import get_space

    path = Path(text).expanduser()
    if text.startswith("builtin:") or (path.suffix in SUPERNET_SUFFIXES and path.is_file()):
        from nat.search.supernets import supernet_path
        from nat.supernet.checkpoint import load_supernet

        return load_supernet(supernet_path(text)).space
    if path.suffix in (".yaml", ".yml", ".json"):
        if not path.is_file():
            raise ConfigError(f"--space: no such file {path}")
        return get_space(read_yaml_mapping(path))
    return get_space(text)


def cmd_build(args: argparse.Namespace) -> int:
    from nat.objectives.latency_build import build_table

    space = resolve_space(args.space)
    backend = _backend(args)
    table = build_table(
        args.out,
        space,
        backend,
        num_classes=args.num_classes,
        resolutions=args.resolutions,
        widths=args.widths,
        calibration_subnets=args.calibration_subnets,
        seed=args.seed,
    )
    cal = table.calibration
    print(
        f"{args.out}: {len(table.entries)} layer entries ({backend.name} on {table.meta.get('device_name')}, "
        f"batch {backend.batch_size}, {backend.threads} thread(s))"
    )
    if cal:
        print(
            f"calibration on {len(cal['samples'])} subnets: measured = {cal['scale']:.4f} x layer sum + "
            f"{cal['offset_ms']:.4f} ms; median error {100 * cal['median_rel_error_uncorrected']:.1f}% "
            f"uncorrected, {100 * cal['median_rel_error']:.1f}% corrected"
        )
    return 0


def load_network(path_text: str, space_text: str | None, num_classes: int | None, resolution: int | None):
    """(network, resolution, description) for a model folder, a net.config or a net.subnet."""
    from nat.export import build_natnet, load_model
    from nat.export.model_files import subnet_file_context
    from nat.export.ofa_config import is_net_config
    from nat.space import Subnet
    from nat.supernet.static import StaticMobileNetV3

    path = Path(path_text).expanduser()
    if path.is_dir() and (path / "model.json").is_file():
        model = load_model(path)
        if num_classes not in (None, model.num_classes):
            raise ConfigError(f"--num-classes {num_classes}: the model in {path} has {model.num_classes}")
        return model, model.subnet.r, {"model": str(path)}
    file = path / "net.config" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"no such file: {file}")
    try:
        data: Any = json.loads(file.read_text())
    except json.JSONDecodeError:
        data = None
    if is_net_config(data):
        config = dict(data)
        if num_classes is not None:
            config["classifier"] = {**config["classifier"], "out_features": num_classes}
        net = build_natnet(config)
        r = resolution or net.resolution
        if r is None:
            raise ConfigError(f"{file} has no img_size: give --resolution")
        return net.eval(), r, {"net_config": str(file)}
    given = resolve_space(space_text) if space_text else None
    space, classes = subnet_file_context(file, given, num_classes)
    subnet = Subnet.from_file(file, space)
    net = StaticMobileNetV3(space, subnet, classes).eval()
    return net, subnet.r, {"subnet": subnet.to_dict(), "space": space.name}


def cmd_predict(args: argparse.Namespace) -> int:
    from nat.objectives.latency_table import LatencyTable, network_layers

    table = LatencyTable.load(args.table)
    net, r, what = load_network(args.subnet_file, args.space, args.num_classes, args.resolution)
    layers = network_layers(net, r)
    latency = table.predict_layers(layers)
    result = {
        "latency_ms": latency,
        "layers_ms": table.layer_sum(layers),
        "layers": len(layers),
        "scale": table.scale,
        "offset_ms": table.offset_ms,
        "resolution": r,
        **what,
        "table": table.name,
        **{k: table.meta.get(k) for k in ("backend", "device", "device_name", "batch_size", "threads")},
    }
    if args.json:
        print(json.dumps(result))
    else:
        device = "OFA table" if table.is_ofa else f"{result['backend']} on {result['device_name']}"
        print(f"latency: {latency:.4f} ms predicted ({len(layers)} layers, {device}, resolution {r})")
    return 0


def cmd_measure(args: argparse.Namespace) -> int:
    from nat.objectives.latency_build import measure_network_ms

    net, r, what = load_network(args.subnet_file, args.space, args.num_classes, args.resolution)
    backend = _backend(args)
    timing = measure_network_ms(backend, net, r)
    result = {
        "latency_ms": timing.median,
        "mean_ms": timing.mean,
        "std_ms": timing.std,
        "count": timing.count,
        "calls_per_block": timing.number,
        "resolution": r,
        **what,
        "backend": backend.name,
        "device": backend.device_name,
        **backend.describe(),
        "batch_size": backend.batch_size,
        "threads": backend.threads,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"latency: {timing.median:.4f} ms measured (median of {timing.count} blocks, std "
            f"{timing.std:.4f} ms; {backend.name} on {result['device_name']}, batch {backend.batch_size}, "
            f"{backend.threads} thread(s))"
        )
    return 0
