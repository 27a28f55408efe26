"""Issue 5 DAGs: test behaviours, source freshness, overrides, callbacks, hooks, another venv,
connections, templating and asset-driven runs, all on the `shop` test project."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import dag

from dbt_watcher import dbt_watcher_group

if TYPE_CHECKING:
    from airflow.sdk import DAG, Context
    from airflow.sdk.types import DagRunProtocol

START = pendulum.datetime(2026, 1, 1, tz="UTC")
MARKERS = Path(os.environ.get("DBT_WATCHER_TEST_MARKERS", "/tmp/dbt-watcher-markers"))


def mark(name: str, payload: object = None) -> None:
    MARKERS.mkdir(parents=True, exist_ok=True)
    (MARKERS / name).write_text(json.dumps(payload, default=str))


@dbt_watcher_group(project_dir="../projects/shop", threads=4, poke_interval=0.5)
def shop(dag_run: DagRunProtocol | None = None) -> dict[str, object]:
    return {"vars": dict(dag_run.conf or {}) if dag_run is not None else {}}


def scenario(
    dag_id: str, *, schedule: object = None, params: dict[str, object] | None = None, **group_args: object
) -> DAG:
    @dag(dag_id=dag_id, schedule=schedule, start_date=START, catchup=False, max_active_runs=1, params=params or {})
    def build() -> None:
        shop.override(**group_args)()

    return build()


scenario("breadth_after_all", test_behavior="after_all")
scenario("breadth_after_each", test_behavior="after_each")
scenario("breadth_no_tests", test_behavior="none")
scenario("breadth_freshness", source_freshness=True)
scenario(
    "breadth_freshness_policy",
    # A policy of our own: even a fresh source counts as stale for this DAG.
    source_freshness=lambda results: {r.unique_id: f"policy says {r.unique_id} is too old" for r in results},
)
scenario(
    "breadth_templated",
    select="{{ params.select }}",
    vars={"marker": "{{ params.marker }}"},
    params={"select": "stg_customers+", "marker": "default"},
)
scenario("breadth_changed_sources", schedule=shop.source_assets(), only_changed_sources=True)


def on_success(context: Context) -> None:
    mark(f"success__{context['ti'].task_id}")


def on_failure(context: Context) -> None:
    mark(f"failure__{context['ti'].task_id}")


def on_retry(context: Context) -> None:
    mark(f"retry__{context['ti'].task_id}")


def list_artifacts(artifacts_dir: Path, context: Context) -> None:
    mark("artifacts", sorted(p.name for p in Path(artifacts_dir).iterdir()))


hooked = shop.override(
    group_id="hooked",
    callback=list_artifacts,
    node_operator_args={
        "tag:none_such": {"pool": "none"},
        "stg_orders+": {"owner": "orders-team"},
        "orders_enriched": {"retries": 1},
    },
    operator_args={
        "on_success_callback": on_success,
        "on_failure_callback": on_failure,
        "on_retry_callback": on_retry,
        "retry_delay": timedelta(seconds=1),
    },
)


@hooked.model("orders_enriched", retries=1)
def publish_orders(result: dict[str, object]) -> None:
    mark("hook_orders_enriched", result)


@dag(dag_id="breadth_hooks", schedule=None, start_date=START, catchup=False, max_active_runs=1)
def breadth_hooks() -> None:
    hooked()


breadth_hooks()

if os.environ.get("DBT_WATCHER_TEST_DBT_EXECUTABLE"):
    scenario("breadth_venv", dbt_executable=os.environ["DBT_WATCHER_TEST_DBT_EXECUTABLE"])

scenario("breadth_connection", connection_id="shop_warehouse", threads=2)


@dbt_watcher_group(project_dir="../projects/shop", threads=4, select="orders_enriched", poke_interval=0.5)
def deferred(dag_run: DagRunProtocol | None = None) -> dict[str, object]:
    # Slim CI's habit: build only what changed, reading unselected parents from a previous run's state.
    assert dag_run is not None  # the producer passes the run's own
    return {"dbt_args": ["--defer", "--state", (dag_run.conf or {})["state"]]}


@dag(dag_id="breadth_defer", schedule=None, start_date=START, catchup=False, max_active_runs=1)
def breadth_defer() -> None:
    deferred()


breadth_defer()
