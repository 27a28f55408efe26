"""The documentation builds without warnings, and every Python example in it is a file the suite runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from ..conftest import REPO

DOCS = REPO / "docs"
_FENCE = re.compile(r"```python\n(.*?)```", re.S)
_INCLUDE = re.compile(r'^--8<-- "([^":]+)(?::\d+:\d+)?"$')
# Files the suite executes: examples are imported by test_examples.py, the Celery DAG runs in test_celery.py,
# the Cosmos DAG of the migration guide is rendered by Cosmos in test_cosmos_translator.py (bench extra).
EXECUTED = [
    REPO / "examples" / "dags",
    REPO / "examples" / "snippets",
    REPO / "examples" / "migration",
    REPO / "tests" / "integration" / "celery_dags",
]


@pytest.mark.parametrize("page", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_python_examples_are_included_from_executed_files(page: Path) -> None:
    for block in _FENCE.findall(page.read_text()):
        lines = [line.strip() for line in block.splitlines() if line.strip()]
        for line in lines:
            match = _INCLUDE.match(line)
            assert match, f"{page.name}: inline Python in the docs is never run; include a file instead: {line!r}"
            included = REPO / match.group(1)
            assert included.is_file(), f"{page.name}: {match.group(1)} does not exist"
            assert any(folder in included.parents for folder in EXECUTED), f"{page.name}: {included} is not run"


def test_docs_build_strict(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    if not mkdocs.exists():  # the version rows install the test extra only; the main row builds the docs
        pytest.skip("mkdocs is not installed in this environment (make docs)")
    out = subprocess.run(
        [str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
