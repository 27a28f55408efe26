"""Every example DAG and every docs snippet is executed: it must import into a DagBag cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from dbt_watcher import airflow_lines

from ..conftest import EXAMPLES

FILES = sorted([*(EXAMPLES / "dags").glob("*.py"), *(EXAMPLES / "snippets").glob("*.py")])
EXPECTED = {
    "jaffle_shop_dag.py": {"jaffle_shop_daily"},
    "jaffle_reports_dag.py": {"jaffle_orders_report"},
    "jaffle_app_events_dag.py": {"jaffle_app_ingest", "jaffle_app_events"},
    "jaffle_shop_custom_dag.py": {"jaffle_shop_custom"},
    "connection_profile.py": {"jaffle_shop_from_connection"},
    "dbt_venv.py": {"jaffle_shop_in_its_own_venv"},
    "queues_and_retries.py": {"jaffle_shop_on_celery"},
    "translator.py": {"jaffle_shop_with_translator"},
    "before_the_build.py": {"jaffle_shop_with_steps_before"},
    "from_cosmos.py": {"jaffle_shop_from_cosmos"},
    "skip_unchanged.py": {"jaffle_shop_daily_unchanged"},
}
# Examples that use a feature only Airflow 3.3 has (producer retries that need the Task State Store): on older
# lines they must fail to import with the ConfigurationError that names the feature, as a user's DAG would.
NEEDS_TASK_STATE_STORE = {"queues_and_retries.py"}
# One interpreter loads every file, each into a DagBag of its own (Airflow names each file's module uniquely): the
# cost of importing Airflow and dbt is paid once, not once per file, on every row of the suite.
LOADER = """
import json, sys
sys.path.insert(0, {dags!r})
from dbt_watcher.airflow_lines import dag_bag as DagBag
loaded = {{}}
for path in {paths!r}:
    bag = DagBag(dag_folder=path, safe_mode=False)
    loaded[path] = {{"dags": sorted(bag.dag_ids), "errors": {{k: str(v) for k, v in bag.import_errors.items()}}}}
print(json.dumps(loaded))
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    connection = {
        "conn_type": "postgres",
        "host": "127.0.0.1",
        "port": 5432,
        "login": "postgres",
        "password": "example",
        "schema": "jaffle_shop",
        "extra": {"dbt_schema": "analytics"},
    }
    env = {
        **os.environ,
        "DBT_WATCHER_CACHE_DIR": str(tmp_path_factory.mktemp("cache")),
        "AIRFLOW_CONN_JAFFLE_WAREHOUSE": json.dumps(connection),
        "JAFFLE_DBT_EXECUTABLE": str(Path(sys.executable).parent / "dbt"),
    }
    code = LOADER.format(dags=str(EXAMPLES / "dags"), paths=[str(path) for path in FILES])
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    result: dict[str, dict[str, Any]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_every_example_is_covered() -> None:
    assert {f.name for f in FILES} == set(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_imports_without_errors(path: Path, loaded: dict[str, dict[str, Any]]) -> None:
    result = loaded[str(path)]
    if path.name in NEEDS_TASK_STATE_STORE and not airflow_lines.has_task_state_store():
        (error,) = result["errors"].values()
        assert "ConfigurationError" in error and "Task State Store" in error
        return
    assert result["errors"] == {}
    # A file that imports another example's group also collects that module's DAG; each file's own DAGs must be there.
    assert EXPECTED[path.name] <= set(result["dags"])
