"""nat under torchrun: collectives, sharded batches, DDP training, sharded search, failures.

Every multi-process test runs 2 gloo processes on the CPU, the way `torchrun --nproc_per_node 2` does.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

import distributed_workers as workers
from nat.data import load_dataset, make_loader
from nat.errors import ConfigError, DataError
from nat.runtime.distributed import Collective, balanced_shares, batch_rows

pytestmark = pytest.mark.usefixtures("one_thread")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def spawn(target, out: Path, world: int = 2, timeout: float = 120) -> list[int]:
    """Run ``target(rank, world, port, out)`` in ``world`` fresh processes; their exit codes."""
    ctx = multiprocessing.get_context("spawn")
    port = free_port()
    procs = [ctx.Process(target=target, args=(r, world, port, str(out))) for r in range(world)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout)
        if p.is_alive():
            p.kill()
            p.join()
    return [p.exitcode for p in procs]


# ----------------------------------------------------------------------------------------- one process


def test_one_process_collectives_are_identities() -> None:
    c = Collective()
    assert not c.active and c.is_main
    assert c.broadcast({"a": 1}) == {"a": 1}
    assert c.gather(5) == [5]
    assert c.mean({"x": 2.0}) == {"x": 2.0}
    assert c.device_for(torch.device("cuda", 1)) == torch.device("cuda", 1)


def test_balanced_shares_deal_the_longest_first() -> None:
    assert balanced_shares([5, 1, 1, 1, 1, 1], 2) == [[0], [1, 2, 3, 4, 5]]
    shares = balanced_shares([3.0, 3.0, 2.0, 2.0, 2.0], 2)
    assert sorted(i for s in shares for i in s) == [0, 1, 2, 3, 4]
    loads = [sum([3.0, 3.0, 2.0, 2.0, 2.0][i] for i in s) for s in shares]
    assert max(loads) == 7.0  # the best split of 12 into two parts of whole jobs
    assert balanced_shares([1.0, 2.0], 4) == [[1], [0], [], []]


def test_batch_rows_split_the_batch_evenly_or_refuse() -> None:
    assert [batch_rows(64, Collective(r, 4)) for r in range(4)] == [(0, 16), (16, 32), (32, 48), (48, 64)]
    with pytest.raises(ConfigError, match="multiple of 3"):
        batch_rows(64, Collective(0, 3))


def test_a_named_gpu_under_torchrun_is_refused() -> None:
    c = Collective(rank=1, world_size=2, local_rank=1)
    assert c.device_for(torch.device("cuda")) == torch.device("cuda", 1)
    assert c.device_for(torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ConfigError, match="use device: cuda"):
        c.device_for(torch.device("cuda", 0))


@pytest.mark.parametrize("train", [True, False])
def test_the_shares_of_a_batch_are_the_one_process_batch(digits, train: bool) -> None:
    """Order, resolution and augmentation are drawn for the whole batch: the ranks' rows together are
    the one-process batch, whatever the resolution sequence."""
    kw = {"batch_size": 16, "resolution": [8, 12, 16], "train": train, "seed": 3, "drop_last": True}
    whole = list(make_loader(digits, "train", **kw))
    parts = [list(make_loader(digits, "train", rows=batch_rows(16, Collective(r, 2)), **kw)) for r in (0, 1)]
    assert len(parts[0]) == len(parts[1]) == len(whole) > 2
    for b, (x, y) in enumerate(whole):
        assert parts[0][b][0].shape[-1] == x.shape[-1]  # the same resolution on every rank
        torch.testing.assert_close(torch.cat([parts[0][b][0], parts[1][b][0]]), x)
        assert torch.equal(torch.cat([parts[0][b][1], parts[1][b][1]]), y)


def test_file_loader_shares_are_the_one_process_batch(tmp_path) -> None:
    from PIL import Image

    for cls in ("a", "b"):
        (tmp_path / "train" / cls).mkdir(parents=True)
        for i in range(10):
            color = (i * 20, 100 if cls == "a" else 200, 50)
            Image.new("RGB", (20, 20), color).save(tmp_path / "train" / cls / f"{i}.png")
    task = load_dataset("imagefolder", root=str(tmp_path), seed=0)
    kw = {"batch_size": 4, "resolution": 12, "train": True, "seed": 1, "drop_last": True}
    whole = list(make_loader(task, "train", **kw))
    parts = [list(make_loader(task, "train", rows=batch_rows(4, Collective(r, 2)), **kw)) for r in (0, 1)]
    for b, (x, y) in enumerate(whole):
        torch.testing.assert_close(torch.cat([parts[0][b][0], parts[1][b][0]]), x)
        assert torch.equal(torch.cat([parts[0][b][1], parts[1][b][1]]), y)


def test_sharing_out_a_split_smaller_than_a_batch_is_refused(digits) -> None:
    with pytest.raises(DataError, match="fewer than one batch"):
        make_loader(
            digits, "val", batch_size=10_000, resolution=8, train=True, drop_last=True, rows=(0, 5000)
        )


# ----------------------------------------------------------------------------------------- two processes


def test_collectives_across_two_processes(tmp_path) -> None:
    assert spawn(workers.collectives, tmp_path) == [0, 0]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, res in enumerate(results):
        assert (res["rank"], res["world"]) == (r, 2)
        assert res["broadcast"] == {"from": 0}
        assert res["gather"] == [0, 10]
        assert res["unshard"] == [i * i for i in range(7)]
        assert res["mean"] == {"x": 0.5}
        assert res["weight"] == [0.0] * 6  # rank 0's weights everywhere


def test_a_refusal_on_rank_0_ends_every_rank_with_its_line(tmp_path) -> None:
    """`Collective.on_main`: what rank 0 refuses (a folder holding another run, an unreadable file) is
    raised on every rank with rank 0's message, before any collective work could wait in vain."""
    assert spawn(workers.refusals, tmp_path) == [0, 0]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    for r, res in enumerate(results):
        assert res["nat"] == f"ConfigError: {tmp_path} already holds a run (decided on rank 0)"
        assert res["os"] == f"PermissionError: [Errno 13] Permission denied: '{tmp_path}/config.yaml'"
        assert res["decided"] == {"plan": 0}
        assert res["kept"] == ("rank 0's own object" if r == 0 else None)


@pytest.mark.slow
def test_torchrun_refusals_are_rank_0s_line_on_every_rank(tmp_path) -> None:
    """The commands as users run them: `nat search --out` a folder that holds a run, `nat export` of a
    folder that is not a search run, and `nat retarget --out` inside its source, under torchrun: the
    job ends with rank 0's reason, never a failed broadcast."""
    run_nat(nat_cmd("search", "--preset", "smoke", "--out", str(tmp_path / "run"), iterations=0))
    before = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for argv, reason in (
        (
            nat_cmd("search", "--preset", "smoke", "--out", str(tmp_path / "run"), nproc=2),
            "already holds a run",
        ),
        ([*launcher(2), "export", str(tmp_path)], "not a nat run directory"),
        (
            [*launcher(2), "retarget", str(tmp_path / "run"), "--out", str(tmp_path / "run" / "inner")],
            "inside the source run",
        ),
    ):
        result = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
        # torchrun stops the other workers once one fails, so a rank may be ended before it prints;
        # whatever a rank prints is rank 0's reason (every rank's is checked by the spawned test above)
        lines = [ln for ln in result.stderr.splitlines() if ": error: " in ln]
        assert result.returncode != 0 and 1 <= len(lines) <= 2, result.stderr[-2000:]
        assert all(reason in ln and "broadcast" not in ln for ln in lines), lines
    assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == before


def test_ddp_step_applies_the_mean_of_the_ranks_gradients(tmp_path) -> None:
    """Two processes, each training on half the batch: every rank ends with the same weights, and they
    are what the mean of the two halves' gradients gives (checked against a one-process computation)."""
    assert spawn(workers.ddp_step, tmp_path) == [0, 0]
    got = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    for name in got[0]:
        assert torch.equal(got[0][name], got[1][name]), name
    net = workers.tiny_net()
    from nat.space.subnet import Subnet

    net.set_active(Subnet.largest(net.space))
    net.train()
    images, labels = workers.batch()
    grads: dict[str, torch.Tensor] = {}
    for rows in (slice(0, 4), slice(4, 8)):
        net.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(net(images[rows]), labels[rows]).backward()
        for name, p in net.named_parameters():
            if p.grad is not None:
                grads[name] = grads.get(name, 0) + p.grad / 2
    start = dict(workers.tiny_net().named_parameters())
    changed = 0
    for name, value in got[0].items():
        expected = start[name].detach() - grads[name] if name in grads else start[name].detach()
        torch.testing.assert_close(value, expected, rtol=1e-4, atol=1e-5, msg=name)
        changed += int(name in grads)
    assert changed > 10


@pytest.mark.parametrize("mode", ["exit", pytest.param("hang", marks=pytest.mark.slow)])
def test_a_peer_that_dies_or_hangs_ends_the_wait_with_one_clear_error(tmp_path, mode: str) -> None:
    (tmp_path / "mode").write_text(mode)
    codes = spawn(workers.peer_fails, tmp_path, timeout=60)
    assert codes[0] == 0
    message = (tmp_path / "error.txt").read_text()
    assert message.startswith("rank 0: the ") and "another process has probably died or hangs" in message
    assert "\n" not in message


# ----------------------------------------------------------------------------------------- torchrun


SMALL = {
    "initial_samples": 6,
    "iterations": 2,
    "candidates_per_iteration": 2,
    "adaptation.max_steps": 4,
    "nsga3.pop_size": 12,
    "nsga3.generations": 4,
    "evaluation.calibration_images": 64,
    "data.val_size": 120,
    "threads": 1,
    "finalize.models": 0,
}


def launcher(nproc: int = 1) -> list[str]:
    """``python -m nat.cli``, or the same under torchrun with ``nproc`` processes."""
    if nproc == 1:
        return [sys.executable, "-m", "nat.cli"]
    run = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    return [*run, "-m", "nat.cli"]


def nat_cmd(*args: str, nproc: int = 1, **sets) -> list[str]:
    """A `nat search` command line with the `SMALL` settings (a resumed run: only ``sets``)."""
    values = sets if "--resume" in args else {**SMALL, **sets}
    flags = [x for k, v in values.items() for x in ("--set", f"{k}={v}")]
    return [*launcher(nproc), *args, *flags]


def run_nat(cmd: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_two_processes_write_the_one_process_archive(tmp_path) -> None:
    """With adaptation off, sharding evaluations changes nothing but speed: the same archive, line
    for line; rank 0 alone writes the folder and prints the summary, and both processes fine-tune the
    front's model (DDP)."""
    off = {"adaptation.initial_epochs": 0, "adaptation.epochs": 0, "iterations": 1, "initial_samples": 7}
    run_nat(nat_cmd("search", "--preset", "smoke", "--out", str(tmp_path / "one"), **off))
    models = {"finalize.models": 1, "finalize.finetune_epochs": 0.1}
    two = run_nat(
        nat_cmd("search", "--preset", "smoke", "--out", str(tmp_path / "two"), nproc=2, **off, **models)
    )
    one_archive = (tmp_path / "one" / "archive.jsonl").read_text()
    assert one_archive.count("\n") == 7 + 2  # initial, candidates (no re-evaluation without adaptation)
    assert (tmp_path / "two" / "archive.jsonl").read_text() == one_archive
    assert two.stdout.count("front:") == 1
    assert "2 processes (torchrun)" in (tmp_path / "two" / "search.log").read_text()
    index = json.loads((tmp_path / "two" / "models.json").read_text())
    assert len(index) == 1 and 0 <= index[0]["test_top1"] <= 1
    assert (tmp_path / "two" / "models" / index[0]["name"] / "model.safetensors").is_file()


def retarget_source(tmp_path: Path) -> tuple[Path, dict[Path, bytes]]:
    """A finished smoke search without adaptation (a retarget's source) and its files' bytes."""
    off = {"adaptation.initial_epochs": 0, "adaptation.epochs": 0, "iterations": 1, "initial_samples": 6}
    source = tmp_path / "source"
    run_nat(nat_cmd("search", "--preset", "smoke", "--out", str(source), **off))
    return source, {p: p.read_bytes() for p in source.rglob("*") if p.is_file()}


RETARGET = ["--set", "constraints.params=2e5", "--iterations", "1"]


def test_a_retarget_under_torchrun_writes_the_one_process_archive(tmp_path) -> None:
    """`nat retarget` under torchrun (issue 41): without adaptation, a 2-process retarget carries the
    source's records and measures its candidates exactly as one process does; the source is only read."""
    source, before = retarget_source(tmp_path)
    run_nat([*launcher(1), "retarget", str(source), "--out", str(tmp_path / "one"), *RETARGET])
    two = run_nat([*launcher(2), "retarget", str(source), "--out", str(tmp_path / "two"), *RETARGET])
    one_archive = (tmp_path / "one" / "archive.jsonl").read_text()
    assert '"phase": "carried"' in one_archive and '"phase": "candidate"' in one_archive
    assert (tmp_path / "two" / "archive.jsonl").read_text() == one_archive
    assert two.stdout.count("front:") == 1
    assert "2 processes (torchrun)" in (tmp_path / "two" / "search.log").read_text()
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_a_retarget_under_torchrun_adapts_and_delivers_with_ddp(tmp_path) -> None:
    """With --adapt-epochs the processes adapt the source's supernet together (DDP) on subnets that
    meet the new bound and fine-tune the delivered model; the source is never written."""
    source, before = retarget_source(tmp_path)
    adapt = ["--adapt-epochs", "0.05", "--set", "finalize.models=1", "--set", "finalize.finetune_epochs=0.05"]
    run_nat([*launcher(2), "retarget", str(source), "--out", str(tmp_path / "adapted"), *RETARGET, *adapt])
    log = (tmp_path / "adapted" / "search.log").read_text()
    assert "iter 1 adapt" in log and "2 processes (torchrun)" in log
    index = json.loads((tmp_path / "adapted" / "models.json").read_text())
    assert len(index) == 1 and index[0]["params"] <= 2e5
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_a_warm_start_under_torchrun_writes_the_one_process_archive(tmp_path) -> None:
    """`nat search --warm-start` under torchrun: rank 0 reads the earlier run, every process starts
    from its adapted supernet; with adaptation off the archive is the one-process archive. The earlier
    run is recorded by its absolute path, so a resume from another directory finds it."""
    source, before = retarget_source(tmp_path)
    off = {"adaptation.initial_epochs": 0, "adaptation.epochs": 0, "iterations": 1, "initial_samples": 6}
    runs = {}
    for nproc, name in ((1, "one"), (2, "two")):
        args = ("search", "--preset", "smoke", "--out", name, "--warm-start", "source")
        cmd = nat_cmd(*args, nproc=nproc, **off)
        env = dict(os.environ, OMP_NUM_THREADS="1")
        done = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr[-3000:]
        runs[name] = (tmp_path / name / "archive.jsonl").read_text()
    assert runs["one"] == runs["two"]
    saved = yaml.safe_load((tmp_path / "two" / "config.yaml").read_text())
    assert saved["warm_start"]["runs"] == [str(source.resolve())]
    assert {p: p.read_bytes() for p in source.rglob("*") if p.is_file()} == before


@pytest.mark.slow
def test_two_nodes_write_the_one_process_archive(tmp_path) -> None:
    """The documented two-machine command, as two torchrun launchers of one process each on this
    machine (c10d rendezvous on 127.0.0.1): the archive is the one-process archive. Each "node" gets its
    own --out and only the one that holds global rank 0 (c10d hands ranks out in arrival order) may
    create its folder: the run folder need not be on a shared file system."""
    off = {"adaptation.initial_epochs": 0, "adaptation.epochs": 0, "iterations": 1, "initial_samples": 6}
    run_nat(nat_cmd("search", "--preset", "smoke", "--out", str(tmp_path / "one"), **off))
    port = free_port()
    flags = [x for k, v in {**SMALL, **off}.items() for x in ("--set", f"{k}={v}")]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    outs, nodes = [tmp_path / "node0", tmp_path / "node1"], []
    for node, out in enumerate(outs):
        cmd = [
            sys.executable, "-m", "torch.distributed.run", "--nnodes=2", "--nproc_per_node=1",
            "--rdzv-backend=c10d", f"--rdzv-endpoint=127.0.0.1:{port}", "--rdzv-id=nat-two-nodes",
            "-m", "nat.cli", "search", "--preset", "smoke", "--out", str(out), *flags,
        ]  # fmt: skip
        log = (tmp_path / f"node{node}.log").open("w")
        nodes.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT))
    codes = [p.wait(timeout=600) for p in nodes]
    logs = "".join((tmp_path / f"node{n}.log").read_text()[-3000:] for n in range(2))
    assert codes == [0, 0], logs
    written = [out for out in outs if out.exists()]
    assert len(written) == 1, logs
    assert (written[0] / "archive.jsonl").read_text() == (tmp_path / "one" / "archive.jsonl").read_text()
    assert "2 processes (torchrun)" in (written[0] / "search.log").read_text()


@pytest.mark.slow
def test_a_many_task_run_under_torchrun_writes_the_one_process_archive(tmp_path) -> None:
    """Many tasks (issue 20) under torchrun: each process measures its subnets on every task; with
    adaptation off the archive is the one-process archive; each task's model is fine-tuned by both
    processes (DDP) and written by rank 0."""
    many = {
        "data": "[{dataset: digits, val_size: 100, train_batch_size: 64}, "
        "{dataset: mnist5k, val_size: 100, train_batch_size: 64}]",
        "adaptation.initial_epochs": 0,
        "adaptation.epochs": 0,
        "iterations": 1,
        "initial_samples": 6,
    }
    run_nat(nat_cmd("search", "--preset", "smoke", "--out", str(tmp_path / "one"), **many))
    models = {"finalize.models": 1, "finalize.finetune_epochs": 0.05}
    run_nat(nat_cmd("search", "--preset", "smoke", "--out", str(tmp_path / "two"), nproc=2, **many, **models))
    one_archive = (tmp_path / "one" / "archive.jsonl").read_text()
    assert "top1:mnist5k" in one_archive
    assert (tmp_path / "two" / "archive.jsonl").read_text() == one_archive
    index = json.loads((tmp_path / "two" / "models.json").read_text())
    assert sorted(m["task"] for m in index) == ["digits", "mnist5k"]
    for m in index:
        assert (tmp_path / "two" / "models" / m["name"] / "model.safetensors").is_file()


@pytest.mark.slow
def test_adaptation_under_torchrun_resumes_exactly(tmp_path) -> None:
    """DDP adaptation on 2 processes; a run stopped after iteration 1 and resumed under torchrun ends
    with the archive and supernet of an uninterrupted 2-process run."""
    run_nat(nat_cmd("search", "--preset", "smoke", "--out", str(tmp_path / "a"), nproc=2))
    run_nat(nat_cmd("search", "--preset", "smoke", "--out", str(tmp_path / "b"), nproc=2, iterations=1))
    run_nat(nat_cmd("search", "--resume", str(tmp_path / "b"), nproc=2, iterations=2))
    a, b = tmp_path / "a", tmp_path / "b"
    assert (a / "archive.jsonl").read_text() == (b / "archive.jsonl").read_text()
    from safetensors.torch import load_file

    # `nat export` under torchrun: both processes fine-tune, rank 0 writes
    export = [
        "export",
        str(a),
        "--models",
        "1",
        "--finetune-epochs",
        "0.1",
        "--out",
        str(tmp_path / "exported"),
    ]
    exported = run_nat([*launcher(2), *export])
    assert exported.stdout.count("model(s) in") == 1
    assert len(json.loads((tmp_path / "exported" / "models.json").read_text())) == 1
    weights_a, weights_b = load_file(a / "supernet_w1.safetensors"), load_file(b / "supernet_w1.safetensors")
    assert weights_a.keys() == weights_b.keys()
    assert all(torch.equal(weights_a[k], weights_b[k]) for k in weights_a)


@pytest.mark.slow
def test_sigkill_of_the_whole_job_then_resume_matches_uninterrupted(tmp_path) -> None:
    """SIGKILL to every process of a running torchrun job, then the same torchrun command with
    --resume: the archive of an uninterrupted 2-process run."""
    sets = {"iterations": 3, "candidates_per_iteration": 3, "initial_samples": 8, "adaptation.max_steps": 6}
    run_nat(nat_cmd("search", "--preset", "smoke", "--out", str(tmp_path / "a"), nproc=2, **sets))
    cmd = nat_cmd("search", "--preset", "smoke", "--out", str(tmp_path / "b"), nproc=2, **sets)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    archive = tmp_path / "b" / "archive.jsonl"
    while proc.poll() is None and (not archive.exists() or archive.read_text().count("\n") < 13):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both of its workers at once
    proc.wait()
    run_nat(nat_cmd("search", "--resume", str(tmp_path / "b"), nproc=2))
    assert archive.read_text() == (tmp_path / "a" / "archive.jsonl").read_text()


@pytest.mark.slow
def test_an_uneven_batch_under_torchrun_is_one_error_line(tmp_path) -> None:
    cmd = nat_cmd(
        "search", "--preset", "smoke", "--out", str(tmp_path / "r"), nproc=2, **{"data.train_batch_size": 63}
    )
    result = subprocess.run(cmd, env=dict(os.environ, OMP_NUM_THREADS="1"), capture_output=True, text=True)
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("nat search: error:")]
    assert lines and all("multiple of 2" in line for line in lines)
    assert "Traceback" not in "\n".join(lines)


@pytest.mark.parametrize("argv", [["profile", "x.json"], ["quickstart"]])
def test_commands_that_do_not_share_work_refuse_torchrun(monkeypatch, capsys, tmp_path, argv) -> None:
    from nat.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"nat {argv[0]}: error: ") and "without torchrun" in err[0]
    assert list(tmp_path.iterdir()) == []


PRETRAIN = {
    "data": {"dataset": "digits", "train_batch_size": 32, "eval_batch_size": 200},
    "space": "micro",
    "train_resolutions": [16],
    "checkpoint_every": 2,
    "log_every": 2,
    "calibration_images": 32,
    "val_images": 64,
    "test_eval": False,
    "threads": 1,
    "phases": [
        {"name": "full", "epochs": 0.12, "lr": 0.05},
        {"name": "kernel", "kernel_sizes": [3, 5, 7], "epochs": 0.12, "lr": 0.02, "sandwich": True},
    ],
}


@pytest.mark.slow
def test_pretraining_under_torchrun_resumes_exactly(tmp_path) -> None:
    """`nat pretrain` on 2 processes (DDP, rank 0 writes): stopped after 3 steps and resumed under
    torchrun, it ends with the supernet of an uninterrupted 2-process run; one metrics log, one summary."""
    import yaml
    from safetensors.torch import load_file

    config = tmp_path / "pt.yaml"
    config.write_text(yaml.safe_dump(PRETRAIN))
    pretrain = [*launcher(2), "pretrain", "--no-progress"]
    whole = run_nat([*pretrain, "--config", str(config), "--out", str(tmp_path / "a")])
    assert whole.stdout.count('"finished": true') == 1
    run_nat([*pretrain, "--config", str(config), "--out", str(tmp_path / "b"), "--stop-after-steps", "3"])
    run_nat([*pretrain, "--resume", str(tmp_path / "b")])
    a = load_file(tmp_path / "a" / "supernet.safetensors")
    b = load_file(tmp_path / "b" / "supernet.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows if r["kind"] == "phase"] == ["full", "kernel"]
