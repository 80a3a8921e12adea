"""Archive integrity (seq + checksum, damage is one clear error, --repair) and full or failing disks."""

from __future__ import annotations

import errno
import json
import os
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from nat.cli import main
from nat.errors import CheckpointError
from nat.files import append_line, resume_hint, storage_error, write_atomic
from nat.search import NATSearch, RunDir, load_config
from nat.search.archive import Archive, Phase, Record, checksum
from nat.space import get_space
from nat.space.genome import encode
from nat.space.subnet import Subnet

SPACE = get_space()
FAST = {  # as in tests/test_search.py: the smoke preset, few samples, a micro supernet
    "initial_samples": 6,
    "iterations": 2,
    "candidates_per_iteration": 2,
    "adaptation": {"initial_epochs": 1.0, "epochs": 0.3, "max_steps": 4},
    "nsga3": {"pop_size": 12, "generations": 4},
    "evaluation": {"calibration_images": 64},
    "data": {"val_size": 120},
}


def records(n: int, seed: int = 0) -> list[Record]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        s = Subnet.sample(SPACE, rng)
        top1 = round(0.5 + i / 100, 4)
        genome = tuple(int(g) for g in encode(s, SPACE))
        out.append(Record(i // 4, Phase.INITIAL, s, genome, top1, {"top1": top1, "madds": 1.0e6 + i}))
    return out


def written(path: Path, n: int = 5) -> list[bytes]:
    archive = Archive(path)
    for record in records(n):
        archive.append(record)
    return path.read_bytes().splitlines(keepends=True)


def test_each_line_carries_its_place_and_a_checksum(tmp_path) -> None:
    path = tmp_path / "archive.jsonl"
    lines = written(path)
    for seq, line in enumerate(lines):
        data = json.loads(line)
        assert data["seq"] == seq and len(data["crc"]) == 8
        assert data["crc"] == checksum({k: v for k, v in data.items() if k != "crc"})
        assert line.decode() == json.dumps(data, sort_keys=True) + "\n"  # canonical JSON
    again = Archive(path, read_only=True).records
    assert again == records(5)
    assert "seq" not in again[0].to_json() and "crc" not in again[0].to_json()  # front.json etc. unchanged
    assert set(again[0].values) == {"top1", "madds"}


def _delete(lines):
    del lines[2]


def _edit(lines):
    lines[2] = lines[2].replace(b'"top1": 0.52', b'"top1": 0.92')


def _garbage(lines):
    lines[2] = b"\x00\xffgarbage\n"


def _repeat(lines):
    lines.insert(3, lines[2])


def _not_a_record(lines):
    lines[2] = b"[1, 2, 3]\n"


def _missing_field(lines):
    body = {k: v for k, v in json.loads(lines[2]).items() if k not in ("top1", "crc")}
    lines[2] = (json.dumps({**body, "crc": checksum(body)}, sort_keys=True) + "\n").encode()


def _mixed(lines):
    data = json.loads(lines[2])
    lines[2] = (json.dumps({k: v for k, v in data.items() if k not in ("seq", "crc")}) + "\n").encode()


def _half_fields(lines):
    data = json.loads(lines[2])
    del data["crc"]
    lines[2] = (json.dumps(data, sort_keys=True) + "\n").encode()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        (_delete, "sequence number 3 where 2 was expected: a record before it is missing"),
        (_edit, "checksum mismatch"),
        (_garbage, "not JSON"),
        (_repeat, "sequence number 2 where 3 was expected: it repeats an earlier line"),
        (_not_a_record, "not a record"),
        (_missing_field, r"not a record \(KeyError"),
        (_mixed, "has no seq/crc after records that have them"),
        (_half_fields, "has seq but no crc"),
    ],
)
def test_damage_is_one_clear_error_and_changes_nothing(tmp_path, damage, problem) -> None:
    path = tmp_path / "archive.jsonl"
    lines = written(path)
    damage(lines)
    raw = b"".join(lines) + b'{"iteration": 1, "pha'  # a torn last line too: it is not what is reported
    path.write_bytes(raw)
    line = 4 if damage is _repeat else 3
    for read_only in (False, True):
        with pytest.raises(CheckpointError) as info:
            Archive(path, read_only=read_only)
        message = str(info.value)
        assert "\n" not in message and f"archive.jsonl line {line}: damaged archive record" in message
        assert f"nat search --resume {tmp_path} --repair" in message
        assert re.search(problem, message)
        assert path.read_bytes() == raw


def test_a_torn_last_line_is_dropped_and_numbering_continues(tmp_path) -> None:
    path = tmp_path / "archive.jsonl"
    lines = written(path, 3)
    path.write_bytes(b"".join(lines) + lines[0][:40])
    assert len(Archive(path, read_only=True)) == 3 and path.read_bytes().endswith(lines[0][:40])
    archive = Archive(path)
    assert path.read_bytes() == b"".join(lines)
    archive.append(records(4)[3])
    assert json.loads(path.read_bytes().splitlines()[-1])["seq"] == 3
    assert len(Archive(path)) == 4


def test_archives_of_older_versions_load_and_continue(tmp_path) -> None:
    path = tmp_path / "archive.jsonl"
    old = records(6)
    path.write_text("".join(json.dumps(r.to_json(), sort_keys=True) + "\n" for r in old[:4]))
    archive = Archive(path)
    assert archive.records == old[:4]
    archive.append(old[4])
    archive.append(old[5])
    tail = [json.loads(line) for line in path.read_text().splitlines()[4:]]
    assert [t["seq"] for t in tail] == [4, 5] and all("crc" in t for t in tail)
    assert Archive(path, read_only=True).records == old


def _run_folder(tmp_path: Path, n: int = 8) -> Path:
    smoke = load_config(preset="smoke")
    with RunDir.create(tmp_path / "run", smoke) as run:
        for record in records(n):
            run.archive.append(record)
        history = [{"iteration": i, "hypervolume": 0.1} for i in range(2)]
        run.write_state({"iteration": 1, "elapsed_s": 3.0, "history": history})
    return tmp_path / "run"


def test_repair_cuts_back_to_the_good_records_and_keeps_the_rest(tmp_path) -> None:
    run = _run_folder(tmp_path)
    path = run / "archive.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    _edit(lines)  # line 3 (a record of iteration 0) edited
    path.write_bytes(b"".join(lines))
    message = RunDir.repair(run)
    assert message and "line 3" in message and "kept the 2 records" in message
    assert path.read_bytes() == b"".join(lines[:2])
    assert (run / "archive.jsonl.damaged-1").read_bytes() == b"".join(lines[2:])
    state = json.loads((run / "state.json").read_text())
    assert state["history"] == []  # iteration 0 (the last record kept) and later ones are redone
    assert state["repairs"][0]["bad_line"] == 3 and state["repairs"][0]["records_kept"] == 2
    assert RunDir.repair(run) is None  # intact now: nothing changes
    assert not (run / "archive.jsonl.damaged-2").exists()
    with RunDir.resume(run, load_config(preset="smoke")) as resumed:  # loads, and numbering continues
        resumed.archive.append(records(3)[2])
    assert len(Archive(path)) == 3


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """An uninterrupted fast run (the reference for exact resumes)."""
    out = tmp_path_factory.mktemp("straight") / "run"
    with NATSearch(load_config(preset="smoke", overrides=FAST), out) as search:
        search.run()
    return out


def test_cli_refuses_a_damaged_run_then_repairs_it(straight, tmp_path, capsys) -> None:
    run = tmp_path / "run"
    shutil.copytree(straight, run)
    path = run / "archive.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    del lines[9]  # a middle line of iteration 1 lost
    path.write_bytes(b"".join(lines))
    assert main(["search", "--resume", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "archive.jsonl line 10" in err[0] and "--repair" in err[0]
    assert path.read_bytes() == b"".join(lines)
    assert main(["search", "--preset", "smoke", "--out", str(tmp_path / "x"), "--repair"]) == 1
    assert "--repair works on a run being resumed" in capsys.readouterr().err
    assert main(["search", "--resume", str(run), "--repair"]) == 0
    assert "repaired" in capsys.readouterr().out
    assert (run / "archive.jsonl.damaged-1").read_bytes() == b"".join(lines[9:])
    repaired = Archive(path, read_only=True)  # intact, continued from the records kept
    assert repaired.records[:9] == Archive(straight / "archive.jsonl").records[:9]
    history = json.loads((run / "state.json").read_text())["history"]
    assert [h["iteration"] for h in history] == [0, 1, 2]


# ----------------------------------------------------------------------------------------- disk full


def test_short_or_refused_writes_are_one_clear_error(tmp_path, monkeypatch) -> None:
    (tmp_path / "archive.jsonl").write_text("one\n")
    path = tmp_path / "archive.jsonl"
    real_write = os.write
    monkeypatch.setattr(os, "write", lambda fd, data: real_write(fd, data[:3]))  # the disk fills part-way
    with pytest.raises(CheckpointError) as info:
        append_line(path, "two two\n")
    assert str(info.value) == (
        f"no space left on the device while writing {path}; free some space and resume with "
        f"`nat search --resume {tmp_path}`"
    )
    assert path.read_text() == "one\n"  # cut back: no partial line
    for number, text in [
        (errno.ENOSPC, "no space left on the device"),
        (errno.EDQUOT, "disk quota exceeded"),
        (errno.EIO, "I/O error while writing"),
    ]:

        def refuse(fd, data, number=number):
            raise OSError(number, os.strerror(number))

        monkeypatch.setattr(os, "write", refuse)
        with pytest.raises(CheckpointError, match=text):
            append_line(path, "two\n")
        assert path.read_text() == "one\n"
    monkeypatch.setattr(os, "write", real_write)

    target = tmp_path / "state.json"
    target.write_text("{}")

    def full(tmp):
        tmp.write_bytes(b"xx")
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(
        CheckpointError, match=r"no space left on the device while writing .*state\.json; free"
    ):
        write_atomic(target, full)
    assert target.read_text() == "{}" and not (tmp_path / "state.json.tmp").exists()  # the old file kept
    # libraries that do their own I/O word it differently (safetensors: "... (os error 28)")
    assert storage_error(RuntimeError("I/O error: No space left on device (os error 28)"), target)
    assert storage_error(OSError(errno.ENOENT, "No such file"), target) is None
    assert storage_error(KeyboardInterrupt(), target) is None
    (tmp_path / "pre").mkdir()
    (tmp_path / "pre" / "checkpoint.pt").write_bytes(b"")
    assert (
        resume_hint(tmp_path / "pre" / "metrics.jsonl")
        == f"resume with `nat pretrain --resume {tmp_path / 'pre'}`"
    )
    assert resume_hint(tmp_path / "a" / "b" / "c" / "x") == "run the same command again"


def test_a_full_disk_while_writing_the_report_says_how_to_rewrite_it(tmp_path, monkeypatch, capsys) -> None:
    """`nat report` (or a search's last step) on a full disk: the report is what failed, and `nat
    report` rewrites it; nothing to resume."""
    from nat.cli import main

    (tmp_path / "archive.jsonl").write_text("")
    (tmp_path / "state.json").write_text("{}")
    for name in ("report.html", "front.png", "summary.md"):
        assert resume_hint(tmp_path / name) == (
            f"rewrite the report with `nat report {tmp_path}` (the run itself is intact)"
        )
    run = tmp_path / "run"
    assert main(["search", "--preset", "smoke", "--out", str(run), "--set", "iterations=0",
                 "--set", "initial_samples=3", "--set", "finalize.models=0",
                 "--set", "adaptation.max_steps=2"]) == 0  # fmt: skip
    capsys.readouterr()

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_bytes", full)
    assert main(["report", str(run)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no space left on the device while writing" in err[0]
    assert f"rewrite the report with `nat report {run}`" in err[0] and "--resume" not in err[0]


def _fill(folder: Path) -> None:
    """Take every free byte of the file system ``folder`` is on."""
    fd = os.open(folder / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        for size in (1 << 20, 1 << 16, 1 << 12, 1):
            while True:
                try:
                    if os.write(fd, b"\0" * size) < size:
                        break
                except OSError:
                    break
    finally:
        os.close(fd)


def test_disk_full_mid_run_then_resume_gives_the_same_archive(straight, tmp_path, at_evaluation) -> None:
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(disk)], capture_output=True
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        restore = at_evaluation(7, lambda: _fill(disk))  # the first of iteration 1: the disk fills up
        config = load_config(preset="smoke", overrides=FAST)
        with pytest.raises(CheckpointError) as info:
            NATSearch(config, disk / "run").run()
        archive = disk / "run" / "archive.jsonl"
        assert str(info.value) == (
            f"no space left on the device while writing {archive}; free some space and resume with "
            f"`nat search --resume {disk / 'run'}`"
        )
        raw = archive.read_bytes()
        assert raw.endswith(b"\n") and 7 <= raw.count(b"\n") < len(Archive(straight / "archive.jsonl"))
        restore()
        (disk / "filler").unlink()
        with NATSearch(config, disk / "run", resume=True) as resumed:
            resumed.run()
        assert archive.read_bytes() == (straight / "archive.jsonl").read_bytes()
    finally:
        if subprocess.run(["umount", str(disk)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(disk)], capture_output=True)  # still busy: detach it
