"""Warm start (``warm_start:``, ``nat search --warm-start``): a new search begins from earlier runs: their
subnets in its initial archive, their accuracies as a surrogate prior, an adapted supernet."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import nat
from nat.cli import main
from nat.errors import ConfigError
from nat.search import NATSearch, load_config
from nat.search.config import SurrogateConfig
from nat.search.objective_set import ObjectiveSet
from nat.search.strategies.surrogate import fit_surrogate
from nat.search.warm_start import WARM_FILE
from nat.space import get_space
from nat.space.genome import sample_genomes
from nat.space.subnet import Subnet
from nat.surrogates import kendall_tau, make_surrogate

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = {
    "initial_samples": 8,
    "iterations": 1,
    "candidates_per_iteration": 2,
    "adaptation": {"max_steps": 3},
    "nsga3": {"pop_size": 12, "generations": 3},
    "evaluation": {"calibration_images": 32},
    "data": {"val_size": 100},
    "finalize": {"models": 0},
}


def config(**changes):
    return load_config(preset="smoke", overrides={**FAST, **changes})


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("source") / "run"
    nat.search(config(), out)
    return out


@pytest.fixture(scope="module")
def warm(source: Path, tmp_path_factory) -> Path:
    """A run warm-started with all three parts, without initial adaptation (so its first measurements
    are on the source's adapted weights as they are)."""
    out = tmp_path_factory.mktemp("warm") / "run"
    warm_start = {"runs": [str(source)], "archive": 3, "supernet": str(source)}
    nat.search(config(warm_start=warm_start, adaptation={"initial_epochs": 0, "max_steps": 3}), out)
    return out


def test_initial_archive_takes_the_earlier_fronts_spread_over_madds(source: Path, warm: Path) -> None:
    earlier = nat.open_run(source)
    run = nat.open_run(warm)
    initial = [r for r in run.archive if r.phase == "initial"]
    assert len(initial) == 8
    space = get_space("micro")
    assert [r.subnet for r in initial[:2]] == [Subnet.smallest(space), Subnet.largest(space)]
    picks = [r.subnet for r in initial[2:5]]
    front = {r.subnet for r in earlier.front} - set(r.subnet for r in initial[:2])
    taken = [s for s in picks if s in front]
    assert taken == picks[: len(taken)] and len(taken) == min(3, len(front))  # front members first
    everything = {r.subnet for r in earlier.current}
    assert all(s in everything for s in picks)
    # the copy of what was taken, so a resumed run needs the earlier runs no more
    copy = json.loads((warm / WARM_FILE).read_text())
    assert copy["runs"][0]["path"] == str(source.resolve()) and len(copy["runs"][0]["records"]) == len(
        everything
    )


def test_supernet_starts_from_the_earlier_runs_adapted_weights(source: Path, warm: Path) -> None:
    # same task, data and seed: with no initial adaptation the largest subnet measures what the source
    # measured last (its latest record, after its last adaptation), since the weights are the same
    largest = Subnet.largest(get_space("micro"))
    earlier = {r.subnet: r for r in nat.open_run(source).current}[largest]
    measured = next(r for r in nat.open_run(warm).archive if r.subnet == largest)
    assert measured.top1 == earlier.top1
    assert (warm / "supernet_w1.safetensors").is_file()


def test_resume_rebuilds_the_same_start_from_its_own_copy(
    source: Path, tmp_path: Path, at_evaluation
) -> None:
    earlier = tmp_path / "earlier"
    shutil.copytree(source, earlier)
    settings = config(seed=2, warm_start={"runs": [str(earlier)], "archive": 4})
    straight = tmp_path / "straight"
    nat.search(settings, straight)
    stopped = tmp_path / "stopped"
    restore = at_evaluation(5)
    with pytest.raises(KeyboardInterrupt), NATSearch(settings, stopped) as search:
        search.run()
    restore()
    shutil.rmtree(earlier)  # the earlier run is gone: the resumed run uses warm_start.json
    nat.search(settings, stopped)
    assert (stopped / "archive.jsonl").read_bytes() == (straight / "archive.jsonl").read_bytes()


def test_supernet_auto_is_the_first_runs_unless_it_is_a_many_task_run(source: Path, tmp_path: Path) -> None:
    from nat.search.rundir import warm_start_supernet

    assert warm_start_supernet(config(warm_start={"runs": [str(source)]})) == str(source)
    assert warm_start_supernet(config(warm_start={"runs": [str(source)], "supernet": None})) is None
    assert warm_start_supernet(config()) is None
    many = tmp_path / "many"
    many.mkdir()
    tasks = [{"dataset": "digits"}, {"dataset": "digits", "name": "again"}]
    (many / "config.yaml").write_text(json.dumps(config(data=tasks).model_dump(mode="json")))
    assert warm_start_supernet(config(warm_start={"runs": [str(many), str(source)]})) is None


def test_the_prior_model_is_offered_to_switching_and_learns_from_a_good_prior() -> None:
    space = get_space("micro")
    genomes = sample_genomes(space, 120, np.random.default_rng(0))
    weights = np.random.default_rng(1).normal(size=genomes.shape[1])
    truth = genomes @ weights + 0.2 * np.sin(genomes.sum(1))

    def prior(x: np.ndarray) -> np.ndarray:
        return np.asarray(x) @ weights

    train, test = slice(0, 12), slice(12, None)
    plain = make_surrogate("rbf", space, seed=0).fit(genomes[train], truth[train])
    informed = make_surrogate("prior", space, seed=0, prior=prior).fit(genomes[train], truth[train])
    assert kendall_tau(truth[test], informed.predict(genomes[test])) > kendall_tau(
        truth[test], plain.predict(genomes[test])
    )
    problem = ObjectiveSet(["top1", "madds"], space, 10)
    cfg = SurrogateConfig(models=["rbf", "cart"], folds=3)
    _, report = fit_surrogate(genomes[:24], truth[:24], problem, cfg, seed=0, prior=prior)
    assert set(report.scores) == {"rbf", "cart", "prior"} and report.chosen == "prior"
    _, cold = fit_surrogate(genomes[:24], truth[:24], problem, cfg, seed=0)
    assert set(cold.scores) == {"rbf", "cart"}  # a cold run: exactly as before


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"warm_start": {"runs": ["RUN"], "archive": 7}}, "take at most 6 from the earlier runs"),
        ({"warm_start": {"runs": []}}, "warm_start.runs"),
        ({"surrogate": {"models": ["prior", "rbf"]}}, "unknown surrogate(s) ['prior']"),
    ],
)
def test_bad_warm_start_settings_are_one_line(source: Path, changes: dict, message: str) -> None:
    text = json.dumps(changes).replace("RUN", str(source))
    with pytest.raises(
        ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
    ):
        config(**json.loads(text))


def test_warm_start_refuses_another_space_and_missing_runs(source: Path, tmp_path: Path, capsys) -> None:
    base = ["search", "--preset", "smoke", "--set", "initial_samples=6", "--set", "iterations=0"]
    bare = tmp_path / "bare"
    shutil.copytree(source, bare)
    (bare / "supernet_w1.safetensors").unlink()
    cases = [
        (["--set", "space=tiny", "--warm-start", str(source)], "searched another space"),
        (["--warm-start", str(tmp_path / "nowhere")], "not a nat run directory"),
        (["--warm-start", str(source), "--set", f"warm_start.supernet={bare}"], "is missing"),
    ]
    before = {p: p.read_bytes() for p in sorted(source.rglob("*")) if p.is_file()}
    for i, (extra, message) in enumerate(cases):
        out = tmp_path / f"new{i}"
        assert main([*base, "--out", str(out), *extra]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not out.exists()  # refused before the run folder was made
    assert {p: p.read_bytes() for p in sorted(source.rglob("*")) if p.is_file()} == before
