"""nat's supernet against the reference implementation (OFA's own package, test-only dependency).

Random OFA weights with non-trivial BN statistics and kernel-transform matrices are saved in both key
formats (current ``.conv.`` and legacy ``.mobile_inverted_conv.``), loaded through nat's checkpoint
reader, and compared logit for logit on many random subnets, both widths and several resolutions.
"""

from __future__ import annotations

import os
import random
import warnings

import pytest
import torch

from nat.errors import CheckpointError
from nat.objectives import profile_subnet
from nat.space import Subnet, get_space
from nat.supernet import BNCalibrator, Supernet

ofa_networks = pytest.importorskip("ofa.imagenet_classification.elastic_nn.networks")
ofa_utils = pytest.importorskip("ofa.imagenet_classification.elastic_nn.utils")
ofa_pytorch_utils = pytest.importorskip("ofa.utils.pytorch_utils")

PAPER = get_space("ofa_mbv3")


def make_ofa(width: float, classes: int = 10, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = ofa_networks.OFAMobileNetV3(
            n_classes=classes,
            dropout_rate=0.1,
            width_mult=width,
            ks_list=[3, 5, 7],
            expand_ratio_list=[3, 4, 6],
            depth_list=[2, 3, 4],
        )
    g = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for key, t in net.state_dict().items():
            if key.endswith("running_mean"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
            elif key.endswith("running_var"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            elif key.endswith("bn.weight"):
                t.copy_(torch.rand(t.shape, generator=g) + 0.75)
            elif key.endswith("bn.bias"):
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)
            elif key.endswith("matrix"):
                t.add_(torch.randn(t.shape, generator=g) * 0.1)
    return net.eval()


def relative_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a - ref).abs().max() / ref.abs().max()).item()


@pytest.fixture(scope="module", params=[1.0, 1.2], ids=["w1.0", "w1.2"])
def ofa_pair(request, tmp_path_factory):
    width = request.param
    ofa = make_ofa(width)
    state = ofa.state_dict()
    folder = tmp_path_factory.mktemp(f"ofa{width}")
    current, legacy = folder / "current.pth", folder / "legacy.pth"
    torch.save({"state_dict": state}, current)
    torch.save(
        {
            k.replace(".conv.", ".mobile_inverted_conv.", 1) if k.startswith("blocks.") else k: v
            for k, v in state.items()
        },
        legacy,
    )
    return width, ofa, current, legacy


def test_checkpoint_formats_load_to_identical_weights(ofa_pair) -> None:
    width, ofa, current, legacy = ofa_pair
    a = Supernet.from_ofa_checkpoint(current)
    b = Supernet.from_ofa_checkpoint(legacy)
    assert a.width_mult == b.width_mult == width and a.num_classes == 10
    for key, value in ofa.state_dict().items():
        assert torch.equal(a.state_dict()[key], value), key
        assert torch.equal(b.state_dict()[key], value), key


def check_logits_match_ofa(ofa_pair, n_subnets: int, seed: int) -> None:
    width, ofa, current, legacy = ofa_pair
    nets = [Supernet.from_ofa_checkpoint(current).eval(), Supernet.from_ofa_checkpoint(legacy).eval()]
    rng = random.Random(seed)
    resolutions = [192, 224, 256, 208, 240]
    for i in range(n_subnets):
        sub = Subnet.sample(PAPER, rng, w=width)
        sub = Subnet(sub.ks, sub.e, sub.d, resolutions[i % len(resolutions)], width)
        ks, e = sub.padded(PAPER.max_depth)
        ofa.set_active_subnet(ks=ks, e=e, d=list(sub.d))
        x = torch.randn(1, 3, sub.r, sub.r, generator=torch.Generator().manual_seed(i))
        net = nets[i % 2]  # alternate between the two key formats
        with torch.no_grad():
            reference = ofa(x)
            net.set_active(sub)
            assert relative_error(net(x), reference) < 1e-4
            extracted = net.extract(sub).eval()
            assert relative_error(extracted(x), reference) < 1e-4
        # and OFA's own extracted subnet agrees with nat's on complexity
        if i < 2:
            ofa_sub = ofa.get_active_subnet(preserve_weight=False)
            flops = ofa_pytorch_utils.count_net_flops(ofa_sub, (1, 3, sub.r, sub.r))
            params = sum(p.numel() for p in ofa_sub.parameters())
            ours = profile_subnet(sub, PAPER, 10)
            assert ours["madds"] == pytest.approx(flops, rel=1e-6)  # OFA counts in float32
            assert ours["params"] == params


def test_logits_match_ofa_for_random_subnets(ofa_pair) -> None:
    check_logits_match_ofa(ofa_pair, n_subnets=5, seed=int(ofa_pair[0] * 10))


@pytest.mark.slow
def test_logits_match_ofa_for_many_random_subnets(ofa_pair) -> None:
    check_logits_match_ofa(ofa_pair, n_subnets=40, seed=100 + int(ofa_pair[0] * 10))


def test_bn_recalibration_matches_ofa(ofa_pair) -> None:
    width, ofa, current, _ = ofa_pair
    net = Supernet.from_ofa_checkpoint(current)
    sub = Subnet.sample(PAPER, random.Random(9), w=width)
    sub = Subnet(sub.ks, sub.e, sub.d, 192, width)
    images = torch.randn(4, 3, 192, 192, generator=torch.Generator().manual_seed(3)) + 0.3
    BNCalibrator(images, batch_size=2)(net, sub)
    ks, e = sub.padded(PAPER.max_depth)
    ofa.set_active_subnet(ks=ks, e=e, d=list(sub.d))
    ofa_utils.set_running_statistics(ofa, [(images[:2], None), (images[2:], None)])
    ofa_state = ofa.state_dict()
    for key, value in net.state_dict().items():
        if key.endswith(("running_mean", "running_var")):
            assert torch.allclose(value, ofa_state[key], rtol=1e-4, atol=1e-5), key
    x = torch.randn(1, 3, 192, 192)
    with torch.no_grad():
        assert relative_error(net.eval()(x), ofa.eval()(x)) < 1e-4


def test_bad_checkpoints_fail_clearly(tmp_path, ofa_pair) -> None:
    width, ofa, current, _ = ofa_pair
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(current.read_bytes()[: current.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        Supernet.from_ofa_checkpoint(truncated)
    wrong = tmp_path / "wrong.pth"
    torch.save({"state_dict": {"fc.weight": torch.zeros(2, 2)}}, wrong)
    with pytest.raises(CheckpointError, match="not an OFA MobileNetV3"):
        Supernet.from_ofa_checkpoint(wrong)
    partial = tmp_path / "partial.pth"
    state = {k: v for k, v in ofa.state_dict().items() if "blocks.3." not in k}
    torch.save(state, partial)
    with pytest.raises(CheckpointError, match="missing key"):
        Supernet.from_ofa_checkpoint(partial)


class _Payload:
    """An object whose unpickling would run code: a safe loader must refuse it."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_checkpoint_with_code_is_refused(tmp_path) -> None:
    evil = tmp_path / "evil.pth"
    torch.save({"state_dict": {}, "payload": _Payload()}, evil)
    with pytest.raises(CheckpointError, match="never pickled code") as refused:
        Supernet.from_ofa_checkpoint(evil)
    assert "weights_only" not in str(refused.value)  # never advise turning the safety off


def test_new_task_classifier(ofa_pair) -> None:
    _, _, current, _ = ofa_pair
    net = Supernet.from_ofa_checkpoint(current, num_classes=37)
    assert net.num_classes == 37
    sub = Subnet.smallest(PAPER, w=net.width_mult)
    net.set_active(sub)
    assert net(torch.randn(1, 3, 192, 192)).shape == (1, 37)
