"""Deployed forms (`nat.export.deploy`): ONNX Runtime and ExecuTorch files in fp32 and int8, run and
measured in their own runtimes; the refusals a user meets."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from nat.data.source import TensorSplit
from nat.errors import CheckpointError, ConfigError
from nat.export import deploy
from nat.space import Subnet, get_space
from nat.supernet import StaticMobileNetV3

pytestmark = pytest.mark.usefixtures("one_thread")
MICRO = get_space("micro")


@pytest.fixture(scope="module")
def model() -> StaticMobileNetV3:
    torch.manual_seed(0)
    net = StaticMobileNetV3(MICRO, Subnet.smallest(MICRO), 5).eval()
    with torch.no_grad():  # BN statistics that are not the identity, so every layer matters
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 1.5)
    return net


@pytest.fixture(scope="module")
def images(model) -> torch.Tensor:
    r = model.subnet.r
    return torch.randn(24, 3, r, r, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="module")
def files(model, images, tmp_path_factory) -> dict[str, object]:
    """Every runtime file of the model, written once for the module."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("executorch")
    folder = tmp_path_factory.mktemp("deployed")
    return {
        name: deploy.write_format(model, fmt, folder / fmt.file, images[:16])
        for name, fmt in deploy.FORMATS.items()
        if fmt.runtime != "pytorch"
    }


def test_fp32_files_compute_the_models_logits(model, images, files) -> None:
    """ONNX Runtime and ExecuTorch (XNNPACK) in fp32 give PyTorch's logits within 1e-4 relative."""
    x = images[16:]
    with torch.no_grad():
        reference = model(x)
    for name in ("onnx", "executorch"):
        out = deploy.open_runner(files[name], threads=1)(x)
        error = (out - reference).abs().max() / reference.abs().max()
        assert error < 1e-4, (name, float(error))


def test_int8_files_are_quantized_and_close(model, images, files) -> None:
    """The int8 files hold int8 weights (about a quarter of the fp32 weights) and agree with the fp32
    network on most images' class (random weights: a loose check; accuracy is measured per model on
    real data by `nat export`)."""
    onnx = pytest.importorskip("onnx")
    proto = onnx.load(str(files["onnx_int8"]))
    ops = {n.op_type for n in proto.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    int8_weights = [t for t in proto.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert len(int8_weights) >= 10

    def weight_bytes(path) -> int:
        return sum(onnx.numpy_helper.to_array(t).nbytes for t in onnx.load(str(path)).graph.initializer)

    # weights and their scales; a model this small is mostly graph, which int8 does not shrink
    assert weight_bytes(files["onnx_int8"]) < 0.4 * weight_bytes(files["onnx"])
    x = images[16:]
    with torch.no_grad():
        reference = model(x)
    assert files["executorch_int8"].stat().st_size < 0.5 * files["executorch"].stat().st_size
    for name in ("onnx_int8", "executorch_int8"):
        out = deploy.open_runner(files[name], threads=1)(x)
        cosine = torch.nn.functional.cosine_similarity(out, reference).mean()
        assert cosine > 0.9, (name, float(cosine))


def test_measure_reports_accuracy_latency_and_size(model, images, files) -> None:
    labels = torch.arange(len(images)) % 5
    batches = [(images[:12], labels[:12]), (images[12:], labels[12:])]
    for name, path in files.items():
        facts = deploy.measure(deploy.open_runner(path, threads=1), path, images[:1], batches, repeats=5)
        assert facts["file"] == path.name and facts["size_bytes"] == path.stat().st_size
        assert facts["test_images"] == len(images) and 0 <= facts["test_top1"] <= facts["test_top5"] <= 1
        assert facts["latency_p10_ms"] <= facts["latency_ms"] <= facts["latency_p90_ms"]
        assert facts["threads"] == 1 and facts["batch_size"] == 1
        assert facts["precision"] == ("int8" if "int8" in name else "fp32")
    # the same network in two runtimes counts the same images right
    onnx = deploy.measure(deploy.open_runner(files["onnx"]), files["onnx"], images[:1], batches, repeats=3)
    torch_facts = deploy.measure(deploy.TorchRunner(model, 1), files["onnx"], images[:1], batches, repeats=3)
    assert onnx["test_top1"] == torch_facts["test_top1"]


def test_file_names_say_format_and_precision() -> None:
    assert deploy.format_of("m/model.int8.onnx").name == "onnx_int8"
    assert deploy.format_of("elsewhere/net.pte").name == "executorch"
    assert deploy.format_of("x/y.int8.pte").name == "executorch_int8"
    assert deploy.format_of("model.safetensors").runtime == "pytorch"
    with pytest.raises(ConfigError, match="not a model file"):
        deploy.format_of("model.tflite")
    assert [f.name for f in deploy.requested_formats(onnx=True, executorch=True, int8=True)] == [
        "onnx",
        "onnx_int8",
        "executorch",
        "executorch_int8",
    ]


def test_corrupt_or_missing_files_are_one_clear_error(tmp_path) -> None:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("executorch")
    for name in ("model.onnx", "model.int8.pte"):
        bad = tmp_path / name
        bad.write_bytes(b"<html>not a model</html>" * 10)
        with pytest.raises(CheckpointError, match="can load"):
            deploy.open_runner(bad)
    with pytest.raises(CheckpointError, match="not found"):
        deploy.open_runner(tmp_path / "absent.pte")


def test_a_failed_export_leaves_no_file(model, tmp_path, monkeypatch) -> None:
    pytest.importorskip("executorch")

    def broken(*args, **kwargs):
        raise RuntimeError("lowering failed")

    monkeypatch.setattr(deploy, "executorch_program", broken)
    with pytest.raises(RuntimeError, match="lowering failed"):
        deploy.write_format(model, deploy.FORMATS["executorch"], tmp_path / "model.pte", None)
    assert list(tmp_path.iterdir()) == []


def test_missing_runtime_is_one_line_naming_the_extra(model, tmp_path, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "executorch" else real(n, *a))
    with pytest.raises(ConfigError, match=r"executorch package.*pip install 'nat\[deploy\]'"):
        deploy.write_format(model, deploy.FORMATS["executorch"], tmp_path / "model.pte", None)
    assert not (tmp_path / "model.pte").exists()


def test_calibration_comes_from_a_seeded_sample_of_the_training_split() -> None:
    split = TensorSplit(
        torch.arange(50, dtype=torch.uint8).reshape(50, 1, 1, 1), torch.zeros(50, dtype=torch.long)
    )
    first = deploy.calibration_split(split, 10, seed=3)
    assert len(first) == 10 and torch.equal(first.images, deploy.calibration_split(split, 10, seed=3).images)
    rows = first.images.flatten().tolist()
    assert rows == sorted(rows) and rows != list(range(10))  # drawn across the split, in index order
    with pytest.raises(ConfigError, match="holds 50 images"):
        deploy.calibration_split(split, 51, seed=0)
    with pytest.raises(ConfigError, match="at least 1"):
        deploy.calibration_split(split, 0, seed=0)
    batches = [(torch.ones(4, 3, 2, 2), torch.zeros(4)), (torch.zeros(4, 3, 2, 2), torch.zeros(4))]
    assert deploy.calibration_images(batches, 6).shape == (6, 3, 2, 2)
    with pytest.raises(ConfigError, match="only 8"):
        deploy.calibration_images(batches, 9)
    assert np.isfinite(deploy.calibration_images(batches, 8).numpy()).all()
