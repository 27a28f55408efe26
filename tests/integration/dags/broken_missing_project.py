"""A DAG whose dbt project does not exist: must fail to import, naming the path and the fix."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from dbt_watcher import dbt_watcher_group


@dbt_watcher_group(project_dir="../projects/no_such_project")
def ghost() -> None: ...


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
def broken_missing_project() -> None:
    ghost()


broken_missing_project()
