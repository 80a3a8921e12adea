"""The documentation stays true: generated pages match their source, and links point at files."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def test_the_configuration_reference_is_generated_from_the_models() -> None:
    from nat.search.config_reference import render

    page = (ROOT / "docs" / "configuration.md").read_text()
    assert page == render(), "regenerate: python -m nat.search.config_reference > docs/configuration.md"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_point_at_files_that_exist(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target) or target.startswith("#"):
            continue
        path = (page.parent / target.split("#")[0]).resolve()
        if not path.exists():
            missing.append(target)
    assert not missing, f"{page.name} links to missing files: {missing}"


def dated_lines_outside_history(text: str) -> list[str]:
    """Lines carrying a date (YYYY-MM-) outside a section whose heading, or a parent heading, says
    History: a guide or a current figure names its commit and machine, not the day it was written."""
    headings: dict[int, str] = {}
    in_code, found = False, []
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        heading = None if in_code else re.match(r"(#+) ", line)
        if heading:
            level = len(heading.group(1))
            headings = {k: v for k, v in headings.items() if k < level} | {level: line}
        if re.search(r"20[0-9][0-9]-[01][0-9]-", line) and not any("History" in h for h in headings.values()):
            found.append(line.strip())
    return found


def test_the_history_rule_finds_dates_only_outside_history() -> None:
    text = (
        "# Page\nmeasured 2026-12-05\n## History\n### A run\nmeasured 2026-12-02\n"
        "## Figures\n2026-12-06 again\n```\n# not a heading 2026-12-07\n```\n"
    )
    assert dated_lines_outside_history(text) == [
        "measured 2026-12-05",
        "2026-12-06 again",
        "# not a heading 2026-12-07",
    ]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pages_carry_no_dates_outside_their_history_sections(page: Path) -> None:
    dated = dated_lines_outside_history(page.read_text())
    assert not dated, f"{page.name}: dates outside a History section (name the commit instead): {dated}"


def test_every_benchmark_result_records_machine_threads_and_commit() -> None:
    missing = {}
    for path in sorted((ROOT / "bench" / "results").rglob("*.json")):
        record = json.loads(path.read_text())
        if path.parent.name.startswith("pretrain_"):  # a `nat pretrain` run's own files (versions.json)
            continue
        lacking = [key for key in ("machine", "threads", "commit") if key not in record]
        if lacking:
            missing[str(path.relative_to(ROOT))] = lacking
    assert not missing, f"result files without their provenance: {missing}"


@pytest.mark.slow
def test_the_site_builds_strictly(tmp_path) -> None:
    """`make docs`: mkdocs --strict fails on a broken link, a page missing from the nav or a bad
    API reference (`make test-slow` installs the docs extra)."""
    import os
    import subprocess
    import sys

    pytest.importorskip("mkdocs", reason="the docs extra (pip install -e '.[docs]') is not installed")
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "site" / "own_images" / "index.html").is_file()
