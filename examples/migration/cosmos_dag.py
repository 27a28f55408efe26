"""BEFORE: the example project as a Cosmos 1.15 watcher DAG (needs astronomer-cosmos; not loaded by the
test suite). examples/snippets/from_cosmos.py is the same DAG on dbt-watcher, with the same task ids and
asset URIs (docs/migration.md)."""

from __future__ import annotations

from pathlib import Path

import pendulum
from airflow.sdk import dag
from cosmos import (
    DbtTaskGroup,
    ExecutionConfig,
    ExecutionMode,
    ProfileConfig,
    ProjectConfig,
    RenderConfig,
    TestBehavior,
)

PROJECT = Path(__file__).resolve().parent.parent / "jaffle_shop"


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def jaffle_shop_from_cosmos():
    DbtTaskGroup(
        group_id="jaffle_shop",
        project_config=ProjectConfig(dbt_project_path=PROJECT),
        profile_config=ProfileConfig(
            profile_name="jaffle_shop", target_name="duckdb", profiles_yml_filepath=PROJECT / "profiles.yml"
        ),
        execution_config=ExecutionConfig(execution_mode=ExecutionMode.WATCHER),
        render_config=RenderConfig(test_behavior=TestBehavior.AFTER_EACH),
    )


jaffle_shop_from_cosmos()
