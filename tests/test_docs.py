"""The documentation stays true: generated pages match their source, and links point at files."""

from __future__ import annotations

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
