"""Steps that must run before the build: a dbt command as an upstream task, or a second group.

* ``refresh_raw_data`` runs ``dbt run-operation`` (any dbt command works the same way) with dbt's
  own programmatic runner, before anything else of the run.
* ``raw_data`` is a group of its own that builds only the seeds, each with its own task and asset;
  the main group leaves them out and starts when they are built.
"""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import dag, task

from dbt_watcher import dbt_watcher_group

PROJECT = Path(__file__).resolve().parent.parent / "jaffle_shop"


@task
def refresh_raw_data(ds: str | None = None) -> None:
    from dbt.cli.main import dbtRunner

    args = ["run-operation", "announce_load", "--project-dir", str(PROJECT), "--profiles-dir", str(PROJECT)]
    result = dbtRunner().invoke([*args, "--args", f"{{load_date: {ds}}}"])
    if not result.success:
        raise RuntimeError(f"dbt run-operation failed: {result.exception}")


@dbt_watcher_group(project_dir=PROJECT, select="resource_type:seed", threads=4, group_id="raw_data")
def raw_data(): ...


@dbt_watcher_group(project_dir=PROJECT, exclude="resource_type:seed", threads=4)
def jaffle_shop(): ...


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def jaffle_shop_with_steps_before():
    refresh_raw_data() >> raw_data() >> jaffle_shop()


jaffle_shop_with_steps_before()
