"""A daily run that builds only what changed since its last successful build (docs/skip-unchanged.md).

Unchanged models end skipped, "unchanged since run <run id> (built <time>)", and emit no asset event; a
run triggered with ``{"full_refresh": true}`` builds everything.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from dbt_watcher import dbt_watcher_group


@dbt_watcher_group(
    project_dir="../jaffle_shop",
    skip_unchanged=True,
    full_refresh="{{ dag_run.conf.get('full_refresh', False) }}",
)
def jaffle_shop_incremental(): ...


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, max_active_runs=1)
def jaffle_shop_daily_unchanged():
    jaffle_shop_incremental()


jaffle_shop_daily_unchanged()
