"""The quickstart's models deployed: every runtime and precision, measured (issue 44).

Part 1, the delivered models: ``nat export RUN --out WORK --onnx --executorch --int8`` on a finished
quickstart run writes each model as ONNX (fp32, int8) and ExecuTorch/XNNPACK (fp32, int8) files and
measures every form in its own runtime: test top-1 on the run's test split, batch-1 latency (median of
timed calls after warm-up) at ``--threads`` threads, file size. Per runtime this reports
``int8_top1_drop_points`` (mean over models of fp32 minus int8 test top-1, in points),
``int8_latency_ratio`` (int8 / fp32 median latency, geometric mean over models) and ``int8_size_ratio``
(int8 / fp32 file size, mean over models), against the issue's targets: drop <= 1.0 point, latency
ratio <= 0.6 in at least one runtime, size ratio <= 0.3.

Part 2, is fp32 top-1 a faithful proxy for the int8 model that ships? ``--spread-subnets`` random
subnets of the run's adapted supernet (seeded), each extracted and BN-recalibrated exactly as the
search evaluates it, quantized by ONNX Runtime's static int8 flow (the faster of the two exports;
calibrated on training images) and measured on the search-validation split in fp32 (PyTorch) and int8
(ONNX Runtime). Reports the spread of the drop (standard deviation, range) and its rank correlation with
fp32 top-1, and Kendall tau between the fp32 and int8 rankings. Each drop is itself measured on a finite
split, so the report separates its sampling noise (McNemar: (b + c) / N^2 per subnet, b and c the images
only one of the two gets right) from the variation between architectures: if that varied by more than
about a point, a search should optimise int8 top-1 itself.

Part 3, the paper's scale: ``--ofa-subnets`` random subnets of OFA's space at 224 px (w1.0, 1,000
classes, random weights: latency and size only) in every runtime and precision.

    python bench/deploy.py [--run runs/quickstart] [--threads 1] [--spread-subnets 30] [--ofa-subnets 3]
        [--parts delivered spread ofa] [--quick]

Writes bench/results/deploy.json (machine, threads, commit, the per-model rows and the fields above).
``--quick``: a smoke check (a tiny smoke-preset run, ONNX only, two spread subnets) into the ``--out``
given (default bench/results/deploy_quick.json).
"""

from __future__ import annotations

import argparse
import json
import math
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from scipy.stats import kendalltau, spearmanr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from nat.data import loader_from_config  # noqa: E402
from nat.data.loaders import make_loader  # noqa: E402
from nat.export.deploy import (  # noqa: E402
    FORMATS,
    TorchRunner,
    calibration_images,
    calibration_split,
    measure,
    open_runner,
    write_format,
)
from nat.search.parts import RunParts  # noqa: E402
from nat.search.rundir import RunDir  # noqa: E402
from nat.search.supernets import supernet_for  # noqa: E402
from nat.space.subnet import Subnet  # noqa: E402
from record import code_version, machine, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results"
RUNTIMES = ("onnx", "executorch")
TARGETS = {"int8_top1_drop_points": 1.0, "int8_latency_ratio": 0.6, "int8_size_ratio": 0.3}
QUICK_SETS = [
    "initial_samples=4", "iterations=1", "candidates_per_iteration=2", "adaptation.max_steps=3",
    "nsga3.pop_size=8", "nsga3.generations=2", "evaluation.calibration_images=32", "data.val_size=100",
    "finalize.models=2", "finalize.finetune_epochs=0",
]  # fmt: skip


def nat(*args: str) -> None:
    """One `nat` command in a child process (its own logging and thread settings), failing loudly."""
    subprocess.run([sys.executable, "-m", "nat", *args], check=True, stdout=subprocess.DEVNULL)


def ensure_run(run: Path, quick: bool) -> None:
    if (run / "models.json").is_file():
        return
    if quick:
        sets = [a for s in QUICK_SETS for a in ("--set", s)]
        nat("search", "--preset", "smoke", "--out", str(run), "--set", "data.dataset=digits", *sets)
    else:
        print(f"{run} holds no finished run: running `nat quickstart --out {run}` first", flush=True)
        nat("quickstart", "--out", str(run))


def delivered(run: Path, work: Path, threads: int, quick: bool) -> list[dict[str, Any]]:
    """Part 1: the run's models exported to every format and measured (`nat export`)."""
    flags = ["--onnx", "--int8"] if quick else ["--onnx", "--executorch", "--int8"]
    start = time.perf_counter()
    nat("export", str(run), "--out", str(work), *flags, "--latency-threads", str(threads))
    print(f"exported and measured in {time.perf_counter() - start:.0f} s", flush=True)
    return json.loads((work / "models.json").read_text())


def summarise(models: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's three figures per runtime, and whether each target is met."""
    out: dict[str, Any] = {}
    for runtime in RUNTIMES:
        pairs = [
            (m["formats"][runtime], m["formats"][f"{runtime}_int8"])
            for m in models
            if runtime in m["formats"] and f"{runtime}_int8" in m["formats"]
        ]
        if not pairs:
            continue
        out[runtime] = {
            "int8_top1_drop_points": statistics.mean(
                100 * (a["test_top1"] - b["test_top1"]) for a, b in pairs
            ),
            "int8_latency_ratio": math.exp(
                statistics.mean(math.log(b["latency_ms"] / a["latency_ms"]) for a, b in pairs)
            ),
            "int8_size_ratio": statistics.mean(b["size_bytes"] / a["size_bytes"] for a, b in pairs),
            "fp32_vs_pytorch_latency": math.exp(
                statistics.mean(
                    math.log(m["formats"][runtime]["latency_ms"] / m["formats"]["pytorch"]["latency_ms"])
                    for m in models
                    if runtime in m["formats"]
                )
            ),
        }
    met = {
        "int8_top1_drop_points": all(
            r["int8_top1_drop_points"] <= TARGETS["int8_top1_drop_points"] for r in out.values()
        ),
        "int8_latency_ratio": any(
            r["int8_latency_ratio"] <= TARGETS["int8_latency_ratio"] for r in out.values()
        ),
        "int8_size_ratio": all(r["int8_size_ratio"] <= TARGETS["int8_size_ratio"] for r in out.values()),
    }
    return {"per_runtime": out, "targets": TARGETS, "met": met}


def spread(run: Path, count: int, threads: int, calibration: int, seed: int = 0) -> dict[str, Any]:
    """Part 2: fp32 and ONNX Runtime int8 top-1 of ``count`` random subnets of the adapted supernet."""
    run_dir = RunDir.open(run, lock=False)
    try:
        config = run_dir.config
        parts = RunParts.build(config, run_dir)
    finally:
        run_dir.close()
    task, rng = parts.task, random.Random(seed)
    rows = []
    with tempfile.TemporaryDirectory(prefix="nat-spread-") as tmp:
        for i in range(count):
            subnet = Subnet.sample(parts.space, rng)
            model = supernet_for(parts.supernets, subnet).extract(subnet)
            parts.evaluator.calibrator.standalone(model)  # the search's own BN recalibration
            model.eval()
            val = loader_from_config(
                task, config.data, "val", resolution=subnet.r, train=False, seed=config.seed
            )
            example = torch.zeros(1, 3, subnet.r, subnet.r)
            fp32 = measure(TorchRunner(model, threads), Path(tmp), example, val, repeats=3)
            subset = calibration_split(task.train, min(calibration, len(task.train)), config.seed)
            images = calibration_images(
                make_loader(task, subset, batch_size=64, resolution=subnet.r, train=False), len(subset)
            )
            path = write_format(model, FORMATS["onnx_int8"], Path(tmp) / f"s{i}.int8.onnx", images)
            runner = open_runner(path, threads)
            int8 = measure(runner, path, example, val, repeats=3)
            only_fp32, only_int8 = discordant(TorchRunner(model, threads), runner, val)
            rows.append(
                {
                    "subnet": subnet.to_dict(),
                    "fp32_top1": fp32["test_top1"],
                    "int8_top1": int8["test_top1"],
                    "drop_points": 100 * (fp32["test_top1"] - int8["test_top1"]),
                    "images": fp32["test_images"],
                    "only_fp32_right": only_fp32,
                    "only_int8_right": only_int8,
                }
            )
            print(
                f"  subnet {i + 1}/{count}: r {subnet.r}, fp32 {100 * rows[-1]['fp32_top1']:.1f}%, "
                f"int8 {100 * rows[-1]['int8_top1']:.1f}%",
                flush=True,
            )
    drops = [r["drop_points"] for r in rows]
    # the drop of one subnet is itself a measurement on finitely many images: its sampling variance is
    # (b + c) / N^2 (b, c: the images only one of the two gets right); what is left of the observed
    # variance after that is the drop's real variation between architectures
    noise = statistics.mean(
        100**2 * (r["only_fp32_right"] + r["only_int8_right"]) / r["images"] ** 2 for r in rows
    )
    fp32s, int8s = [r["fp32_top1"] for r in rows], [r["int8_top1"] for r in rows]
    result: dict[str, Any] = {
        "subnets": count,
        "split": "val",
        "images": rows[0]["images"] if rows else 0,
        "drop_mean_points": statistics.mean(drops),
        "drop_std_points": statistics.stdev(drops) if len(drops) > 1 else 0.0,
        "drop_range_points": max(drops) - min(drops),
        "drop_noise_std_points": math.sqrt(noise),
        "drop_between_architectures_std_points": math.sqrt(max(0.0, statistics.pvariance(drops) - noise)),
        "rows": rows,
    }
    if len(rows) > 2:
        result["spearman_drop_vs_fp32"] = float(spearmanr(fp32s, drops).statistic)
        result["kendall_fp32_vs_int8"] = float(kendalltau(fp32s, int8s).statistic)
    return result


def discordant(a: Any, b: Any, batches: Any) -> tuple[int, int]:
    """Images only ``a`` classifies right, and images only ``b`` does (McNemar's b and c)."""
    only_a = only_b = 0
    with torch.no_grad():
        for x, y in batches:
            right_a, right_b = a(x).argmax(1) == y, b(x).argmax(1) == y
            only_a += int((right_a & ~right_b).sum())
            only_b += int((right_b & ~right_a).sum())
    return only_a, only_b


def ofa_latency(count: int, threads: int, seed: int = 0) -> list[dict[str, Any]]:
    """Part 3: the paper's scale. ``count`` random subnets of OFA's space (w1.0, 224 px, ImageNet's 1,000
    classes; random weights: only latency and size mean anything here) in every runtime and precision."""
    from nat.space import get_space
    from nat.supernet.static import StaticMobileNetV3

    space = get_space("ofa_mbv3").model_copy(update={"resolutions": (224,), "width_mults": (1.0,)})
    rng, rows = random.Random(seed), []
    with tempfile.TemporaryDirectory(prefix="nat-ofa-") as tmp:
        for i in range(count):
            subnet = Subnet.sample(space, rng)
            model = StaticMobileNetV3(space, subnet, 1000).eval()
            calibration = torch.randn(16, 3, 224, 224, generator=torch.Generator().manual_seed(i))
            example = calibration[:1]
            row: dict[str, Any] = {"subnet": subnet.to_dict()}
            for fmt in FORMATS.values():
                if fmt.runtime == "pytorch":
                    runner, path = TorchRunner(model, threads), None
                else:
                    path = write_format(model, fmt, Path(tmp) / f"{i}.{fmt.file}", calibration)
                    runner = open_runner(path, threads)
                facts = measure(runner, path or Path(tmp), example, None, repeats=20)
                row[fmt.name] = {
                    "latency_ms": facts["latency_ms"],
                    "size_bytes": path.stat().st_size if path else None,
                }
                del runner
            rows.append(row)
            print(
                f"  OFA subnet {i + 1}/{count}: "
                + ", ".join(f"{k} {v['latency_ms']:.1f} ms" for k, v in row.items() if k != "subnet"),
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, default=None, help="a finished run (default: runs/quickstart)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--spread-subnets", type=int, default=30)
    parser.add_argument("--calibration-images", type=int, default=256)
    parser.add_argument("--ofa-subnets", type=int, default=3, help="part 3: OFA subnets at 224 px")
    parser.add_argument(
        "--parts",
        nargs="+",
        choices=["delivered", "spread", "ofa"],
        default=["delivered", "spread", "ofa"],
        help="what to measure (the others are kept from the existing result file)",
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    out = args.out or RESULTS / ("deploy_quick.json" if args.quick else "deploy.json")
    result: dict[str, Any] = json.loads(out.read_text()) if out.is_file() and not args.quick else {}
    with tempfile.TemporaryDirectory(prefix="nat-deploy-") as tmp:
        run = args.run or (Path(tmp) / "run" if args.quick else ROOT / "runs" / "quickstart")
        if {"delivered", "spread"} & set(args.parts):
            ensure_run(run, args.quick)
        if "delivered" in args.parts:
            models = delivered(run, Path(tmp) / "models", args.threads, args.quick)
            summary = summarise(models)
            for runtime, row in summary["per_runtime"].items():
                print(
                    f"{runtime:>10}: int8 top-1 drop {row['int8_top1_drop_points']:+.2f} points, latency "
                    f"x{row['int8_latency_ratio']:.2f}, size x{row['int8_size_ratio']:.2f} "
                    f"(fp32 latency x{row['fp32_vs_pytorch_latency']:.2f} of PyTorch eager)",
                    flush=True,
                )
            print(f"targets met: {summary['met']}", flush=True)
            result.update(
                run=str(run),
                models=[
                    {k: m[k] for k in ("name", "madds", "params", "subnet", "test_top1", "formats") if k in m}
                    for m in models
                ],
                **summary,
            )
        if "spread" in args.parts:
            count = 2 if args.quick else args.spread_subnets
            variation = spread(run, count, args.threads, args.calibration_images)
            print(
                f"int8 drop over {count} subnets: mean {variation['drop_mean_points']:+.2f}, std "
                f"{variation['drop_std_points']:.2f} (of which measurement noise "
                f"{variation['drop_noise_std_points']:.2f}; between architectures "
                f"{variation['drop_between_architectures_std_points']:.2f}), range "
                f"{variation['drop_range_points']:.2f} points; Kendall tau fp32 vs int8 "
                f"{variation.get('kendall_fp32_vs_int8', float('nan')):.3f}",
                flush=True,
            )
            result["int8_spread"] = variation
        if "ofa" in args.parts and not args.quick:
            rows = ofa_latency(args.ofa_subnets, args.threads)
            result["ofa_224"] = {
                "subnets": rows,
                "int8_latency_ratio": {
                    rt: math.exp(
                        statistics.mean(
                            math.log(r[f"{rt}_int8"]["latency_ms"] / r[rt]["latency_ms"]) for r in rows
                        )
                    )
                    for rt in RUNTIMES
                },
                "int8_size_ratio": {
                    rt: statistics.mean(r[f"{rt}_int8"]["size_bytes"] / r[rt]["size_bytes"] for r in rows)
                    for rt in RUNTIMES
                },
            }
            print(f"OFA 224 px: {result['ofa_224']['int8_latency_ratio']}", flush=True)
    result.update(
        what="the quickstart's models in every runtime and precision; int8 drop across random subnets; "
        "OFA subnets at 224 px",
        machine=machine(),
        threads=args.threads,
        commit=code_version(),
    )
    write_result(out, result, indent=2)


if __name__ == "__main__":
    main()
