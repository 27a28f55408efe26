"""The queue layout docs/deployment.md recommends, on the `shop` project, for the CeleryExecutor test.

* the producer on the ``dbt`` queue (workers that have dbt and warehouse access);
* deferrable consumers wait in the triggerer; a consumer needs a worker only to rebuild its own
  node on a retry, and that rebuild goes to the ``dbt`` queue too (``consumer_retry_queue``);
* artifacts are copied to shared storage, so ``report`` can read run_results.json on any worker.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta
from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import ObjectStoragePath, dag, task

from dbt_watcher import dbt_watcher_group

if TYPE_CHECKING:
    from airflow.sdk import Context
    from airflow.sdk.types import DagRunProtocol
    from typing_extensions import Unpack

DBT_QUEUE = "dbt"


@dbt_watcher_group(
    project_dir="../projects/shop",
    target="postgres",
    threads=4,
    setup_operator_args={"queue": DBT_QUEUE},
    consumer_retry_queue=DBT_QUEUE,
    operator_args={"retries": 1, "retry_delay": timedelta(seconds=1)},
    artifacts_url=os.environ.get("DBTW_SHARED_ARTIFACTS", "file:///tmp/dbt-watcher-shared"),
)
def shop(dag_run: DagRunProtocol | None = None) -> dict[str, object]:
    return {"vars": dict(dag_run.conf or {}) if dag_run is not None else {}}


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def shop_celery() -> None:
    @task(trigger_rule="all_done")
    def report(**context: Unpack[Context]) -> dict[str, str]:
        # The run's dbt arguments and artifacts location, written when dbt started (also when the build fails).
        where = context["ti"].xcom_pull(task_ids="shop.dbt_producer", key="dbt_watcher.invocation")["artifacts"]
        results = json.loads((ObjectStoragePath(where) / "run_results.json").read_text())["results"]
        return {r["unique_id"]: r["status"] for r in results}

    shop() >> report()


shop_celery()
