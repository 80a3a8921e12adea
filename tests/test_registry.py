"""The one registry helper behind strategies, surrogates and datasets (`nat.registry`)."""

from __future__ import annotations

import pytest

from nat.data.registry import DATASETS
from nat.errors import ConfigError, DataError
from nat.registry import Registry
from nat.search.strategies import STRATEGIES
from nat.surrogates.base import SURROGATES


def test_names_aliases_and_a_suggestion_for_a_typo() -> None:
    things: Registry[int] = Registry("thing", normalise=str.lower)
    things.add("alpha", 1, aliases=("a",))

    @things.register("beta")
    def beta() -> int:
        return 2

    assert things.names() == ["alpha", "beta"] and list(things) == ["alpha", "beta"] and len(things) == 2
    assert things.get("ALPHA") == 1 and things.get("a") == 1 and things.get("beta") is beta
    assert "A" in things and "gamma" not in things and 3 not in things
    with pytest.raises(
        ConfigError, match=r"unknown thing 'alpah'; did you mean 'alpha'\? known: alpha, beta"
    ):
        things.get("alpah")
    things.add("alpha", 1)  # the same entry again: harmless
    with pytest.raises(ValueError, match="already registered"):
        things.add("alpha", 5)
    with pytest.raises(ValueError, match="already registered"):
        things.add("a", 5)  # an alias is taken too
    things.remove("a")
    assert things.names() == ["beta"] and "a" not in things


def test_every_kind_of_pick_goes_through_a_registry() -> None:
    assert STRATEGIES.names() == ["evolution", "nat", "random"]
    assert {"rbf", "gp", "cart", "mlp", "ensemble"} <= set(SURROGATES.names())
    from nat.data import list_datasets

    assert list_datasets() == DATASETS.names() and "imagefolder" in DATASETS  # an alias of folder
    with pytest.raises(DataError, match="unknown dataset 'cifar11'; did you mean 'cifar10'"):
        DATASETS.get("cifar11")


def test_a_config_accepts_exactly_the_registered_strategies() -> None:
    from nat.search import load_config

    for name in STRATEGIES.names():
        overrides = {"strategy": name, "constraints": {"madds": 1e7}}
        assert load_config(preset="smoke", overrides=overrides).strategy == name
    with pytest.raises(ConfigError, match="did you mean 'random'"):
        load_config(preset="smoke", overrides={"strategy": "randon"})
