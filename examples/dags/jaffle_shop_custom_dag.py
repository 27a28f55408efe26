"""The knobs users reach for: tests per model, per-node task settings, a task after one model,
a callback with the artifacts, and a run re-targeted from the trigger form.

* ``test_behavior="after_each"``: each tested model gets a second task watching its dbt tests;
* ``node_operator_args``: task settings by dbt selection (``meta: {airflow: ...}`` in the dbt
  project works too; see ``stg_app_events``);
* ``@jaffle_custom.model("orders")``: a task right after the ``orders`` consumer, given its result;
* ``callback``: called once by the producer with the run's artifacts folder;
* ``select``/``vars``/``full_refresh`` templated from ``params``: set them in the trigger form.
"""

from __future__ import annotations

import json
from pathlib import Path

import pendulum
from airflow.sdk import dag
from jaffle_shop_dag import jaffle_shop


def list_artifacts(artifacts_dir: Path, context) -> None:
    print("artifacts of", context["run_id"], sorted(p.name for p in Path(artifacts_dir).iterdir()))


jaffle_custom = jaffle_shop.override(
    group_id="jaffle_custom",
    test_behavior="after_each",
    node_operator_args={"tag:marts": {"retries": 2, "owner": "marts-team"}, "orders": {"priority_weight": 10}},
    callback=list_artifacts,
    select="{{ params.select }}",
    vars={"run_label": "{{ params.label }}"},
    full_refresh="{{ params.full_refresh }}",
)


@jaffle_custom.model("orders", retries=3)
def publish_orders(result: dict) -> None:
    """Runs right after the `orders` consumer succeeds, with what dbt reported for it."""
    print("orders rebuilt:", json.dumps(result))


@dag(
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,
    params={"select": "+orders", "label": "manual", "full_refresh": False},
    tags=["dbt-watcher", "example"],
)
def jaffle_shop_custom():
    jaffle_custom()


jaffle_shop_custom()
