"""NAT's released networks: their net.config built by nat, checked against OFA's package; net.encoding;
release-format weights (safe loading); `nat profile` on a net.config."""

from __future__ import annotations

import copy
import json
import os
import warnings
from pathlib import Path

import pytest
import torch

from nat.cli import main
from nat.errors import CheckpointError, ConfigError
from nat.export import build_natnet, load_natnet, profile_network, save_model, subnet_from_net_config
from nat.objectives import profile_subnet
from nat.space import Subnet, get_space
from nat.space.genome import format_encoding, parse_encoding
from nat.supernet import StaticMobileNetV3

OFFICIAL = Path(__file__).resolve().parents[1] / "../shared/reference/nat_official/subnets"
FOLDERS = (
    sorted(p.parent for p in OFFICIAL.resolve().glob("*/*/net.config")) if OFFICIAL.resolve().is_dir() else []
)
needs_release = pytest.mark.skipif(
    len(FOLDERS) != 14, reason="NAT's released configs (shared/reference) absent"
)
PAPER = get_space("ofa_mbv3")


def published_name(folder: Path) -> str:
    """The name the folder has in nat_published_subnets.json (NAT-M1..M4, else the dataset)."""
    return folder.name if folder.name.startswith("NAT-") else folder.parent.name


def released_resolution(folder: Path, config: dict) -> int:
    return config.get("img_size") or Subnet.from_file(folder / "net.subnet").r


def ofa_buildable(config: dict) -> dict:
    """A copy OFA's builder accepts: OFA has no ``mish``; activations have no parameters, so replacing
    it with ``relu`` keeps every parameter shape (used for the parameter-count comparison only)."""
    text = json.dumps(config).replace('"mish"', '"relu"')
    return json.loads(text)


def relative_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module")
def by_name(published) -> dict[str, dict]:
    """NAT's 14 published architectures (conftest's ``published``) keyed by name."""
    return {arch["name"]: arch for arch in published}


@needs_release
def test_every_released_config_builds_with_the_published_architecture(by_name) -> None:
    """All 14: parameters equal OFA's build of the config; the subnet and MAdds are the published ones."""
    ofa_networks = pytest.importorskip("ofa.imagenet_classification.networks")
    acts = set()
    for folder in FOLDERS:
        config = json.loads((folder / "net.config").read_text())
        acts |= {b["mobile_inverted_conv"]["act_func"] for b in config["blocks"]}
        net = build_natnet(folder / "net.config")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ofa_net = ofa_networks.MobileNetV3.build_from_config(ofa_buildable(config))
        ofa_state = {k: v.shape for k, v in ofa_net.state_dict().items()}
        assert {k: v.shape for k, v in net.state_dict().items()} == ofa_state, folder
        params = sum(p.numel() for p in net.parameters())
        assert params == sum(p.numel() for p in ofa_net.parameters()), folder
        arch = by_name[published_name(folder)]
        r = released_resolution(folder, config)
        sub = Subnet.from_dict(arch["subnet"], PAPER)
        # the config describes the published subnet (also its width, which two net.subnet files omit)
        assert subnet_from_net_config(config, PAPER, r) == sub, folder
        counted = profile_network(net, r)
        analytic = profile_subnet(sub, PAPER, arch["classes"])
        assert counted == {"madds": analytic["madds"], "params": analytic["params"]}, folder
        assert counted["madds"] / 1e6 == pytest.approx(arch["madds"], rel=0.03), folder
    assert acts == {"relu", "h_swish", "mish"}


def random_state(net: torch.nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """``net``'s (randomly initialised) weights with random BN statistics and affine parameters."""
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, t in net.state_dict().items():
        if key.endswith("running_var"):
            t = torch.rand(t.shape, generator=g) + 0.5
        elif key.endswith(("running_mean", "bn.bias")):
            t = torch.randn(t.shape, generator=g) * 0.2
        elif key.endswith("bn.weight"):
            t = torch.rand(t.shape, generator=g) + 0.75
        state[key] = t.clone()
    return state


@needs_release
@pytest.mark.parametrize("name", ["cars", "pets", "NAT-M1"])
def test_release_format_weights_give_ofas_logits(tmp_path, monkeypatch, name) -> None:
    """Random weights saved as NAT releases them ({"state_dict"}, legacy keys, "module." prefix) load
    into nat's network and give the logits of OFA's network (mish: OFA's builder taught nn.Mish)."""
    ofa_networks = pytest.importorskip("ofa.imagenet_classification.networks")
    ofa_layers = pytest.importorskip("ofa.utils.layers")
    original = ofa_layers.build_activation
    monkeypatch.setattr(
        ofa_layers,
        "build_activation",
        lambda act, inplace=True: torch.nn.Mish() if act == "mish" else original(act, inplace),
    )
    folder = next(f for f in FOLDERS if published_name(f) == name)
    config = json.loads((folder / "net.config").read_text())
    torch.manual_seed(len(name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ofa_net = ofa_networks.MobileNetV3.build_from_config(copy.deepcopy(config))
    state = random_state(ofa_net, seed=len(name))
    ofa_net.load_state_dict(state)
    legacy = {
        "module." + (k.replace(".conv.", ".mobile_inverted_conv.", 1) if k.startswith("blocks.") else k): v
        for k, v in state.items()
    }
    assert any(".mobile_inverted_conv." in k for k in legacy)
    torch.save({"state_dict": legacy}, tmp_path / "net.weights")
    net = load_natnet(folder / "net.config", tmp_path / "net.weights")
    assert not net.training
    x = torch.randn(
        2, 3, 64, 64, generator=torch.Generator().manual_seed(0)
    )  # fully convolutional: small input
    with torch.no_grad():
        assert relative_error(net(x), ofa_net.eval()(x)) < 1e-5


def test_ofa_own_config_output_loads() -> None:
    """OFA's current spelling (ResidualBlock/conv/MBConvLayer, groups, use_se, ws_eps) builds too."""
    ofa_elastic = pytest.importorskip("ofa.imagenet_classification.elastic_nn.networks")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        supernet = ofa_elastic.OFAMobileNetV3(
            n_classes=10, width_mult=1.2, ks_list=[3, 5, 7], expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4]
        )
    supernet.set_active_subnet(ks=[5] * 20, e=[4] * 20, d=[2, 3, 2, 4, 2])
    ofa_sub = supernet.get_active_subnet(preserve_weight=False)
    ofa_sub.load_state_dict(random_state(ofa_sub, 5))
    net = load_natnet(ofa_sub.config)
    net.load_state_dict(ofa_sub.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert relative_error(net(x), ofa_sub.eval()(x)) < 1e-5


@needs_release
def test_net_encoding_decodes_to_net_subnet(by_name) -> None:
    """The four ImageNet folders carry net.encoding; it decodes to their net.subnet."""
    encoded = [f for f in FOLDERS if (f / "net.encoding").is_file()]
    assert len(encoded) == 4
    for folder in encoded:
        subnet = Subnet.from_file(folder / "net.subnet", PAPER)
        assert parse_encoding(folder / "net.encoding") == subnet
        assert format_encoding(subnet) == (folder / "net.encoding").read_text().strip()
    # the other ten have none: their published subnets go round trip through the format
    for arch in by_name.values():
        sub = Subnet.from_dict(arch["subnet"], PAPER)
        assert parse_encoding(format_encoding(sub)) == sub
    assert parse_encoding("08011001440551052208877").d == (2, 3, 3, 3, 4)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0801100144055105220887", "23 digits"),
        ("08011001440551052208877x", "23 digits"),
        ("17011001440551052208877", "outside"),
        ("08011000440551052208877", "variable 6 = 0"),
    ],
)
def test_bad_encodings_fail_clearly(text, message) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_encoding(text)


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_weight_files_are_read_safely(tmp_path) -> None:
    model = StaticMobileNetV3(get_space("micro"), Subnet.smallest(get_space("micro")), 3)
    folder = save_model(model, tmp_path / "m")
    net_config = folder / "net.config"
    load_natnet(net_config, folder / "model.safetensors")  # nat's own safetensors weights work too
    evil = tmp_path / "evil.weights"
    torch.save({"state_dict": {}, "payload": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="besides tensors") as info:
        load_natnet(net_config, evil)
    assert "weights_only" not in str(info.value) and "False" not in str(info.value)
    truncated = tmp_path / "truncated.weights"
    torch.save({"state_dict": model.state_dict()}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:500])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_natnet(net_config, truncated)
    wrong = tmp_path / "wrong.weights"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2)}}, wrong)
    with pytest.raises(CheckpointError, match="unexpected key"):
        load_natnet(net_config, wrong)
    with pytest.raises(CheckpointError, match="not found"):
        load_natnet(net_config, tmp_path / "absent")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda c: c["blocks"][1]["mobile_inverted_conv"].update(act_func="gelu"), "unknown act_func"),
        (lambda c: c["first_conv"].update(ops_order="bn_act_weight"), "ops_order"),
        (lambda c: c["blocks"][1]["mobile_inverted_conv"].update(width=3), "unknown field"),
        (lambda c: c.pop("blocks"), "not an OFA/NAT net.config"),
    ],
)
def test_unsupported_configs_fail_clearly(tmp_path, change, message) -> None:
    model = StaticMobileNetV3(get_space("micro"), Subnet.smallest(get_space("micro")), 3)
    config = json.loads((save_model(model, tmp_path / "m") / "net.config").read_text())
    change(config)
    with pytest.raises(ConfigError, match=message):
        build_natnet(config)


@needs_release
def test_cli_profile_counts_a_released_net_config(capsys) -> None:
    m1 = next(f for f in FOLDERS if f.name == "NAT-M1")
    assert main(["profile", str(m1 / "net.config"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    subnet = Subnet.from_file(m1 / "net.subnet", PAPER)
    expected = profile_subnet(subnet, PAPER, 1000)
    assert out["madds"] == expected["madds"] and out["params"] == expected["params"]
    assert out["resolution"] == 224 and out["width"] == 1.0 and out["num_classes"] == 1000
    # a folder works too, and the text output keeps its three lines
    assert main(["profile", str(m1), "--num-classes", "10"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("MAdds:") and "classes: 10" in lines[2]
    assert f"({profile_subnet(subnet, PAPER, 10)['madds']})" in lines[0]


def test_cli_profile_counts_nats_own_net_config(tmp_path, capsys) -> None:
    space = get_space("tiny")
    model = StaticMobileNetV3(space, Subnet.largest(space), 10)
    folder = save_model(model, tmp_path / "m")
    expected = profile_subnet(model.subnet, space, 10)
    assert main(["profile", str(folder / "net.config"), "--space", "tiny", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["madds"], out["params"], out["resolution"], out["width"]) == (
        expected["madds"],
        expected["params"],
        model.subnet.r,
        1.0,
    )
    old = tmp_path / "old.config"  # nat's older net.config: the subnet in its space
    old.write_text(json.dumps(model.config()))
    assert main(["profile", str(old), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == expected
    bad = tmp_path / "net.config"
    bad.write_text(json.dumps({"first_conv": {}, "blocks": []}))
    assert main(["profile", str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "net.config" in err[0] and "Traceback" not in err[0]
