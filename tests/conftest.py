"""Shared fixtures: the published NAT architectures and small supernets."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[1] / "../shared/reference/nat_published_subnets.json"
LOCAL_REFERENCE = Path(__file__).resolve().parent / "data" / "nat_published_subnets.json"

torch.set_num_threads(min(2, torch.get_num_threads()))
# a search without `supernet:` looks for downloaded supernets: never in the user's own cache during tests
os.environ["NAT_SUPERNET_DIR"] = tempfile.mkdtemp(prefix="nat-test-supernets-")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests marked ``cuda`` are skipped on a machine without a CUDA device."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def published() -> list[dict]:
    """NAT's 14 published architectures (shared reference file, or the copy kept with the tests)."""
    path = REFERENCE.resolve() if REFERENCE.resolve().is_file() else LOCAL_REFERENCE
    return json.loads(path.read_text())


@pytest.fixture
def pretrain_cli():
    """``nat pretrain ARGV`` through the command's own parser; a `NATError` becomes
    ``SystemExit("error: ...")`` so that tests can match its message with ``pytest.raises``."""
    import argparse

    from nat.cli.pretrain import register
    from nat.errors import NATError

    def run(*argv: str) -> int:
        parser = argparse.ArgumentParser(prog="nat")
        register(parser.add_subparsers(dest="command"))
        args = parser.parse_args(["pretrain", *argv])
        try:
            return args.func(args)
        except NATError as exc:
            raise SystemExit(f"error: {exc}") from None

    return run


@pytest.fixture(scope="module")
def digits():
    """sklearn's digits as a task (seed 0), loaded once per test module."""
    from nat.data import load_dataset

    return load_dataset("digits", seed=0)


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module's tests (``pytestmark = pytest.mark.usefixtures("one_thread")``),
    then the count it had: small convolutions on shared cores run faster on one thread than on two
    fighting other jobs."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def at_evaluation(monkeypatch):
    """``at_evaluation(n, action=None)``: run ``action()`` just before the ``n``-th subnet evaluation of
    the process (``None``: stop there, as Ctrl-C would), then evaluate as usual; returns a function that
    puts the real evaluation back (what a resumed run then uses)."""
    from nat.search import evaluator

    original = evaluator.SubnetEvaluator.evaluate

    def interrupt() -> None:
        raise KeyboardInterrupt

    def install(n: int, action=None):
        calls = {"n": 0}

        def evaluate(self, subnet, measure_latency):
            calls["n"] += 1
            if calls["n"] == n:
                (action or interrupt)()
            return original(self, subnet, measure_latency)

        monkeypatch.setattr(evaluator.SubnetEvaluator, "evaluate", evaluate)
        return lambda: monkeypatch.setattr(evaluator.SubnetEvaluator, "evaluate", original)

    return install
