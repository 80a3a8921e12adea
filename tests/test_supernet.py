"""The elastic supernet on a tiny space: activation, extraction, training, calibration, checkpoints."""

from __future__ import annotations

import random

import pytest
import torch

from nat.errors import CheckpointError, ConfigError
from nat.space import Subnet, get_space
from nat.supernet import BNCalibrator, Supernet, load_supernet, recalibrate_bn, save_supernet

TINY = get_space("tiny")


def randomise_bn(net: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and kernel transforms, so equality checks mean something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if name.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.1)
            elif name.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif name.endswith("matrix"):
                t.add_(torch.randn(t.shape, generator=g) * 0.1)


@pytest.fixture()
def tiny_net() -> Supernet:
    torch.manual_seed(0)
    net = Supernet(TINY, num_classes=7)
    randomise_bn(net)
    return net


def test_structure_matches_space(tiny_net: Supernet) -> None:
    assert len(tiny_net.blocks) == 1 + 5 * TINY.max_depth
    assert tiny_net.classifier.linear.out_features == 7
    assert tiny_net.active == Subnet.largest(TINY)


def test_extract_matches_active_supernet(tiny_net: Supernet) -> None:
    rng = random.Random(0)
    tiny_net.eval()
    for _ in range(8):
        sub = tiny_net.sample_active(rng)
        x = torch.randn(3, 3, sub.r, sub.r)
        with torch.no_grad():
            folded = tiny_net(x)  # eval + no_grad: BN-folded cached weights
            static = tiny_net.extract(sub).eval()(x)
        unfolded = tiny_net(x)  # eval with autograd: the plain functional path
        assert torch.allclose(folded, static, rtol=1e-4, atol=1e-5)
        assert torch.allclose(unfolded, static, rtol=1e-4, atol=1e-5)
        assert sum(p.numel() for p in tiny_net.extract(sub).parameters()) > 0


def test_folded_cache_follows_weight_updates(tiny_net: Supernet) -> None:
    tiny_net.eval()
    sub = tiny_net.sample_active(random.Random(1))
    x = torch.randn(2, 3, sub.r, sub.r)
    with torch.no_grad():
        before = tiny_net(x)
        for p in tiny_net.parameters():
            p.mul_(1.1)
        after = tiny_net(x)
        reference = tiny_net.extract(sub).eval()(x)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, reference, rtol=1e-4, atol=1e-5)


def test_training_step_updates_shared_weights_and_transforms(tiny_net: Supernet) -> None:
    tiny_net.train()
    rng = random.Random(2)
    opt = torch.optim.SGD(tiny_net.parameters(), lr=0.1)
    sub = Subnet.from_dict({"ks": [3] * 10, "e": [4] * 10, "d": [2] * 5, "r": 32, "w": 1.0}, TINY)
    tiny_net.set_active(sub)
    before = tiny_net.blocks[1].conv.depth_conv.conv.get_parameter("5to3_matrix").clone()
    loss = torch.nn.functional.cross_entropy(tiny_net(torch.randn(4, 3, 32, 32)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    opt.step()
    after = tiny_net.blocks[1].conv.depth_conv.conv.get_parameter("5to3_matrix")
    assert not torch.equal(before, after)  # kernel 3 trains the 7->5 and 5->3 transforms
    # inactive blocks (slot 3 of each stage) get no gradient
    assert tiny_net.blocks[3].conv.inverted_bottleneck.conv.conv.weight.grad is None
    for _ in range(2):
        tiny_net.sample_active(rng)
        tiny_net(torch.randn(2, 3, tiny_net.active.r, tiny_net.active.r)).sum().backward()


def test_set_active_rejects_foreign_subnets(tiny_net: Supernet) -> None:
    with pytest.raises(ConfigError, match="outside the search space"):
        tiny_net.set_active(Subnet.largest(get_space()))
    paper = Supernet(get_space(), 1.2, 10)
    with pytest.raises(ConfigError, match="width multiplier 1.0"):
        paper.set_active(Subnet.smallest(get_space(), w=1.0))
    with pytest.raises(ConfigError, match="width multiplier"):
        Supernet(TINY, width_mult=1.2)


def test_reset_classifier(tiny_net: Supernet) -> None:
    tiny_net.reset_classifier(3)
    assert tiny_net(torch.randn(2, 3, 24, 24)).shape == (2, 3)
    assert tiny_net.extract().classifier.linear.out_features == 3


def test_bn_recalibration_is_deterministic_and_subnet_specific(tiny_net: Supernet) -> None:
    images = torch.randn(40, 3, 36, 36) * 2 + 0.5
    calibrator = BNCalibrator(images, batch_size=16)
    sub = Subnet.sample(TINY, random.Random(5))
    calibrator(tiny_net, sub)
    first = {k: v.clone() for k, v in tiny_net.state_dict().items() if "running" in k}
    assert calibrator.batches(sub.r) is calibrator.batches(sub.r)  # cached per resolution
    calibrator(tiny_net, sub)
    for k, v in tiny_net.state_dict().items():
        if "running" in k:
            assert torch.allclose(v, first[k], atol=1e-5), k
    # after calibration, BN running stats equal the statistics of the features on the calibration set
    tiny_net.eval()
    x = calibrator.batches(sub.r)
    feats = torch.cat([tiny_net.first_conv.conv(b) for b in x])
    assert torch.allclose(tiny_net.first_conv.bn.running_mean, feats.mean((0, 2, 3)), atol=1e-4)
    with pytest.raises(Exception, match="non-empty"):
        recalibrate_bn(tiny_net, [])


@pytest.mark.parametrize("shape", [(16, 24, 7, 7), (1, 24, 1, 1), (3, 24, 2, 2)])
def test_normalise_by_batch_gives_the_batch_statistics_and_normalises_by_them(shape) -> None:
    from nat.supernet.dynamic import normalise_by_batch

    g = torch.Generator().manual_seed(0)
    # a large offset against a small spread: a one-pass sum of squares would lose the variance
    x = (torch.randn(shape, generator=g) * 0.1 + 30.0).contiguous(memory_format=torch.channels_last)
    weight, bias = torch.rand(24, generator=g) + 0.5, torch.randn(24, generator=g)
    out, mean, var = normalise_by_batch(x, weight, bias, 1e-5)
    xd = x.double()
    want_mean, want_var = xd.mean((0, 2, 3)), xd.var((0, 2, 3), unbiased=False)
    assert mean.dtype == var.dtype == torch.float32
    torch.testing.assert_close(mean.double(), want_mean, rtol=1e-5, atol=0)
    torch.testing.assert_close(var.double(), want_var, rtol=1e-3, atol=1e-9)
    want = (xd - want_mean.view(1, -1, 1, 1)) / (want_var.view(1, -1, 1, 1) + 1e-5).sqrt()
    want = want * weight.double().view(1, -1, 1, 1) + bias.double().view(1, -1, 1, 1)
    torch.testing.assert_close(out.double(), want, rtol=1e-3, atol=1e-3)


def test_save_and_load_round_trip(tmp_path, tiny_net: Supernet) -> None:
    path = save_supernet(tiny_net, tmp_path / "supernet.safetensors")
    loaded = load_supernet(path)
    assert loaded.space == TINY and loaded.num_classes == 7
    for (k, a), (_, b) in zip(tiny_net.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert load_supernet(path, num_classes=4).num_classes == 4


def test_checkpoint_errors(tmp_path, tiny_net: Supernet) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_supernet(tmp_path / "none.safetensors")
    path = save_supernet(tiny_net, tmp_path / "s.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError):
        load_supernet(truncated)
    (tmp_path / "text.bin").write_text("hello")
    with pytest.raises(CheckpointError):
        load_supernet(tmp_path / "text.bin")
