"""dbt in a virtualenv of its own: Airflow and dbt keep separate dependencies.

The producer (and every consumer's rebuild) runs that dbt as a subprocess and reads its structured
JSON logs, deriving the same per-node results as the in-process runner. DAG parsing uses it too.
"""

from __future__ import annotations

import os

import pendulum
from airflow.sdk import dag

from dbt_watcher import dbt_watcher_group

DBT = os.environ.get("JAFFLE_DBT_EXECUTABLE", "/opt/dbt-venv/bin/dbt")


@dbt_watcher_group(project_dir="../jaffle_shop", dbt_executable=DBT, threads=4)
def jaffle_shop_isolated(): ...


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_runs=1)
def jaffle_shop_in_its_own_venv():
    jaffle_shop_isolated()


jaffle_shop_in_its_own_venv()
