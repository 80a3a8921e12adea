"""``finalize.compile``: front members fine-tuned and tested as standalone, torch.compile'd networks.

The compiled path must deliver the same thing as the supernet path: the same BN statistics for the same
calibration images, the same test top-1 for the same weights, and model folders that load and score
what their index says. Tests compile with torch's ``aot_eager`` backend (the same tracing, no code
generation: seconds instead of minutes on CPU); ``inductor`` itself is covered by ``make test-slow``.
"""

from __future__ import annotations

import copy
import json
import random

import pytest
import torch

from nat.errors import ConfigError
from nat.export import load_model
from nat.search import NATSearch, load_config
from nat.search.finalize import MODELS_INDEX, export_run_models
from nat.space import Subnet, get_space
from nat.supernet import BNCalibrator, Supernet
from nat.train.standalone import StandaloneTrainee, backend_name, compiled

MICRO = get_space("micro")


def _randomised_supernet() -> Supernet:
    torch.manual_seed(0)
    net = Supernet(MICRO, num_classes=5)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for key, t in net.state_dict().items():
            if key.endswith(("running_mean", "bn.bias")):
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
            elif key.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
    return net


def test_standalone_bn_recalibration_gives_the_supernets_statistics() -> None:
    net = _randomised_supernet()
    subnet = Subnet.sample(MICRO, random.Random(3))
    calibrator = BNCalibrator(torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(2)), 10)
    inside = copy.deepcopy(net)
    calibrator(inside, subnet)
    reference = inside.extract(subnet).eval()
    standalone = net.extract(subnet)  # the supernet's own (uncalibrated) statistics
    standalone.train()
    counts = {k: v.clone() for k, v in standalone.state_dict().items() if k.endswith("num_batches_tracked")}
    calibrator.standalone(standalone)
    assert standalone.training  # the mode it was in is kept
    state, want = standalone.state_dict(), reference.state_dict()
    for key, value in want.items():
        if key.endswith(("running_mean", "running_var")):
            torch.testing.assert_close(state[key], value, rtol=1e-5, atol=1e-6)
    for key, count in counts.items():  # calibration is not training: batch counters are left alone
        assert torch.equal(state[key], count)
    x = torch.randn(4, 3, subnet.r, subnet.r)
    with torch.no_grad():
        got, ref = standalone.eval()(x), reference(x)
    # random BN makes logits of ~1e3 that amplify float-order differences of ~1e-6 in the statistics
    assert ((got - ref).abs().max() / ref.abs().max()).item() < 1e-3


def test_standalone_trainee_runs_only_its_own_subnet() -> None:
    net = _randomised_supernet()
    subnet = Subnet.sample(MICRO, random.Random(0))
    model = net.extract(subnet).eval()
    trainee = StandaloneTrainee(model)
    assert list(trainee.parameters()) == list(model.parameters())
    assert set(trainee.state_dict()) == {f"network.{k}" for k in model.state_dict()}
    trainee.set_active(subnet)
    other = Subnet.smallest(MICRO) if subnet != Subnet.smallest(MICRO) else Subnet.largest(MICRO)
    with pytest.raises(ConfigError, match="cannot run"):
        trainee.set_active(other)
    x = torch.randn(2, 3, subnet.r, subnet.r)
    with torch.no_grad():
        assert torch.equal(trainee(x), model(x))


def test_compile_settings() -> None:
    assert backend_name(False) is None and backend_name(True) == "inductor"
    assert backend_name("aot_eager") == "aot_eager"
    model = torch.nn.Linear(2, 2)
    assert compiled(model, None) is model
    with pytest.raises(ConfigError, match="unknown torch.compile backend 'nope'"):
        compiled(model, "nope")
    with pytest.raises(ConfigError, match="finalize.compile: .*unknown torch.compile backend"):
        load_config(preset="smoke", overrides={"finalize": {"compile": "nope"}})
    assert load_config(preset="smoke", overrides={"finalize": {"compile": True}}).finalize.compile is True


def _tested_models(folder, index) -> list[dict]:
    models = json.loads(index.read_text())
    for m in models:
        assert (folder / m["name"] / "model.safetensors").is_file()
    return models


@pytest.mark.slow  # torch.compile's first compile takes about 20 s on CPU, where compile is not the default
def test_compiled_finalize_matches_the_supernet_path_and_writes_loadable_models(tmp_path) -> None:
    config = load_config(
        preset="smoke",
        overrides={
            "initial_samples": 4,
            "iterations": 0,
            "adaptation": {"max_steps": 2},
            "data": {"val_size": 100},
            "evaluation": {"calibration_images": 32},
            "finalize": {"models": 2, "finetune_epochs": 0.0},
        },
    )
    with NATSearch(config, tmp_path / "run") as search:
        search.run()
        parts, front = search.parts, search.front()
        plain = config.finalize
        same = plain.model_copy(update={"compile": "aot_eager"})
        tuned = plain.model_copy(
            update={"compile": "aot_eager", "finetune_epochs": 0.1, "distill": True, "models": 1}
        )
        out = {}
        for name, settings in (("plain", plain), ("same", same), ("tuned", tuned)):
            folder = tmp_path / name
            export_run_models(parts, front, settings, folder, search.run_dir.path, folder / MODELS_INDEX)
            out[name] = _tested_models(folder, folder / MODELS_INDEX)
        task = search.task
    # no fine-tuning: the same weights and statistics, so the same test top-1, model by model
    assert [m["test_top1"] for m in out["same"]] == [m["test_top1"] for m in out["plain"]]
    assert (
        out["same"][0]["settings"]["compile"] == "aot_eager" and "compile" not in out["plain"][0]["settings"]
    )
    # fine-tuned compiled models: each folder loads and scores on the test split what its index says
    from nat.data import make_loader

    for m in out["tuned"]:
        loaded = load_model(tmp_path / "tuned" / m["name"])
        loader = make_loader(task, "test", batch_size=50, resolution=loaded.subnet.r, train=False)
        correct = 0
        with torch.no_grad():
            for images, labels in loader:
                correct += int((loaded(images).argmax(1) == labels).sum())
        assert m["test_top1"] == correct / len(task.test)
        assert m["settings"]["distill"] is True and m["finetune_epochs"] == 0.1


def _train_steps(forward, module, resolution: int, steps: int = 3) -> list[float]:
    g = torch.Generator().manual_seed(0)
    optimizer = torch.optim.SGD(module.parameters(), lr=0.05, momentum=0.9)
    dtype = next(module.parameters()).dtype
    losses = []
    for _ in range(steps):
        images, labels = (
            torch.randn(8, 3, resolution, resolution, generator=g),
            torch.randint(0, 5, (8,), generator=g),
        )
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(forward(images.to(dtype)), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def _compiled_training_matches_eager(backend: str) -> None:
    """Three SGD steps of an extracted subnet, eager and compiled, from the same weights on the same
    batches: the same losses, and weights as close to the exact result as eager's own.

    ``aot_eager`` runs eager's kernels, so its weights must equal eager's. ``inductor`` generates its
    own kernels, which sum in another order: with random weights, batches of 8 and 1-2 px maps, BN
    amplifies float32 rounding, so eager itself ends up to ~5e-3 away from the same steps in float64.
    The compiled weights are held to that yardstick (float64 steps as the exact result) instead of to
    an arbitrary tolerance around eager's rounding."""
    net = _randomised_supernet()
    subnet = Subnet.sample(MICRO, random.Random(5))
    eager, fast, exact = (net.extract(subnet).train() for _ in range(3))
    for model in (eager, fast, exact):
        model.classifier.dropout_rate = 0.0  # compiled code draws dropout masks from another stream
    want = _train_steps(eager, eager, subnet.r)
    got = _train_steps(compiled(fast, backend), fast, subnet.r)
    assert got == pytest.approx(want, rel=1e-3)
    if backend == "aot_eager":
        for a, b in zip(eager.parameters(), fast.parameters(), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-4)
        return
    _train_steps(exact.double(), exact, subnet.r)

    def weights(model: torch.nn.Module) -> torch.Tensor:
        return torch.cat([p.detach().double().flatten() for p in model.parameters()])

    eager_error, compiled_error = weights(eager) - weights(exact), weights(fast) - weights(exact)
    assert compiled_error.norm() <= 2 * eager_error.norm()
    assert compiled_error.abs().max() <= 2 * eager_error.abs().max()


@pytest.mark.slow  # a minute of tracing; make test keeps the end-to-end finalize.compile test above
def test_aot_eager_compiled_training_matches_eager() -> None:
    _compiled_training_matches_eager("aot_eager")


@pytest.mark.slow
def test_inductor_compiled_training_matches_eager() -> None:
    """torch's real backend (code generation; minutes on CPU): the same losses and weights as eager."""
    _compiled_training_matches_eager("inductor")
