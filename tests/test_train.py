"""The training engine, progressive shrinking, checkpoints/resume, config errors and `nat pretrain`."""

from __future__ import annotations

import random

import pytest
import torch

from nat.data import make_loader
from nat.errors import ConfigError
from nat.space import Subnet, get_space
from nat.supernet import Supernet
from nat.train import TrainCallback, cosine_lr, evaluate_top1, soft_cross_entropy, train_supernet

#: small convolutions on shared cores: one thread is faster than two fighting others
pytestmark = pytest.mark.usefixtures("one_thread")

RES = [24, 28]
BATCH = 16  # tiny batches of 24-28 px digits: every test trains in a few seconds on a shared CPU


def make_net(num_classes: int = 10, seed: int = 123) -> Supernet:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Supernet("tiny", 1.0, num_classes)


def weights(net: torch.nn.Module) -> list[torch.Tensor]:
    return [t.detach().clone() for t in net.state_dict().values()]


def same(a: list[torch.Tensor], b: list[torch.Tensor]) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


def loader(task, seed: int = 0):
    return make_loader(task, "train", batch_size=BATCH, resolution=RES, seed=seed)


def test_cosine_schedule() -> None:
    assert cosine_lr(0, 10, 1.0, warmup_steps=2) == pytest.approx(0.5)
    assert cosine_lr(1, 10, 1.0, warmup_steps=2) == pytest.approx(1.0)
    assert cosine_lr(2, 10, 1.0, warmup_steps=2) == pytest.approx(1.0)
    assert cosine_lr(10, 10, 1.0, 0.1) == pytest.approx(0.1)


def test_soft_cross_entropy_is_ofa_soft_target_loss() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(6, 10, generator=g)
    soft = torch.softmax(torch.randn(6, 10, generator=g), dim=1)
    ofa = torch.sum(-soft * torch.log_softmax(logits, dim=1), dim=1).mean()
    assert torch.allclose(soft_cross_entropy(logits, soft), ofa, rtol=1e-6, atol=0)
    onehot = torch.nn.functional.one_hot(torch.arange(6), 10).float()
    assert torch.allclose(
        soft_cross_entropy(logits, onehot), torch.nn.functional.cross_entropy(logits, torch.arange(6))
    )


def test_loss_decreases_on_a_fixed_batch(digits) -> None:
    net = make_net()
    images, labels = next(iter(make_loader(digits, "train", batch_size=32, resolution=24, train=False)))
    batch = [(images, labels)] * 12
    small = Subnet.smallest(net.space)
    first = dict(sample_subnet=lambda rng: small, lr=0.1, progress=False)
    stats_first = train_supernet(net, batch[:1], steps=1, **first)
    stats = train_supernet(net, batch, steps=12, sample_subnet=lambda rng: small, lr=0.1, progress=False)
    net.set_active(small)
    net.train()
    with torch.no_grad():
        final = torch.nn.functional.cross_entropy(net(images), labels, label_smoothing=0.1)
    assert float(final) < stats_first["loss"] - 0.3
    assert stats["steps"] == 12


def test_same_seed_same_weights_and_global_rng_untouched(digits) -> None:
    runs = []
    for _ in range(2):
        net = make_net()
        torch.manual_seed(7)
        before = torch.get_rng_state()
        train_supernet(net, loader(digits), steps=3, seed=5, lr=0.05, progress=False)
        assert torch.equal(torch.get_rng_state(), before)  # the caller's RNG is left as it was
        runs.append(weights(net))
    assert same(*runs)
    other = make_net()
    train_supernet(other, loader(digits), steps=3, seed=6, lr=0.05, progress=False)
    assert not same(runs[0], weights(other))


def test_inplace_distillation_and_teacher(digits) -> None:
    net = make_net()
    sampled: list[Subnet] = []

    def sampler(rng: random.Random) -> Subnet:
        sampled.append(Subnet.sample(net.space, rng))
        return sampled[-1]

    stats = train_supernet(
        net,
        loader(digits),
        steps=2,
        sample_subnet=sampler,
        subnets_per_batch=2,
        distill_from="largest",
        lr=0.05,
        progress=False,
    )
    assert len(sampled) == 4
    assert {"loss", "top1", "loss_largest", "top1_largest"} <= set(stats)
    # the KD term is added to the label loss, so a student's loss exceeds the largest's label loss
    assert stats["loss"] > stats["loss_largest"]
    teacher = make_net(seed=1)
    stats = train_supernet(
        net, loader(digits), steps=1, distill_from=teacher, resolution="subnet", lr=0.05, progress=False
    )
    assert stats["loss"] > 0 and not any(p.requires_grad for p in teacher.parameters())


def test_distillation_every_nth_step(digits) -> None:
    """``distill_every=3``: the largest subnet trains (and teaches) on steps 0 and 3 of 6 only; the other
    steps are label-only steps of the sampled subnet, exactly as without distillation."""
    trained: list[int] = []
    net = make_net()

    def on_step(trainer) -> None:
        trained.append(int(trainer.totals.get("loss_largest#n", 0)))

    train_supernet(
        net,
        loader(digits),
        steps=6,
        distill_from="largest",
        distill_every=3,
        lr=0.05,
        on_step=on_step,
        progress=False,
    )
    assert trained == [1, 1, 1, 2, 2, 2]
    with pytest.raises(ConfigError, match="distill_every must be >= 1"):
        train_supernet(make_net(), loader(digits), steps=1, distill_from="largest", distill_every=0)


class _Killed(Exception):
    pass


def small_loader(task, seed: int = 0):
    """48 images in batches of 16: three batches per pass, so a few steps cross pass boundaries."""
    return make_loader(
        task, task.train.subset(range(48)), batch_size=BATCH, resolution=RES, train=True, seed=seed
    )


def test_resume_equals_uninterrupted(digits) -> None:
    kw = dict(
        steps=5, distill_from="largest", subnets_per_batch=1, lr=0.05, seed=3, warmup_steps=1, progress=False
    )
    straight = make_net()
    train_supernet(straight, small_loader(digits), **kw)

    saved: dict = {}

    def checkpoint_then_die(trainer) -> None:
        if trainer.step == 2:  # mid-pass
            saved["weights"] = {k: v.clone() for k, v in trainer.net.state_dict().items()}
            saved["state"] = trainer.state_dict()
        if trainer.step == 3:  # the work of step 3 is lost, as when the process is killed
            raise _Killed

    killed = make_net()
    with pytest.raises(_Killed):
        train_supernet(killed, small_loader(digits), on_step=checkpoint_then_die, **kw)
    resumed = make_net(seed=999)  # a fresh process: other initial weights, then the checkpoint
    resumed.load_state_dict(saved["weights"])
    stats = train_supernet(resumed, small_loader(digits), resume=saved["state"], **kw)
    assert stats["steps"] == 5 and stats["steps_this_call"] == 3
    assert same(weights(straight), weights(resumed))


class _StopAt(TrainCallback):
    """Records the steps its hooks saw; at step ``at`` saves weights + trainer state and stops the call."""

    def __init__(self, at: int) -> None:
        self.at, self.steps, self.epochs, self.saved = at, [], [], {}

    def on_step(self, trainer) -> None:
        self.steps.append(trainer.step)
        if trainer.step == self.at:
            self.saved = {
                "weights": {k: v.clone() for k, v in trainer.net.state_dict().items()},
                "state": trainer.state_dict(),
            }
            trainer.should_stop = True

    def on_epoch(self, trainer) -> None:
        self.epochs.append(trainer.step)


def test_should_stop_ends_the_call_and_resume_continues_exactly(digits) -> None:
    kw = dict(steps=5, subnets_per_batch=1, lr=0.05, seed=4, progress=False)
    straight = make_net()
    assert not train_supernet(straight, small_loader(digits), **kw)["stopped"]

    stopper, bare = _StopAt(3), []  # step 3 ends the first pass (3 batches): on_epoch runs, then it stops
    stopped = make_net()
    stats = train_supernet(
        stopped, small_loader(digits), callbacks=[stopper], on_step=lambda t: bare.append(t.step), **kw
    )
    assert stats["stopped"] and stats["steps"] == stats["steps_this_call"] == 3
    assert stopper.steps == bare == [1, 2, 3] and stopper.epochs == [3]
    resumed = make_net(seed=999)
    resumed.load_state_dict(stopper.saved["weights"])
    stats = train_supernet(resumed, small_loader(digits), resume=stopper.saved["state"], **kw)
    assert stats["steps"] == 5 and stats["steps_this_call"] == 2 and not stats["stopped"]
    assert same(weights(straight), weights(resumed))


class _KnownOutputs(torch.nn.Module):
    """Predicts the class written in each image's first pixel (logits = one-hot of it)."""

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x.flatten(1)[:, 0].long(), 10).float()


def test_evaluate_top1(digits) -> None:
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 10, (3, 8), generator=g)
    predicted = labels.clone()
    predicted[0, :3] = (labels[0, :3] + 1) % 10  # 3 wrong in batch 0,
    predicted[2, :5] = (labels[2, :5] + 4) % 10  # 5 wrong in batch 2
    batches = [(predicted[i].float().view(8, 1, 1, 1).expand(8, 1, 2, 2), labels[i]) for i in range(3)]
    model = _KnownOutputs().train()
    assert evaluate_top1(model, batches) == (24 - 8) / 24
    assert evaluate_top1(model, batches, max_batches=2) == (16 - 3) / 16
    assert model.training  # the mode is restored

    net = make_net()
    test = make_loader(digits, "test", batch_size=128, resolution=24)
    acc = evaluate_top1(net, test)
    net.eval()
    with torch.no_grad():
        counts = [((net(x).argmax(1) == y).sum().item(), y.numel()) for x, y in test]
    assert acc == sum(c for c, _ in counts) / sum(n for _, n in counts)
    with pytest.raises(ConfigError):
        evaluate_top1(net, [])


def test_argument_errors(digits) -> None:
    net = make_net()
    with pytest.raises(ConfigError, match="exactly one of steps or epochs"):
        train_supernet(net, loader(digits), progress=False)
    with pytest.raises(ConfigError, match="resolution"):
        train_supernet(net, loader(digits), steps=1, resolution="native", progress=False)
    assert get_space("tiny").resolutions[0] == 24


# ------------------------------------------------------------------------------- progressive shrinking


def test_phase_sampler_only_samples_allowed_choices() -> None:
    from nat.train.config import PhaseConfig
    from nat.train.progressive import PhaseSampler

    space = get_space("tiny")
    rng = random.Random(0)
    cases = [
        (PhaseConfig(name="full", epochs=1, lr=0.1), {7}, {6}, {4}),
        (PhaseConfig(name="k", kernel_sizes=[5, 7], epochs=1, lr=0.1), {5, 7}, {6}, {4}),
        (
            PhaseConfig(name="d", kernel_sizes=[3, 5, 7], depths=[3, 4], epochs=1, lr=0.1),
            {3, 5, 7},
            {6},
            {3, 4},
        ),
        (
            PhaseConfig(
                name="e", kernel_sizes=[3, 5, 7], depths=[2, 3, 4], expand_ratios=[4, 6], epochs=1, lr=0.1
            ),
            {3, 5, 7},
            {4, 6},
            {2, 3, 4},
        ),
    ]
    for phase, ks, es, ds in cases:
        sampler = PhaseSampler(space, phase, 1.0)
        subnets = [sampler(rng) for _ in range(300)]
        for s in subnets:
            s.check(space)
        assert {k for s in subnets for k in s.ks} == ks, phase.name
        assert {e for s in subnets for e in s.e} == es, phase.name
        assert {d for s in subnets for d in s.d} == ds, phase.name
        assert sampler.smallest().ks[0] == min(ks) and sampler.smallest().d[0] == min(ds)


def _config_dict(**changes) -> dict:
    cfg = {
        "data": {"dataset": "digits", "train_batch_size": BATCH, "eval_batch_size": 200},
        "space": "tiny",
        "train_resolutions": [24],
        "checkpoint_every": 2,
        "log_every": 2,
        "calibration_images": 32,
        "val_images": 0,
        "test_eval": False,
        "phases": [
            {"name": "full", "epochs": 0.04, "lr": 0.05},  # 81 batches a pass: 3 steps
            {"name": "kernel", "kernel_sizes": [3, 5, 7], "epochs": 0.04, "lr": 0.02, "sandwich": True},
        ],
    }
    cfg.update(changes)
    return cfg


def test_config_errors_name_the_field(tmp_path) -> None:
    from nat.train.config import load_pretrain_config, parse_config

    assert parse_config(_config_dict()).phases[1].uses_distillation()
    bad = {
        "lr": ({"phases": [{"name": "full", "epochs": 1, "lr": -1}]}, r"phases\.0\.lr"),
        "typo": ({"seeed": 1}, r"seeed: unknown field \(did you mean 'seed'\?"),
        "choice": ({"phases": [{"name": "k", "kernel_sizes": [3, 9], "epochs": 1, "lr": 0.1}]}, "subset"),
        "largest": ({"phases": [{"name": "k", "kernel_sizes": [3, 5], "epochs": 1, "lr": 0.1}]}, "largest"),
        "space": ({"space": "huge"}, "unknown search space preset"),
        "dataset": ({"data": {"dataset": "nope"}}, r"data\.dataset"),
    }
    for name, (changes, pattern) in bad.items():
        with pytest.raises(ConfigError, match=pattern):
            parse_config(_config_dict(**changes), "cfg.yaml")
        assert name
    (tmp_path / "broken.yaml").write_text("data: {dataset: digits\nphases: [")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_pretrain_config(tmp_path / "broken.yaml")
    with pytest.raises(ConfigError, match="not found"):
        load_pretrain_config(tmp_path / "missing.yaml")


def _supernet_weights(path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_cli_pretrain_end_to_end_and_exact_resume(tmp_path, capsys, pretrain_cli) -> None:
    import json

    import yaml

    from nat.supernet import load_supernet

    config = tmp_path / "cfg.yaml"
    config.write_text(yaml.safe_dump(_config_dict()))
    assert pretrain_cli("--config", str(config), "--out", str(tmp_path / "straight"), "--no-progress") == 0
    out = tmp_path / "straight"
    assert {
        "config.yaml",
        "versions.json",
        "metrics.jsonl",
        "checkpoint.pt",
        "supernet.safetensors",
        "summary.json",
        "pretrain.log",
    } <= {p.name for p in out.iterdir()}
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["phase"] for r in rows if r["kind"] == "phase"] == ["full", "kernel"]
    net = load_supernet(out / "supernet.safetensors")
    assert net.space.name == "tiny" and net.num_classes == 10

    # killed in the middle of phase 2 (after 4 of 6 steps), then resumed: same weights as straight through
    part = tmp_path / "part"
    argv = ("--config", str(config), "--out", str(part), "--no-progress")
    assert pretrain_cli(*argv, "--stop-after-steps", "4") == 0
    assert not (part / "supernet.safetensors").exists()
    with pytest.raises(SystemExit, match="already holds a pretraining run"):
        pretrain_cli("--config", str(config), "--out", str(part))
    assert pretrain_cli("--resume", str(part), "--no-progress") == 0
    straight, resumed = (
        _supernet_weights(out / "supernet.safetensors"),
        _supernet_weights(part / "supernet.safetensors"),
    )
    assert straight.keys() == resumed.keys()
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    capsys.readouterr()

    with pytest.raises(SystemExit, match="give --config FILE and --out DIR"):
        pretrain_cli("--config", str(config))
    with pytest.raises(SystemExit, match="nothing to resume"):
        pretrain_cli("--resume", str(tmp_path / "nowhere"))


def test_init_from_copies_weights_and_checks_the_space(tmp_path) -> None:
    from nat.errors import CheckpointError
    from nat.supernet.checkpoint import load_weights_from

    source = make_net(seed=5)
    source.save(tmp_path / "a.safetensors")
    target = make_net(seed=6)
    load_weights_from(target, tmp_path / "a.safetensors", "init_from")
    assert same(weights(source), weights(target))
    other_classes = make_net(num_classes=3, seed=7)
    head = other_classes.classifier.linear.weight.clone()
    load_weights_from(other_classes, tmp_path / "a.safetensors", "init_from")  # body copied, head kept
    assert torch.equal(other_classes.classifier.linear.weight, head)
    assert torch.equal(other_classes.first_conv.conv.weight, source.first_conv.conv.weight)
    with torch.random.fork_rng(devices=[]):
        Supernet("small", 1.0, 10).save(tmp_path / "small.safetensors")
    with pytest.raises(CheckpointError, match="space 'small'"):
        load_weights_from(target, tmp_path / "small.safetensors", "init_from")
