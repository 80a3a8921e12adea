"""Analytic MAdds/params against a forward-hook counter on extracted models and the paper's figures."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch
from torch import nn

from nat.cli import main
from nat.objectives import ComplexityTable, profile_subnet
from nat.space import Subnet, canonical_batch, decode, encode, get_space, sample_genomes
from nat.supernet import StaticMobileNetV3


def hook_count(model: nn.Module, resolution: int) -> tuple[int, int]:
    """MAdds by forward hooks (conv: out elements x k*k*in/groups; linear: in x out) and parameters."""
    total = 0

    def conv_hook(m: nn.Conv2d, _inp, out: torch.Tensor) -> None:
        nonlocal total
        total += out.numel() * m.kernel_size[0] * m.kernel_size[1] * m.in_channels // m.groups

    def linear_hook(m: nn.Linear, _inp, _out) -> None:
        nonlocal total
        total += m.in_features * m.out_features

    handles = []
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            handles.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, nn.Linear):
            handles.append(m.register_forward_hook(linear_hook))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, resolution, resolution))
    for h in handles:
        h.remove()
    return total, sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(
    ("space_name", "classes", "n"), [("tiny", 10, 12), ("small", 10, 4), ("ofa_mbv3", 1000, 4)]
)
def test_analytic_counts_match_hook_counter(space_name: str, classes: int, n: int) -> None:
    space = get_space(space_name)
    rng = random.Random(11)
    subnets = [Subnet.largest(space), Subnet.smallest(space)] + [Subnet.sample(space, rng) for _ in range(n)]
    for sub in subnets:
        madds, params = hook_count(StaticMobileNetV3(space, sub, classes), sub.r)
        profile = profile_subnet(sub, space, classes)
        assert profile["madds"] == madds, sub
        assert profile["params"] == params, sub


def test_vectorised_table_equals_single_and_handles_skips() -> None:
    space = get_space()
    table = ComplexityTable(space, 100)
    genomes = sample_genomes(space, 64, np.random.default_rng(0))
    madds, params = table(genomes)
    for g, m, p in zip(genomes[:8], madds, params, strict=False):
        cost = table.subnet(decode(g, space))
        assert (cost.madds, cost.params) == (m, p)
    # a genome with skips in the middle of stages costs the same as its canonical form
    gapped = genomes.copy()
    gapped[:, 2:] = np.where(np.arange(20) % 4 == 2, 0, gapped[:, 2:])
    gapped[:, 2 + 3 :: 4] = np.maximum(gapped[:, 2 + 3 :: 4], 1)
    m1, p1 = table(gapped)
    m2, p2 = table(canonical_batch(gapped, space))
    assert (m1 == m2).all() and (p1 == p2).all()


def test_published_architectures(published) -> None:
    """Within a few percent of the published MAdds, within 2% of the paper's parameter counts."""
    space = get_space()
    for arch in published:
        sub = Subnet.from_dict(arch["subnet"], space)
        profile = profile_subnet(sub, space, arch["classes"])
        assert profile["madds"] / 1e6 == pytest.approx(arch["madds"], rel=0.03), arch["name"]
        if "params" in arch:
            assert profile["params"] / 1e6 == pytest.approx(arch["params"], rel=0.02), arch["name"]


def test_cli_profile_json(tmp_path, capsys, published) -> None:
    arch = next(a for a in published if a["name"] == "NAT-M1")
    path = tmp_path / "m1.json"
    path.write_text(json.dumps(arch["subnet"]))
    assert main(["profile", str(path), "--json"]) == 1  # a bare net.subnet says neither space nor classes
    assert "give --space" in capsys.readouterr().err
    assert main(["profile", str(path), "--space", "ofa_mbv3", "--json"]) == 1
    assert "give --num-classes" in capsys.readouterr().err
    assert main(["profile", str(path), "--space", "ofa_mbv3", "--num-classes", "1000", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["resolution"] == 224 and out["width"] == 1.0
    sub = Subnet.from_dict(arch["subnet"])
    assert out["madds"] == ComplexityTable(get_space(), 1000).subnet(sub).madds
    assert 5.9e6 < out["params"] < 6.2e6
    assert main(["profile", str(path), "--space", "ofa_mbv3", "--num-classes", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["params"] < out["params"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "not found"),
        ("{", "not valid JSON"),
        ('{"ks": [3], "e": [3], "d": [1, 1, 1, 1, 1], "r": 224}', "one entry per active block"),
    ],
)
def test_cli_profile_errors(tmp_path, capsys, content, message: str) -> None:
    path = tmp_path / "net.subnet"
    if content is not None:
        path.write_text(content)
    assert main(["profile", str(path), "--space", "ofa_mbv3", "--num-classes", "1000"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0] and "Traceback" not in err[0]


def test_encode_profile_consistency() -> None:
    space = get_space("tiny")
    sub = Subnet.sample(space, random.Random(0))
    table = ComplexityTable(space, 10)
    assert table(encode(sub, space))[0][0] == profile_subnet(sub, space, 10)["madds"]
