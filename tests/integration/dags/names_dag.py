"""Task ids for names that need care: package collisions, a hyphen, model versions."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from dbt_watcher import dbt_watcher_group


@dbt_watcher_group(project_dir="../projects/names")
def names() -> None: ...


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def names_dag() -> None:
    names()


names_dag()


@dbt_watcher_group(project_dir="../projects/names_nodeps", install_deps=True)
def names_fresh_checkout() -> None: ...


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def names_install_deps() -> None:
    names_fresh_checkout()


names_install_deps()
