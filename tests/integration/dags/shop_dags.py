"""Fault-scenario DAGs on the `shop` test project; dbt vars come from the DAG run's conf.

DuckDB scenarios share one database file: the suite never runs two DuckDB builds at once.
"""

from __future__ import annotations

import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import dag, task

from dbt_watcher import airflow_lines, dbt_watcher_group

if TYPE_CHECKING:
    from airflow.sdk import DAG
    from airflow.sdk.types import DagRunProtocol

START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dbt_watcher_group(project_dir="../projects/shop", threads=4, poke_interval=0.5)
def shop(dag_run: DagRunProtocol | None = None) -> dict[str, object]:
    conf = dict(dag_run.conf or {}) if dag_run is not None else {}
    dbt_args = conf.pop("dbt_args", [])
    marker = conf.pop("hook_fails_once", None)
    if marker and not os.path.exists(marker):  # the producer dies before dbt starts, once
        Path(marker).touch()
        raise RuntimeError("the run-time hook fails on the producer's first try (test)")
    return {"vars": conf, "dbt_args": dbt_args}


def shop_dag(dag_id: str, target: str, max_active_runs: int = 1, **group_args: object) -> DAG:
    @dag(dag_id=dag_id, schedule=None, start_date=START, catchup=False, max_active_runs=max_active_runs)
    def scenario() -> None:
        @task
        def done() -> str:
            return "done"

        shop.override(target=target, **group_args)() >> done()

    return scenario()


FAST_RETRY = {"retries": 1, "retry_delay": timedelta(seconds=2)}
# A producer retry skips what an earlier try built from its Task State Store (Airflow 3.3); below,
# the producer has no retries (docs/installation.md).
PRODUCER_RETRY = FAST_RETRY if airflow_lines.has_task_state_store() else {}

shop_dag("shop_duckdb", "duckdb")
shop_dag("shop_postgres", "postgres")
# Retries on: a killed producer finishes the run, consumers rebuild what it did not build.
shop_dag("shop_retry_duckdb", "duckdb", operator_args=FAST_RETRY, setup_operator_args=PRODUCER_RETRY)
shop_dag("shop_retry_postgres", "postgres_b", operator_args=FAST_RETRY, setup_operator_args=PRODUCER_RETRY)
if airflow_lines.has_task_state_store():
    shop_dag("shop_resume", "duckdb", producer_retry="resume")
shop_dag("shop_overlap", "postgres", max_active_runs=2)
shop_dag("shop_unreachable", "postgres_unreachable")
shop_dag("shop_timeout", "duckdb", timeout=20)
# Run with dag.test() in its own process and metadata database (tests/integration/test_trust.py).
shop_dag("shop_dag_test", "duckdb")
# A microbatch model and its child, three daily batches (the var makes dbt parse them in).
shop_dag(
    "shop_microbatch",
    "duckdb",
    vars={"microbatch": True},
    dbt_args=["--event-time-start", "2026-01-01", "--event-time-end", "2026-01-04"],
)
# Which tests gate a consumer is the run's own (tests/integration/test_run_gating.py): a templated env
# value that enables a test, and a selection run with --indirect-selection cautious.
shop_dag("shop_env", "duckdb", env={"SHOP_STRICT": "{{ dag_run.conf.get('strict_env', '0') }}"})
SELECTED = ["raw_orders", "raw_customers", "stg_orders", "stg_customers"]
shop_dag("shop_selected", "duckdb", select=SELECTED)
shop_dag("shop_selected_postgres", "postgres", select=SELECTED)
shop_dag("shop_cautious", "duckdb", select=SELECTED, dbt_args=["--indirect-selection", "cautious"])
# The producer also runs `dbt docs generate` after the build (tests/integration/test_ui.py).
shop_dag("shop_docs", "duckdb", docs=True)
