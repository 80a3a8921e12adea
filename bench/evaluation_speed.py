"""Where a subnet evaluation's time goes, against the cost of its forward passes alone (issue 43).

A search spends most of its time evaluating subnets: activate the subnet on its supernet, recalibrate
BN on a fixed set of training images, measure top-1 on the search-validation split. This benchmark
measures that, exactly as a run does it (`nat.search.evaluator.SubnetEvaluator.top1` on the run's own
parts), against pure forward passes of the same subnet extracted as a standalone network, over the same
validation images already resized and on the device: the least an evaluation could cost.

Three settings:

* ``quickstart``: the quickstart preset (the built-in supernet, mnist5k held in memory, 24-32 px, 500
  validation and 256 calibration images);
* ``ofa_jpeg``: the paper-scale path: OFA's w1.0 space (random weights in OFA's checkpoint format),
  an ImageFolder of generated ~300 px JPEGs read through the file loader, 192-256 px (200 validation
  and 500 calibration images, a CPU-sized share of the paper's);
* ``ofa_jpeg_paper``: the same at the paper's counts, 5,000 validation and 500 calibration images, at
  224 px (3 subnets at most): the validation pass is then most of an evaluation, as in a real search,
  and the validation images are read from the cache of decoded uint8 batches
  (``evaluation.validation_cache_mb``) as a search's next subnet at that resolution reads them.

Per subnet (random, the same for every contender; caches warmed by one evaluation first), in
interleaved order: the evaluation end to end, its BN calibration and validation pass timed apart, and
the pure forward passes.

    python bench/evaluation_speed.py [--settings quickstart ofa_jpeg ofa_jpeg_paper] [--subnets 6]
                                     [--threads 1] [--quick] [--fidelity] [--validation-cache-mb MB]
                                     [--device cuda --precision bf16]

Writes bench/results/evaluation_speed.json: per setting ``efficiency`` (pure forward time / end-to-end
time: 1.0 would be an evaluation at the cost of its forward passes), images per second both ways, and
the per-phase seconds (``calibration``, ``validation``, ``other``) per subnet; with ``--fidelity``,
``calibration_fidelity``: Kendall tau of 30 subnets' top-1 against the number of calibration images
(with its commit; a run without ``--fidelity`` keeps the one the result file holds). The file is
written after each setting, so a run cut off (e.g. at bench/gpu_check.sh's stage limit) keeps those done.
``--device cuda`` (bench/gpu_check.sh, with ``--precision bf16``): the same on a GPU, with batches that
fill it, into bench/results/evaluation_speed_cuda.json (issue 43's GPU target: efficiency >= 0.5).
``--quick``: a smoke check (two subnets, tiny sets), bench/results/evaluation_speed_quick.json.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from nat.runtime import process_settings  # noqa: E402
from nat.search import load_config  # noqa: E402
from nat.search.evaluator import calibration_images  # noqa: E402
from nat.search.parts import RunParts  # noqa: E402
from nat.search.supernets import supernet_for  # noqa: E402
from nat.space.subnet import Subnet  # noqa: E402
from nat.supernet import BNCalibrator, kept_bn_statistics  # noqa: E402
from nat.train import evaluate_top1  # noqa: E402
from paper_scale import make_jpegs, make_ofa_checkpoints  # noqa: E402
from record import code_version, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results"
#: the paper's search-validation images (and its 500 calibration images): setting ``ofa_jpeg_paper``
PAPER_VAL = 5000
#: subnets measured in ``ofa_jpeg_paper`` (at most): each costs several minutes on one CPU thread
PAPER_SUBNETS = 3


SETTINGS = ("quickstart", "ofa_jpeg", "ofa_jpeg_paper")


def configs(
    work: Path, quick: bool, threads: int, device: str, precision: str, names: list[str]
) -> dict[str, Any]:
    """The search config of each setting in ``names`` (what a run of it would use); only their data
    and checkpoints are made."""
    common = {"seed": 0, "device": device, "precision": precision, "threads": threads}
    # on a GPU, batches that fill it (the sizes of bench/paper_scale.py --device cuda) and loader
    # workers enough to decode a first pass at its speed
    batches = {"train_batch_size": 64, "eval_batch_size": 200, "num_workers": 8} if device != "cpu" else {}
    built: dict[str, Any] = {}
    if "quickstart" in names:
        built["quickstart"] = quickstart(quick, common)
    if not {"ofa_jpeg", "ofa_jpeg_paper"} & set(names):
        return built
    checkpoint = make_ofa_checkpoints(work)[0]  # w1.0
    if "ofa_jpeg" in names:
        built["ofa_jpeg"] = ofa_jpeg(work / "jpegs", checkpoint, quick, common, batches, paper=False)
    if "ofa_jpeg_paper" in names:
        built["ofa_jpeg_paper"] = ofa_jpeg(
            work / "jpegs_paper", checkpoint, quick, common, batches, paper=True
        )
    return built


def quickstart(quick: bool, common: dict[str, Any]):
    return load_config(
        preset="quickstart",
        overrides={
            **common,
            **({"data": {"val_size": 100}, "evaluation": {"calibration_images": 64}} if quick else {}),
        },
    )


def ofa_jpeg(images: Path, checkpoint: Path, quick: bool, common: dict[str, Any], batches: dict, paper: bool):
    """OFA's w1.0 space over a generated JPEG folder: the CPU-sized share, or the paper's counts."""
    if not images.exists():  # the paper's setting holds its 5,000 validation images out of the training split
        make_jpegs(images, per_class_train=8 if quick else (PAPER_VAL // 10 + 60 if paper else 80))
    val = 40 if quick else (PAPER_VAL if paper else 200)
    return load_config(
        overrides={
            **common,
            "supernet": str(checkpoint),
            "data": {
                "dataset": "folder",
                "root": str(images),
                "val_size": val,
                "in_memory": False,
                "num_workers": 2,
                "train_batch_size": 32,
                "eval_batch_size": 50,
                **batches,
            },
            "space": {"resolutions": [224] if paper else [192, 224, 256]},
            "evaluation": {"calibration_images": 64 if quick else 500},
        }
    )


def fidelity_config(quick: bool, threads: int):
    """The shipped supernet on its own task (Fashion-MNIST), measured on images its pretraining held
    out: subnets whose accuracies and ranking mean something."""
    return load_config(
        preset="quickstart",
        overrides={
            "seed": 0,
            "device": "cpu",
            "threads": threads,
            # the 5,000 training images the supernet's pretraining held out (its val_size and seed)
            "data": {"dataset": "fashion-mnist", "val_size": 5000, "split_seed": 0},
            "evaluation": {"max_val_images": 200 if quick else 1000},
        },
    )


def calibration_fidelity(config, subnets: int, sizes: list[int], reference: int, seed: int) -> dict[str, Any]:
    """How many BN-calibration images the archive's ranking needs.

    The same random subnets are measured (top-1 on search-validation, as a search measures them) after
    calibration on N training images, two independent draws per N, and on ``reference`` images (two
    draws: their agreement is the noise floor of the measure itself). Per N: Kendall tau against the
    first reference draw (the mean over the two draws), the mean absolute top-1 difference in points,
    and seconds per evaluation."""
    from scipy.stats import kendalltau

    parts = RunParts.build(config)
    evaluator, space = parts.evaluator, parts.space
    rng = random.Random(seed)
    chosen: list[Subnet] = []
    while len(chosen) < subnets:
        s = Subnet.sample(space, rng)
        if s not in chosen:
            chosen.append(s)
    base = evaluator.calibrator

    def top1s(count: int, draw: int) -> tuple[np.ndarray, float]:
        images = calibration_images(
            evaluator.task, config, max(space.resolutions), np.random.default_rng(1000 + draw), count
        )
        evaluator.calibrator = BNCalibrator(
            images,
            batch_size=base.batch_size,
            device=base.device,
            channels_last=base.channels_last,
            max_cache_bytes=base.max_cache_bytes,
            precision=base.precision,
        )
        evaluator.top1(chosen[0])  # resize the images once per resolution, out of the timing
        values, seconds = timed(lambda: [evaluator.top1(s) for s in chosen])
        return 100 * np.asarray(values), seconds / len(chosen)

    ref, ref_seconds = top1s(reference, 0)
    ref2, _ = top1s(reference, 1)
    rows = {}
    for count in sizes:
        taus, gaps, secs = [], [], []
        for draw in (2, 3):
            values, seconds = top1s(count, draw)
            taus.append(kendalltau(values, ref).statistic)
            gaps.append(float(np.mean(np.abs(values - ref))))
            secs.append(seconds)
        rows[str(count)] = {
            "kendall_tau": float(np.mean(taus)),
            "mean_abs_top1_gap": float(np.mean(gaps)),
            "seconds_per_evaluation": float(np.mean(secs)),
        }
        print(f"  {count} calibration images: tau {rows[str(count)]['kendall_tau']:.3f}", flush=True)
    return {
        "subnets": subnets,
        "validation_images": len(evaluator.val),
        "reference_images": reference,
        "reference_seconds_per_evaluation": ref_seconds,
        "noise_floor_tau": float(kendalltau(ref2, ref).statistic),
        "top1_range": [float(ref.min()), float(ref.max())],
        "sizes": rows,
    }


def timed(fn) -> tuple[Any, float]:
    """``fn()`` and its seconds, with the GPU's queued work finished on both sides."""
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    sync()
    start = time.perf_counter()
    value = fn()
    sync()
    return value, time.perf_counter() - start


def measure(config, subnets: int, seed: int) -> dict[str, Any]:
    """End to end, per phase, and pure forward, per subnet, interleaved."""
    parts = RunParts.build(config)
    evaluator, space = parts.evaluator, parts.space
    rng = random.Random(seed)
    chosen = []
    while len(chosen) < subnets:
        s = Subnet.sample(space, rng)
        if s not in chosen:
            chosen.append(s)
    run_kw = {"device": evaluator.device, "precision": evaluator.precision}
    evaluator.top1(chosen[0])  # warm the caches (calibration images per resolution, validation batches)
    rows = []
    for subnet in chosen:
        net = supernet_for(parts.supernets, subnet)
        _, end_to_end = timed(lambda subnet=subnet: evaluator.top1(subnet))
        with kept_bn_statistics(net):  # the same two phases, timed apart
            _, calibration = timed(lambda net=net, subnet=subnet: evaluator.calibrator(net, subnet))
            _, validation = timed(
                lambda net=net, r=subnet.r: evaluate_top1(net, evaluator.validation_batches(r), **run_kw)
            )
            # the forward passes alone: the validation images already resized, normalised and on the
            # device, through the subnet in its supernet (as evaluated: BN folded, the run's layout) and
            # extracted as a standalone channels-last network; the faster of the two is the floor
            ready = [(x.to(evaluator.device), y) for x, y in evaluator.validation_batches(subnet.r)]
            shapes = ready[:1] + ready[-1:]  # the batch shapes met: first calls out of the timing
            evaluate_top1(net, shapes, **run_kw)
            _, in_supernet = timed(lambda net=net, ready=ready: evaluate_top1(net, ready, **run_kw))
            model = net.extract(subnet).eval().to(memory_format=torch.channels_last)
        images = sum(len(y) for _, y in ready)
        last = [(x.contiguous(memory_format=torch.channels_last), y) for x, y in ready]

        def forward(model=model, ready=last) -> None:
            with torch.no_grad(), evaluator.precision.autocast():
                for x, _ in ready:
                    model(x)

        forward(ready=last[:1] + last[-1:])  # a new network's first calls: allocator, kernel choice
        _, extracted = timed(forward)
        pure = min(in_supernet, extracted)
        rows.append(
            {
                "subnet": subnet.to_dict(),
                "images": images,
                "end_to_end_s": end_to_end,
                "calibration_s": calibration,
                "validation_s": validation,
                "pure_forward_s": pure,
                "forward_in_supernet_s": in_supernet,
                "forward_extracted_s": extracted,
            }
        )
        print(
            f"  r={subnet.r}: end to end {end_to_end:.3f} s (calibration {calibration:.3f}, validation "
            f"{validation:.3f}), forward alone {in_supernet:.3f} in the supernet, {extracted:.3f} extracted, "
            f"over {images} images",
            flush=True,
        )
    end = float(np.sum([r["end_to_end_s"] for r in rows]))
    pure = float(np.sum([r["pure_forward_s"] for r in rows]))
    images = int(np.sum([r["images"] for r in rows]))
    per_phase = {
        "calibration": float(np.mean([r["calibration_s"] for r in rows])),
        "validation": float(np.mean([r["validation_s"] for r in rows])),
    }
    per_phase["other"] = max(0.0, end / len(rows) - per_phase["calibration"] - per_phase["validation"])
    return {
        "efficiency": pure / end,
        "end_to_end_images_per_s": images / end,
        "pure_forward_images_per_s": images / pure,
        "seconds_per_subnet": per_phase,
        "validation_images": rows[0]["images"],
        "calibration_images": len(evaluator.calibrator.images),
        "subnets": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", choices=SETTINGS, default=list(SETTINGS))
    parser.add_argument("--subnets", type=int, default=6)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N (the GPU script: cuda)")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--fidelity",
        action="store_true",
        help="also measure the ranking's fidelity against the number of calibration images",
    )
    parser.add_argument(
        "--validation-cache-mb",
        type=float,
        help="evaluation.validation_cache_mb of every setting (default: the config's; 0: the validation "
        "images decoded and resized again for every subnet)",
    )
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    name = "evaluation_speed" + ("_cuda" if args.device.startswith("cuda") else "")
    out = args.out or RESULTS / (f"{name}_quick.json" if args.quick else f"{name}.json")
    commit = code_version()
    torch.set_num_threads(args.threads)
    results: dict[str, Any] = {}
    # not measured now (no --fidelity): the result file keeps the study it holds
    kept = (
        json.loads(out.read_text()).get("calibration_fidelity") if out.is_file() and not args.quick else None
    )

    def write(fidelity: dict[str, Any] | None) -> None:  # after every setting: a cut-off run keeps those done
        record = {
            "question": "evaluated images per second end to end against pure forward passes (issue 43)",
            "device": args.device,
            "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "precision": args.precision,
            "quick": args.quick,
            "validation_cache_mb": args.validation_cache_mb,
            "settings": results,
            **({"calibration_fidelity": fidelity} if fidelity else {}),
        }
        write_result(out, record, threads=args.threads, commit=commit)

    with tempfile.TemporaryDirectory() as tmp:
        built = configs(Path(tmp), args.quick, args.threads, args.device, args.precision, args.settings)
        if args.validation_cache_mb is not None:
            for config in built.values():
                config.evaluation.validation_cache_mb = args.validation_cache_mb
        for name in args.settings:
            print(f"{name}:", flush=True)
            with process_settings(built[name]):  # as a run holds them (threads, host memory reuse)
                count = 2 if args.quick else args.subnets
                if name == "ofa_jpeg_paper":
                    count = min(count, PAPER_SUBNETS)
                results[name] = measure(built[name], count, args.seed)
            r = results[name]
            print(
                f"{name}: efficiency {r['efficiency']:.2f} ({r['end_to_end_images_per_s']:.0f} vs "
                f"{r['pure_forward_images_per_s']:.0f} img/s); per subnet {r['seconds_per_subnet']}",
                flush=True,
            )
            write(kept)
        if args.fidelity:
            print("calibration fidelity (the shipped supernet on Fashion-MNIST):", flush=True)
            sizes = [32, 64] if args.quick else [64, 128, 256, 500, 1000]
            config = fidelity_config(args.quick, args.threads)
            with process_settings(config):
                fidelity = calibration_fidelity(
                    config, 4 if args.quick else 30, sizes, 128 if args.quick else 2000, args.seed
                )
            print(f"  noise floor (two reference draws): tau {fidelity['noise_floor_tau']:.3f}", flush=True)
            fidelity["commit"] = commit
            write(fidelity)
        elif not results:
            write(kept)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
