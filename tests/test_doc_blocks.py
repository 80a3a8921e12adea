"""The code blocks of README.md and the guides in docs/ that are marked runnable run as written.

A fenced block directly preceded by the line ``<!-- runnable -->`` (an HTML comment: invisible on GitHub
and on the site) is extracted and run in a fresh folder: ``python`` blocks with this interpreter,
``bash`` blocks with bash (``-e -o pipefail``), with this environment's ``nat`` first on PATH.
``<!-- runnable after: COMMAND -->`` runs the shell command ``COMMAND`` there first (what the block
assumes exists, e.g. a finished run folder made at smoke size). Mark only blocks that run at smoke
size as written (no data to fetch, seconds to a minute); a block that needs the user's data or a GPU
stays unmarked. A marker not followed by a fenced block fails the
collection test, so a marker cannot silently stop checking anything.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MARK = re.compile(r"^<!-- runnable(?: after: (?P<setup>.+?))? -->$")
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LANGUAGES = {"python": "python", "py": "python", "bash": "bash", "sh": "bash", "shell": "bash"}


def runnable_blocks(page: Path) -> list[tuple[int, str, str, str]]:
    """(line of the marker, language, set-up command, code) of every marked block of ``page``."""
    lines = page.read_text().splitlines()
    out = []
    for i, line in enumerate(lines):
        mark = MARK.match(line.strip())
        if mark is None:
            continue
        fence = lines[i + 1].strip() if i + 1 < len(lines) else ""
        language = LANGUAGES.get(fence.removeprefix("```").strip())
        if not fence.startswith("```") or language is None:
            raise ValueError(
                f"{page.name}:{i + 1}: a runnable marker must be followed by a ```python or ```bash block"
            )
        end = next(j for j in range(i + 2, len(lines)) if lines[j].strip() == "```")
        out.append((i + 1, language, mark["setup"] or "", "\n".join(lines[i + 2 : end]) + "\n"))
    return out


BLOCKS = [(page, *block) for page in PAGES for block in runnable_blocks(page)]


def test_markers_are_found() -> None:
    assert BLOCKS, "no block is marked runnable"
    assert any(page.name == "README.md" for page, *_ in BLOCKS)


@pytest.mark.parametrize(
    ("page", "line", "language", "setup", "code"),
    BLOCKS,
    ids=[f"{page.relative_to(ROOT)}:{line}" for page, line, *_ in BLOCKS],
)
def test_runnable_block_runs_as_written(
    page: Path, line: int, language: str, setup: str, code: str, tmp_path
) -> None:
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    env.pop("NAT_PROGRESS", None)
    if setup:
        done = subprocess.run(
            ["bash", "-e", "-c", setup], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, f"{page.name}:{line} set-up failed: {setup}\n{done.stderr[-3000:]}"
    command = (
        [sys.executable, "-c", code] if language == "python" else ["bash", "-e", "-o", "pipefail", "-c", code]
    )
    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{page.name}:{line} failed:\n{code}\n{(done.stdout + done.stderr)[-3000:]}"
