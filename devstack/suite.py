"""The whole suite (``make test``) as jobs on two cores, and with ``--rows`` every version row's as well (CI).

The main row's unit suite and, with ``--rows``, every row's unit suite run first, all at once; then the
jobs that start real Airflow deployments, two at a time: the main row's integration suite in two halves
(each with its own test stack), and each row's real-stack subset. One after another they took 60 minutes
of the 2-core CI machine; side by side the cores idle less.

    python -m devstack.suite              the main row's whole suite
    python -m devstack.suite --rows       and every row's (docs/installation.md, "How each line is tested")
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

from devstack import rows
from devstack.jobs import REPO, Job, run_jobs, table

#: Seconds each integration file took in one real stack (2-core machine, 2026-12-07), its own stacks'
#: set-up included: only to split the files into two halves of about the same length. A new file counts
#: as a minute until it is measured.
SECONDS = {
    "test_faults.py": 450,
    "test_breadth.py": 430,
    "test_trust.py": 340,
    "test_ui.py": 295,
    "test_celery.py": 225,
    "test_run_gating.py": 165,
    "test_prepared.py": 115,
    "test_connection_profiles.py": 70,
    "test_unchanged.py": 230,
    "test_core_path.py": 55,
    "test_core_failures.py": 55,
    "test_package.py": 15,
    "test_asset_uris.py": 5,
    "test_scale.py": 0,  # a long workload: `make test` skips it
}
#: What the main stack's start costs each half (DAG files parsed cold).
STACK_START = 50
ARGS = ("-q", "-rfE", "-p", "no:cacheprovider")


def seconds(name: str) -> float:
    return SECONDS.get(name, 60)


def halves(files: list[str]) -> tuple[list[str], list[str]]:
    """Two lists of integration files of about the same length, the longest file placed first."""
    parts: tuple[list[str], list[str]] = ([], [])
    lengths = [0.0, 0.0]
    for name in sorted(files, key=lambda f: -seconds(f)):
        lighter = 0 if lengths[0] <= lengths[1] else 1
        parts[lighter].append(name)
        lengths[lighter] += seconds(name)
    return parts


def main_row_jobs() -> list[Job]:
    files = sorted(p.name for p in (REPO / "tests" / "integration").glob("test_*.py"))
    jobs = [Job("main unit", ("tests/unit", *ARGS, "--durations=10"), expected=180)]
    for number, part in enumerate(halves(files), start=1):
        if part:
            paths = tuple(f"tests/integration/{name}" for name in part)
            expected = STACK_START + sum(seconds(name) for name in part)
            jobs.append(Job(f"main stack {number}", (*paths, *ARGS, "--durations=10"), stack=True, expected=expected))
    return jobs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.suite", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", action="store_true", help="every version row's tests as well (CI)")
    parser.add_argument("--stacks", type=int, default=2, help="real-stack jobs at a time (default: 2)")
    args = parser.parse_args(argv)
    # A CI time limit stops the suite with SIGTERM: end the jobs and print what each one got to.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.monotonic()
    jobs = main_row_jobs()
    failed_install: list[str] = []
    if args.rows:
        installed, failed_install = rows.install_all(list(rows.ROWS))
        jobs += [job for row in installed for job in rows.jobs(row)]
    results = run_jobs([job for job in jobs if not job.stack], at_once=len(jobs))
    results += run_jobs([job for job in jobs if job.stack], at_once=args.stacks)
    print("\n" + table(results))
    for name in failed_install:
        print(f"{name}: install FAILED")
    took = time.monotonic() - started
    print(f"suite: {len(results)} jobs in {int(took // 60)} min {int(took % 60)} s")
    return 0 if all(r.passed for r in results) and not failed_install else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
