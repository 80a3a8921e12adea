"""Model folders, the OFA/NAT net.config, ONNX export, preprocessing, and the post-search finalisation."""

from __future__ import annotations

import copy
import json
import random
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nat.data import make_loader
from nat.data.source import IMAGENET_MEAN, IMAGENET_STD
from nat.data.transforms import eval_batch
from nat.errors import CheckpointError, ConfigError
from nat.export import (
    export_onnx,
    load_model,
    load_natnet,
    model_files,
    model_transform,
    net_config,
    profile_network,
    save_model,
    subnet_from_net_config,
)
from nat.objectives import profile_subnet
from nat.search import NATSearch, load_config
from nat.search.finalize import finalize
from nat.space import Subnet, get_space
from nat.supernet import StaticMobileNetV3, Supernet
from nat.supernet.layers import SqueezeExcite

MICRO = get_space("micro")
INFO = {
    "class_names": ["zero", "one", "two", "three", "four"],
    "preprocessing": {"crop_pct": 0.875, "mean": [0.5, 0.5, 0.5]},
    "provenance": {"dataset": "digits", "run": "runs/x", "seed": 3},
}


def randomise(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN statistics and affine parameters, so that every weight matters for the logits."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for key, t in net.state_dict().items():
            if key.endswith("running_mean") or key.endswith("bn.bias"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
            elif key.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif key.endswith("bn.weight"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.75)
    return net.eval()


def relative_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a - ref).abs().max() / ref.abs().max()).item()


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
    assert not loaded.training
    with pytest.raises(CheckpointError, match="not a nat model folder"):
        load_model(tmp_path)


def test_model_json_holds_space_classes_preprocessing_and_provenance(tmp_path, model) -> None:
    import nat

    folder = save_model(
        model, tmp_path / "m", {"test_top1": np.float32(0.75), "bad": float("nan")}, info=INFO
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "model.json",
        "model.safetensors",
        "net.config",
        "net.subnet",
    ]
    info = json.loads((folder / "model.json").read_text())
    assert info["space"] == MICRO.model_dump(mode="json") and info["subnet"] == model.subnet.to_dict()
    assert info["num_classes"] == 5 and info["class_names"] == INFO["class_names"]
    assert info["preprocessing"] == {
        "resolution": model.subnet.r,
        "mean": [0.5, 0.5, 0.5],
        "std": list(IMAGENET_STD),
        "channels": 3,
        "interpolation": "bilinear",
        "crop_pct": 0.875,
    }
    assert info["metrics"] == {"test_top1": 0.75, "bad": None}  # valid JSON: no NaN
    assert info["provenance"] == {
        "nat_version": nat.__version__,
        "dataset": "digits",
        "run": "runs/x",
        "seed": 3,
    }
    assert load_model(folder).info == info
    # defaults without info: ImageNet statistics, the subnet's resolution, the whole image
    plain = json.loads((save_model(model, tmp_path / "p") / "model.json").read_text())
    assert plain["preprocessing"]["mean"] == list(IMAGENET_MEAN) and plain["preprocessing"]["crop_pct"] == 1.0
    assert plain["class_names"] is None and plain["provenance"] == {"nat_version": nat.__version__}
    assert model_files.IMAGENET_MEAN == IMAGENET_MEAN and model_files.IMAGENET_STD == IMAGENET_STD


@pytest.mark.parametrize(
    ("info", "message"),
    [
        ({"class_names": ["a", "b"]}, "2 class names"),
        ({"preprocessing": {"size": 3}}, "unknown key"),
        ({"preprocessing": {"channels": 1, "mean": [0.1, 0.2, 0.3]}}, "needs 1 value"),
        ({"preprocessing": {"crop_pct": 1.5}}, "crop_pct"),
        ({"labels": []}, "unknown key"),
    ],
)
def test_save_model_checks_info_before_writing(tmp_path, model, info, message) -> None:
    with pytest.raises(ConfigError, match=message):
        save_model(model, tmp_path / "m", info=info)
    assert not (tmp_path / "m").exists()


def test_older_model_folders_still_load(tmp_path, model) -> None:
    """Folders written before model.json: net.config held {"space", "subnet", "num_classes", "metrics"}."""
    folder = tmp_path / "old"
    folder.mkdir()
    (folder / "net.config").write_text(json.dumps({**model.config(), "metrics": {"test_top1": 0.5}}))
    save_model(model, tmp_path / "new")
    (folder / "model.safetensors").write_bytes((tmp_path / "new" / "model.safetensors").read_bytes())
    loaded = load_model(folder)
    x = torch.randn(2, 3, model.subnet.r, model.subnet.r)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))
    assert (
        loaded.info["metrics"] == {"test_top1": 0.5}
        and loaded.info["preprocessing"]["resolution"] == model.subnet.r
    )


def test_damaged_model_folders_fail_clearly(tmp_path, model) -> None:
    folder = save_model(model, tmp_path / "m")
    with pytest.raises(CheckpointError, match="model folder not found"):
        load_model(tmp_path / "nowhere")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.json").write_text("{")
    with pytest.raises(CheckpointError, match="damaged"):
        load_model(broken)
    (broken / "model.json").write_text((folder / "model.json").read_text())
    with pytest.raises(CheckpointError, match="model.safetensors is missing"):
        load_model(broken)
    data = (folder / "model.safetensors").read_bytes()
    (broken / "model.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="damaged"):
        load_model(broken)
    other = save_model(StaticMobileNetV3(MICRO, Subnet.largest(MICRO), 5), tmp_path / "other")
    (broken / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes())
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(broken)
    release = tmp_path / "release"
    release.mkdir()
    (release / "net.config").write_text((folder / "net.config").read_text())
    with pytest.raises(CheckpointError, match="load_natnet"):
        load_model(release)


def _ofa_reference(space_name: str, width: float, resolution: int | None, seed: int) -> StaticMobileNetV3:
    space = get_space(space_name)
    if resolution is not None:  # the paper's space at a small input, to keep the test fast
        space = space.model_copy(update={"resolutions": (resolution,)})
    sub = Subnet.sample(space, random.Random(seed), w=width)
    torch.manual_seed(seed)
    return randomise(StaticMobileNetV3(space, sub, 7), seed)


@pytest.mark.parametrize(
    ("space_name", "width", "resolution"),
    [
        ("micro", 1.0, None),
        ("tiny", 1.0, None),
        ("tiny-s2", 1.0, None),
        ("ofa_mbv3", 1.0, 64),
        ("ofa_mbv3", 1.2, 64),
    ],
)
def test_net_config_builds_the_same_network_in_ofa(tmp_path, space_name, width, resolution) -> None:
    """OFA's MobileNetV3.build_from_config builds net.config; model.safetensors loads into it (strict)."""
    ofa_networks = pytest.importorskip("ofa.imagenet_classification.networks")
    from safetensors.torch import load_file

    for seed in (1, 2):
        model = _ofa_reference(space_name, width, resolution, seed)
        folder = save_model(model, tmp_path / f"m{seed}")
        config = json.loads((folder / "net.config").read_text())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ofa_net = ofa_networks.MobileNetV3.build_from_config(copy.deepcopy(config))
        ofa_net.load_state_dict(load_file(str(folder / "model.safetensors")), strict=True)
        x = torch.randn(2, 3, model.subnet.r, model.subnet.r, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            assert relative_error(model(x), ofa_net.eval()(x)) < 1e-5
        # OFA's own description of what it built has the same values in every field nat writes
        ofa_config = ofa_net.config
        for key in ("first_conv", "final_expand_layer", "feature_mix_layer", "classifier"):
            assert {k: ofa_config[key][k] for k in config[key]} == config[key], key
        for ours, theirs in zip(config["blocks"], ofa_config["blocks"], strict=True):
            conv = {k: v for k, v in ours["mobile_inverted_conv"].items() if k != "name"}
            assert {k: theirs["conv"][k] for k in conv} == conv
            assert ours["shortcut"] == theirs["shortcut"]
        assert {"momentum": ofa_config["bn"]["momentum"], "eps": ofa_config["bn"]["eps"]} == config["bn"]
        # and it describes the subnet: the inverse mapping recovers it, the counts agree
        assert subnet_from_net_config(config, model.space) == model.subnet
        net = load_natnet(folder / "net.config", folder / "model.safetensors")
        with torch.no_grad():
            assert relative_error(net(x), model(x)) < 1e-5
        counts = profile_subnet(model.subnet, model.space, 7)
        assert profile_network(net, model.subnet.r) == {"madds": counts["madds"], "params": counts["params"]}


def test_net_config_matches_ofa_extracted_subnet_config() -> None:
    """Field for field, nat's net.config equals OFA's config of the subnet OFAMobileNetV3 extracts."""
    ofa_elastic = pytest.importorskip("ofa.imagenet_classification.elastic_nn.networks")
    space = get_space("ofa_mbv3")
    for width, seed in ((1.0, 3), (1.2, 4)):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            supernet = ofa_elastic.OFAMobileNetV3(
                n_classes=10,
                dropout_rate=0.1,
                width_mult=width,
                ks_list=[3, 5, 7],
                expand_ratio_list=[3, 4, 6],
                depth_list=[2, 3, 4],
            )
        sub = Subnet.sample(space, random.Random(seed), w=width)
        ks, e = sub.padded(space.max_depth)
        supernet.set_active_subnet(ks=ks, e=e, d=list(sub.d))
        reference = supernet.get_active_subnet(preserve_weight=False).config
        ours = net_config(StaticMobileNetV3(space, sub, 10))
        for key in ("first_conv", "final_expand_layer", "feature_mix_layer", "classifier"):
            assert {k: reference[key][k] for k in ours[key]} == ours[key], key
        for mine, theirs in zip(ours["blocks"], reference["blocks"], strict=True):
            conv = {k: v for k, v in mine["mobile_inverted_conv"].items() if k != "name"}
            assert {k: theirs["conv"][k] for k in conv} == conv
            assert mine["shortcut"] == theirs["shortcut"]


def test_onnx_export_matches_pytorch(tmp_path) -> None:
    """torch's recommended (dynamo) exporter, opset >= 17, dynamic batch, through save_model(onnx=True),
    without the exporter's per-node debugging notes."""
    ort = pytest.importorskip("onnxruntime")
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    torch.manual_seed(0)
    model = randomise(StaticMobileNetV3(MICRO, Subnet.smallest(MICRO), 5))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        folder = save_model(model, tmp_path / "m", onnx=True)
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]
    proto = onnx.load(str(folder / "model.onnx"))
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a symbolic batch
    assert not any(node.metadata_props for node in proto.graph.node)  # no exporter debugging notes
    # the spatial means (squeeze-and-excite, head) as GlobalAveragePool, which ONNX Runtime quantizes
    ops = [node.op_type for node in proto.graph.node]
    squeeze_excite = sum(isinstance(m, SqueezeExcite) for m in model.modules())
    assert squeeze_excite > 0 and "ReduceMean" not in ops
    assert ops.count("GlobalAveragePool") == squeeze_excite + 1
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, model.subnet.r, model.subnet.r)
        (onnx_out,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(onnx_out, model(x).numpy(), rtol=1e-4, atol=1e-5)


def test_onnx_torchscript_fallback_is_quiet(tmp_path, model) -> None:
    """Without onnxscript nat falls back to the TorchScript exporter, without its deprecation notices."""
    ort = pytest.importorskip("onnxruntime")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = export_onnx(model, tmp_path / "model.onnx", dynamo=False)
    assert not [w for w in caught if issubclass(w.category, DeprecationWarning)]
    import onnx

    assert "ReduceMean" not in [node.op_type for node in onnx.load(str(path)).graph.node]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 3):
        x = torch.randn(batch, 3, model.subnet.r, model.subnet.r)
        (onnx_out,) = session.run(None, {"images": x.numpy()})
        with torch.no_grad():
            np.testing.assert_allclose(onnx_out, model(x).numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ConfigError, match="opset"):
        export_onnx(model, tmp_path / "old.onnx", opset=13)


def _photo() -> Path:
    import sklearn.datasets

    return Path(sklearn.datasets.__file__).parent / "images" / "china.jpg"  # a real 640 x 427 JPEG


@pytest.mark.parametrize("crop_pct", [1.0, 0.875])
def test_model_transform_matches_nat_eval_preprocessing(tmp_path, model, crop_pct) -> None:
    folder = save_model(model, tmp_path / "m", info={"preprocessing": {"crop_pct": crop_pct}})
    img = Image.open(_photo())
    x = model_transform(folder)(img)
    assert x.shape == (3, model.subnet.r, model.subnet.r) and x.dtype == torch.float32
    uint8 = torch.from_numpy(np.asarray(img.convert("RGB")).copy()).permute(2, 0, 1)[None]
    ref = eval_batch(uint8, model.subnet.r, mean=IMAGENET_MEAN, std=IMAGENET_STD, crop_pct=crop_pct)[0]
    assert (x - ref).abs().max() < 1e-4  # the same torch operations as nat's in-memory evaluation
    # classify an image file in three lines (docs/export.md)
    loaded = load_model(folder)
    logits = loaded(model_transform(folder)(Image.open(_photo()))[None])
    assert logits.shape == (1, 5)


def test_model_transform_grayscale_and_overrides(tmp_path, model) -> None:
    gray = {"channels": 1, "mean": [0.449], "std": [0.226]}
    folder = save_model(model, tmp_path / "g", info={"preprocessing": gray})
    img = Image.open(_photo())
    x = model_transform(folder)(img)
    assert x.shape == (3, model.subnet.r, model.subnet.r) and torch.equal(x[0], x[2])
    uint8 = torch.from_numpy(np.asarray(img.convert("L")).copy())[None, None]
    ref = eval_batch(uint8, model.subnet.r, mean=[0.449], std=[0.226], out_channels=3)[0]
    assert (x - ref).abs().max() < 1e-4
    # a model without model.json (e.g. a NAT release network) gets its resolution and ImageNet statistics
    bare = model_transform(model, resolution=40, crop_pct=0.875, interpolation="bicubic")
    assert bare(img).shape == (3, 40, 40)
    with pytest.raises(ConfigError, match="interpolation"):
        model_transform(model, interpolation="nearest")


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
        info = json.loads((tmp_path / "run" / "models" / m["name"] / "model.json").read_text())
        assert info["metrics"] == {
            "test_top1": m["test_top1"],
            "test_top5": m["test_top5"],
            "val_top1": m["top1"],
        }
    assert (tmp_path / "run" / "front.png").stat().st_size > 1000
    summary = (tmp_path / "run" / "summary.md").read_text()
    assert "test top-1" in summary and models[0]["name"] in summary and "nan" not in summary
