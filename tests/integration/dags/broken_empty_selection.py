"""A DAG whose selection matches nothing: must fail to import, naming the selection and the fix."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from dbt_watcher import dbt_watcher_group


@dbt_watcher_group(project_dir="../projects/shop", select="tag:no_such_tag")
def nothing() -> None: ...


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
def broken_empty_selection() -> None:
    nothing()


broken_empty_selection()
