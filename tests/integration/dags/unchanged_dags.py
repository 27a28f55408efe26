"""skip_unchanged in the real stack: the example group on copies of its project that the test edits between
runs (projects/unchanged_duckdb and projects/unchanged_postgres, made by the suite's workspace)."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag
from jaffle_shop_dag import jaffle_shop


def unchanged_dag(target: str) -> None:
    @dag(
        dag_id=f"unchanged_{target}",
        schedule=None,
        start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
        catchup=False,
        max_active_runs=1,
    )
    def unchanged() -> None:
        jaffle_shop.override(
            group_id="jaffle",
            project_dir=f"../projects/unchanged_{target}",
            target=target,
            skip_unchanged=True,
            # A full-refresh run from the trigger form (conf {"full_refresh": true}).
            full_refresh="{{ dag_run.conf.get('full_refresh', False) }}",
            # Its own warehouse: a DuckDB file and a PostgreSQL schema (and asset URIs) of its own.
            env={"JAFFLE_DUCKDB_PATH": "unchanged.duckdb", "JAFFLE_PG_SCHEMA": "unchanged"},
            operator_args={"retries": 0},
        )()

    unchanged()


unchanged_dag("duckdb")
unchanged_dag("postgres")
