"""The example project under Cosmos' names (CosmosTranslator, Cosmos' default layout after_each)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from dbt_watcher import CosmosTranslator, dbt_watcher_group


@dbt_watcher_group(project_dir="../jaffle_shop", test_behavior="after_each", translator=CosmosTranslator())
def jaffle_shop() -> None: ...


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def jaffle_shop_cosmos_names() -> None:
    jaffle_shop()


jaffle_shop_cosmos_names()
