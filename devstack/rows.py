"""Rows: the other Airflow, Python and dbt lines that dbt-watcher's tests run on.

The main environment (requirements/constraints.txt) is one line: Airflow 3.3, Python 3.11, dbt 1.11. The package
accepts more (pyproject: Airflow 3.0 on, Python 3.10 on, dbt up to 1.12) and degrades what an older line lacks at
run time; a row is an older Airflow line paired with a Python and a dbt the main row does not run, locked in
requirements/rows/<row>.txt and installed in .venv-rows/<row>, so every declared line is tested, not assumed.

Airflow's per-release constraints files cannot be fetched here, and an unconstrained install of an older Airflow
picks today's FastAPI and Cadwyn and breaks. So an older line is resolved as of a few days after its release
(uv --exclude-newer), with dbt's packages (and what the row's dbt needs newer) exempt so that its dbt resolves.
Every venv installs from the shared uv cache, so rows share their downloads.

    python -m devstack.rows --list                          the rows and their pins
    python -m devstack.rows --compile [ROW...]              rewrite the rows' lock files
    python -m devstack.rows --install [ROW...]              make or refresh the venvs, run no test
    python -m devstack.rows [ROW...] [--jobs N]             install (when changed) and test each row
    python -m devstack.rows [ROW...] --phase unit|stack     only the unit suites, or only the real-stack subsets
    python -m devstack.rows [ROW...] -- PYTEST_ARGS...      run these pytest arguments on each row instead

A row's tests are its unit suite and a real-stack subset (the tests marked ``row``), two jobs
(devstack.jobs). Alone, ``python -m devstack.rows`` runs the unit suites --jobs at a time, then the stacks one
at a time; in CI the suite (``python -m devstack.suite --rows``) runs them beside the main row's jobs: unit
suites all at once first, then two stacks at a time. (A unit suite beside a stack, even at the lowest CPU
priority, slowed the stack more than it saved: the unit suites run before every stack.)
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from devstack.jobs import REPO, Job, run_jobs, table

ROWS_DIR = "requirements/rows"
VENVS = REPO / ".venv-rows"
STAMP = ".rows-stamp"

# dbt's packages as of the day after dbt-duckdb 1.11.1: the dbt releases of requirements/constraints.txt.
DBT_DATE = "2026-10-27"
DBT_PACKAGES = (
    "dbt-core",
    "dbt-adapters",
    "dbt-common",
    "dbt-duckdb",
    "dbt-postgres",
    "dbt-protos",
    "dbt-semantic-interfaces",
    "dbt-extractor",
)
# dbt-core 1.12.6's packages: as of the day requirements/constraints.txt was frozen.
DBT_1_12_DATE = "2026-11-25"


@dataclass(frozen=True)
class Row:
    name: str
    python: str
    exclude_newer: str
    newer_packages: tuple[str, ...] = ()  # resolved as of newer_date instead
    newer_date: str = DBT_DATE
    overrides: str | None = None

    @property
    def requirements(self) -> str:
        return f"{ROWS_DIR}/{self.name}.in"

    @property
    def lock(self) -> str:
        return f"{ROWS_DIR}/{self.name}.txt"

    @property
    def venv(self) -> Path:
        return VENVS / self.name


#: A row's real-stack subset, every test marked `row`: the core path, a failing model and its descendants,
#: a producer killed mid-build, a consumer retry after a UI clear, one poll per tick.
STACK = ("tests/integration", "-m", "row", "--durations=10")

#: Each row pairs an older Airflow line with a Python and a dbt the main row does not run, so that every
#: declared line runs the unit suite and the real-stack subset in three rows (one row per line took 26 of
#: CI's 45 minutes, over its budget beside the main row's 36).
ROWS = (
    # Airflow 3.0.6: 2025-08-29, with dbt-core 1.10 (the oldest declared); dbt-postgres 1.10 wants a newer dbt-common.
    Row("airflow-3.0-py3.10-dbt1.10", "3.10", "2025-09-01", DBT_PACKAGES),
    # Airflow 3.1.8: 2026-03-11. dbt-core 1.12.6 wants dbt-core-experimental-parser>=2.0.0b1, sdists whose
    # build downloads a binary: the override takes 2.0.0a4, a wheel.
    Row(
        "airflow-3.1-py3.12-dbt1.12",
        "3.12",
        "2026-03-14",
        (*DBT_PACKAGES, "dbt-core-experimental-parser", "metricflow"),
        newer_date=DBT_1_12_DATE,
        overrides=f"{ROWS_DIR}/dbt-1.12.overrides.txt",
    ),
    Row("airflow-3.2-py3.13", "3.13", "2026-06-01", DBT_PACKAGES),  # Airflow 3.2.2: 2026-05-29
)
UNIT = ("tests/unit",)
COMMON = ("-q", "-rfE", "-p", "no:cacheprovider")


def uv() -> str:
    """The uv next to the running Python (the main venv has it), else the one on PATH."""
    beside = Path(sys.executable).parent / "uv"
    found = str(beside) if beside.exists() else shutil.which("uv")
    if found is None:
        raise SystemExit("no uv beside this Python nor on PATH")
    return found


def interpreter(version: str) -> str:
    """A Python of the row's minor version: this one, else pyenv's newest patch, else uv's find."""
    if f"{sys.version_info[0]}.{sys.version_info[1]}" == version:
        return sys.executable
    root = os.environ.get("PYENV_ROOT")
    if root is None and shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, check=False).stdout.strip()
    patches = []
    for path in Path(root or Path.home() / ".pyenv").glob(f"versions/{version}.*/bin/python"):
        match = re.fullmatch(rf"{re.escape(version)}\.(\d+)", path.parent.parent.name)
        if match:
            patches.append((int(match[1]), str(path)))
    if patches:
        return max(patches)[1]
    find = [uv(), "python", "find", "--no-python-downloads", version]
    found = subprocess.run(find, capture_output=True, text=True, check=False)
    if found.returncode == 0:
        return found.stdout.strip()
    raise SystemExit(f"no Python {version}: install it with pyenv")


def compile_command(row: Row, output: str) -> list[str]:
    command = ["uv", "pip", "compile", row.requirements, "--python-version", row.python]
    command += ["--exclude-newer", row.exclude_newer]
    for package in row.newer_packages:
        command += ["--exclude-newer-package", f"{package}={row.newer_date}"]
    if row.overrides:
        command += ["--override", row.overrides]
    return [*command, "--no-header", "--output-file", output]


def _wrap(args: list[str], width: int = 112) -> str:
    words: list[str] = []
    for arg in args:  # an option stays on one line with its value
        if words and words[-1].startswith("--") and " " not in words[-1] and not arg.startswith("-"):
            words[-1] += f" {arg}"
        else:
            words.append(arg)
    lines = ["#    "]
    for word in words:
        if len(lines[-1]) + len(word) > width:
            lines[-1] += "\\"
            lines.append("#        ")
        lines[-1] += word + " "
    return "\n".join(line.rstrip() for line in lines)


def compile_row(row: Row) -> None:
    """Rewrite the row's lock file from its .in file, its dates and its preferred pins alone."""
    version = subprocess.run([uv(), "--version"], capture_output=True, text=True, check=True).stdout.split()[1]
    with tempfile.TemporaryDirectory() as tmp:
        output = f"{tmp}/{row.name}.txt"
        subprocess.run([uv(), *compile_command(row, output)[1:]], cwd=REPO, check=True)
        body = Path(output).read_text()
    header = [
        f"# Lock file of the row {row.name}; `python -m devstack.rows --compile {row.name}` rewrites it.",
        f"# Compiled with uv {version}:",
        _wrap(compile_command(row, row.lock)),
    ]
    (REPO / row.lock).write_text("\n".join(header) + "\n" + body)


def _digest(row: Row) -> str:
    digest = hashlib.sha256(row.python.encode())
    for name in (row.lock, "pyproject.toml", row.overrides):
        if name:
            digest.update((REPO / name).read_bytes())
    return digest.hexdigest()


def install(row: Row) -> None:
    """Make or reuse the row's venv; install the locked packages and the project when an input changed."""
    python = row.venv / "bin" / "python"
    if not python.exists():
        subprocess.run([uv(), "venv", "--python", interpreter(row.python), str(row.venv)], check=True)
    stamp = row.venv / STAMP
    digest = _digest(row)
    if stamp.exists() and stamp.read_text() == digest:
        print(f"[{row.name}] up to date")
        return
    command = [uv(), "pip", "install", "--python", str(python), "--exact", "-c", row.lock]
    if row.overrides:
        command += ["--override", row.overrides]
    subprocess.run([*command, "-e", ".[test]"], cwd=REPO, check=True)
    stamp.write_text(digest)


def _env(row: Row) -> dict[str, str]:
    env = {**os.environ, "DBT_WATCHER_ROW": row.name, "VIRTUAL_ENV": str(row.venv)}
    env["PATH"] = f"{row.venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    return env


def job(row: Row, phase: str, args: tuple[str, ...], *, stack: bool, expected: float) -> Job:
    """A job running ``args`` with the row's pytest."""
    python = str(row.venv / "bin" / "python")
    return Job(f"{row.name} {phase}", (*args, *COMMON), python, _env(row), stack=stack, expected=expected)


def jobs(row: Row, phase: str = "all") -> list[Job]:
    """The row's unit suite and its real-stack subset (their CI times on the 2-core machine: about 250 s
    and 300-370 s)."""
    found = []
    if phase in ("all", "unit"):
        found.append(job(row, "unit", UNIT, stack=False, expected=250))
    if phase in ("all", "stack"):
        found.append(job(row, "stack", STACK, stack=True, expected=330))
    return found


def install_all(rows: list[Row]) -> tuple[list[Row], list[str]]:
    """Install each row; the rows installed, and the names of those whose install failed."""
    installed: list[Row] = []
    failed: list[str] = []
    for row in rows:
        try:
            install(row)
            installed.append(row)
        except subprocess.CalledProcessError as error:
            failed.append(row.name)
            print(f"[{row.name}] install failed ({error.returncode})", flush=True)
    return installed, failed


def pins(row: Row) -> str:
    wanted = ("apache-airflow", "apache-airflow-task-sdk", "apache-airflow-core", "dbt-core")
    lines = (REPO / row.requirements).read_text().splitlines()
    asked = [line for line in lines if re.match(r"(apache-airflow|apache-airflow-task-sdk|dbt-core)\b[=<>~]", line)]
    text = f"{row.name} python {row.python}  {' '.join(asked)}"
    if (REPO / row.lock).exists():
        locked = dict(
            line.split("==", 1) for line in (REPO / row.lock).read_text().splitlines() if line.startswith(wanted)
        )
        text += "\n    locked: " + ", ".join(f"{name} {locked[name]}" for name in wanted if name in locked)
    text += f"\n    as of {row.exclude_newer}"
    if row.newer_packages:
        text += f"; as of {row.newer_date}: {', '.join(row.newer_packages)}"
    return text + (f"\n    overrides: {row.overrides}" if row.overrides else "")


def main(argv: list[str]) -> int:
    pytest_args = tuple(argv[argv.index("--") + 1 :]) if "--" in argv else None
    argv = argv[: argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(
        prog="python -m devstack.rows", description="Run the tests on other Airflow, Python and dbt lines."
    )
    parser.add_argument("rows", nargs="*", metavar="ROW", help="rows to act on (default: all)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="print the rows and their pins")
    mode.add_argument("--compile", action="store_true", help="rewrite the rows' lock files")
    mode.add_argument("--install", action="store_true", help="make or refresh the rows' venvs, run no test")
    parser.add_argument(
        "--phase", choices=("all", "unit", "stack"), default="all", help="which tests of each row (default: all)"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="unit suites at a time (default: one per core)"
    )
    args = parser.parse_args(argv)
    by_name = {row.name: row for row in ROWS}
    unknown = [name for name in args.rows if name not in by_name]
    if unknown:
        parser.error(f"unknown rows {unknown}; rows: {', '.join(by_name)}")
    rows = [by_name[name] for name in args.rows] or list(ROWS)
    if args.list:
        print("\n".join(pins(row) for row in rows))
        return 0
    if args.compile:
        for row in rows:
            compile_row(row)
        return 0
    installed, failed_install = install_all(rows)
    if args.install:
        return 1 if failed_install else 0
    if pytest_args is not None:
        results = run_jobs([job(row, "pytest", pytest_args, stack=True, expected=0) for row in installed], 1)
    else:
        every = [found for row in installed for found in jobs(row, args.phase)]
        results = run_jobs([j for j in every if not j.stack], at_once=max(1, args.jobs))
        results += run_jobs([j for j in every if j.stack], at_once=1)
    print("\n" + table(results))
    for name in failed_install:
        print(f"{name}: install FAILED")
    return 0 if not failed_install and all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
