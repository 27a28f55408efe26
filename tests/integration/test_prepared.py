"""A real dag-processor without dbt parses prepared DAGs, and the run they describe is dbt's own.

The example DAGs are prepared with ``dbt-watcher prepare`` (dbt at hand, as in CI), their project
loses its profiles.yml, and a stack of its own runs the dag-processor from a virtualenv that has
Airflow and dbt-watcher but no dbt. The scheduler's workers keep dbt and get the profile through
``DBT_PROFILES_DIR``: the run builds, and every task agrees with dbt's run_results.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devstack.stack import AirflowStack

from .conftest import STACK_PARSING
from .oracle import assert_verdicts
from .scenario import assert_all_green, run

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"
DAG = "jaffle_shop_daily"


@pytest.fixture(scope="module")
def without_dbt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with this Airflow and dbt-watcher (its code, not its dependencies) and no dbt."""
    venv = tmp_path_factory.mktemp("no-dbt") / "venv"
    python = venv / "bin/python"
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(UV), "venv", "-q", "--python", version, str(venv)], check=True)
    constraints = ROOT / "requirements" / "constraints.txt"
    airflow = [line for line in constraints.read_text().splitlines() if line.startswith("apache-airflow==")]
    install = [str(UV), "pip", "install", "-q", "--python", str(python), "-c", str(constraints)]
    # The metadata database's drivers (the stack's PostgreSQL), as the suite's own environment has them.
    subprocess.run([*install, *airflow, "typing-extensions", "psycopg2-binary", "asyncpg"], check=True)
    subprocess.run([str(UV), "pip", "install", "-q", "--python", str(python), "--no-deps", "-e", str(ROOT)], check=True)
    probe = subprocess.run([str(python), "-c", "import dbt"], capture_output=True, check=False)
    assert probe.returncode != 0, "dbt is importable in the virtualenv meant to have none"
    return python


@pytest.fixture
def prepared_stack(tmp_path: Path, without_dbt: Path) -> Iterator[AirflowStack]:
    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", examples, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    dags = examples / "dags"
    for other in dags.glob("*.py"):
        if other.name != "jaffle_shop_dag.py":
            other.unlink()
    prepare = [str(Path(sys.executable).parent / "dbt-watcher"), "prepare", str(dags)]
    subprocess.run(prepare, check=True, env={**_env(tmp_path), "DBT_WATCHER_CACHE_DIR": str(tmp_path / "ci-cache")})
    profiles = tmp_path / "worker-profiles"
    profiles.mkdir()
    shutil.move(examples / "jaffle_shop" / "profiles.yml", profiles / "profiles.yml")
    stack = AirflowStack.start(dags, components=("api-server", "triggerer"), name="dbtw_prep", extra_env=STACK_PARSING)
    try:
        # Workers (started by the scheduler's LocalExecutor) run dbt, so they have the profile.
        stack.start_component("scheduler", env={"DBT_PROFILES_DIR": str(profiles)})
        stack.start_component("dag-processor", python=str(without_dbt))
        stack.wait_healthy()
        yield stack
    finally:
        stack.stop()


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "AIRFLOW_HOME": str(tmp_path / "prepare-airflow")}


def test_a_dag_processor_without_dbt_parses_the_prepared_dag_and_the_run_is_dbts(prepared_stack: AirflowStack) -> None:
    stack = prepared_stack
    stack.wait_for_dags([DAG], timeout=300)
    assert stack.api("GET", "/api/v2/importErrors")["import_errors"] == []
    tasks = stack.api("GET", f"/api/v2/dags/{DAG}/tasks")["tasks"]
    assert len(tasks) == 22
    out = run(stack, DAG, timeout=600)
    assert_all_green(stack, out)
    assert_verdicts(stack, out, group="jaffle_shop")
