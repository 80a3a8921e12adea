"""Mixed precision (fp32 / bf16 / fp16) and the GPU fast path, on CPU: training steps, BN recalibration,
evaluation, the configs and flags that carry ``precision``, resume refusing a changed precision, the
bounded BN-calibration cache, and the deferred (device-side) loss figures. `cuda` tests run on a GPU only.
"""

from __future__ import annotations

import json
import math
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch
import yaml

from nat.cli import main
from nat.cli.args import PRECISIONS as CLI_PRECISIONS
from nat.data import make_loader
from nat.errors import ConfigError
from nat.runtime.precision import PRECISIONS, Precision, enable_cuda_fast_path, supernet_channels_last
from nat.space import Subnet
from nat.supernet import BNCalibrator, Supernet
from nat.train import SupernetTrainer, TrainCallback, evaluate_accuracy, evaluate_top1, train_supernet

#: small convolutions on shared cores: one thread is faster than two fighting others
pytestmark = pytest.mark.usefixtures("one_thread")


def make_net(space: str = "micro", seed: int = 123) -> Supernet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Supernet(space, 1.0, 10)


def params(net: torch.nn.Module) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in net.parameters()])


def batches(task, resolution, batch_size: int = 16, seed: int = 0):
    return make_loader(task, "train", batch_size=batch_size, resolution=resolution, seed=seed)


# ------------------------------------------------------------------------------------------ the helper
def test_precision_helper() -> None:
    assert PRECISIONS == CLI_PRECISIONS == ("fp32", "bf16", "fp16")  # the CLI spells them out
    fp32, bf16, fp16 = (Precision(p, "cpu") for p in PRECISIONS)
    assert isinstance(fp32.autocast(), nullcontext) and not fp32.mixed and fp32.grad_scaler() is None
    assert bf16.mixed and bf16.dtype == torch.bfloat16 and bf16.grad_scaler() is None
    assert isinstance(fp16.grad_scaler(), torch.amp.GradScaler)
    with bf16.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ConfigError, match="precision must be one of"):
        Precision("int8")


@pytest.mark.parametrize(
    ("memory_format", "device", "expected"),
    [
        ("auto", "cpu", True),  # oneDNN's NHWC kernels: half the training step on CPU
        ("auto", "cuda", False),  # cuDNN builds a kernel per new NHWC depthwise shape
        ("auto", "cuda:1", False),
        ("channels_last", "cuda", True),
        ("contiguous", "cpu", False),
    ],
)
def test_supernet_layout_by_device(memory_format: str, device: str, expected: bool) -> None:
    assert supernet_channels_last(memory_format, device) is expected


def test_supernet_layout_unknown_name() -> None:
    with pytest.raises(ConfigError, match="memory_format must be one of"):
        supernet_channels_last("nhwc", "cpu")


def test_cuda_fast_path_only_on_cuda() -> None:
    flags = [(torch.backends.cudnn, "benchmark"), (torch.backends.cudnn, "allow_tf32")]
    flags.append((torch.backends.cuda.matmul, "allow_tf32"))
    saved = [getattr(module, name) for module, name in flags]
    try:
        for module, name in flags:
            setattr(module, name, False)
        assert enable_cuda_fast_path("cpu") is False
        assert not any(getattr(module, name) for module, name in flags)
        assert enable_cuda_fast_path("cuda") is True  # process-wide flags: no GPU needed to set them
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
        assert not torch.backends.cudnn.benchmark  # off unless asked for: new shapes at every step
        assert enable_cuda_fast_path("cuda", tf32=False, cudnn_benchmark=True) is True
        assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cudnn.benchmark
    finally:
        for (module, name), value in zip(flags, saved, strict=True):
            setattr(module, name, value)


# ------------------------------------------------------------------------------------------ training
def test_bf16_training_runs_close_to_fp32_with_fp32_parameters(digits) -> None:
    kw = dict(steps=3, seed=5, lr=0.05, distill_from="largest", progress=False)
    runs = {}
    for precision in ("fp32", "bf16"):
        net = make_net()
        stats = train_supernet(net, batches(digits, [24, 28]), precision=precision, **kw)
        runs[precision] = (stats, params(net))
        assert all(p.dtype == torch.float32 for p in net.parameters())  # autocast never casts the weights
        assert all(b.dtype == torch.float32 for b in net.buffers() if b.is_floating_point())
    (s32, w32), (s16, w16) = runs["fp32"], runs["bf16"]
    assert math.isfinite(s16["loss"]) and math.isfinite(s16["loss_largest"])
    assert not torch.equal(w32, w16)  # really ran in bf16
    assert abs(s16["loss"] - s32["loss"]) < 0.05 and abs(s16["loss_largest"] - s32["loss_largest"]) < 0.05
    # a fresh deep net's gradients are chaotic (0.4% noise on the input turns them as much as bf16
    # does), so weights are compared loosely; closeness proper is checked on trained weights below
    assert (w16 - w32).norm() < 0.1 * w32.norm()


def test_fp16_uses_a_grad_scaler_kept_in_the_state_and_resume_is_exact(digits) -> None:
    """fp16 on CPU (torch's CPU autocast + GradScaler("cpu")): the loss scale backs off on overflowing
    steps, lives in the trainer's state, and a resumed run continues bit for bit."""
    space, res = "micro", 16
    kw = dict(steps=6, seed=2, lr=0.05, grad_clip=5.0, precision="fp16", progress=False)
    straight = make_net(space)
    saved: dict = {}

    class Stop(TrainCallback):
        def on_step(self, trainer: SupernetTrainer) -> None:
            if trainer.step == 3:
                saved["weights"] = {k: v.clone() for k, v in trainer.net.state_dict().items()}
                saved["state"] = trainer.state_dict()
                trainer.should_stop = True

    stats = train_supernet(straight, batches(digits, res), **kw)
    assert math.isfinite(stats["loss"]) and all(p.dtype == torch.float32 for p in straight.parameters())
    stopped = make_net(space)
    assert train_supernet(stopped, batches(digits, res), callbacks=[Stop()], **kw)["stopped"]
    scale = saved["state"]["grad_scaler"]["scale"]
    assert scale < 2.0**16  # backed off from its start on overflowing steps (skipped)
    assert not torch.equal(params(straight), params(make_net(space)))  # later steps did train
    resumed = make_net(space, seed=999)
    resumed.load_state_dict(saved["weights"])
    train_supernet(resumed, batches(digits, res), resume=saved["state"], **kw)
    assert torch.equal(params(straight), params(resumed))
    fp32 = SupernetTrainer(make_net(space), total_steps=1)
    assert "grad_scaler" not in fp32.state_dict()  # fp32 checkpoints are exactly as before


def test_figures_deferred_on_the_device_sum_to_the_same_values(digits) -> None:
    """The GPU path (figures kept as tensors, read at `averages`) gives exactly the CPU path's sums."""
    images, labels = next(iter(batches(digits, 24)))
    results = []
    for sync in (True, False):
        trainer = SupernetTrainer(make_net(), total_steps=3, subnets_per_batch=2, distill_from="largest")
        trainer.sync_each_step = sync
        outs = [trainer.train_step(images, labels) for _ in range(3)]
        assert ("loss" in outs[-1]) is sync and len(trainer._pending) == (0 if sync else 3)
        results.append((trainer.averages(), trainer.state_dict()["totals"], params(trainer.net)))
        assert not trainer._pending
    (a1, t1, w1), (a2, t2, w2) = results
    assert a1 == a2 and t1 == t2 and list(a1) == ["loss", "top1", "loss_largest", "top1_largest"]
    assert torch.equal(w1, w2)


# ------------------------------------------------------------------------------------------ evaluation
@pytest.fixture(scope="module")
def trained(digits):
    """A micro supernet whose smallest subnet is trained a little on digits (about 45% val top-1)."""
    net = make_net("micro")
    small = Subnet.smallest(net.space, r=24)
    train_supernet(
        net, batches(digits, 24, 32), steps=40, sample_subnet=lambda _rng: small, lr=0.1, progress=False
    )
    calibration = torch.cat([x for x, _ in make_loader(digits, "train", batch_size=200, resolution=24)])
    val = list(make_loader(digits, "val", batch_size=200, resolution=24, train=False))
    return net, small, calibration[:200], val


def test_bf16_and_fp16_recalibration_and_evaluation_near_fp32(trained) -> None:
    net, small, calibration, val = trained
    top1, top5, stats = {}, {}, {}
    for precision in PRECISIONS:
        BNCalibrator(calibration, precision=precision)(net, small)
        stats[precision] = net.blocks[1].conv.point_linear.bn.bn.running_var.clone()
        top1[precision] = evaluate_top1(net, val, precision=precision)
        scores = evaluate_accuracy(net, val, precision=precision)
        assert scores["top1"] == top1[precision]  # the two counters agree in every precision
        top5[precision] = scores["top5"]
    assert top1["fp32"] > 0.3
    for precision in ("bf16", "fp16"):
        assert abs(top1[precision] - top1["fp32"]) <= 0.03, top1
        assert abs(top5[precision] - top5["fp32"]) <= 0.03, top5
        assert stats[precision].dtype == torch.float32  # statistics accumulated in fp32
        assert torch.allclose(stats[precision], stats["fp32"], rtol=0.05, atol=1e-3)


# ------------------------------------------------------------------------------------------ BN cache
def test_calibration_cache_is_bounded_and_least_recently_used_goes_first() -> None:
    images = torch.randn(10, 3, 32, 32)
    per_24 = 10 * 3 * 24 * 24 * 4
    calibrator = BNCalibrator(images, batch_size=4, max_cache_bytes=2 * per_24 + 100)
    first = [b.clone() for b in calibrator.batches(24)]
    calibrator.batches(20)
    calibrator.batches(24)  # 24 is now the most recently used
    calibrator.batches(16)  # evicts 20, not 24
    assert calibrator.cached_resolutions() == [24, 16]
    calibrator.batches(28)  # 28 needs more room: 24 (least recently used) goes
    assert calibrator.cached_resolutions() == [16, 28]
    assert calibrator.cache_bytes() <= 2 * per_24 + 100
    again = calibrator.batches(24)  # evicted and made again: the same images
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert calibrator.cached_resolutions() == [24]  # 16 + 28 + 24 would break the bound, so would 28 + 24

    small = BNCalibrator(images, max_cache_bytes=per_24 // 2)
    assert len(small.batches(24)) == 1 and small.cached_resolutions() == []  # too big to cache: used as is
    assert small.batches(8) and small.cached_resolutions() == [8]
    unbounded = BNCalibrator(images, max_cached_resolutions=2)
    for r in (8, 16, 24):
        unbounded.batches(r)
    assert unbounded.cached_resolutions() == [16, 24]


# ------------------------------------------------------------------------------------------ configs and CLI
SETS = {
    "initial_samples": 4,
    "iterations": 0,
    "adaptation.max_steps": 2,
    "evaluation.calibration_images": 32,
    "data.val_size": 60,
    "finalize.models": 1,
    "finalize.finetune_epochs": 0.02,
}


def search_args(out: Path, *extra: str) -> list[str]:
    args = ["search", "--preset", "smoke", "--out", str(out), "--set", "threads=1", *extra]
    for key, value in SETS.items():
        args += ["--set", f"{key}={value}"]
    return args


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bf16") / "run"
    assert main(search_args(out, "--precision", "bf16")) == 0
    return out


def test_search_precision_flag_reaches_the_run(bf16_run: Path) -> None:
    assert yaml.safe_load((bf16_run / "config.yaml").read_text())["precision"] == "bf16"
    records = [json.loads(line) for line in (bf16_run / "archive.jsonl").read_text().splitlines()]
    assert len(records) == 4 and all(0 <= r["top1"] <= 1 for r in records)
    (model,) = json.loads((bf16_run / "models.json").read_text())
    assert model["settings"]["precision"] == "bf16" and 0 < model["test_top1"] <= 1


def test_resume_refuses_a_changed_layout_or_autotuning(bf16_run: Path, capsys) -> None:
    """Both change a GPU run's last bits, so they are settings a resumed run keeps, as ``tf32`` is."""
    for change in ("memory_format=contiguous", "cudnn_benchmark=true"):
        assert main(["search", "--resume", str(bf16_run), "--set", change]) == 1
        assert change.split("=")[0] in capsys.readouterr().err


def test_resume_refuses_a_changed_precision(bf16_run: Path, capsys) -> None:
    before = (bf16_run / "archive.jsonl").read_bytes()
    for change in (["--precision", "fp32"], ["--set", "precision=fp16"]):
        assert main(["search", "--resume", str(bf16_run), *change]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("nat search: error:") and "another precision" in err[0]
    assert (bf16_run / "archive.jsonl").read_bytes() == before
    assert main(["search", "--resume", str(bf16_run), "--set", "evaluation.calibration_cache_mb=64"]) == 0
    commands = (["search", "--preset", "smoke"], ["quickstart"], ["eval", str(bf16_run), "--data", "digits"])
    for argv in commands:
        with pytest.raises(SystemExit) as usage:  # argparse's usage error, before any work
            main([*argv, "--precision", "int8"])
        assert usage.value.code == 2
        assert "invalid choice: 'int8'" in capsys.readouterr().err


def test_export_precision_sets_the_models_precision(bf16_run: Path, tmp_path) -> None:
    out = tmp_path / "fp32_models"
    args = ["export", str(bf16_run), "--models", "1", "--finetune-epochs", "0.02", "--out", str(out)]
    assert main([*args, "--precision", "fp32"]) == 0
    (entry,) = json.loads((out / "models.json").read_text())
    assert "precision" not in entry["settings"]  # fp32 entries read exactly as before
    assert yaml.safe_load((bf16_run / "config.yaml").read_text())["precision"] == "bf16"  # run unchanged


def test_pretrain_precision_flag_and_resume(tmp_path, pretrain_cli) -> None:
    from nat.train.config import parse_config

    cfg = {
        "data": {"dataset": "digits", "train_batch_size": 32, "eval_batch_size": 200},
        "space": "micro",
        "train_resolutions": [16],
        "threads": 1,
        "checkpoint_every": 1,
        "calibration_images": 32,
        "val_images": 0,
        "test_eval": False,
        "phases": [{"name": "full", "epochs": 0.05, "lr": 0.05}],
    }
    assert parse_config(cfg).precision == "fp32"
    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "pt"
    argv = ("--config", str(config), "--out", str(out), "--no-progress", "--precision", "bf16")
    assert pretrain_cli(*argv, "--stop-after-steps", "1") == 0
    assert yaml.safe_load((out / "config.yaml").read_text())["precision"] == "bf16"
    with pytest.raises(SystemExit, match="cannot change a run being resumed"):
        pretrain_cli("--resume", str(out), "--precision", "fp32")
    with pytest.raises(SystemExit, match="config differs"):
        pretrain_cli("--resume", str(out), "--config", str(config))  # the file says fp32
    assert pretrain_cli("--resume", str(out), "--no-progress") == 0
    assert (out / "supernet.safetensors").is_file()


# ------------------------------------------------------------------------------------------ GPU only
@pytest.mark.cuda
def test_cuda_bf16_step_without_host_sync_and_fp32_parameters(digits) -> None:
    net = make_net().cuda()
    trainer = SupernetTrainer(net, total_steps=3, precision="bf16", distill_from="largest")
    assert not trainer.sync_each_step
    for images, labels in list(batches(digits, 24))[:3]:
        out = trainer.train_step(images.pin_memory(), labels.pin_memory())
        assert set(out) == {"lr"}  # figures stay on the device until read
    figures = trainer.averages()
    assert math.isfinite(figures["loss"]) and all(p.dtype == torch.float32 for p in net.parameters())
    assert enable_cuda_fast_path("cuda") and not torch.backends.cudnn.benchmark


@pytest.mark.cuda
def test_cuda_fp16_evaluation_near_fp32(trained) -> None:
    net, small, calibration, val = trained
    net = net.cuda()
    top1 = {}
    for precision in PRECISIONS:
        BNCalibrator(calibration, device="cuda", channels_last=True, precision=precision)(net, small)
        top1[precision] = evaluate_top1(net, val, device="cuda", precision=precision)
    assert abs(top1["bf16"] - top1["fp32"]) <= 0.03 and abs(top1["fp16"] - top1["fp32"]) <= 0.03
    net.cpu()


@pytest.mark.parametrize(("memory_format", "expected"), [("auto", True), ("contiguous", False)])
def test_search_memory_format_reaches_supernets_and_calibration(
    tmp_path: Path, memory_format: str, expected: bool
) -> None:
    """``memory_format`` sets the layout of every supernet and of the cached calibration images; on CPU
    ``auto`` keeps channels-last, and NCHW (the CUDA default) gives the same top-1 within float noise."""
    from nat.search import NATSearch, load_config

    overrides = {"data": {"dataset": "digits", "val_size": 60}, "space": "micro", "threads": 1}
    overrides |= {"supernet": "random"}
    overrides |= {"evaluation": {"calibration_images": 32}, "memory_format": memory_format}
    with NATSearch(load_config(overrides=overrides), tmp_path / "run") as search:
        assert all(net.channels_last is expected for net in search.supernets.values())
        assert search.evaluator.calibrator.channels_last is expected
        subnet = Subnet.largest(search.space)
        top1 = search.evaluator.top1(subnet)
        net = search.supernets[subnet.w]
        net.channels_last = not expected  # the other layout, same weights and images
        assert search.evaluator.top1(subnet) == pytest.approx(top1, abs=2 / 60)
