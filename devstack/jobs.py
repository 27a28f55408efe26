"""Test jobs run side by side: each a pytest process of its own, its output printed whole when it ends.

The suite (devstack.suite) and the version rows (devstack.rows) are lists of jobs. A job that starts a real
Airflow deployment (``stack``) leaves a third of two cores idle while it waits on Airflow's loops (64 % busy
on average, measured over the main row's integration suite), so two of them share the machine; a unit suite
keeps a core busy, so they run all at once and the kernel shares the cores.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Job:
    name: str
    #: The pytest arguments, run by ``python`` (the job's virtualenv).
    pytest_args: tuple[str, ...]
    python: str = sys.executable
    env: Mapping[str, str] | None = None
    #: It starts real Airflow deployments.
    stack: bool = False
    #: Seconds it took on the 2-core CI machine: the longest jobs start first.
    expected: float = 60.0


@dataclass(frozen=True)
class JobResult:
    name: str
    passed: bool
    seconds: float


def passed(code: int) -> bool:
    return code in (0, 5)  # 5: pytest collected nothing


def run_jobs(jobs: Sequence[Job], at_once: int) -> list[JobResult]:
    """Run ``jobs`` ``at_once`` at a time, longest expected first; each job's pytest gets a base temporary
    folder of its own (removed afterwards), so that jobs never clean up each other's."""
    results: list[JobResult] = []
    waiting = sorted(jobs, key=lambda job: -job.expected)
    running: list[tuple[Job, subprocess.Popen[bytes], IO[bytes], float]] = []
    root = Path(tempfile.mkdtemp(prefix="dbtw-jobs-"))
    try:
        while waiting or running:
            while waiting and len(running) < max(1, at_once):
                job = waiting.pop(0)
                base = root / job.name.replace(" ", "-")
                # unbuffered: what a job printed is there to show if the suite is stopped mid-job
                command = [job.python, "-u", "-m", "pytest", *job.pytest_args, f"--basetemp={base}"]
                print(f"[{job.name}] started: pytest {' '.join(job.pytest_args)}", flush=True)
                output: IO[bytes] = tempfile.TemporaryFile()  # noqa: SIM115 -- closed when the job ends
                env = dict(job.env) if job.env is not None else None
                proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=output, stderr=subprocess.STDOUT)
                running.append((job, proc, output, time.monotonic()))
            time.sleep(0.5)
            for entry in [e for e in running if e[1].poll() is not None]:
                job, proc, out, started = entry
                running.remove(entry)
                took = time.monotonic() - started
                out.seek(0)
                text = out.read().decode(errors="replace")
                out.close()
                print(f"[{job.name}] ended ({took:.0f} s, exit {proc.returncode}):\n{text}", flush=True)
                results.append(JobResult(job.name, passed(proc.returncode), took))
    finally:
        for job, proc, out, _ in running:  # interrupted: stop what still runs (pytest stops its stacks)
            proc.terminate()
            proc.wait()
            out.seek(0)
            print(f"[{job.name}] stopped:\n{out.read().decode(errors='replace')}", flush=True)
            out.close()
        shutil.rmtree(root, ignore_errors=True)
    return results


def table(results: Sequence[JobResult]) -> str:
    width = max([len("job"), *(len(r.name) for r in results)])
    lines = [f"{'job':{width}} {'seconds':>8}  result"]
    lines += [f"{r.name:{width}} {r.seconds:8.0f}  {'passed' if r.passed else 'FAILED'}" for r in results]
    return "\n".join(lines)
