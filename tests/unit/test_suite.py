"""The suite's jobs (devstack/jobs.py, devstack/suite.py): the split of the integration files and the runner."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from devstack import suite
from devstack.jobs import REPO, Job, run_jobs


def test_every_integration_file_is_in_one_half_and_the_halves_are_close() -> None:
    files = sorted(p.name for p in (REPO / "tests" / "integration").glob("test_*.py"))
    first, second = suite.halves(files)
    assert sorted(first + second) == files and not set(first) & set(second)
    lengths = [sum(suite.seconds(name) for name in half) for half in (first, second)]
    assert abs(lengths[0] - lengths[1]) <= max(suite.SECONDS.values())
    stacks = [job for job in suite.main_row_jobs() if job.stack]
    assert len(stacks) == 2 and all(job.expected > suite.STACK_START for job in stacks)


def test_jobs_run_side_by_side_and_report_each_result(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good, bad = tmp_path / "test_good.py", tmp_path / "test_bad.py"
    good.write_text("def test_good():\n    assert True\n")
    bad.write_text("def test_bad():\n    assert 1 == 2\n")
    args = ("-q", "-p", "no:cacheprovider", "--rootdir", str(tmp_path))
    jobs = [
        Job("good", (str(good), *args), sys.executable, expected=1),
        Job("bad", (str(bad), *args), sys.executable, expected=2),
        Job("none", (str(tmp_path / "test_none.py"), "-k", "nothing", *args), sys.executable),
    ]
    results = {r.name: r.passed for r in run_jobs(jobs, at_once=3)}
    assert results == {"good": True, "bad": False, "none": False}
    printed = capsys.readouterr().out
    assert "[bad] ended" in printed and "assert 1 == 2" in printed
