"""The run report (`nat.report`): the front plot is a real PNG and nat leaves matplotlib's backend alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from nat.report import markdown_summary, plot_front

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ARCHIVE = [{"madds": m * 1e6, "top1": a} for m, a in [(1.0, 0.50), (2.0, 0.61), (3.0, 0.70)]]
FRONT = [
    {"madds": 3e6, "params": 4.2e5, "top1": 0.70, "test_top1": 0.68, "subnet": {"r": 32}},
    {"madds": 1e6, "params": 1.9e5, "top1": 0.50, "test_top1": 0.49, "subnet": {"r": 24}},
]


def png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


@pytest.mark.parametrize("with_test", [True, False])
def test_plot_front_writes_a_png(tmp_path: Path, with_test: bool) -> None:
    front = FRONT if with_test else [{k: v for k, v in r.items() if k != "test_top1"} for r in FRONT]
    path = plot_front(ARCHIVE, front, tmp_path / "front.png", title="a run")
    assert path == tmp_path / "front.png"
    assert png_size(path) == (720, 480)  # figsize (6, 4) at 120 dpi
    assert path.stat().st_size > 5_000  # axes, points, labels and legend, not an empty canvas


def test_test_accuracy_adds_a_curve(tmp_path: Path) -> None:
    no_test = [{k: v for k, v in r.items() if k != "test_top1"} for r in FRONT]
    a = plot_front(ARCHIVE, FRONT, tmp_path / "a.png").read_bytes()
    b = plot_front(ARCHIVE, no_test, tmp_path / "b.png").read_bytes()
    assert a != b


def test_plotting_keeps_the_users_backend_and_pyplot_state(tmp_path: Path) -> None:
    """In a fresh interpreter (so this test session's matplotlib state does not matter): a user picks a
    non-interactive backend, then imports nat and plots; the backend is still theirs."""
    script = textwrap.dedent(
        f"""
        import sys
        import matplotlib
        matplotlib.use("svg")
        import nat, nat.report, nat.search
        from nat.report import plot_front
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        plot_front({ARCHIVE!r}, {FRONT!r}, {str(tmp_path / "front.png")!r})
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        if "matplotlib.pyplot" in sys.modules:  # nat does not need it; if something did import it
            assert not sys.modules["matplotlib.pyplot"].get_fignums(), "a figure was left in pyplot"
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")
    assert png_size(tmp_path / "front.png") == (720, 480)


def test_markdown_summary_rows_and_missing_fields() -> None:
    front = [
        {"madds": 3e6, "params": 4.2e5, "top1": 0.70, "test_top1": 0.68, "subnet": {"r": 32}, "name": "big"},
        {"madds": 1e6, "top1": 0.50, "subnet": {"r": 24}},  # no params, no test accuracy
    ]
    text = markdown_summary("NAT run: x", {"dataset": "fmnist"}, front, "front.png")
    lines = text.splitlines()
    assert lines[0] == "# NAT run: x" and "- **dataset**: fmnist" in lines and "![front](front.png)" in lines
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| model")]
    assert rows == [  # sorted by MAdds; a missing value is "-"
        "| 0 | 1.00 | - | 24 | 50.00% | - |",  # unnamed: its row number
        "| big | 3.00 | 0.420 | 32 | 70.00% | 68.00% |",
    ]
    assert text.endswith("|\n")
