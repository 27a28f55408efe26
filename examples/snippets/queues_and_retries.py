"""Queues and retries for a distributed deployment (CeleryExecutor or KubernetesExecutor).

* the producer (the one process that runs dbt) on workers sized for dbt: ``setup_operator_args``;
* deferrable consumers need a worker only to rebuild their own node on a retry:
  ``consumer_retry_queue`` sends those rebuilds to a queue of their own;
* ``producer_retry="resume"``: a retry or clear of the producer rebuilds, in one dbt invocation,
  only what failed or never ran.
"""

from __future__ import annotations

from datetime import timedelta

import pendulum
from airflow.sdk import dag

from dbt_watcher import dbt_watcher_group


@dbt_watcher_group(
    project_dir="../jaffle_shop",
    threads=16,
    setup_operator_args={"queue": "dbt", "retries": 2, "execution_timeout": timedelta(hours=2)},
    consumer_retry_queue="dbt-retries",
    operator_args={"retries": 2, "retry_delay": timedelta(minutes=1)},
    producer_retry="resume",
)
def jaffle_shop_distributed(): ...


@dag(schedule="@hourly", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_runs=1)
def jaffle_shop_on_celery():
    jaffle_shop_distributed()


jaffle_shop_on_celery()
