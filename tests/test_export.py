"""Model folders, ONNX export, and the post-search finalisation (fine-tune, test, save, report)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from nat.data import make_loader
from nat.errors import CheckpointError
from nat.export import export_onnx, load_model, save_model
from nat.search import NATSearch, load_config
from nat.search.finalize import finalize
from nat.space import Subnet, get_space
from nat.supernet import Supernet

MICRO = get_space("micro")


@pytest.fixture()
def model():
    torch.manual_seed(0)
    net = Supernet(MICRO, num_classes=5)
    sub = Subnet.sample(MICRO, random.Random(0))
    return net.extract(sub).eval()


def test_model_folder_round_trip(tmp_path, model) -> None:
    folder = save_model(model, tmp_path / "m", metrics={"test_top1": 0.5})
    loaded = load_model(folder)
    x = torch.randn(2, 3, model.subnet.r, model.subnet.r)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert json.loads((folder / "net.subnet").read_text()) == model.subnet.to_dict()
    assert json.loads((folder / "net.config").read_text())["metrics"]["test_top1"] == 0.5
    with pytest.raises(CheckpointError, match="not a nat model folder"):
        load_model(tmp_path)


def test_onnx_export_matches_pytorch(tmp_path, model) -> None:
    ort = pytest.importorskip("onnxruntime")
    path = export_onnx(model, tmp_path / "model.onnx")
    x = torch.randn(3, 3, model.subnet.r, model.subnet.r)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(onnx_out, model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_finalize_writes_models_plot_and_summary(tmp_path) -> None:
    config = load_config(
        preset="smoke",
        overrides={
            "initial_samples": 5,
            "iterations": 1,
            "candidates_per_iteration": 2,
            "adaptation": {"max_steps": 3},
            "nsga3": {"pop_size": 10, "generations": 3},
            "data": {"val_size": 100},
            "evaluation": {"calibration_images": 32},
        },
    )
    with NATSearch(config, tmp_path / "run") as search:
        front = search.run()
        models = finalize(search, finetune_epochs=0.05, max_models=2)
        task = search.task
    assert 1 <= len(models) <= min(2, len(front))
    for m in models:
        loaded = load_model(tmp_path / "run" / "models" / m["name"])
        assert loaded.subnet == Subnet.from_dict(m["subnet"])
        # the reported test top-1 is the saved model's own, counted independently on the test split
        test = make_loader(task, "test", batch_size=97, resolution=loaded.subnet.r, train=False)
        correct = total = 0
        with torch.no_grad():
            for images, labels in test:
                correct += int((loaded(images).argmax(1) == labels).sum())
                total += len(labels)
        assert total == len(task.test) and m["test_top1"] == correct / total
        assert json.loads((tmp_path / "run" / "models" / m["name"] / "net.config").read_text())[
            "metrics"
        ] == {
            "test_top1": m["test_top1"],
            "val_top1": m["top1"],
        }
    assert (tmp_path / "run" / "front.png").stat().st_size > 1000
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "test top-1" in summary and models[0]["name"] in summary and "nan" not in summary
