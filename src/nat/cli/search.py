"""``nat search``: run NAT on a task, or resume a run from its directory."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from nat.cli.args import PRECISIONS, continue_search, helper_rank
from nat.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "search",
        help="run NAT: a Pareto front of task-specific subnets",
        description="Run Neural Architecture Transfer. Configuration: a preset, then --config, then "
        "--seed/--set overrides (any field, e.g. --set nsga3.pop_size=40).",
    )
    parser.add_argument(
        "--data",
        metavar="NAME",
        help="the dataset (`nat data list`; `folder` for your own images): alone with --out, every other "
        "setting is chosen from the data and printed; with --config/--preset it replaces data.dataset",
    )
    parser.add_argument("--root", type=Path, help="the folder the dataset is in (data.root)")
    parser.add_argument("--config", type=Path, help="YAML run configuration")
    parser.add_argument("--preset", help="named preset (e.g. smoke)")
    parser.add_argument("--out", type=Path, help="run directory (created)")
    parser.add_argument("--resume", type=Path, metavar="DIR", help="continue the run in DIR")
    parser.add_argument(
        "--repair",
        action="store_true",
        help="with --resume: cut a damaged archive.jsonl back to the records before its first bad line "
        "(the rest is kept in archive.jsonl.damaged-N), then continue",
    )
    parser.add_argument("--seed", type=int, help="run seed (overrides the config)")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="forward passes in fp32, bf16 or fp16 (config field precision; default fp32)",
    )
    parser.add_argument(
        "--warm-start",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="start from earlier runs on other tasks (config section warm_start; with no other "
        "warm_start settings: their subnets as half of the initial archive and the first run's adapted "
        "supernet; docs/transfer_search.md#warm-start)",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config field; VALUE is parsed as YAML",
    )
    parser.set_defaults(func=run, continue_with=lambda args: continue_search(args.resume or args.out))


def parse_overrides(items: list[str], seed: int | None) -> dict:
    from nat.search.config import set_by_path

    overrides: dict = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set expects KEY=VALUE, got {item!r}")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            parsed = value
        set_by_path(overrides, key.strip(), parsed)
    if seed is not None:
        overrides["seed"] = seed
    return overrides


def run(args: argparse.Namespace) -> int:
    from nat.runs import run_search
    from nat.search import RunDir, load_config

    overrides = parse_overrides(args.set, args.seed)
    if args.precision is not None:
        overrides["precision"] = args.precision
    if args.warm_start:
        # absolute, so that a resumed run finds them from any working directory
        overrides.setdefault("warm_start", {})["runs"] = [str(p.resolve()) for p in args.warm_start]
    if args.repair and args.resume is None:
        raise ConfigError("--repair works on a run being resumed: nat search --resume DIR --repair")
    if args.resume is not None:
        if args.config or args.preset or args.out:
            raise ConfigError(
                "--resume DIR continues a run with its saved config; drop --config/--preset/--out"
            )
        config = RunDir.saved_config(args.resume, overrides)
        out, resume = args.resume, True
    else:
        if args.out is None:
            raise ConfigError("--out DIR is required (where the run is written)")
        if args.config is None and args.preset is None and args.data is None:
            raise ConfigError(
                "give --data NAME (and --root DIR) to search with settings chosen from the data, or "
                "--config FILE / --preset NAME (e.g. --preset smoke)"
            )
        if args.config is None and args.preset is None:
            config = config_for_data(args, overrides)
        else:
            if args.data is not None or args.root is not None:
                data = overrides.setdefault("data", {})
                data.update({"dataset": args.data} if args.data else {}, **_root(args))
            config = load_config(args.config, args.preset, overrides)
        out, resume = args.out, False
    result = run_search(config, out, resume=resume, repair=args.repair)
    return print_result(config, result)


def _root(args: argparse.Namespace) -> dict[str, str]:
    return {"root": str(args.root)} if args.root is not None else {}


def config_for_data(args: argparse.Namespace, overrides: dict):
    """The run's config from the data alone (`nat.search.data_defaults.settings_for_data`), then the
    --set/--seed/--precision overrides; what was chosen is printed (rank 0) before anything runs."""
    from nat.search.config import _merge, validate_config
    from nat.search.data_defaults import settings_for_data

    data = {"dataset": args.data, **_root(args), **overrides.get("data", {})}
    settings, lines = settings_for_data(data, overrides.get("supernet"))
    if not helper_rank():
        saved = Path(args.out) / "config.yaml"
        print(f"settings chosen from the data (change any with --set KEY=VALUE; saved in {saved}):")
        for line in lines:
            print(f"  {line}")
    return validate_config(_merge(settings, overrides), "settings chosen from the data")


def print_result(config, result) -> int:
    """What `nat search` and `nat retarget` print at the end: the front, the models, the report."""
    if not result.main:  # rank 0 reports; the others only did their share of the work
        return 0
    front, models = result.front, result.models
    key = next((n for n in config.objectives if n != "top1"), "madds")
    mean = " (mean of tasks)" if config.many_task else ""
    print(f"front: {len(front)} subnets written to {result.run_dir / 'front.json'}")
    for record in sorted(front, key=lambda r: r.values.get(key, 0.0)):
        extras = "  ".join(f"{k} {v:.4g}" for k, v in record.values.items() if k != "top1")
        print(f"  top1{mean} {record.top1:.4f}  {extras}")
    if models:
        print(f"models: {len(models)} in {result.run_dir / 'models'} (index models.json)")
        for m in models:
            test = f"  test top-1 {100 * m['test_top1']:.2f}%" if "test_top1" in m else ""
            print(f"  {m['name']:<30} MAdds {m['madds'] / 1e6:7.2f}M  params {m['params'] / 1e6:.3f}M{test}")
    print(f"report: {result.run_dir / 'report.html'}")
    return 0
