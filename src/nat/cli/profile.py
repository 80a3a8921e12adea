"""``nat profile FILE``: exact MAdds and parameters of a subnet (net.subnet) or a network (net.config).

A ``net.subnet`` is counted analytically from its description. A ``net.config`` (NAT's release format,
OFA's, or the one nat writes into model folders) is built as a network and counted on it, by the same
convention; nat's older ``net.config`` (``{"space", "subnet", "num_classes"}``) is read as its subnet.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from nat.errors import ConfigError

DEFAULT_RESOLUTION = 224  # NAT's evaluator uses 224 when a net.config has no img_size


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="MAdds and parameter count of a subnet (net.subnet) or a network (net.config)",
        description="Count the MAdds and parameters of a subnet analytically (no forward pass), or of "
        "the network a net.config describes (NAT's release format, OFA's or nat's). MAdds: conv and "
        "linear multiply-accumulates; params: all weights, biases and BN affine parameters of the "
        "standalone network.",
    )
    parser.add_argument(
        "subnet_file",
        metavar="FILE",
        help="net.subnet JSON, a net.config JSON, or a model folder holding one",
    )
    parser.add_argument(
        "--num-classes",
        type=int,
        default=None,
        help="classifier outputs (default: a net.config's own, or the model.json beside a net.subnet; "
        "required for a bare net.subnet)",
    )
    parser.add_argument(
        "--resolution",
        type=int,
        default=None,
        help="input side for a net.config (default: its img_size, else the folder's net.subnet, else 224)",
    )
    parser.add_argument(
        "--space",
        default=None,
        help="search-space preset the subnet belongs to (ofa_mbv3: the paper's); default: the model.json "
        "beside a net.subnet (required for a bare one); for a net.config, the space its width is looked "
        "up in (default ofa_mbv3)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def _read(path: Path) -> tuple[Path, Any]:
    """The file to read (a folder's net.config, else its net.subnet) and its JSON, or None if not JSON."""
    if path.is_dir():
        candidates = [path / "net.config", path / "net.subnet"]
        path = next((p for p in candidates if p.is_file()), candidates[0])
    try:
        return path, json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return path, None  # Subnet.from_file reports it


def _config_resolution(path: Path, config: dict, given: int | None) -> int:
    from nat.space import Subnet

    if given is not None:
        return given
    if isinstance(config.get("img_size"), int):
        return config["img_size"]
    sibling = path.with_name("net.subnet")
    if sibling.is_file():
        try:
            return Subnet.from_file(sibling).r
        except ConfigError:
            pass
    return DEFAULT_RESOLUTION


def profile_net_config(
    path: Path, config: dict, space_name: str, num_classes: int | None, resolution: int | None
) -> dict[str, Any]:
    """MAdds and params of the network a net.config describes, counted on the built network."""
    from nat.export import build_natnet, profile_network, subnet_from_net_config
    from nat.space import get_space

    config = dict(config)
    if num_classes is not None:
        config["classifier"] = {**config["classifier"], "out_features": num_classes}
    try:
        net = build_natnet(config)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    r = _config_resolution(path, config, resolution)
    result = profile_network(net, r)
    space = get_space(space_name)
    try:
        width: float | None = subnet_from_net_config(config, space, r).w
    except (ConfigError, KeyError, TypeError):
        width = None
    return {**result, "resolution": r, "width": width, "num_classes": net.num_classes, "space": "net.config"}


def run(args: argparse.Namespace) -> int:
    from nat.export.model_files import subnet_file_context
    from nat.export.ofa_config import is_net_config
    from nat.objectives.complexity import profile_subnet
    from nat.space import SearchSpace, Subnet, get_space

    for flag, value in (("--num-classes", args.num_classes), ("--resolution", args.resolution)):
        if value is not None and value < 1:
            raise ConfigError(f"{flag} must be >= 1, got {value}")
    if args.num_classes is not None and args.num_classes > 1_000_000:
        raise ConfigError(
            f"--num-classes {args.num_classes} is not a plausible class count (at most 1000000)"
        )
    path, data = _read(Path(args.subnet_file))
    num_classes = args.num_classes
    if is_net_config(data):
        result = profile_net_config(path, data, args.space or "ofa_mbv3", num_classes, args.resolution)
    elif isinstance(data, dict) and {"space", "subnet", "num_classes"} <= set(data):  # nat's older net.config
        try:
            space = SearchSpace.model_validate(data["space"])
        except ValueError as exc:
            raise ConfigError(f"{path}: invalid search space ({exc})") from None
        subnet = Subnet.from_dict(data["subnet"], space)
        result = profile_subnet(subnet, space, num_classes or int(data["num_classes"]))
    else:
        if data is None:
            Subnet.from_file(path)  # says what is wrong with a missing, unreadable or non-JSON file
        given = get_space(args.space) if args.space else None
        space, classes = subnet_file_context(path, given, num_classes)
        subnet = Subnet.from_file(path, space)
        result = profile_subnet(subnet, space, classes)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"MAdds:      {result['madds'] / 1e6:.1f} M ({result['madds']})")
        print(f"params:     {result['params'] / 1e6:.3f} M ({result['params']})")
        print(
            f"resolution: {result['resolution']}  width: {result['width']}  "
            f"classes: {result['num_classes']}  space: {result['space']}"
        )
    return 0
