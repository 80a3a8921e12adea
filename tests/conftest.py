"""Shared fixtures: the published NAT architectures and small supernets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

REFERENCE = Path(__file__).resolve().parents[1] / "../shared/reference/nat_published_subnets.json"
LOCAL_REFERENCE = Path(__file__).resolve().parent / "data" / "nat_published_subnets.json"

torch.set_num_threads(min(2, torch.get_num_threads()))


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
