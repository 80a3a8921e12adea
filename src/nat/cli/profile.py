"""``nat profile SUBNET_FILE``: exact MAdds and parameters of a subnet, from its description alone."""

from __future__ import annotations

import argparse
import json

from nat.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "profile",
        help="MAdds and parameter count of a subnet (net.subnet JSON)",
        description="Count the MAdds and parameters of a subnet analytically (no forward pass). "
        "MAdds: conv and linear multiply-accumulates; params: all weights, biases and BN "
        "affine parameters of the standalone network.",
    )
    parser.add_argument("subnet_file", metavar="SUBNET_FILE", help="JSON file in NAT's net.subnet format")
    parser.add_argument("--num-classes", type=int, default=1000, help="classifier outputs (default 1000)")
    parser.add_argument(
        "--space",
        default="ofa_mbv3",
        help="search-space preset the subnet belongs to (default: ofa_mbv3, the paper's)",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from nat.objectives.complexity import profile_subnet
    from nat.space import Subnet, get_space

    if args.num_classes < 1:
        raise ConfigError(f"--num-classes must be >= 1, got {args.num_classes}")
    space = get_space(args.space)
    subnet = Subnet.from_file(args.subnet_file, space)
    result = profile_subnet(subnet, space, args.num_classes)
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
