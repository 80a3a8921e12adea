"""NAT's archive distribution (where online adaptation trains) and its optional uniform mixing."""

from __future__ import annotations

import numpy as np
import pytest

from nat.search.config import AdaptationConfig
from nat.search.distribution import GenomeDistribution
from nat.space import Subnet, get_space
from nat.space.genome import encode


@pytest.fixture()
def space():
    return get_space("tiny")


def _all_at_smallest_resolution(space) -> np.ndarray:
    return np.stack([encode(Subnet.smallest(space), space), encode(Subnet.largest(space, r=24), space)])


def test_archive_distribution_never_samples_a_choice_the_elite_lacks(space) -> None:
    dist = GenomeDistribution.from_genomes(_all_at_smallest_resolution(space), space)
    samples = dist.sample(500, np.random.default_rng(0))
    assert set(samples[:, 0].tolist()) == {0}  # 24 px only: the lock-in of docs/results/transfer.md


def test_uniform_mixing_reopens_every_choice_with_the_expected_probabilities(space) -> None:
    dist = GenomeDistribution.from_genomes(_all_at_smallest_resolution(space), space)
    mixed = dist.mixed_with_uniform(0.5)
    n_res = len(space.resolutions)
    expected = 0.5 * np.eye(n_res)[0] + 0.5 / n_res
    np.testing.assert_allclose(mixed.probabilities[0], expected)
    for p in mixed.probabilities:
        assert p.sum() == pytest.approx(1.0)
    samples = mixed.sample(4000, np.random.default_rng(0))
    counts = np.bincount(samples[:, 0], minlength=n_res) / len(samples)
    np.testing.assert_allclose(counts, expected, atol=0.03)
    assert dist.mixed_with_uniform(0.0).probabilities[0].tolist() == dist.probabilities[0].tolist()


def test_uniform_mixing_weight_is_validated(space) -> None:
    dist = GenomeDistribution.uniform(space)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        dist.mixed_with_uniform(1.5)
    with pytest.raises(ValueError):
        AdaptationConfig(uniform_mix=-0.1)
    assert AdaptationConfig().uniform_mix == 0.0  # the paper's rule by default
