"""Search space, NAT's net.subnet format and the integer genome."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from nat.errors import ConfigError
from nat.space import (
    PRESETS,
    SearchSpace,
    Subnet,
    canonical,
    canonical_batch,
    decode,
    encode,
    genome_bounds,
    genome_length,
    get_space,
    sample_genomes,
)

PAPER = get_space("ofa_mbv3")


def test_paper_space_is_ofa_mbv3() -> None:
    assert PAPER.resolutions == tuple(range(192, 257, 4))
    assert PAPER.kernel_sizes == (3, 5, 7) and PAPER.expand_ratios == (3, 4, 6) and PAPER.depths == (2, 3, 4)
    assert PAPER.width_mults == (1.0, 1.2)
    assert PAPER.stage_widths(1.0) == (24, 40, 80, 112, 160)
    assert PAPER.widths(1.2) == (24, 24, 32, 48, 96, 136, 192, 1152, 1536)
    assert PAPER.stage_strides == (2, 2, 2, 1, 2) and PAPER.stem_stride == 2
    assert PAPER.stage_se == (False, True, False, True, True)
    assert PAPER.stage_acts == ("relu", "relu", "h_swish", "h_swish", "h_swish")
    assert genome_length(PAPER) == 22


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_build_and_sample(name: str) -> None:
    space = get_space(name)
    rng = random.Random(0)
    for _ in range(20):
        Subnet.sample(space, rng).check(space)


def test_unknown_preset_and_bad_fields() -> None:
    with pytest.raises(ConfigError, match="unknown search space preset"):
        get_space("nope")
    with pytest.raises(ConfigError, match="odd"):
        get_space({"kernel_sizes": [3, 4]})
    with pytest.raises(ConfigError, match="stage_strides"):
        get_space({"stage_strides": [1, 2]})


def test_subnet_round_trip_and_equality(tmp_path) -> None:
    sub = Subnet.from_dict(
        {"ks": [3, 5, 7, 3, 5, 7, 3, 5, 7, 3], "e": [3] * 10, "d": [2] * 5, "r": 224, "w": 1.2}, PAPER
    )
    assert Subnet.from_dict(sub.to_dict()) == sub
    assert hash(Subnet.from_dict(sub.to_dict())) == hash(sub)
    path = tmp_path / "net.subnet"
    path.write_text(json.dumps(sub.to_dict()))
    assert Subnet.from_file(path, PAPER) == sub
    (tmp_path / "wrapped.json").write_text(json.dumps({"subnet": sub.to_dict(), "top1": 0.9}))
    assert Subnet.from_file(tmp_path / "wrapped.json") == sub


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"ks": [3] * 10, "e": [3] * 10, "d": [2] * 4, "r": 224}, "one depth per stage"),
        ({"ks": [3] * 9, "e": [3] * 10, "d": [2] * 5, "r": 224}, "'ks' needs one entry per active block"),
        ({"ks": [3] * 10, "e": [3] * 10, "d": [2] * 5}, "missing key"),
        ({"ks": [3] * 10, "e": [3] * 10, "d": [2] * 5, "r": 224, "x": 1}, "unknown key"),
        ({"ks": [4] * 10, "e": [3] * 10, "d": [2] * 5, "r": 224}, "kernel size"),
        ({"ks": [3] * 10, "e": [5] * 10, "d": [2] * 5, "r": 224}, "expand ratio"),
        ({"ks": [3] * 5, "e": [3] * 5, "d": [1] * 5, "r": 224}, "depth"),
        ({"ks": [3] * 10, "e": [3] * 10, "d": [2] * 5, "r": 225}, "resolution"),
        ({"ks": [3] * 10, "e": [3] * 10, "d": [2] * 5, "r": 224, "w": 1.1}, "width multiplier"),
        ({"ks": [3.5] * 10, "e": [3] * 10, "d": [2] * 5, "r": 224}, "integer"),
        ([1, 2, 3], "mapping"),
    ],
)
def test_subnet_validation(data, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Subnet.from_dict(data, PAPER)


def test_subnet_file_errors(tmp_path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        Subnet.from_file(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        Subnet.from_file(tmp_path / "bad.json")


def test_published_subnets_are_in_the_space(published) -> None:
    for arch in published:
        sub = Subnet.from_dict(arch["subnet"], PAPER)
        assert decode(encode(sub, PAPER), PAPER) == sub


def test_genome_round_trip_and_bounds() -> None:
    rng = random.Random(3)
    lower, upper = genome_bounds(PAPER)
    assert lower.tolist()[:4] == [0, 0, 1, 1] and upper.tolist()[:3] == [16, 1, 9]
    for _ in range(200):
        sub = Subnet.sample(PAPER, rng)
        genome = encode(sub, PAPER)
        assert np.all(genome >= lower) and np.all(genome <= upper)
        assert decode(genome, PAPER) == sub


def test_genome_op_codes_follow_the_documented_order() -> None:
    # code c >= 1 is the (expand, kernel) pair op_choices[c - 1]: (3,3) (3,5) (3,7) (4,3) ... (6,7)
    genome = [8, 1] + [1, 9, 0, 0] + [2, 3, 4, 0] + [5, 6, 0, 0] + [7, 8, 9, 1] + [2, 2, 0, 0]
    sub = decode(genome, PAPER)
    assert sub.r == 224 and sub.w == 1.2 and sub.d == (2, 3, 2, 4, 2)
    assert sub.e[:5] == (3, 6, 3, 3, 4) and sub.ks[:5] == (3, 7, 5, 7, 3)


def test_canonical_genomes_identify_equal_networks() -> None:
    with_gap = np.array([0, 0] + [1, 2, 0, 3] + [1, 1, 0, 0] * 4)
    canon = canonical(with_gap, PAPER)
    assert canon.tolist()[2:6] == [1, 2, 3, 0]
    assert decode(with_gap, PAPER) == decode(canon, PAPER)
    batch = np.stack([with_gap, canon])
    assert (canonical_batch(batch, PAPER) == canon).all()


def test_decode_errors() -> None:
    with pytest.raises(ConfigError, match="22 integers"):
        decode([0] * 21, PAPER)
    with pytest.raises(ConfigError, match="outside"):
        decode([17, 0] + [1] * 20, PAPER)
    with pytest.raises(ConfigError, match="outside"):
        decode([0, 0] + [0] * 20, PAPER)


def test_sampling_is_deterministic_and_canonical() -> None:
    a = sample_genomes(PAPER, 50, np.random.default_rng(7))
    b = sample_genomes(PAPER, 50, np.random.default_rng(7))
    assert (a == b).all()
    assert (canonical_batch(a, PAPER) == a).all()
    assert len({tuple(g) for g in a}) == 50


def test_largest_smallest() -> None:
    big, small = Subnet.largest(PAPER), Subnet.smallest(PAPER)
    assert big.d == (4,) * 5 and set(big.ks) == {7} and big.r == 256 and big.w == 1.2
    assert small.d == (2,) * 5 and set(small.e) == {3} and small.r == 192 and small.w == 1.0


def test_custom_space_from_mapping() -> None:
    space = get_space({"name": "mine", "resolutions": [32, 40], "stem_stride": 1, "width_mults": [1.0]})
    assert isinstance(space, SearchSpace) and space.resolutions == (32, 40)
