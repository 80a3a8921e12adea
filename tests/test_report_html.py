"""`nat.report.write_report`: front.png, summary.md and a self-contained report.html from plain data.

Synthetic runs cover 2, 3 and 4 objectives (madds absent in one, a user objective ``pkg.mod:fn`` in
another), with and without front models and surrogate tau; a real headless Chromium renders the page
where one is installed.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from nat.report import write_report

PNG_DATA = "data:image/png;base64,"
USER = "pkg.mod:fn"
SCRIPT = "<script>alert('x')</script>"


def cost(name: str, x: float) -> float:
    """A complexity objective's value at relative size ``x`` in (0, 1]."""
    return {"madds": 300e6 * x, "params": 5e6 * x**0.7, "latency": 2 + 8 * x}.get(name, 1.5 * x + 0.25)


def pareto(rows: list[dict[str, Any]], objectives: list[str]) -> list[dict[str, Any]]:
    """Non-dominated rows (top1 maximised, the rest minimised)."""

    def f(r: dict[str, Any]) -> np.ndarray:
        return np.array([-r["top1"] if o == "top1" else r[o] for o in objectives])

    return [
        r for r in rows if not any(np.all(f(q) <= f(r)) and np.any(f(q) < f(r)) for q in rows if q is not r)
    ]


def run_data(objectives: list[str], *, models: bool, n: int = 36) -> dict[str, Any]:
    """write_report's keyword arguments for a small synthetic run with these objectives."""
    archive = []
    for i in range(n):
        x = 0.1 + 0.9 * ((i * 7) % 12) / 11  # three subnets per size, of different accuracy
        row: dict[str, Any] = {
            "iteration": i // 12,
            "phase": "initial" if i < 12 else "search",
            "subnet": {"ks": [3, 5], "e": [3, 6], "d": [2, 3], "r": 160 + 16 * (i % 5), "w": 1.0},
            "genome": [i % 3, i % 5],
            "top1": 0.55 + 0.3 * x**0.5 - 0.12 * ((i * 5) % 7) / 7,
        }
        row.update({o: cost(o, x * (1 + 0.1 * (j % 2) * (i % 3))) for j, o in enumerate(objectives[1:])})
        archive.append(row)
    front = pareto(archive, objectives)
    trained = []
    if models:
        ranked = sorted(front, key=lambda r: r["top1"])
        for k, r in enumerate(ranked[:: max(1, len(ranked) // 3)][:3]):
            model = {"madds": 1e8 + 5e7 * k, "params": 2e6 + 1e6 * k} | r  # the run's own values win
            model |= {"name": f"natnet_{k + 1}_{model['madds'] / 1e6:.1f}M", "finetune_epochs": 2}
            trained.append(model | {"test_top1": r["top1"] - 0.015 * (k + 1)})
        trained[0]["test_top5"] = 0.97
    history = [{"iteration": 0, "hypervolume": 0.41, "front_size": 3, "archive_size": 8, "strategy": "nat"}]
    history += [
        {
            "iteration": i,
            "hypervolume": 0.41 + 0.03 * i,
            "front_size": 3 + i,
            "archive_size": 8 * (i + 1),
            "strategy": "nat",
            "surrogate": "as_rbf" if i % 2 else "mlp",
            "tau": 0.5 + 0.1 * i,
            "candidate_tau": 0.3 + 0.1 * i,
        }
        for i in (1, 2)
    ]
    facts = {"task": "fmnist (10 classes)", "strategy": "nat", "objectives": ", ".join(objectives)}
    facts |= {"evaluations": len(archive), "front size": len(front)}
    return {
        "title": "NAT run: quickstart",
        "facts": facts,
        "objectives": objectives,
        "archive": archive,
        "front": front,
        "models": trained,
        "history": history,
    }


def without_payloads(html: str) -> str:
    """The page with its base64 images cut out (their letters could spell anything)."""
    return re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "data:", html)


def check_page(paths: dict[str, Path], folder: Path) -> str:
    """What every report must satisfy; returns the HTML."""
    assert paths == {
        "png": folder / "front.png",
        "markdown": folder / "summary.md",
        "html": folder / "report.html",
    }
    assert all(p.is_file() and p.stat().st_size > 0 for p in paths.values())
    assert paths["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(folder.glob("*.tmp")), "an atomic write left its temporary file"
    html = paths["html"].read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert PNG_DATA in html
    text = without_payloads(html)
    assert not re.search(r"\b(nan|inf)\b", text, re.IGNORECASE), "a non-finite value was printed"
    attributes = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]*)""", html)
    assert attributes and all(a.startswith("data:") for a in attributes), attributes
    assert "http" not in text and "url(" not in text and "@import" not in text
    assert "<script" not in html.lower(), "the page must have no scripts (nor injected ones)"
    md = paths["markdown"].read_text()
    assert md.startswith("# ") and "![front](front.png)" in md and "nan" not in md
    return html


def cells(html: str, first: str) -> list[str]:
    """The cells of the table row whose first cell is ``first``."""
    for row in re.findall(r"<tr>(.*?)</tr>", html):
        found = re.findall(r"<t[dh](?:\s[^>]*)?>(.*?)</t[dh]>", row)
        if found and found[0] == first:
            return found
    raise AssertionError(f"no table row starting with {first!r}")


def headers(html: str, section: str) -> list[str]:
    body = re.search(rf'<section id="{section}">(.*?)</section>', html, re.S)
    assert body, f"no section {section!r}"
    return re.findall(r"<th(?:\s[^>]*)?>(.*?)</th>", body.group(1))


def test_two_objectives_with_models(tmp_path: Path) -> None:
    data = run_data(["top1", "madds"], models=True)
    html = check_page(write_report(tmp_path, **data), tmp_path)
    for ident in ("facts", "front", "hypervolume", "surrogate", "models"):
        assert f'<section id="{ident}">' in html
    assert 'id="parallel"' not in html and 'id="front-table"' not in html  # 2 objectives, models
    assert headers(html, "models") == [
        "model", "MAdds (M)", "params (M)", "resolution", "search-val top-1", "test top-1", "test top-5",
    ]  # fmt: skip
    first = data["models"][0]
    row = cells(html, first["name"])
    assert row[1] == f"{first['madds'] / 1e6:.2f}" and row[-1] == "97.00%"
    assert cells(html, data["models"][1]["name"])[-1] == "-"  # no top-5 for this one
    assert cells(html, "task") == ["task", "fmnist (10 classes)"]
    # surrogate per iteration: iteration 0 has none
    assert headers(html, "surrogate")[:5] == [
        "iteration", "strategy", "surrogate", "Kendall tau (CV)", "Kendall tau (candidates)",
    ]  # fmt: skip
    assert cells(html, "0")[:5] == ["0", "nat", "-", "-", "-"]
    assert cells(html, "1")[:5] == ["1", "nat", "as_rbf", "0.600", "0.400"]
    assert html.count(PNG_DATA) == 3  # front, hypervolume, tau
    md = (tmp_path / "summary.md").read_text().splitlines()
    assert "| model | MAdds (M) | params (M) | resolution | search-val top-1 | test top-1 |" in md
    assert sum(line.startswith("| natnet_") for line in md) == len(data["models"])


def test_three_objectives_without_madds_or_models(tmp_path: Path) -> None:
    data = run_data(["top1", "params", "latency"], models=False)
    assert all("madds" not in r for r in data["archive"])
    html = check_page(write_report(tmp_path, **data), tmp_path)
    assert '<section id="parallel">' in html and '<section id="front-table">' in html
    assert 'id="models"' not in html
    assert headers(html, "front-table") == [
        "model",
        "params (M)",
        "latency (ms)",
        "resolution",
        "search-val top-1",
    ]
    assert "MAdds" not in without_payloads(html)
    assert "top-1 against params (M), the first of the run&#x27;s 2 complexity objectives" in html
    assert html.count(PNG_DATA) == 4  # front, parallel coordinates, hypervolume, tau
    rows = re.findall(r"<tr><td", html.split('id="front-table"')[1])
    assert len(rows) == len(data["front"])
    md = (tmp_path / "summary.md").read_text()
    assert "| model | MAdds (M) | params (M) | latency (ms) | resolution |" in md
    assert "first of the run's 2 complexity objectives" in md


def test_user_objective_and_markup_in_data_are_escaped(tmp_path: Path) -> None:
    data = run_data(["top1", "madds", "params", USER], models=True)
    data["facts"]["note"] = SCRIPT
    data["title"] = "NAT run: <b>$x$ & y</b>"  # a "$" must not trip matplotlib's mathtext either
    data["models"][0]["name"] = "net<1>"
    html = check_page(write_report(tmp_path, **data), tmp_path)
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in html
    assert "<title>NAT run: &lt;b&gt;$x$ &amp; y&lt;/b&gt;</title>" in html and "<b>" not in html
    assert cells(html, "net&lt;1&gt;")[0] == "net&lt;1&gt;"
    assert headers(html, "models")[:4] == ["model", USER, "MAdds (M)", "params (M)"]
    assert '<section id="parallel">' in html
    md = (tmp_path / "summary.md").read_text()
    assert f"| model | {USER} | MAdds (M) | params (M) |" in md


def test_history_without_tau(tmp_path: Path) -> None:
    data = run_data(["top1", "madds"], models=True)
    for h in data["history"]:
        h["tau"] = None
        h.pop("candidate_tau", None)
    html = check_page(write_report(tmp_path, **data), tmp_path)
    assert "No surrogate Kendall tau was recorded" in html
    assert "Kendall tau (candidates)" not in html
    assert cells(html, "1")[:4] == ["1", "nat", "as_rbf", "-"]
    assert html.count(PNG_DATA) == 2  # front and hypervolume only


def test_missing_and_non_finite_values_print_a_dash(tmp_path: Path) -> None:
    data = run_data(["top1", "madds", "latency"], models=True)
    data["models"][0].pop("params")
    data["models"][0]["latency"] = float("nan")
    data["models"][1].pop("latency")
    data["front"][0].pop("madds")
    data["facts"]["best test top-1"] = float("nan")
    data["history"][1]["hypervolume"] = float("inf")
    html = check_page(write_report(tmp_path, **data), tmp_path)
    cols = headers(html, "models")
    row = cells(html, data["models"][0]["name"])
    assert row[cols.index("params (M)")] == "-" and row[cols.index("latency (ms)")] == "-"
    assert cells(html, "best test top-1") == ["best test top-1", "-"]


@pytest.mark.parametrize("objectives", [["top1", "madds"], ["top1", "params", "latency"]])
def test_empty_run(tmp_path: Path, objectives: list[str]) -> None:
    """A run with nothing in it yet still gets a report (empty front, no models, no history)."""
    paths = write_report(
        tmp_path, title="empty", facts={}, objectives=objectives, archive=[], front=[], models=[], history=[]
    )
    html = check_page(paths, tmp_path)
    assert "The front is empty." in html and "No iterations were recorded." in html


def test_rewriting_an_unchanged_run_is_byte_identical(tmp_path: Path) -> None:
    data = run_data(["top1", "madds", "params", USER], models=True)
    first = {k: p.read_bytes() for k, p in write_report(tmp_path / "a", **data).items()}
    again = {k: p.read_bytes() for k, p in write_report(tmp_path / "a", **data).items()}
    other = {k: p.read_bytes() for k, p in write_report(tmp_path / "b", **data).items()}
    assert first == again == other


def test_write_report_keeps_the_users_backend(tmp_path: Path) -> None:
    """In a fresh interpreter: writing a report leaves the user's backend and pyplot alone."""
    script = textwrap.dedent(
        f"""
        import sys
        import matplotlib
        matplotlib.use("svg")
        from nat.report import write_report
        write_report(
            __import__("pathlib").Path({str(tmp_path)!r}), title="t", facts={{}},
            objectives=["top1", "madds"],
            archive=[{{"top1": 0.5, "madds": 1e6}}], front=[{{"top1": 0.5, "madds": 1e6}}], models=[],
            history=[{{"iteration": 0, "hypervolume": 0.1, "tau": 0.5}}],
        )
        assert matplotlib.get_backend() == "svg", matplotlib.get_backend()
        assert "matplotlib.pyplot" not in sys.modules, "the report imported pyplot"
        print("ok")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("ok")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium installed (Debian: apt-get install chromium)")


def test_a_real_browser_renders_the_report(tmp_path: Path) -> None:
    """Headless Chromium loads report.html offline: the screenshot is not blank, the DOM has the tables."""
    browser = chromium()
    data = run_data(["top1", "madds", "params", USER], models=True)
    html = write_report(tmp_path / "run", **data)["html"]
    shot = tmp_path / "report.png"
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"]
    common += [f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1200,2400"]
    url = html.resolve().as_uri()
    subprocess.run([*common, f"--screenshot={shot}", url], capture_output=True, timeout=60, check=True)
    dom = subprocess.run([*common, "--dump-dom", url], capture_output=True, text=True, timeout=60, check=True)

    from matplotlib.image import imread

    pixels = imread(shot)[..., :3]
    assert pixels.shape[:2] == (2400, 1200)
    assert pixels.std() > 0.05 and (pixels < 0.5).mean() > 0.005  # text, plots and tables, not blank
    assert '<section id="models">' in dom.stdout and '<section id="surrogate">' in dom.stdout
    assert "<table" in dom.stdout and data["models"][0]["name"] in dom.stdout
    assert dom.stdout.count("<img") == 4
