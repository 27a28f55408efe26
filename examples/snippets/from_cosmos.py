"""AFTER: examples/migration/cosmos_dag.py (a Cosmos 1.15 watcher DAG) on dbt-watcher.

The import and the group change; ``translator=CosmosTranslator()`` keeps Cosmos' task ids
(``jaffle_shop.stg_orders.run``, ``jaffle_shop.raw_customers_seed``, ``jaffle_shop.dbt_producer_watcher``)
and asset URIs, so sensors, ``xcom_pull`` calls and asset-scheduled DAGs that name them keep working.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from dbt_watcher import CosmosTranslator, dbt_watcher_group


@dbt_watcher_group(
    project_dir="../jaffle_shop",
    target="duckdb",
    test_behavior="after_each",  # Cosmos' default (its RenderConfig.test_behavior); the names follow it
    translator=CosmosTranslator(),
)
def jaffle_shop(): ...


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def jaffle_shop_from_cosmos():
    jaffle_shop()


jaffle_shop_from_cosmos()
