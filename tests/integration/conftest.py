"""A real Airflow 3 stack for the integration suite, started once per session.

The example DAGs and dbt projects are copied to a scratch folder, so DuckDB files and dbt
artifacts never land in the repository, and the Postgres target gets a database of its own.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack import services
from devstack.stack import COMPONENTS, AirflowStack

from ..airflow_line import ROW
from ..conftest import EXAMPLES
from .wide_project import write_wide_project

HERE = Path(__file__).parent
#: Long workloads (``@pytest.mark.long``, the 1,000-consumer triggerer test) run with ``make test-long``,
#: which sets this; ``make test`` skips them, and its stacks do not parse their DAG files.
LONG = os.environ.get("DBT_WATCHER_LONG") == "1"
#: The DAG files only long workloads use.
LONG_DAG_FILES = ("wide_dag.py",)
#: The DAG files a version row's real-stack subset (``-m row``) runs: fewer files for its dag-processor.
ROW_DAG_FILES = ("jaffle_shop_dag.py", "jaffle_reports_dag.py", "shop_dags.py")
#: Parsing settings of every test stack: a cold parse of shop_dags.py parses its project once per target,
#: selection and vars, past Airflow's default 30 s import timeout on a loaded two-core machine. The stale
#: threshold is what docs/installation.md tells Airflow 3.0 users: there a run of a file for callbacks alone
#: marks every DAG of the file stale once its last real parse is older than the threshold (50 s by default),
#: and a trigger of one answers 404 (seen on the Airflow 3.0 row with Python 3.10 and dbt 1.10). Unchanged
#: files are parsed again every 5 minutes instead of every 30 s (below the stale threshold): that saves a
#: third of a core per idle stack, which the stack running beside it uses (devstack/suite.py runs two at
#: once). A changed DAG file is parsed again at once all the same (Airflow's modified_time order).
STACK_PARSING = {
    "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "120",
    "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "180",
    "AIRFLOW__DAG_PROCESSOR__STALE_DAG_THRESHOLD": "600",
    "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "300",
}


@pytest.fixture(scope="session")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("workspace")
    ignore = shutil.ignore_patterns("target", "logs", "*.duckdb*", "__pycache__")
    shutil.copytree(EXAMPLES, root, dirs_exist_ok=True, ignore=ignore)
    # The CeleryExecutor test's DAG runs here too, on the LocalExecutor, for comparison.
    for dag_file in [*(HERE / "dags").glob("*.py"), *(HERE / "celery_dags").glob("*.py")]:
        shutil.copy(dag_file, root / "dags" / dag_file.name)
    for dag_file in (root / "dags").glob("*.py"):
        if (ROW and dag_file.name not in ROW_DAG_FILES) or (not LONG and dag_file.name in LONG_DAG_FILES):
            dag_file.unlink()
    shutil.copytree(HERE / "projects", root / "projects", ignore=ignore)
    # skip_unchanged's tests edit these copies of the example project between runs (dags/unchanged_dags.py).
    for target in ("duckdb", "postgres"):
        shutil.copytree(EXAMPLES / "jaffle_shop", root / "projects" / f"unchanged_{target}", ignore=ignore)
    # The same project as a fresh checkout would have it: packages not installed yet.
    shutil.copytree(HERE / "projects" / "names", root / "projects" / "names_nodeps", ignore=ignore)
    if LONG:
        write_wide_project(root / "projects" / "wide")  # 1,000 cheap views, for test_scale.py
    if ROW:
        return root  # a row's DAG files do not use the `names` project
    # The `names` project uses a local package: install it the way dbt does (a symlink, no network).
    dbt = Path(sys.executable).parent / "dbt"
    names = root / "projects" / "names"
    subprocess.run(
        [str(dbt), "deps", "--profiles-dir", str(names), "--project-dir", str(names)],
        check=True,
        cwd=names,
        capture_output=True,
    )
    return root


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    name = f"dbtw_jaffle_{secrets.token_hex(4)}"
    services.create_database(name)
    # The shop project's raw source exists up front: its on-run-start hook creates it only if
    # missing, which two runs overlapping on one warehouse must not both try at once.
    for schema in ("shop", "shop_b", "shop_conn"):
        services.query(name, f"create schema {schema}")
        services.query(name, f"create table {schema}.raw_events as select 1 as id, now() as loaded_at")
    yield name
    services.drop_database(name)


@pytest.fixture(scope="session")
def dbt_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """dbt in a virtualenv of its own (for dbt_executable=): dbt-core and dbt-duckdb, no Airflow."""
    venv = tmp_path_factory.mktemp("dbt-venv")
    uv = Path(sys.executable).parent / "uv"
    subprocess.run([str(uv), "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    constraints = HERE.parent.parent / "requirements" / "constraints.txt"
    subprocess.run(
        [
            str(uv),
            "pip",
            "install",
            "--quiet",
            "--python",
            str(venv / "bin" / "python"),
            "-c",
            str(constraints),
            "dbt-core",
            "dbt-duckdb",
        ],
        check=True,
    )
    return venv / "bin" / "dbt"


@pytest.fixture(scope="session")
def markers(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("markers")


@pytest.fixture(scope="session")
def openlineage_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("openlineage") / "events.jsonl"


WAREHOUSE_PASSWORD = "not-a-real-secret-4711"


@pytest.fixture(scope="session")
def stack(
    request: pytest.FixtureRequest, workspace: Path, pg_database: str, markers: Path, openlineage_file: Path
) -> Iterator[AirflowStack]:
    # dbt in a virtualenv of its own only for the DAGs that use it, which a version row does not run
    dbt_venv = "" if ROW else str(request.getfixturevalue("dbt_venv"))
    connection = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "login": "postgres",
        "password": WAREHOUSE_PASSWORD,
        "schema": pg_database,
        "extra": {"dbt_schema": "shop_conn"},
    }
    transport = {"type": "file", "log_file_path": str(openlineage_file), "append": True}
    airflow = AirflowStack.start(
        workspace / "dags",
        extra_env={
            "JAFFLE_PG_DBNAME": pg_database,
            "SHOP_PG_DBNAME": pg_database,
            "DBT_WATCHER_TEST_DBT_EXECUTABLE": dbt_venv,
            "DBT_WATCHER_TEST_MARKERS": str(markers),
            "AIRFLOW_CONN_SHOP_WAREHOUSE": json.dumps(connection),
            "DBTW_SHARED_ARTIFACTS": (workspace / "shared-artifacts").as_uri(),
            "AIRFLOW__OPENLINEAGE__TRANSPORT": json.dumps(transport),
            **STACK_PARSING,
        },
        name="dbtw_it",
    )
    airflow.expected_import_errors = frozenset(p.name for p in (workspace / "dags").glob("broken_*.py"))
    try:
        yield airflow
    except BaseException:
        raise
    finally:
        airflow.stop()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if LONG:
        return
    skip = pytest.mark.skip(reason="a long workload: `make test-long` runs it (DBT_WATCHER_LONG=1)")
    for item in items:
        if item.get_closest_marker("long"):
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A failed test's report ends with the error lines of its stack's components: a failure in CI,
    where the stack's home is gone afterwards, still says what Airflow saw."""
    report: pytest.TestReport = yield
    if report.failed and call.when == "call":
        stacks = [v for v in getattr(item, "funcargs", {}).values() if isinstance(v, AirflowStack)]
        for stack in stacks:
            report.sections.append((f"Airflow component errors ({stack.home.name})", component_errors(stack)))
    return report


def component_errors(stack: AirflowStack, last: int = 40) -> str:
    parts = []
    for component in COMPONENTS:
        lines = [line for line in stack.component_log(component).splitlines() if _looks_wrong(line)]
        parts.append(f"--- {component}: {len(lines)} error lines, the last {min(last, len(lines))}")
        parts.extend(line[:400] for line in lines[-last:])
    return "\n".join(parts)


_WORRYING = ("[error", "[critical", "[warning", "traceback", "mismatch", "marking run", "heartbeat")


def _looks_wrong(line: str) -> bool:
    lowered = line.lower()
    return "asgi app factory" not in lowered and any(word in lowered for word in _WORRYING)


def xcom(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
    quoted = urllib.parse.quote(run_id, safe="")
    entry = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/{key}")
    value = entry["value"]
    return json.loads(value) if isinstance(value, str) and value[:1] in '[{"' else value


def asset_events(stack: AirflowStack, dag_id: str, run_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    rows = stack.sql(
        "select a.uri, e.source_task_id, e.extra from asset_event e join asset a on a.id = e.asset_id "
        "where e.source_dag_id = %s and e.source_run_id = %s order by a.uri",
        (dag_id, run_id),
    )
    return [(r[0], r[1], r[2]) for r in rows]


def wait_for_asset_run(stack: AirflowStack, dag_id: str, timeout: float = 90) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = stack.sql("select state from dag_run where dag_id = %s and run_type = 'asset_triggered'", (dag_id,))
        if rows and rows[0][0] in ("success", "failed"):
            return str(rows[0][0])
        time.sleep(1)
    raise TimeoutError(f"{dag_id} was not triggered by its asset within {timeout}s")


def node_runs(artifacts: Path) -> dict[str, list[str]]:
    """Every dbt result of a run's artifacts folder (producer attempts and consumer rebuilds), per node."""
    runs: dict[str, list[str]] = {}
    for results_file in sorted(artifacts.glob("attempt-*/run_results.json")) + sorted(
        artifacts.glob("local/*/try-*/run_results.json")
    ):
        for result in json.loads(results_file.read_text())["results"]:
            runs.setdefault(result["unique_id"], []).append(result["status"])
    return runs


def built(runs: dict[str, list[str]], unique_id: str) -> int:
    """How many times dbt actually ran a node (skipped is not a run)."""
    return sum(1 for status in runs.get(unique_id, []) if status != "skipped")
