"""Settings read off the data: which pretrained supernet a run starts from, and a whole run's settings
for ``nat search --data NAME`` with nothing else.

A search never starts from random weights unless asked (``supernet: random``): without ``supernet:`` it
takes OFA's ImageNet supernets where they were downloaded (``nat supernet download``), else nat's
built-in one where it fits the images (trained at 24-32 px: images up to `BUILTIN_MAX_SIDE` px), else
it stops and says where to get one. The choice is written into the run's config.yaml, so a resumed
run keeps it whatever is downloaded later.

`settings_for_data` goes further for a user who gives only the data: the set's size, class count and
image size decide the resolutions, the search-validation share, and how many epochs adaptation and
fine-tuning take (a fixed number of optimiser steps, so that a 300-image folder is trained as long as a
50,000-image set; short epochs on small sets were what left such runs at 50-60%, docs/own_images.md).
"""

from __future__ import annotations

import logging
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from nat.config_io import read_yaml_mapping, validation_message
from nat.data.config import DataConfig
from nat.data.source import IMAGENET_MEAN, DatasetSource, FileSplit
from nat.errors import ConfigError
from nat.search.config import PRESET_DIR
from nat.supernet.zoo import DIR_VARIABLE, downloaded, supernet_dir

logger = logging.getLogger("nat.search")

BUILTIN = "builtin:fashion_mnist_tiny"
#: the built-in supernet was trained at 24-32 px; images up to this side lose little when shrunk to it
BUILTIN_MAX_SIDE = 64
BUILTIN_RESOLUTIONS = [24, 28, 32]
#: images whose sizes are read to find a folder's typical size (headers only)
_SIZE_SAMPLE = 64

#: optimiser steps of the default run: initial adaptation, each iteration's adaptation, fine-tuning of
#: each delivered model (the quickstart's on mnist5k, where they were measured: README)
INITIAL_STEPS, ITERATION_STEPS, FINETUNE_STEPS = 210, 140, 210


@dataclass(frozen=True)
class DataFacts:
    """What a dataset is, as far as the defaults care: size, classes and the typical image side."""

    name: str
    train_images: int
    num_classes: int
    side: int
    official_val: bool
    eval_crop_pct: float = 1.0
    imagenet_statistics: bool = False

    def line(self) -> str:
        return (
            f"{self.name}: {self.train_images:,} training images, {self.num_classes} classes, "
            f"about {self.side} px"
        )


def data_facts(cfg: DataConfig) -> DataFacts:
    """Read the dataset of ``cfg`` (its official splits, as a run does) and summarise it."""
    from nat.data.registry import get_source

    source = get_source(cfg.dataset, cfg.root)
    return DataFacts(
        cfg.name or source.name,
        len(source.splits["train"]),
        source.num_classes,
        typical_side(source),
        "val" in source.splits,
        source.eval_crop_pct,
        tuple(source.mean) == tuple(IMAGENET_MEAN),
    )


def typical_side(source: DatasetSource) -> int:
    """The shorter side of the set's images: its fixed size, else the median over a spread sample of the
    training files (read from their headers, nothing decoded)."""
    if source.image_size is not None:
        return min(source.image_size)
    split = source.splits["train"]
    if not isinstance(split, FileSplit):
        return min(split.image_size)
    from PIL import Image

    step = max(1, len(split) // _SIZE_SAMPLE)
    sides = []
    for path in split.paths[::step][:_SIZE_SAMPLE]:
        try:
            with Image.open(path) as img:
                sides.append(min(img.size))
        except OSError:  # a file the scan let through but PIL cannot open: reported when it is loaded
            continue
    return int(statistics.median(sides)) if sides else 0


def choose_supernet(facts: list[DataFacts], folder: Path | None = None) -> tuple[str | list[str], str]:
    """The pretrained supernet(s) for these tasks and why, or `ConfigError` saying where to get one."""
    here = downloaded(folder)
    if here:
        paths = [str(p) for p in here.values()]
        value: str | list[str] = paths[0] if len(paths) == 1 else paths
        plural = "s" if len(paths) > 1 else ""
        return value, f"OFA's ImageNet supernet{plural} ({', '.join(here)}) from {folder or supernet_dir()}"
    largest = max(f.side for f in facts)
    if largest <= BUILTIN_MAX_SIDE:
        return BUILTIN, (
            f"nat's built-in supernet (pretrained on Fashion-MNIST at 24-32 px; these images are about "
            f"{largest} px); for natural photos OFA's ImageNet supernet is better: nat supernet download "
            "ofa_mbv3_w1.0"
        )
    raise ConfigError(
        f"no pretrained supernet here fits {largest}-px images: run `nat supernet download ofa_mbv3_w1.0` "
        f"(OFA's ImageNet supernet, kept in {folder or supernet_dir()}; ${DIR_VARIABLE} moves it) and start "
        f"again, or set supernet: to a supernet file, {BUILTIN} (trained at 24-32 px) or random (fresh "
        "weights, for experiments)"
    )


def settle_supernet(config: Any, saved: Any | None = None) -> tuple[Any, str | None]:
    """``config`` with its supernet decided (a `SearchConfig`), and the line that says which (None when
    the config named one). ``saved``: the config of the run being resumed, whose choice stands."""
    if config.supernet is not None:
        return config, None
    if saved is not None and saved.supernet is not None:
        return config.model_copy(update={"supernet": saved.supernet}), None
    if isinstance(config.space, str):
        raise ConfigError(
            f"space: {config.space!r} is a preset space, which only a fresh supernet has: add supernet: "
            "random for fresh weights, or change a pretrained supernet's own space with a mapping (e.g. "
            "space: {resolutions: [24, 28]})"
        )
    value, why = choose_supernet([data_facts(d) for d in config.tasks])
    shown = value if isinstance(value, str) else ", ".join(value)
    return config.model_copy(update={"supernet": value}), f"supernet: {shown} ({why})"


def settled(config: Any, resumed: Path | None) -> Any:
    """``config`` with the supernet it did not name decided, the choice logged once; ``resumed``: the
    folder of the run being continued, whose saved choice stands."""
    from nat.run_folder import CONFIG
    from nat.search.rundir import RunDir

    saved = RunDir.saved_config(resumed) if resumed is not None and (resumed / CONFIG).is_file() else None
    config, line = settle_supernet(config, saved)
    if line:
        logger.info("%s", line)
    return config


# ------------------------------------------------------------------- a whole run from the data alone


def settings_for_data(
    data: dict[str, Any], supernet: str | list[str] | None = None
) -> tuple[dict, list[str]]:
    """The config mapping of a run on ``data`` (a data config mapping) with nothing else given, and the
    lines that say what was chosen and why. ``supernet``: the user's, else chosen here."""
    try:
        cfg = DataConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(f"data: {validation_message(exc, model=DataConfig)}") from None
    facts = data_facts(cfg)
    why = "given"
    if supernet is None:
        supernet, why = choose_supernet([facts])
    builtin = supernet == BUILTIN
    val = _val_size(facts)
    train = facts.train_images - (0 if facts.official_val else _held_out(val, facts.train_images))
    # 64 as the quickstart; a set of a few hundred images gets at least 4 batches per epoch
    batch = 128 if train >= 20_000 else min(64, max(8, train // 4))
    steps_per_epoch = max(1, train // batch)  # loaders drop the last incomplete batch
    initial = _epochs(INITIAL_STEPS, steps_per_epoch)
    per_iteration = _epochs(ITERATION_STEPS, steps_per_epoch)
    finetune = _epochs(FINETUNE_STEPS, steps_per_epoch)
    small = facts.side <= BUILTIN_MAX_SIDE
    # the quickstart's budget and methods (measured: README), its task and scale replaced by this data's
    settings = read_yaml_mapping(PRESET_DIR / "quickstart.yaml")
    settings.pop("threads", None)  # the quickstart's one thread suits its 2-core reference machine only
    settings.pop("space", None)
    settings["supernet"] = supernet
    settings["data"] = {
        **data,
        "val_size": val,
        "train_batch_size": batch,
        "eval_batch_size": 256,
        "rrc_scale": [0.8, 1.0] if small else [0.25, 1.0],
    }
    # a small image is evaluated whole (as nat's small-image readers do); a folder reader cannot know
    # its images' size and keeps the ImageNet habit of a 0.875 centre crop
    crop = 1.0 if small else facts.eval_crop_pct
    if crop != facts.eval_crop_pct:
        settings["data"]["eval_crop_pct"] = crop
    # small images are standardised by their own statistics, as nat's small-image readers do and as the
    # built-in supernet was pretrained; a folder reader otherwise assumes ImageNet's (right for photos)
    measured = small and facts.imagenet_statistics
    if measured:
        settings["data"]["normalization"] = "measured"
    settings["adaptation"].update(initial_epochs=initial, epochs=per_iteration)
    settings["evaluation"]["calibration_images"] = min(256, train)
    settings["finalize"]["finetune_epochs"] = finetune
    if builtin:
        settings["space"] = {"resolutions": BUILTIN_RESOLUTIONS}
    shown = supernet if isinstance(supernet, str) else ", ".join(supernet)
    norm = "measured (mean/std of the training images)" if measured else "the dataset reader's"
    held = (
        "the set's own validation split"
        if facts.official_val
        else f"{_held_out(val, facts.train_images):,} training images held out for search-validation"
    )
    lines = [
        facts.line(),
        f"supernet: {shown} ({why})",
        f"space.resolutions: {BUILTIN_RESOLUTIONS if builtin else 'the supernet own (OFA: 192-256)'}",
        f"data.val_size: {val} ({held})",
        f"data.train_batch_size: {batch}; data.rrc_scale: {settings['data']['rrc_scale']}",
        f"data.eval_crop_pct: {crop:g} ({'whole images' if crop == 1 else 'a centre crop'} at evaluation); "
        f"data.normalization: {norm}",
        f"data.hflip: {_hflip_line(data)}",
        f"adaptation: initial_epochs {initial}, epochs {per_iteration} per iteration (about "
        f"{INITIAL_STEPS} and {ITERATION_STEPS} steps of {batch} images)",
        f"finalize: {settings['finalize']['models']} models, finetune_epochs {finetune} (about "
        f"{FINETUNE_STEPS} steps)",
        f"search: {settings['initial_samples']} initial subnets, {settings['iterations']} iterations of "
        f"{settings['candidates_per_iteration']} candidates (the quickstart's budget)",
    ]
    return settings, lines


def _hflip_line(data: dict[str, Any]) -> str:
    """What the run does about horizontal flips, which only the user can know to be harmless."""
    if data.get("hflip") is not None:
        return f"{str(data['hflip']).lower()} (given)"
    return (
        "the dataset's default (on for a folder: set data.hflip=false when a mirrored image is another "
        "class, as digits, letters or arrows are; it cost 2.5 points on MNIST digits)"
    )


def _val_size(facts: DataFacts) -> float | int:
    """Search-validation share: a fifth of a small set, a tenth of a mid-sized one, 5,000 images above."""
    if facts.train_images <= 2_000:
        return 0.2
    if facts.train_images <= 50_000:
        return 0.1
    return 5_000


def _held_out(val: float | int, train_images: int) -> int:
    return round(val * train_images) if isinstance(val, float) else val


def _epochs(steps: int, steps_per_epoch: int) -> float:
    """Epochs that make about ``steps`` optimiser steps, rounded to a readable number."""
    epochs = steps / steps_per_epoch
    return round(epochs, 1) if epochs < 10 else float(round(epochs))
