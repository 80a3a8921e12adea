"""A newcomer's first runs: never silently random weights, settings read off the data, a resume hint on
Ctrl-C, progress bars only on a terminal (issue 42)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from nat.cli import main
from nat.progress import progress_bar
from nat.search import NATSearch, RunDir, load_config
from nat.search.data_defaults import (
    BUILTIN,
    FINETUNE_STEPS,
    INITIAL_STEPS,
    ITERATION_STEPS,
    settings_for_data,
    settle_supernet,
    settled,
)

pytestmark = pytest.mark.usefixtures("one_thread")

SMALL = {
    "data": {"dataset": "digits", "val_size": 60},
    "threads": 1,
    "evaluation": {"calibration_images": 32},
}


def _images(root: Path, side: int, classes: int = 2, per_class: int = 5) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for k in range(per_class):
            img = rng.integers(0, 255, (side, side + k, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / f"c{c}" / f"{k}.png")
    return root


def _fake_download(folder: Path, width: float = 1.0) -> Path:
    """A file where `nat supernet download` keeps OFA's supernet, with the record it writes beside it."""
    from nat.space.definition import get_space
    from nat.supernet import Supernet

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"ofa_mbv3_d234_e346_k357_w{width}.pth"
    torch.save({"state_dict": Supernet(get_space("ofa_mbv3"), width, 1000).state_dict()}, path)
    path.with_suffix(".json").write_text(json.dumps({"sha256": "x"}))
    return path


def test_without_a_supernet_small_images_get_the_builtin_one_said_and_saved(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="nat.search")
    config = load_config(overrides=SMALL)
    assert config.supernet is None
    with NATSearch(config, tmp_path / "run") as search:
        assert search.config.supernet == BUILTIN
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["supernet"] == BUILTIN
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("supernet:")]
    assert len(lines) == 1 and BUILTIN in lines[0] and "nat supernet download" in lines[0]
    # a resumed run keeps its choice even when OFA's supernet was downloaded since
    _fake_download(Path(__import__("os").environ["NAT_SUPERNET_DIR"]) / "later", 1.0)
    assert settled(config, tmp_path / "run").supernet == BUILTIN


def test_downloaded_ofa_supernets_come_first(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("NAT_SUPERNET_DIR", str(tmp_path))
    paths = [_fake_download(tmp_path, 1.0), _fake_download(tmp_path, 1.2)]
    config, line = settle_supernet(load_config(overrides=SMALL))
    assert config.supernet == [str(p) for p in paths]
    assert "OFA's ImageNet supernets (ofa_mbv3_w1.0, ofa_mbv3_w1.2)" in line


def test_large_images_without_a_download_stop_and_say_where_to_get_one(tmp_path, capsys) -> None:
    root = _images(tmp_path / "photos", side=120)
    out = tmp_path / "run"
    assert main(["search", "--data", "folder", "--root", str(root), "--out", str(out)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no pretrained supernet here fits 120-px images" in err[0]
    assert "nat supernet download ofa_mbv3_w1.0" in err[0] and "random" in err[0]
    assert not out.exists()


def test_a_preset_space_without_a_supernet_asks_for_random(tmp_path, capsys) -> None:
    argv = ["search", "--preset", "smoke", "--set", "supernet=null", "--out", str(tmp_path / "r")]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "space: 'micro' is a preset space" in err and "supernet: random" in err


def test_a_run_saved_before_the_choice_was_recorded_reads_as_random(tmp_path) -> None:
    with NATSearch(load_config(preset="smoke"), tmp_path / "run"):
        pass
    path = tmp_path / "run" / "config.yaml"
    old = yaml.safe_load(path.read_text())
    old["supernet"] = None  # what runs wrote when a missing supernet meant fresh weights
    path.write_text(yaml.safe_dump(old))
    assert RunDir.saved_config(tmp_path / "run").supernet == "random"
    assert RunDir.open(tmp_path / "run").config.supernet == "random"


@pytest.mark.parametrize(("per_class", "val"), [(40, 0.2), (300, 0.2)], ids=["small-folder", "larger-folder"])
def test_settings_for_data_scale_with_the_set(tmp_path, per_class, val) -> None:
    root = _images(tmp_path / "imgs", side=28, classes=2, per_class=per_class)
    settings, lines = settings_for_data({"dataset": "folder", "root": str(root)})
    assert settings["supernet"] == BUILTIN and settings["space"] == {"resolutions": [24, 28, 32]}
    assert settings["data"]["val_size"] == val and settings["data"]["root"] == str(root)
    assert settings["data"]["eval_crop_pct"] == 1.0  # small images are evaluated whole (the folder: 0.875)
    assert settings["data"]["normalization"] == "measured"  # not the folder reader's ImageNet statistics
    train_images = int(per_class * 2 * 0.8)  # a folder without a test folder gives a fifth to test
    assert lines[0].startswith(f"folder: {train_images:,} training images, 2 classes, about 28 px")
    # epochs make the same number of optimiser steps whatever the set's size
    batch = settings["data"]["train_batch_size"]
    steps_per_epoch = (train_images - round(val * train_images)) // batch
    for epochs, steps in [
        (settings["adaptation"]["initial_epochs"], INITIAL_STEPS),
        (settings["adaptation"]["epochs"], ITERATION_STEPS),
        (settings["finalize"]["finetune_epochs"], FINETUNE_STEPS),
    ]:
        assert epochs * steps_per_epoch == pytest.approx(steps, rel=0.06)
    assert "threads" not in settings  # the quickstart's one thread is for its own machine
    load_config(overrides=settings)  # a valid config as it is


def test_the_validation_share_shrinks_as_the_set_grows() -> None:
    from nat.search.data_defaults import DataFacts, _val_size

    shares = [_val_size(DataFacts("x", n, 10, 32, False)) for n in (300, 2_000, 2_001, 50_000, 50_001)]
    assert shares == [0.2, 0.2, 0.1, 0.1, 5_000]


def test_ctrl_c_says_how_to_continue_and_bars_stay_off_a_log(tmp_path, capsys, at_evaluation) -> None:
    at_evaluation(3)
    out = tmp_path / "run"
    assert main(["search", "--preset", "smoke", "--out", str(out)]) == 130
    err = capsys.readouterr().err
    assert f"interrupted; continue with: nat search --resume {out}" in err
    assert "it/s" not in err and "\r" not in err  # stderr is not a terminal here: no progress bars


def test_progress_bars_follow_the_terminal_unless_told(monkeypatch) -> None:
    monkeypatch.delenv("NAT_PROGRESS", raising=False)
    assert progress_bar(total=1).disable  # pytest's stderr is not a terminal
    monkeypatch.setenv("NAT_PROGRESS", "1")
    assert not progress_bar(total=1).disable
    assert progress_bar(total=1, show=False).disable  # e.g. a rank other than 0
    monkeypatch.setenv("NAT_PROGRESS", "0")
    assert progress_bar(total=1).disable


def test_a_model_folders_subnet_file_describes_itself(tmp_path, capsys) -> None:
    """`nat profile MODEL/net.subnet` counts the model in its own space and class count (model.json), not
    in OFA's with 1,000 classes."""
    import random

    from nat.export import save_model
    from nat.space import Subnet, get_space
    from nat.supernet.static import StaticMobileNetV3

    space = get_space("tiny")
    folder = save_model(StaticMobileNetV3(space, Subnet.sample(space, random.Random(0)), 7), tmp_path / "m")
    assert main(["profile", str(folder / "net.subnet"), "--json"]) == 0
    from_subnet = json.loads(capsys.readouterr().out)
    assert main(["profile", str(folder), "--json"]) == 0
    from_folder = json.loads(capsys.readouterr().out)
    assert from_subnet["num_classes"] == 7 and from_subnet["space"] == "tiny"
    assert (from_subnet["madds"], from_subnet["params"]) == (from_folder["madds"], from_folder["params"])


GUIDE = Path(__file__).resolve().parents[1] / "docs" / "own_images.md"
#: the guide's search cut to seconds (its settings otherwise as chosen from the data)
SMOKE_SIZE = {
    "initial_samples": 4,
    "iterations": 1,
    "candidates_per_iteration": 1,
    "adaptation.max_steps": 2,
    "nsga3.pop_size": 8,
    "nsga3.generations": 2,
    "evaluation.calibration_images": 16,
    "finalize.models": 1,
    "finalize.finetune_epochs": 0.05,
    "threads": 1,
}


def test_the_own_images_guide_runs_at_smoke_size(tmp_path, capsys) -> None:
    """docs/own_images.md from a folder to a classified file: its commands, at smoke size."""
    guide = GUIDE.read_text()
    for command in (
        "nat data info folder --root photos",
        "nat search --data folder --root photos --out",
        "nat predict runs/photos/models/",
        "nat supernet download ofa_mbv3_w1.0",
    ):
        assert command in guide, command
    photos = _images(tmp_path / "photos", side=30, classes=3, per_class=10)
    assert main(["data", "info", "folder", "--root", str(photos)]) == 0
    out = tmp_path / "runs" / "photos"
    sets = [arg for k, v in SMOKE_SIZE.items() for arg in ("--set", f"{k}={v}")]
    assert main(["search", "--data", "folder", "--root", str(photos), "--out", str(out), *sets]) == 0
    printed = capsys.readouterr().out
    assert "settings chosen from the data" in printed and f"supernet: {BUILTIN}" in printed
    (model,) = json.loads((out / "models.json").read_text())
    described = json.loads((out / "models" / model["name"] / "model.json").read_text())
    assert described["preprocessing"]["crop_pct"] == 1.0  # as chosen from the data, and as evaluated
    assert (
        main(["predict", str(out / "models" / model["name"]), str(photos / "c1" / "0.png"), "--top", "2"])
        == 0
    )
    answer = capsys.readouterr().out.strip()
    assert answer.startswith(str(photos / "c1" / "0.png")) and answer.count("%") == 2
    assert any(f"{c} (" in answer for c in ("c0", "c1", "c2"))


def test_predict_refuses_what_it_cannot_read_in_one_line(tmp_path, capsys) -> None:
    import random

    from nat.export import save_model
    from nat.space import Subnet, get_space
    from nat.supernet.static import StaticMobileNetV3

    space = get_space("micro")
    folder = save_model(StaticMobileNetV3(space, Subnet.sample(space, random.Random(0)), 3), tmp_path / "m")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    for argv, message in [
        (["predict", str(folder), str(tmp_path / "none.png")], "image not found"),
        (["predict", str(folder), str(text)], "is not an image nat can read"),
        (["predict", str(tmp_path / "nowhere"), str(text)], "model folder not found"),
    ]:
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err


def test_data_flags_replace_the_task_of_a_preset_or_config(tmp_path, capsys, monkeypatch) -> None:
    """`--data`/`--root` beside `--preset`/`--config` replace `data.dataset`/`data.root` (the rest stays)."""
    import nat.runs

    seen = {}
    monkeypatch.setattr(nat.runs, "run_search", lambda config, out, **kw: seen.setdefault("config", config))
    monkeypatch.setattr("nat.cli.search.print_result", lambda config, result: 0)
    root = _images(tmp_path / "imgs", side=20)
    argv = [
        "search",
        "--preset",
        "smoke",
        "--data",
        "folder",
        "--root",
        str(root),
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 0
    data = seen["config"].data
    assert (data.dataset, str(data.root), data.val_size) == ("folder", str(root), 300)  # smoke's val_size
    assert main(["search", "--preset", "smoke", "--data", "nope", "--out", str(tmp_path / "r2")]) == 1
    assert "nope" in capsys.readouterr().err


def test_measured_normalization_is_the_training_pixels_statistics(tmp_path) -> None:
    from nat.data import load_dataset

    root = _images(tmp_path / "imgs", side=12, classes=2, per_class=6)
    task = load_dataset("folder", root, normalization="measured", in_memory=False)
    pixels = (
        np.concatenate(
            [
                np.asarray(Image.open(p).convert("RGB"), dtype=np.float64).reshape(-1, 3)
                for p in task.source.splits["train"].paths
            ]
        )
        / 255.0
    )
    assert task.source.mean == pytest.approx(tuple(pixels.mean(axis=0)), abs=1e-4)
    assert task.source.std == pytest.approx(tuple(pixels.std(axis=0)), abs=1e-4)
