"""The jaffle_shop dbt project as one dbt-watcher group, between an ingest task and a report task.

Every model, seed and snapshot of examples/jaffle_shop gets its own Airflow task that turns green
or red the moment dbt finishes it, while dbt itself runs once (``dbt build``, 4 threads).
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import dag, task

from dbt_watcher import dbt_watcher_group

PROJECT = Path(__file__).resolve().parent.parent / "jaffle_shop"
# The profile's DuckDB file (relative paths are relative to the project folder).
DUCKDB = PROJECT / os.environ.get("JAFFLE_DUCKDB_PATH", "jaffle_shop.duckdb")


@dbt_watcher_group(project_dir="../jaffle_shop", threads=4, operator_args={"retries": 1})
def jaffle_shop(params=None):
    # Runs in the producer just before `dbt build`, which passes the run's params (an Airflow context
    # key; the default lets the DAG call jaffle_shop() without it, as with TaskFlow): add run-time dbt
    # arguments here.
    return {"vars": {"report_currency": (params or {}).get("currency", "EUR")}}


def load_app_events(count: int = 5) -> int:
    """Land a few application events in the warehouse: the `app.events` dbt source."""
    import duckdb

    with duckdb.connect(str(DUCKDB)) as con:
        con.execute(
            "create table if not exists main.raw_app_events "
            "(event_id integer, customer_id integer, event_type varchar, loaded_at timestamp)"
        )
        first = con.execute("select coalesce(max(event_id), 0) + 1 from main.raw_app_events").fetchone()[0]
        con.execute(
            "insert into main.raw_app_events select i, (i % 100) + 1, 'page_view', now() from range(?, ?) t(i)",
            [first, first + count],
        )
    return count


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # DuckDB allows one writing process per database file
    params={"currency": "EUR"},
    tags=["dbt-watcher", "example"],
)
def jaffle_shop_daily():
    @task
    def ingest() -> int:
        return load_app_events()

    @task
    def report(**context) -> None:
        artifacts = context["ti"].xcom_pull(task_ids="jaffle_shop.dbt_producer")
        print("jaffle_shop models are built; artifacts in", artifacts)

    ingest() >> jaffle_shop() >> report()


jaffle_shop_daily()
