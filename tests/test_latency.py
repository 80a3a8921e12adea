"""Measured latency (`nat.objectives.latency.measure_latency_ms`): what it times, not how fast it is.

No wall-clock limits here: only comparisons between models and lower bounds that hold on any machine.
"""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from nat.objectives.latency import measure_latency_ms


def conv_net(channels: int, layers: int = 2) -> nn.Module:
    blocks: list[nn.Module] = [nn.Conv2d(3, channels, 3, padding=1), nn.ReLU()]
    for _ in range(layers - 1):
        blocks += [nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU()]
    return nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, 10))


class Recorder:
    """A forward hook noting, per call, the input shape, grad mode, train mode and torch threads."""

    def __init__(self, model: nn.Module) -> None:
        self.calls: list[tuple[tuple[int, ...], bool, bool, int]] = []
        model.register_forward_hook(self)

    def __call__(self, module: nn.Module, inputs: tuple[torch.Tensor], output: torch.Tensor) -> None:
        self.calls.append(
            (tuple(inputs[0].shape), torch.is_grad_enabled(), module.training, torch.get_num_threads())
        )


@pytest.fixture
def threads():
    """Lets a test change torch's thread count; puts the original back afterwards."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_heavier_models_and_larger_inputs_measure_slower(threads) -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)  # several threads' barriers stall unpredictably on an oversubscribed machine
    tiny, heavy = conv_net(4, layers=1), conv_net(48, layers=3)
    cases = {"fast": (tiny, 16), "heavy_small": (heavy, 16), "slow": (heavy, 48)}
    # the least of five medians per case, the cases interleaved: on a shared machine one median can land
    # in another job's time slice (once, beside two searches and a test run, the 16 px pass of the tiny
    # network measured 6.9 ms against 0.8 ms for the heavy one at 48 px, each case measured in a row)
    least = dict.fromkeys(cases, float("inf"))
    for _ in range(5):
        for name, (model, resolution) in cases.items():
            least[name] = min(least[name], measure_latency_ms(model, resolution, warmup=1, repeats=5))
    assert 0 < least["fast"] < least["slow"]
    assert least["heavy_small"] < least["slow"]  # 9x fewer pixels, same network


def test_runs_the_requested_batch_in_eval_mode_without_grad() -> None:
    model = conv_net(4, layers=1).train()
    rec = Recorder(model)
    ms = measure_latency_ms(model, 20, batch_size=3, warmup=2, repeats=3)
    assert ms > 0 and torch.isfinite(torch.tensor(ms))
    assert rec.calls and all(c[:3] == ((3, 3, 20, 20), False, False) for c in rec.calls)
    assert torch.is_grad_enabled()  # the caller's grad mode is back


def test_warmup_and_repeats_are_honoured() -> None:
    model = conv_net(4, layers=1)
    rec = Recorder(model)

    def forwards(warmup: int, repeats: int) -> int:
        rec.calls.clear()
        measure_latency_ms(model, 16, warmup=warmup, repeats=repeats)
        return len(rec.calls)

    base = forwards(warmup=0, repeats=1)
    assert base >= 1
    assert forwards(warmup=3, repeats=1) == base + 3  # warm-up runs are extra, untimed runs
    assert forwards(warmup=0, repeats=4) >= base + 3  # every repeat runs the model (at least) once more
    assert forwards(warmup=2, repeats=5) >= 2 + 5
    with pytest.raises(ValueError, match="repeats"):
        measure_latency_ms(model, 16, repeats=0)


@pytest.mark.usefixtures("threads")
@pytest.mark.parametrize("n", [1, 2])
def test_the_callers_thread_count_is_used_and_kept(n: int) -> None:
    torch.set_num_threads(n)
    model = conv_net(4, layers=1)
    rec = Recorder(model)
    measure_latency_ms(model, 16, warmup=1, repeats=3)
    assert {c[3] for c in rec.calls} == {n}  # torch.utils.benchmark.Timer would default to 1 thread
    assert torch.get_num_threads() == n


class Sleeper(nn.Module):
    """A "model" whose forward takes at least ``seconds`` of wall-clock time."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(self.seconds)
        return x.mean((1, 2, 3)) + self.weight


def test_reports_milliseconds_of_one_forward() -> None:
    assert measure_latency_ms(Sleeper(0.004), 8, warmup=0, repeats=3) >= 4.0
