"""Fault-scenario DAGs on the `shop` test project; dbt vars come from the DAG run's conf.

DuckDB scenarios share one database file: the suite never runs two DuckDB builds at once.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag, task

from dbt_watcher import dbt_watcher_group

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dbt_watcher_group(project_dir="../projects/shop", threads=4, poke_interval=0.5)
def shop(dag_run):
    return {"vars": dict(dag_run.conf or {})}


def shop_dag(dag_id: str, target: str, max_active_runs: int = 1, **group_args: object):
    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False, max_active_runs=max_active_runs)
    def scenario():
        @task
        def done() -> str:
            return "done"

        shop.override(target=target, **group_args)() >> done()

    return scenario()


FAST_RETRY = {"retries": 1, "retry_delay": timedelta(seconds=2)}

shop_dag("shop_duckdb", "duckdb")
shop_dag("shop_postgres", "postgres")
# Retries on: a killed producer finishes the run, consumers rebuild what it did not build.
shop_dag("shop_retry_duckdb", "duckdb", operator_args=FAST_RETRY, setup_operator_args=FAST_RETRY)
shop_dag("shop_retry_postgres", "postgres_b", operator_args=FAST_RETRY, setup_operator_args=FAST_RETRY)
shop_dag("shop_resume", "duckdb", producer_retry="resume")
shop_dag("shop_overlap", "postgres", max_active_runs=2)
shop_dag("shop_unreachable", "postgres_unreachable")
shop_dag("shop_timeout", "duckdb", timeout=20)
