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
