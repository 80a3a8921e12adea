"""Impossible or degenerate settings fail early and clearly (one `NATError` line), before any training.

Every test that builds a search checks that no supernet checkpoint was written: the check fired before
the expensive work. The one real run (`test_a_params_bound_holds_on_the_front_...`) is one iteration of
the smoke preset.
"""

from __future__ import annotations

import json
import random
import signal
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nat.data import MAX_CLASSES, check_num_classes
from nat.errors import ConfigError, DataError
from nat.search import Archive, NATSearch, ObjectiveSet, Record
from nat.search.strategies import RandomStrategy
from nat.space import Subnet, get_space
from nat.space.genome import encode
from test_search import TESTS, fast_config


@pytest.fixture
def deadline():
    """Fail (rather than hang) a test that runs for more than 60 s."""

    def expired(signum, frame):
        raise TimeoutError("test ran for more than 60 s: a loop that should end did not")

    previous = signal.signal(signal.SIGALRM, expired)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)


@pytest.fixture
def user_objectives(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def no_training(out: Path) -> None:
    assert not list(out.glob("supernet_*.safetensors")), "a supernet checkpoint was written"
    archive = out / "archive.jsonl"
    assert not archive.exists() or not archive.read_text(), "subnets were evaluated"


def fails_before_training(config, out: Path, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        NATSearch(config, out)
    no_training(out)


# ------------------------------------------------------------------------------------- constraints
def test_a_params_bound_holds_on_the_front_when_params_is_not_an_objective(tmp_path) -> None:
    space = get_space("micro")
    problem = ObjectiveSet(["top1", "madds"], space, 10)
    smallest, largest = (
        problem.exact_values(s)["params"] for s in (Subnet.smallest(space), Subnet.largest(space))
    )
    bound = (smallest + largest) / 2
    config = fast_config(constraints={"params": bound}, iterations=1)
    front = NATSearch(config, tmp_path / "run").run()
    records = Archive(tmp_path / "run" / "archive.jsonl").records
    assert all({"madds", "params"} <= set(r.values) for r in records)  # recorded, objective or not
    assert any(r.values["params"] > bound for r in records)  # the bound mattered
    assert front and all(r.values["params"] <= bound for r in front)
    candidates = [r for r in records if r.phase == "candidate"]
    assert candidates and all(r.values["params"] <= bound for r in candidates)
    written = json.loads((tmp_path / "run" / "front.json").read_text())
    assert all(r["params"] <= bound for r in written)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert 0 < state["hypervolume"] <= 1  # over top1 and madds only


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"constraints": {"latency": 5.0}},
            "latency is measured only when it is an objective; add 'latency'",
        ),
        ({"constraints": {"user_objectives:total_kernel": 50}}, "add it to objectives"),
        ({"constraints": {"flops": 5.0}}, "unknown objective 'flops'"),
        ({"constraints": {"madds": float("nan")}}, "positive number"),
        ({"device": "gpu"}, "unknown device 'gpu'; use auto, cpu, cuda or cuda:N"),
        ({"latency": {"device": "tpu"}}, "latency.device: unknown device 'tpu'"),
        ({"device": "mps"}, "device 'mps' is not supported"),
    ],
)
def test_settings_rejected_at_load(overrides, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        fast_config(**overrides)


def test_accepted_device_names_load_whatever_the_machine() -> None:
    for name in ("auto", "cpu", "cuda", "cuda:1"):
        assert fast_config(device=name, latency={"device": name}).device == name


def test_threads_null_is_documented() -> None:
    from nat.search import SearchConfig

    description = SearchConfig.model_fields["threads"].description
    assert "one per core" in description and "reproducible for a given thread count" in description


@pytest.mark.parametrize("strategy", ["nat", "evolution", "random"])
def test_an_impossible_madds_bound_fails_before_training(tmp_path, deadline, strategy: str) -> None:
    config = fast_config(strategy=strategy, constraints={"madds": 1000})
    match = (
        r"constraint madds <= 1000 cannot be met: the smallest subnet of the space has 5.87e\+05 MAdds; "
        "raise the bound to at least 586504"
    )
    fails_before_training(config, tmp_path / "run", ConfigError, match)


def test_an_impossible_params_bound_fails_before_training(tmp_path) -> None:
    config = fast_config(constraints={"params": 10})
    fails_before_training(
        config, tmp_path / "run", ConfigError, r"params <= 10 cannot be met.*1.36e\+05 params"
    )


def test_random_search_gives_up_on_constraints_nothing_meets(deadline, user_objectives) -> None:
    space = get_space("micro")
    name = "user_objectives:total_kernel"  # at least 5 blocks of kernel 3: never below 15
    problem = ObjectiveSet(["top1", "madds", name], space, 10, {name: 1.0})
    strategy = RandomStrategy(problem, candidates=2, seed=fast_config().seed)
    with pytest.raises(ConfigError, match=r"none of 2000 uniformly drawn subnets meets the constraints"):
        strategy.ask([], 1)


def test_random_search_on_a_used_up_space_proposes_what_is_left(deadline) -> None:
    space = get_space({"name": "two", "resolutions": [16], "width_mults": [1.0], "kernel_sizes": [3],
                       "expand_ratios": [3], "depths": [1, 2], "stem_stride": 1})  # fmt: skip
    assert space.num_subnets == 32
    problem = ObjectiveSet(["top1", "madds"], space, 10)
    everything = {Subnet.sample(space, random.Random(i)) for i in range(2000)}
    assert len(everything) == 32
    left = sorted(everything, key=lambda s: s.d)[0]
    archive = [Record(0, "initial", s, (), 0.5, {}) for s in everything - {left}]
    proposal = RandomStrategy(problem, candidates=3, seed=fast_config().seed).ask(archive, 1)
    assert proposal.subnets == [left]


# ------------------------------------------------------------------------------------- the space
TWO_CHOICES = {"resolutions": [16], "kernel_sizes": [3], "expand_ratios": [3], "depths": [1, 2]}


def test_initial_samples_beyond_the_space_fail_before_training(tmp_path, deadline) -> None:
    config = fast_config(space=TWO_CHOICES, initial_samples=40)
    match = r"initial_samples: 40 distinct subnets asked for, but the search space 'tiny' has only 32"
    fails_before_training(config, tmp_path / "run", ConfigError, match)


def test_initial_samples_equal_to_the_space_draw_all_of_it(tmp_path, deadline) -> None:
    with NATSearch(fast_config(space=TWO_CHOICES, initial_samples=32), tmp_path / "run") as search:
        assert len(set(search.initial_subnets())) == 32
    no_training(tmp_path / "run")


def test_subnet_count_of_the_paper_space() -> None:
    per_stage = 9**2 + 9**3 + 9**4
    assert get_space().num_subnets == 17 * 2 * per_stage**5


def test_a_one_pixel_resolution_is_rejected(tmp_path) -> None:
    message = r"resolution\(s\) \[1\] below the space's total stride 8 \(stem stride 1 x stage strides"
    fails_before_training(fast_config(space={"resolutions": [1]}), tmp_path / "run", ConfigError, message)
    with pytest.raises(ConfigError, match="use resolutions >= 32"):
        get_space({"resolutions": [16, 224]})


# ------------------------------------------------------------------------------------- non-finite values
@pytest.mark.parametrize(
    ("function", "message"),
    [
        ("nan_objective", r"objective 'user_objectives:nan_objective' is nan for subnet \{'ks': "),
        ("raising_objective", r"objective 'user_objectives:raising_objective' failed on subnet \{.*\}: "
         "ZeroDivisionError: division by zero"),
        ("string_objective", r"objective 'user_objectives:string_objective' returned 'abc' for subnet "
         r"\{.*\}, expected a number"),
    ],
)  # fmt: skip
def test_a_broken_user_objective_fails_before_training(tmp_path, user_objectives, function, message) -> None:
    config = fast_config(objectives=["top1", "madds", f"user_objectives:{function}"])
    fails_before_training(config, tmp_path / "run", ConfigError, message)


def test_a_user_objective_nan_on_a_candidate_is_an_error(user_objectives) -> None:
    space = get_space("micro")
    name = "user_objectives:nan_below_largest_resolution"
    problem = ObjectiveSet(["top1", name], space, 10)  # fine on the largest subnet (28 px)
    genomes = np.stack([encode(Subnet.largest(space), space), encode(Subnet.smallest(space), space)])
    with pytest.raises(ConfigError, match=rf"objective '{name}' is nan for subnet .*'r': 16"):
        problem.exact(genomes)


@pytest.mark.parametrize("measure", ["top1", "latency"])
def test_a_non_finite_measurement_is_an_error(tmp_path, monkeypatch, measure: str) -> None:
    from nat.search.evaluator import SubnetEvaluator

    bad = {"top1": "top1", "latency": "latency_ms"}[measure]
    monkeypatch.setattr(SubnetEvaluator, bad, lambda self, subnet: float("inf"))
    config = fast_config(objectives=["top1", "latency"], adaptation={"initial_epochs": 0, "epochs": 0})
    with pytest.raises(ConfigError, match=rf"objective '{measure}' measured inf on subnet \{{'ks'"):
        NATSearch(config, tmp_path / "run").run()
    archive = tmp_path / "run" / "archive.jsonl"
    assert not archive.exists() or not archive.read_text()  # nothing non-finite was recorded


# ------------------------------------------------------------------------------------- data
def image_folder(root: Path, classes: list[str], per_class: int, garbage: bool = False) -> Path:
    for c, name in enumerate(classes):
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            path = root / name / f"{i}.png"
            if garbage:
                path.write_bytes(b"not an image at all")
            else:
                Image.fromarray(np.full((8, 8, 3), 40 * c + i, dtype=np.uint8)).save(path)
    return root


def test_a_one_class_dataset_fails_before_training(tmp_path) -> None:
    root = image_folder(tmp_path / "one", ["cat"], 12)
    config = fast_config(data={"dataset": "folder", "root": str(root), "val_size": 2})
    match = r"the dataset 'folder' has a single class \('cat'\); NAT needs at least 2"
    fails_before_training(config, tmp_path / "run", DataError, match)


def test_an_undecodable_dataset_fails_before_training(tmp_path) -> None:
    root = image_folder(tmp_path / "bad", ["cat", "dog"], 3, garbage=True)
    config = fast_config(data={"dataset": "folder", "root": str(root), "val_size": 2})
    match = r"none of the 6 file\(s\) in the 2 class folder\(s\) of .* is a readable image"
    fails_before_training(config, tmp_path / "run", DataError, match)


def test_absurd_class_counts_are_refused() -> None:
    with pytest.raises(DataError, match="from 2 to 1,000,000"):
        check_num_classes(10**12)
    assert check_num_classes(MAX_CLASSES) == MAX_CLASSES
    with pytest.raises(ConfigError, match="num_classes must be from 1 to 1,000,000"):
        ObjectiveSet(["top1", "madds"], get_space("micro"), 10**12)
