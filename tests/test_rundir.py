"""The run folder: one writer at a time (a lock that survives SIGKILL), read-only opening, scoped logs."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from nat.errors import ConfigError
from nat.files import append_line, write_json_atomic
from nat.search import Archive, RunDir, load_config

SMOKE = load_config(preset="smoke")


def folder_digest(path: Path) -> dict[str, str]:
    return {
        str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(path.rglob("*"))
        if p.is_file()
    }


def test_one_writer_at_a_time(tmp_path) -> None:
    first = RunDir.create(tmp_path / "run", SMOKE)
    with pytest.raises(ConfigError, match=rf"another nat process \(PID {os.getpid()}\)"):
        RunDir.resume(tmp_path / "run", SMOKE)
    first.close()
    with RunDir.resume(tmp_path / "run", SMOKE) as second:
        assert second.writable
    RunDir.resume(tmp_path / "run", SMOKE).close()  # released at the end of the with block


def test_a_killed_writer_leaves_no_stale_lock(tmp_path) -> None:
    run = tmp_path / "run"
    RunDir.create(run, SMOKE).close()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from nat.search import RunDir, load_config; "
            f"r = RunDir.resume({str(run)!r}, load_config(preset='smoke')); print('held', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=rf"PID {holder.pid}\)"):
            RunDir.resume(run, SMOKE)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    RunDir.resume(run, SMOKE).close()


def test_open_is_read_only(tmp_path) -> None:
    run = tmp_path / "run"
    with RunDir.create(run, SMOKE) as writer:
        writer.write_state({"iteration": 0, "history": []})
    with (run / "archive.jsonl").open("a") as f:
        f.write('{"iteration": 0, "pha')  # a torn last line: read-only opening must not cut it off
    before = folder_digest(run)
    opened = RunDir.open(run)
    assert not opened.writable and len(opened.archive) == 0
    assert opened.config == SMOKE and opened.read_state() == {"iteration": 0, "history": []}
    with opened.logging():
        logging.getLogger("nat.search").warning("not written anywhere")
    with pytest.raises(RuntimeError, match="read-only"):
        opened.write_state({})
    with pytest.raises(RuntimeError, match="read-only"):
        opened.archive.append(None)  # type: ignore[arg-type]
    assert folder_digest(run) == before
    # a writer does drop the torn line
    RunDir.resume(run, SMOKE).close()
    assert (run / "archive.jsonl").read_text() == ""


def test_open_refuses_a_folder_without_a_run(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not a nat run directory"):
        RunDir.open(tmp_path)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        RunDir.create(tmp_path / "file", SMOKE)


def test_logging_is_scoped_to_the_block(tmp_path) -> None:
    logger = logging.getLogger("nat")
    handlers, level = list(logger.handlers), logger.level
    with RunDir.create(tmp_path / "run", SMOKE) as run, run.logging():
        logging.getLogger("nat.search").info("inside the run")
    logging.getLogger("nat.search").info("after the run")
    text = (tmp_path / "run" / "search.log").read_text()
    assert "inside the run" in text and "after the run" not in text
    assert logger.handlers == handlers and logger.level == level


def test_damaged_state_is_one_clear_error(tmp_path) -> None:
    from nat.errors import CheckpointError

    with RunDir.create(tmp_path / "run", SMOKE) as run:
        (run.path / "state.json").write_text("{not json")
        with pytest.raises(CheckpointError, match="state.json is damaged"):
            run.read_state()


def test_atomic_json_and_durable_lines(tmp_path) -> None:
    path = tmp_path / "x.json"
    write_json_atomic(path, {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1} and not (tmp_path / "x.json.tmp").exists()
    with pytest.raises(ValueError):
        write_json_atomic(path, {"a": float("nan")})  # not JSON: refused, the old file kept
    assert json.loads(path.read_text()) == {"a": 1} and not (tmp_path / "x.json.tmp").exists()
    with pytest.raises(ValueError, match="newline"):
        append_line(tmp_path / "l.jsonl", "no newline")
    append_line(tmp_path / "l.jsonl", "one\n")
    append_line(tmp_path / "l.jsonl", "two\n")
    assert (tmp_path / "l.jsonl").read_text() == "one\ntwo\n"
    assert Archive(tmp_path / "empty.jsonl", read_only=True).records == []


# ----------------------------------------------------------------------------------------- foreign folders


def _pretrain_config():
    from nat.train.config import parse_config

    return parse_config(
        {
            "data": {"dataset": "digits", "train_batch_size": 32, "eval_batch_size": 200},
            "space": "tiny",
            "train_resolutions": [24],
            "calibration_images": 32,
            "val_images": 0,
            "test_eval": False,
            "phases": [{"name": "full", "epochs": 0.02, "lr": 0.05}],
        }
    )


def test_pretraining_configs_of_the_older_field_name_still_load() -> None:
    """``calib_images`` became ``calibration_images`` (the search configs' name for the same thing):
    configs and pretraining folders written before still load, with the same value."""
    from nat.train.config import parse_config

    data = _pretrain_config().model_dump(mode="json")
    data["calib_images"] = data.pop("calibration_images")
    assert parse_config(data) == _pretrain_config()
    assert "calib_images" not in parse_config(data).to_yaml()


def _folder(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "other"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"checkpoint.pt": "", "config.yaml": "x: 1\n"}, r"holds a pretraining run \(checkpoint.pt\)"),
        ({"metrics.jsonl": "{}\n"}, r"holds a pretraining run \(metrics.jsonl\)"),
        ({"supernet.safetensors": ""}, "holds a pretraining run"),
        (
            {"config.yaml": "PRETRAIN"},
            r"config.yaml is the config of a nat pretraining run \(`nat pretrain`\)",
        ),
        (
            {"config.yaml": "model: resnet50\nepochs: 3\n"},
            r"is not a nat search config \(.*model: unknown field",
        ),
        ({"config.yaml": "[1, 2"}, "config.yaml is not a YAML mapping"),
    ],
)
def test_search_refuses_a_folder_of_another_kind_and_changes_nothing(
    tmp_path, capsys, files, message
) -> None:
    from nat.cli import main

    files = {k: (_pretrain_config().to_yaml() if v == "PRETRAIN" else v) for k, v in files.items()}
    folder = _folder(tmp_path, files)
    before = folder_digest(folder)
    for opening in (
        lambda: RunDir.create(folder, SMOKE),
        lambda: RunDir.resume(folder, SMOKE),
        lambda: RunDir.open(folder),
        lambda: RunDir.saved_config(folder),
    ):
        with pytest.raises(ConfigError, match=message):
            opening()
    for argv in (
        ["search", "--preset", "smoke", "--out", str(folder)],
        ["search", "--resume", str(folder)],
        ["quickstart", "--out", str(folder)],
    ):
        assert main(argv) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith(f"nat {argv[0]}: error: ")
    assert folder_digest(folder) == before and not (folder / ".lock").exists()


def test_out_that_cannot_be_a_run_folder_is_one_clear_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"exists and is not a folder; choose another --out"):
        RunDir.create(tmp_path / "file" / "run", SMOKE)
    for kernel in ("/proc", "/sys"):
        with pytest.raises(ConfigError, match=rf"inside {kernel}, a kernel file system"):
            RunDir.create(Path(kernel) / "nat-run", SMOKE)

    def denied(self, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "mkdir", denied)
    with pytest.raises(ConfigError, match=rf"cannot create {tmp_path / 'run'}: permission denied"):
        RunDir.create(tmp_path / "run", SMOKE)


def test_pretraining_refuses_a_search_run_folder_and_changes_nothing(tmp_path, capsys) -> None:
    from nat.cli import main
    from nat.train.progressive import PretrainingTrainer

    with RunDir.create(tmp_path / "run", SMOKE) as writer:
        writer.write_state({"history": []})
    run = tmp_path / "run"
    (tmp_path / "cfg.yaml").write_text(_pretrain_config().to_yaml())
    before = folder_digest(run)
    for resume in (False, True):
        with pytest.raises(ConfigError, match=r"holds a search run \(.*state.json\), not a pretraining run"):
            PretrainingTrainer(_pretrain_config(), run, resume=resume)
    for argv in (["--config", str(tmp_path / "cfg.yaml"), "--out", str(run)], ["--resume", str(run)]):
        assert main(["pretrain", *argv]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "holds a search run" in err[0]
    assert folder_digest(run) == before  # no pretrain.log, no config.yaml replaced
    assert (
        main(["pretrain", "--config", str(tmp_path / "cfg.yaml"), "--out", str(tmp_path / "cfg.yaml")]) == 1
    )
    assert "exists and is not a folder" in capsys.readouterr().err


def test_one_pretraining_writer_at_a_time(tmp_path, capsys) -> None:
    from nat.cli import main

    out = tmp_path / "pre"
    out.mkdir()
    (out / "config.yaml").write_text(_pretrain_config().to_yaml())
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import time; from pathlib import Path; from nat.files import RunLock; "
            f"lock = RunLock(Path({str(out)!r}) / '.lock'); lock.acquire(); print('held', flush=True); "
            "time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    from nat.files import RunLock
    from nat.search.rundir import RunLock as SearchRunLock

    assert SearchRunLock is RunLock  # one lock for both kinds of run folder
    try:
        assert holder.stdout.readline().strip() == "held"
        before = folder_digest(out)
        assert main(["pretrain", "--resume", str(out), "--no-progress"]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"being written by another nat process (PID {holder.pid})" in err[0]
        assert {k: v for k, v in folder_digest(out).items() if k != "pretrain.log"} == before
        assert not (out / "metrics.jsonl").exists() and not (out / "checkpoint.pt").exists()
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
