"""Every example DAG and every docs snippet is executed: it must import into a DagBag cleanly."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

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
}
# Examples that use a feature only Airflow 3.3 has (producer retries that need the Task State Store): on older
# lines they must fail to import with the ConfigurationError that names the feature, as a user's DAG would.
NEEDS_TASK_STATE_STORE = {"queues_and_retries.py"}
LOADER = """
import json, sys
sys.path.insert(0, {dags!r})
from dbt_watcher.airflow_lines import dag_bag as DagBag
bag = DagBag(dag_folder={path!r}, safe_mode=False)
print(json.dumps({{"dags": sorted(bag.dag_ids), "errors": {{k: str(v) for k, v in bag.import_errors.items()}}}}))
"""


def test_every_example_is_covered() -> None:
    assert {f.name for f in FILES} == set(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_example_imports_without_errors(path: Path, cache_dir: Path) -> None:
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
        "DBT_WATCHER_CACHE_DIR": str(cache_dir),
        "AIRFLOW_CONN_JAFFLE_WAREHOUSE": json.dumps(connection),
        "JAFFLE_DBT_EXECUTABLE": str(Path(sys.executable).parent / "dbt"),
    }
    code = LOADER.format(dags=str(EXAMPLES / "dags"), path=str(path))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    if path.name in NEEDS_TASK_STATE_STORE and not airflow_lines.has_task_state_store():
        (error,) = loaded["errors"].values()
        assert "ConfigurationError" in error and "Task State Store" in error
        return
    assert loaded["errors"] == {}
    # A file that imports another example's group also collects that module's DAG; each file's own DAGs must be there.
    assert EXPECTED[path.name] <= set(loaded["dags"])
