"""Accuracy surrogates: every registered model, the encodings, adaptive switching and input errors.

Data is synthetic but shaped like supernet accuracies (saturating in a cost proxy, resolution helps,
noise on top), so the tests stay fast and need no trained supernet.
"""

from __future__ import annotations

import numpy as np
import pytest

from nat.errors import ConfigError
from nat.space import genome_bounds, genome_length, get_space, sample_genomes
from nat.surrogates import (
    ENCODINGS,
    MeanEnsemble,
    Surrogate,
    SwitchReport,
    adaptive_switching,
    available_surrogates,
    encode_genomes,
    encoding_width,
    kendall_tau,
    make_surrogate,
    register_surrogate,
    rmse,
    spearman_rho,
)
from nat.surrogates.adaptive import _fold_indices

MODELS = [m for m in available_surrogates() if m not in ("adaptive", "prior")]  # prior: needs one
FAST = {
    "ofa_mlp": {"epochs": 60},
    "cart": {"n_trees": 40},
    "ensemble": {"member_kwargs": {"cart": {"n_trees": 40}}},
}


def synthetic_accuracy(genomes: np.ndarray, space, noise: float = 0.2, seed: int = 0) -> np.ndarray:
    """A smooth, saturating function of a FLOPs-like cost and the resolution, plus Gaussian noise."""
    ops = np.array([(0.0, 0.0), *space.op_choices])  # row 0 = skip
    cost_per_op = ops[:, 0] * ops[:, 1] ** 2 / 50.0
    slots = genomes[:, 2:].reshape(len(genomes), 5, space.max_depth)
    stage_weight = np.arange(1, 6)[None, :, None]
    cost = (cost_per_op[slots] * stage_weight).sum(axis=(1, 2))
    res = (genomes[:, 0] + 1) / len(space.resolutions)
    acc = 92.0 - 10.0 * np.exp(-cost * res**2 / 30.0) + 1.5 * res
    return acc + np.random.default_rng(seed).normal(0.0, noise, len(genomes))


@pytest.fixture(scope="module")
def tiny():
    return get_space("tiny")


@pytest.fixture(scope="module")
def data(tiny):
    x = sample_genomes(tiny, 150, np.random.default_rng(0))
    return x, synthetic_accuracy(x, tiny)


# ------------------------------------------------------------------------------------------ encodings
@pytest.mark.parametrize(
    "preset, widths",
    [
        ("ofa_mbv3", {"genome": 22, "onehot": 17 + 2 + 20 * 10, "ofa": 17 + 20 * 6 + 2}),
        ("tiny", {"genome": 22, "onehot": 5 + 1 + 20 * 10, "ofa": 5 + 20 * 6}),
    ],
)
def test_encoding_shapes(preset: str, widths: dict[str, int]) -> None:
    space = get_space(preset)
    x = sample_genomes(space, 7, np.random.default_rng(1))
    for enc in ENCODINGS:
        f = encode_genomes(x, enc, space)
        assert f.shape == (7, widths[enc]) == (7, encoding_width(enc, space))
        assert f.dtype == np.float32
        assert f.min() >= 0.0 and f.max() <= 1.0


def test_onehot_groups_and_ofa_skips() -> None:
    space = get_space("ofa_mbv3")
    x = sample_genomes(space, 20, np.random.default_rng(2))
    f = encode_genomes(x, "onehot", space)
    n_res, n_w, n_ops = len(space.resolutions), len(space.width_mults), len(space.op_choices) + 1
    assert np.all(f[:, :n_res].sum(1) == 1) and np.all(f[:, n_res : n_res + n_w].sum(1) == 1)
    slots = f[:, n_res + n_w :].reshape(20, -1, n_ops)
    assert np.all(slots.sum(2) == 1)
    assert np.array_equal(slots.argmax(2), x[:, 2:])  # slot one-hot index is the op code (0 = skip)

    o = encode_genomes(x, "ofa", space)
    kernels = o[:, n_res : n_res + 20 * 3].reshape(20, 20, 3)
    expands = o[:, n_res + 20 * 3 : n_res + 20 * 6].reshape(20, 20, 3)
    active = x[:, 2:] > 0
    assert np.array_equal(kernels.sum(2) == 1, active) and np.array_equal(expands.sum(2) == 1, active)
    for row, genome in enumerate(x[:3]):
        for slot, code in enumerate(genome[2:]):
            if code:
                e, k = space.op_choices[code - 1]
                assert space.kernel_sizes[kernels[row, slot].argmax()] == k
                assert space.expand_ratios[expands[row, slot].argmax()] == e


def test_genome_encoding_is_canonical_and_scaled(tiny) -> None:
    g = np.array([[4, 0, 1, 2, 0, 3, 1, 1, 0, 0, 1, 1, 1, 1, 9, 9, 0, 0, 1, 1, 0, 0]])
    canon = np.array([[4, 0, 1, 2, 3, 0, 1, 1, 0, 0, 1, 1, 1, 1, 9, 9, 0, 0, 1, 1, 0, 0]])
    assert np.array_equal(encode_genomes(g, "genome", tiny), encode_genomes(canon, "genome", tiny))
    assert encode_genomes(g, "genome", tiny)[0, 0] == 1.0


def test_unknown_encoding(tiny) -> None:
    with pytest.raises(ConfigError, match="unknown encoding"):
        encode_genomes(sample_genomes(tiny, 2, np.random.default_rng(0)), "fourier", tiny)


# ------------------------------------------------------------------------------------------ models
@pytest.mark.parametrize("name", MODELS)
def test_model_fits_ranks_and_is_deterministic(name: str, tiny, data) -> None:
    x, y = data
    train, test = slice(0, 100), slice(100, None)
    kwargs = FAST.get(name, {})
    a = make_surrogate(name, tiny, seed=3, **kwargs).fit(x[train], y[train])
    pa = a.predict(x[test])
    assert pa.shape == (50,) and pa.dtype == np.float64 and np.all(np.isfinite(pa))
    assert kendall_tau(y[test], pa) > 0.3, f"{name} does not rank a smooth function"
    assert abs(pa.mean() - y.mean()) < 3 * y.std()  # back in the units of y
    b = make_surrogate(name, tiny, seed=3, **kwargs).fit(x[train], y[train])
    np.testing.assert_array_equal(pa, b.predict(x[test]))
    assert a.predict(x[test][:1]).shape == (1,)
    assert a.encoding in ENCODINGS and a.name == name and "fitted" in repr(a)


@pytest.mark.parametrize("name", MODELS)
def test_same_network_same_prediction(name: str, tiny, data) -> None:
    x, y = data
    model = make_surrogate(name, tiny, seed=0, **FAST.get(name, {})).fit(x[:60], y[:60])
    g = np.array([[4, 0, 1, 2, 0, 3, 1, 1, 0, 0, 1, 1, 1, 1, 9, 9, 0, 0, 1, 1, 0, 0]])
    canon = np.array([[4, 0, 1, 2, 3, 0, 1, 1, 0, 0, 1, 1, 1, 1, 9, 9, 0, 0, 1, 1, 0, 0]])
    assert model.predict(g)[0] == model.predict(canon)[0]


def test_rbf_handles_duplicates_constant_targets_and_scale(tiny, data) -> None:
    x, y = data
    dup_x, dup_y = np.concatenate([x[:40], x[:40]]), np.concatenate([y[:40], y[:40] + 0.1])
    p = make_surrogate("rbf", tiny).fit(dup_x, dup_y).predict(x[40:])
    assert np.all(np.isfinite(p))
    flat = make_surrogate("rbf", tiny).fit(x[:40], np.full(40, 80.0)).predict(x[40:])
    np.testing.assert_allclose(flat, 80.0, atol=1e-6)
    p1 = make_surrogate("rbf", tiny).fit(x[:60], y[:60]).predict(x[60:])
    p100 = make_surrogate("rbf", tiny).fit(x[:60], 100 * y[:60]).predict(x[60:])
    np.testing.assert_allclose(p100, 100 * p1, rtol=1e-4)


def test_rbf_predicts_many_candidates_consistently(tiny, data) -> None:
    """The search scores thousands of candidates per call: one big call must give finite predictions in
    the units of y that rank unseen networks like the true (noise-free) accuracy, the same as small calls.
    (How fast this is belongs to bench/surrogates.py, not to a unit test.)"""
    x, y = data
    model = make_surrogate("rbf", tiny).fit(x, y)
    many = sample_genomes(tiny, 10_000, np.random.default_rng(5))
    pred = model.predict(many)
    assert pred.shape == (10_000,) and pred.dtype == np.float64 and np.all(np.isfinite(pred))
    assert y.min() - 3 * y.std() < pred.min() and pred.max() < y.max() + 3 * y.std()
    truth = synthetic_accuracy(many, tiny, noise=0.0)
    assert kendall_tau(truth, pred) > 0.3
    np.testing.assert_allclose(np.concatenate([model.predict(c) for c in np.array_split(many, 7)]), pred)


def test_registry_rejects_bad_classes() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_surrogate("rbf")(_Noise)

    class BadEncoding(_Noise):
        encoding = "pixels"

    with pytest.raises(ValueError, match="encoding"):
        register_surrogate("_test_bad")(BadEncoding)


def test_different_seeds_differ(tiny, data) -> None:
    x, y = data
    a = make_surrogate("rbf", tiny, seed=0).fit(x[:80], y[:80]).predict(x[80:])
    b = make_surrogate("rbf", tiny, seed=1).fit(x[:80], y[:80]).predict(x[80:])
    assert not np.array_equal(a, b)


# ------------------------------------------------------------------------------------------ errors
def test_bad_inputs(tiny, data) -> None:
    x, y = data
    model = make_surrogate("rbf", tiny)
    with pytest.raises(RuntimeError, match="fitted"):
        model.predict(x)
    with pytest.raises(ConfigError, match="shape"):
        model.fit(x[:, :10], y)
    with pytest.raises(ConfigError, match="outside"):
        bad = x.copy()
        bad[3, 0] = 99
        model.fit(bad, y)
    with pytest.raises(ConfigError, match="integers"):
        model.fit(x + 0.5, y)
    with pytest.raises(ConfigError, match="pair up"):
        model.fit(x, y[:-1])
    with pytest.raises(ConfigError, match="finite"):
        model.fit(x, np.where(np.arange(len(y)) == 5, np.nan, y))
    with pytest.raises(ConfigError, match="at least 3"):
        model.fit(x[:2], y[:2])
    with pytest.raises(ConfigError, match="empty"):
        model.fit(np.zeros((0, genome_length(tiny)), dtype=int), np.zeros(0))
    with pytest.raises(ConfigError, match="unknown surrogate"):
        make_surrogate("svm", tiny)
    with pytest.raises(ConfigError, match="bad options"):
        make_surrogate("rbf", tiny, n_trees=3)
    with pytest.raises(ConfigError, match="unknown search space"):
        make_surrogate("rbf", "huge")
    model.fit(x, y)
    with pytest.raises(ConfigError, match="shape"):
        model.predict(np.zeros((3, 5), dtype=int))


# ------------------------------------------------------------------------------------------ switching
class _Oracle(Surrogate):
    """Knows the noiseless function: should always win the switching."""

    encoding = "genome"

    def _fit(self, features: np.ndarray, z: np.ndarray) -> None:
        pass

    def _predict(self, features: np.ndarray) -> np.ndarray:
        lower, upper = genome_bounds(self.space)  # undo the "genome" encoding's scaling
        genomes = np.rint(features * np.maximum(upper - lower, 1) + lower).astype(np.int64)
        return (synthetic_accuracy(genomes, self.space, noise=0.0) - self._y_mean) / self._y_scale


class _OracleA(_Oracle):
    """The noiseless function plus one fixed pattern of errors."""

    def _predict(self, features: np.ndarray) -> np.ndarray:
        return super()._predict(features) + 0.8 * np.sin(features @ np.arange(1.0, 23.0) * 7.0)


class _OracleB(_Oracle):
    """The noiseless function plus another, independent pattern of errors."""

    def _predict(self, features: np.ndarray) -> np.ndarray:
        return super()._predict(features) + 0.8 * np.cos(features @ np.arange(22.0, 0.0, -1.0) * 11.0)


class _Noise(Surrogate):
    """Random guesses: should always lose."""

    encoding = "onehot"

    def _fit(self, features: np.ndarray, z: np.ndarray) -> None:
        pass

    def _predict(self, features: np.ndarray) -> np.ndarray:
        return np.random.default_rng(self.seed).normal(size=len(features))


@pytest.fixture()
def fake_models():
    """Register the oracle and the noise model for one test only (the registry is global)."""
    from nat.surrogates import base

    fakes = {"_test_oracle": _Oracle, "_test_noise": _Noise, "_test_a": _OracleA, "_test_b": _OracleB}
    for name, cls in fakes.items():
        register_surrogate(name)(cls)
    yield
    for name in fakes:
        base.SURROGATES.remove(name)


@pytest.mark.usefixtures("fake_models")
def test_switching_picks_the_clearly_better_model(tiny, data) -> None:
    x, y = data
    model, report = adaptive_switching(
        x, y, tiny, models=("_test_noise", "_test_oracle"), folds=4, seed=0, repeats=2
    )
    assert isinstance(report, SwitchReport)
    assert report.chosen == "_test_oracle" and model.name == "_test_oracle" and model.fitted
    assert report.n_samples == len(x) and report.folds == 4 and report.repeats == 2
    for s in report.scores.values():
        assert len(s.fold_taus) == 8
        assert s.mean == pytest.approx(np.mean(s.fold_taus)) and s.std == pytest.approx(np.std(s.fold_taus))
        assert s.score == pytest.approx(s.mean - s.std)
    assert report.scores["_test_oracle"].mean > 0.8 > 0.3 > report.scores["_test_noise"].mean
    assert "_test_oracle" in report.summary() and report.to_dict()["chosen"] == "_test_oracle"


@pytest.mark.parametrize(("n", "folds", "seed", "repeats"), [(7, 3, 4, 2), (10, 3, 0, 2), (150, 5, 0, 3)])
def test_fold_indices_partition_each_repeat(n: int, folds: int, seed: int, repeats: int) -> None:
    parts = _fold_indices(n, folds, seed, repeats)
    assert len(parts) == folds * repeats
    for r in range(repeats):
        rep = parts[r * folds : (r + 1) * folds]
        np.testing.assert_array_equal(np.sort(np.concatenate(rep)), np.arange(n))
        sizes = [len(p) for p in rep]
        assert max(sizes) - min(sizes) <= 1 and sorted(sizes, reverse=True) == sizes
        assert all(np.array_equal(p, np.sort(p)) for p in rep)
    if repeats > 1:  # fresh shuffles per repeat
        assert any(not np.array_equal(a, b) for a, b in zip(parts[:folds], parts[folds:], strict=False))
    np.testing.assert_array_equal(
        np.concatenate(parts), np.concatenate(_fold_indices(n, folds, seed, repeats))
    )


def test_fold_indices_are_the_historical_split() -> None:
    """Pinned: the folds of the earlier hand-written split (``np.array_split`` of
    ``np.random.default_rng(seed).permutation(n)``, per repeat), so surrogate choices stay the same."""
    expected = {
        (7, 3, 4, 2): [[0, 1, 2], [4, 5], [3, 6], [0, 1, 4], [2, 5], [3, 6]],
        (10, 3, 0, 2): [[2, 4, 6, 7], [3, 5, 9], [0, 1, 8], [2, 3, 6, 9], [0, 4, 8], [1, 5, 7]],
        (9, 3, 0, 1): [[2, 4, 5], [3, 6, 8], [0, 1, 7]],
    }
    for args, folds in expected.items():
        assert [p.tolist() for p in _fold_indices(*args)] == folds, args
    for n, folds, seed, repeats in [(23, 5, 1, 3), (150, 5, 0, 3), (61, 4, 2**31 + 5, 2)]:
        rng = np.random.default_rng(seed)
        legacy = [np.sort(p) for _ in range(repeats) for p in np.array_split(rng.permutation(n), folds)]
        got = _fold_indices(n, folds, seed, repeats)
        assert len(got) == len(legacy) and all(np.array_equal(a, b) for a, b in zip(got, legacy, strict=True))


def test_switching_over_real_models_is_deterministic(tiny, data) -> None:
    x, y = data
    kwargs = {"cart": {"n_trees": 30}}
    m1, r1 = adaptive_switching(
        x[:60], y[:60], tiny, models=("rbf", "gp", "cart"), folds=3, seed=7, model_kwargs=kwargs, repeats=1
    )
    m2, r2 = adaptive_switching(
        x[:60], y[:60], tiny, models=("rbf", "gp", "cart"), folds=3, seed=7, model_kwargs=kwargs, repeats=1
    )
    assert r1.to_dict() | {"scores": None} == r2.to_dict() | {"scores": None}
    assert [s.fold_taus for s in r1.scores.values()] == [s.fold_taus for s in r2.scores.values()]
    best = max(r1.scores.values(), key=lambda s: s.score)
    assert r1.chosen == best.name
    np.testing.assert_array_equal(m1.predict(x[60:]), m2.predict(x[60:]))


@pytest.mark.usefixtures("fake_models")
def test_adaptive_surrogate_through_the_registry(tiny, data) -> None:
    x, y = data
    model = make_surrogate("adaptive", tiny, seed=0, models=("_test_noise", "_test_oracle", "rbf"), folds=3)
    with pytest.raises(RuntimeError, match="fitted"):
        model.predict(x)
    model.fit(x[:60], y[:60])
    assert model.report is not None and model.report.chosen == "_test_oracle"
    assert model.chosen is not None
    np.testing.assert_array_equal(model.predict(x[60:]), model.chosen.predict(x[60:]))


def test_ensemble_is_the_mean_of_its_members(tiny, data) -> None:
    x, y = data
    kwargs = {"cart": {"n_trees": 30}}
    ens = make_surrogate("ensemble", tiny, seed=4, members=("rbf", "cart"), member_kwargs=kwargs)
    ens.fit(x[:80], y[:80])
    rbf = make_surrogate("rbf", tiny, seed=4).fit(x[:80], y[:80])
    cart = make_surrogate("cart", tiny, seed=4, n_trees=30).fit(x[:80], y[:80])
    np.testing.assert_allclose(ens.predict(x[80:]), (rbf.predict(x[80:]) + cart.predict(x[80:])) / 2)
    assert isinstance(ens, MeanEnsemble) and [m.name for m in ens.fitted_members] == ["rbf", "cart"]
    with pytest.raises(ConfigError, match="at least two"):
        make_surrogate("ensemble", tiny, members=("rbf",))
    with pytest.raises(ConfigError, match="distinct"):
        make_surrogate("ensemble", tiny, members=("rbf", "rbf"))
    with pytest.raises(ConfigError, match="plain models"):
        make_surrogate("ensemble", tiny, members=("rbf", "adaptive"))
    with pytest.raises(ConfigError, match="not members"):
        make_surrogate("ensemble", tiny, members=("rbf", "gp"), member_kwargs={"cart": {}})
    with pytest.raises(RuntimeError, match="fitted"):
        make_surrogate("ensemble", tiny).predict(x)


@pytest.mark.usefixtures("fake_models")
def test_switching_scores_the_ensemble_from_its_members_folds(tiny, data) -> None:
    """Two models with independent errors: their mean ranks better, and switching sees it for free."""
    x, y = data
    model, report = adaptive_switching(
        x, y, tiny, models=("_test_a", "_test_b", "ensemble"), folds=4, seed=0, repeats=2
    )
    assert report.chosen == "ensemble" and isinstance(model, MeanEnsemble)
    assert report.scores["ensemble"].mean > max(report.scores[m].mean for m in ("_test_a", "_test_b"))
    assert report.scores["ensemble"].seconds == 0.0  # no fits of its own
    a = make_surrogate("_test_a", tiny).fit(x, y)
    b = make_surrogate("_test_b", tiny).fit(x, y)
    np.testing.assert_allclose(model.predict(x[:20]), (a.predict(x[:20]) + b.predict(x[:20])) / 2)
    # the oracle alone still beats an average that includes a worse model
    _, report = adaptive_switching(
        x, y, tiny, models=("_test_oracle", "_test_noise", "ensemble"), folds=4, seed=0
    )
    assert report.chosen == "_test_oracle"


def test_switching_errors(tiny, data) -> None:
    x, y = data
    with pytest.raises(ConfigError, match="at least 15 samples"):
        adaptive_switching(x[:10], y[:10], tiny, folds=5)
    with pytest.raises(ConfigError, match="folds >= 2"):
        adaptive_switching(x, y, tiny, folds=1)
    with pytest.raises(ConfigError, match="repeats >= 1"):
        adaptive_switching(x, y, tiny, repeats=0)
    with pytest.raises(ConfigError, match="unknown surrogate"):
        adaptive_switching(x, y, tiny, models=("rbf", "svm"))
    with pytest.raises(ConfigError, match="at least one"):
        adaptive_switching(x, y, tiny, models=())
    with pytest.raises(ConfigError, match="distinct"):
        adaptive_switching(x, y, tiny, models=("rbf", "rbf"))
    with pytest.raises(ConfigError, match="own candidate"):
        adaptive_switching(x, y, tiny, models=("rbf", "adaptive"))
    with pytest.raises(ConfigError, match="not candidate"):
        adaptive_switching(x, y, tiny, models=("rbf",), model_kwargs={"gp": {}})
    with pytest.raises(ConfigError, match="at least two of them"):
        adaptive_switching(x, y, tiny, models=("rbf", "ensemble"))
    with pytest.raises(ConfigError, match="takes no options"):
        adaptive_switching(x, y, tiny, models=("rbf", "gp", "ensemble"), model_kwargs={"ensemble": {}})


def test_metrics() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert kendall_tau(a, a) == pytest.approx(1.0) and kendall_tau(a, -a) == pytest.approx(-1.0)
    assert kendall_tau(a, np.ones(4)) == 0.0  # undefined -> 0, never NaN
    assert spearman_rho(a, a) == pytest.approx(1.0) and spearman_rho(a, np.ones(4)) == 0.0
    assert rmse(a, a + 2.0) == pytest.approx(2.0)


def test_rbf_kernel_sums_that_overflow_float32_are_computed_in_float64() -> None:
    """A fit on few points can give weights whose kernel sum float32 cannot hold (it gave NaN, with a
    RuntimeWarning, in small test runs); such a block is summed again in float64."""
    from nat.surrogates.rbf import _Member, _member_predict

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 3)) * 30
    weights = np.array([3e36, -3e36, 2e36, -1e36, 1e36])
    member = _Member(np.arange(3), centres, np.sum(centres**2, axis=1), weights, np.zeros(4))
    x = rng.normal(size=(7, 3)) * 30
    got = _member_predict(member, x.astype(np.float32), x)
    d = np.sqrt(((x[:, None, :] - centres[None]) ** 2).sum(-1))
    assert np.isfinite(got).all()
    assert got == pytest.approx((d**3) @ weights, rel=1e-6)
