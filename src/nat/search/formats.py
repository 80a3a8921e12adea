"""A run's models in their deployed forms: the runtime files ``finalize`` asks for, written and measured.

``finalize.onnx`` / ``finalize.executorch`` (and ``finalize.int8`` on top) ask for ``model.onnx``,
``model.pte`` and their int8 twins in every model folder (`nat.export.deploy`). Each file is then
measured in its own runtime on the task's test split (top-1, top-5) and at batch 1 (latency at
``finalize.latency_threads`` threads), beside the PyTorch form measured the same way, and the figures go
into the model's ``models.json`` entry under ``formats``: what a user of each runtime will get, measured,
not inferred from the fp32 network.

int8 calibration images come from the task's *training* split (`nat.export.deploy.calibration_split`,
drawn with the run's seed), never from the validation or test images.

A model whose weights did not change keeps the files and figures it has (a second ``nat export --onnx``
measures nothing again); a model made anew loses the files of the model it replaces first, so a folder
never holds an ONNX graph of other weights.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from nat.data.config import DataConfig, loader_from_config
from nat.data.loaders import make_loader
from nat.data.source import TaskData
from nat.export.deploy import (
    FORMATS,
    DeployFormat,
    calibration_images,
    calibration_split,
    measure,
    open_runner,
    requested_formats,
    require_runtime,
    write_format,
)
from nat.export.model_files import load_model
from nat.progress import progress_bar
from nat.search.config import FinalizeConfig

log = logging.getLogger("nat.search")


def wanted_formats(settings: FinalizeConfig) -> list[DeployFormat]:
    """The runtime files ``settings`` ask for (none: no ``formats`` are measured at all)."""
    return requested_formats(onnx=settings.onnx, executorch=settings.executorch, int8=settings.int8)


def check_request(settings: FinalizeConfig, task: TaskData | None = None) -> None:
    """Refuse, before any model is made or file written, runtime files whose packages are missing and
    an int8 calibration the task's training split cannot give (one line each)."""
    wanted = wanted_formats(settings)
    for runtime in dict.fromkeys(f.runtime for f in wanted):
        require_runtime(runtime, f"{'ExecuTorch' if runtime == 'executorch' else 'ONNX'} files")
    if task is not None and any(f.int8 for f in wanted):
        calibration_split(task.train, settings.calibration_images, 0)


def remove_stale_files(folder: Path) -> None:
    """The runtime files of a model folder whose weights are being replaced."""
    for fmt in FORMATS.values():
        if fmt.runtime != "pytorch":
            (folder / fmt.file).unlink(missing_ok=True)


def deliver_formats(
    folder: Path,
    entry: dict[str, Any],
    settings: FinalizeConfig,
    task: TaskData,
    data: DataConfig,
    seed: int,
) -> dict[str, Any] | None:
    """Write the runtime files ``settings`` ask for that ``folder`` lacks, measure every format not
    measured yet at these settings, and return ``entry``'s new ``formats`` (None when none is asked for
    and none was measured before)."""
    wanted = wanted_formats(settings)
    known: dict[str, Any] = dict(entry.get("formats") or {})
    if not wanted:
        return known or None
    model = load_model(folder)
    resolution = model.subnet.r
    to_write = [
        f for f in wanted if not (folder / f.file).is_file() or _recalibrate(known.get(f.name), f, settings)
    ]
    calibration = None
    if any(f.int8 for f in to_write):
        subset = calibration_split(task.train, settings.calibration_images, seed)
        loader = make_loader(
            task, subset, batch_size=data.eval_batch_size, resolution=resolution, train=False, seed=seed
        )
        calibration = calibration_images(loader, settings.calibration_images)
    for fmt in to_write:
        log.info("%s: writing %s (%s)", folder.name, fmt.file, fmt.label)
        write_format(model, fmt, folder / fmt.file, calibration)
        known.pop(fmt.name, None)
    example = torch.randn(1, 3, resolution, resolution, generator=torch.Generator().manual_seed(seed))
    # one loader, iterated once per format: the test images are read again each time rather than kept
    # (a test split at the model's resolution can be many GB, e.g. ImageNet's)
    loader = None
    if settings.test:
        loader = loader_from_config(task, data, "test", resolution=resolution, train=False, seed=seed)
    for fmt in [FORMATS["pytorch"], *wanted]:
        path = folder / fmt.file
        old = known.get(fmt.name)
        if _still_valid(old, path, settings):
            continue
        runner = open_runner(path, settings.latency_threads, model=model)
        test = (
            None
            if loader is None
            else progress_bar(loader, desc=f"{folder.name}: {fmt.label} test", leave=False)
        )
        known[fmt.name] = facts = measure(runner, path, example, test)
        if fmt.int8:
            facts["calibration_images"] = settings.calibration_images
        tested = f"test top-1 {100 * facts['test_top1']:.2f}%, " if "test_top1" in facts else ""
        log.info(
            "%s: %s: %s%.3f ms at batch 1 (%d thread(s)), %.2f MB",
            folder.name,
            fmt.label,
            tested,
            facts["latency_ms"],
            facts["threads"],
            facts["size_bytes"] / 1e6,
        )
    return {name: known[name] for name in FORMATS if name in known}


def _recalibrate(old: dict[str, Any] | None, fmt: DeployFormat, settings: FinalizeConfig) -> bool:
    """An int8 file calibrated on another number of images than asked for now."""
    made_with = (old or {}).get("calibration_images")
    return fmt.int8 and made_with is not None and made_with != settings.calibration_images


def _still_valid(old: dict[str, Any] | None, path: Path, settings: FinalizeConfig) -> bool:
    """A measurement that still describes ``path`` at these settings (same file size and threads, and
    tested when testing is asked for)."""
    return (
        old is not None
        and path.is_file()
        and old.get("size_bytes") == path.stat().st_size
        and old.get("threads") == settings.latency_threads
        and (not settings.test or old.get("test_top1") is not None)
    )
