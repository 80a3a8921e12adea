"""Determinism on a user's own image folder: the same config gives the same run, byte for byte.

A folder task reads files through DataLoader workers and usually has a class count of its own, so a
pretrained supernet gets a new classifier for it. Both paths must depend on the run seed alone: two
runs, any ``num_workers``, and a run stopped and resumed all write the same archive and weights.
(Issue 39: a new head drawn from the global random state made two identical folder runs differ.)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from nat.search import NATSearch, load_config
from nat.supernet import Supernet
from nat.supernet.checkpoint import load_supernet, save_supernet

pytestmark = pytest.mark.usefixtures("one_thread")

CLASSES = 3  # not the supernet file's 10: the run must give it a new classifier


def write_folder(root: Path, per_class: int = 24) -> Path:
    """PNG and JPEG images of mixed sizes in one folder per class, as a user's photos would come."""
    rng = np.random.default_rng(0)
    for c in range(CLASSES):
        (root / f"class_{c}").mkdir(parents=True)
        for k in range(per_class):
            size = 20 + 4 * (k % 3)
            base = np.zeros((size, size, 3), np.uint8)
            base[..., c] = 160  # the class is the dominant colour, the rest noise
            img = np.clip(base + rng.integers(0, 96, base.shape), 0, 255).astype(np.uint8)
            ext = "png" if k % 2 else "jpg"
            Image.fromarray(img).save(root / f"class_{c}" / f"{k:03d}.{ext}")
    return root


@pytest.fixture(scope="module")
def folder_task(tmp_path_factory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("folder_task")
    torch.manual_seed(1)
    supernet = save_supernet(Supernet("micro", 1.0, num_classes=10), base / "pretrained.safetensors")
    return write_folder(base / "images"), supernet


def folder_settings(folder: Path, supernet: Path, **extra) -> dict:
    settings = {
        "supernet": str(supernet),
        "data": {
            "dataset": "folder",
            "root": str(folder),
            "in_memory": False,
            "num_workers": 2,
            "val_size": 18,
            "train_batch_size": 16,
            "eval_batch_size": 32,
        },
        "initial_samples": 5,
        "iterations": 2,
        "candidates_per_iteration": 2,
        "adaptation": {"initial_epochs": 1.0, "epochs": 1.0, "max_steps": 3},
        "nsga3": {"pop_size": 10, "generations": 3},
        "evaluation": {"calibration_images": 32},
        "finalize": {"models": 0},
    }
    for key, value in extra.items():
        section, _, field = key.partition(".")
        if field:
            settings[section] = {**settings[section], field: value}
        else:
            settings[key] = value
    return settings


def run_search(out: Path, settings: dict) -> Path:
    NATSearch(load_config(preset="smoke", overrides=settings), out).run()
    return out


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(run / "supernet_w1.safetensors")


def same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_a_new_classifier_depends_on_its_seed_alone(folder_task) -> None:
    _, path = folder_task
    torch.manual_seed(123)
    a = load_supernet(path, num_classes=CLASSES, classifier_seed=7)
    torch.rand(5)  # whatever ran before must not matter
    state = torch.random.get_rng_state()
    b = load_supernet(path, num_classes=CLASSES, classifier_seed=7)
    assert torch.equal(torch.random.get_rng_state(), state)  # the global state is left as it was
    c = load_supernet(path, num_classes=CLASSES, classifier_seed=8)
    assert torch.equal(a.classifier.linear.weight, b.classifier.linear.weight)
    assert not torch.equal(a.classifier.linear.weight, c.classifier.linear.weight)


def test_two_folder_runs_are_byte_identical_with_any_number_of_workers(folder_task, tmp_path) -> None:
    folder, supernet = folder_task
    first = run_search(tmp_path / "a", folder_settings(folder, supernet))
    torch.rand(3)  # a different global random state between the runs changes nothing
    second = run_search(tmp_path / "b", folder_settings(folder, supernet))
    no_workers = run_search(tmp_path / "c", folder_settings(folder, supernet, **{"data.num_workers": 0}))
    archive = (first / "archive.jsonl").read_bytes()
    assert archive.count(b"\n") == 5 + (5 + 2) + (
        7 + 2
    )  # initial; each iteration: re-evaluations, candidates
    assert (second / "archive.jsonl").read_bytes() == archive
    assert (no_workers / "archive.jsonl").read_bytes() == archive
    assert same_weights(weights(first), weights(second))
    assert same_weights(weights(first), weights(no_workers))
    # the files themselves too: safetensors' metadata keys are written sorted, not in hash-map order
    checkpoint = "supernet_w1.safetensors"
    assert (first / checkpoint).read_bytes() == (second / checkpoint).read_bytes()


def test_a_stopped_folder_run_resumes_to_the_uninterrupted_one(folder_task, tmp_path, at_evaluation) -> None:
    folder, supernet = folder_task
    # in-process loading: the first test shows that workers change nothing (the SIGKILL test keeps 2)
    settings = folder_settings(folder, supernet, **{"data.num_workers": 0})
    straight = run_search(tmp_path / "straight", settings)

    restore = at_evaluation(8)  # inside iteration 1, after its adaptation
    with pytest.raises(KeyboardInterrupt):
        run_search(tmp_path / "stopped", settings)
    restore()
    config = load_config(preset="smoke", overrides=settings)
    NATSearch(config, tmp_path / "stopped", resume=True).run()
    assert (tmp_path / "stopped" / "archive.jsonl").read_bytes() == (straight / "archive.jsonl").read_bytes()
    assert same_weights(weights(tmp_path / "stopped"), weights(straight))


def cli_config(tmp_path: Path, folder: Path, supernet: Path, **extra) -> Path:
    path = tmp_path / "config.yaml"
    settings = folder_settings(folder, supernet, **extra)
    path.write_text(json.dumps({"device": "cpu", **settings}))  # JSON is YAML
    return path


def nat_search(*args: str, nproc: int = 1) -> list[str]:
    launch = [sys.executable, "-m", "nat.cli"]
    if nproc > 1:
        launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        launch += ["-m", "nat.cli"]
    return [*launch, "search", "--preset", "smoke", *args]


def run(cmd: list[str]) -> None:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]


@pytest.mark.slow
def test_sigkill_of_a_folder_run_then_resume_matches_uninterrupted(folder_task, tmp_path) -> None:
    """A real SIGKILL of `nat search` (its DataLoader workers with it), then --resume."""
    folder, supernet = folder_task
    config = cli_config(tmp_path, folder, supernet, iterations=3)
    run(nat_search("--config", str(config), "--out", str(tmp_path / "a")))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        nat_search("--config", str(config), "--out", str(tmp_path / "b")),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    archive = tmp_path / "b" / "archive.jsonl"
    while proc.poll() is None and (not archive.exists() or archive.read_text().count("\n") < 12):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    run([sys.executable, "-m", "nat.cli", "search", "--resume", str(tmp_path / "b")])
    assert archive.read_bytes() == (tmp_path / "a" / "archive.jsonl").read_bytes()


@pytest.mark.slow
def test_a_folder_run_under_torchrun_is_deterministic_and_resumes_exactly(folder_task, tmp_path) -> None:
    """Two processes on a folder task: two runs agree byte for byte, and a run stopped after its first
    iteration and resumed under torchrun ends with the uninterrupted run's archive and weights."""
    folder, supernet = folder_task
    config = cli_config(tmp_path, folder, supernet)
    for name in ("a", "b"):
        run(nat_search("--config", str(config), "--out", str(tmp_path / name), nproc=2))
    run(nat_search("--config", str(config), "--out", str(tmp_path / "c"), "--set", "iterations=1", nproc=2))
    resume = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    run([*resume, "-m", "nat.cli", "search", "--resume", str(tmp_path / "c"), "--set", "iterations=2"])
    archive = (tmp_path / "a" / "archive.jsonl").read_bytes()
    for name in ("b", "c"):
        assert (tmp_path / name / "archive.jsonl").read_bytes() == archive
        assert same_weights(weights(tmp_path / name), weights(tmp_path / "a"))
