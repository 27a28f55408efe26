"""Asset-driven runs on upstream data: when new app events land, rebuild only what reads them.

``jaffle_app_ingest`` loads events and emits an asset event for the ``app.events`` dbt source.
``jaffle_app_events`` is scheduled on the group's source assets: with ``only_changed_sources`` it
builds only the nodes downstream of the sources that changed (every other consumer ends skipped,
saying why), after ``dbt source freshness`` confirmed the source is fresh enough.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from jaffle_shop_dag import jaffle_shop, load_app_events

events = jaffle_shop.override(group_id="jaffle_events", only_changed_sources=True, source_freshness=True)
START = pendulum.datetime(2026, 1, 1, tz="UTC")


@dag(schedule=None, start_date=START, catchup=False, tags=["dbt-watcher", "example"])
def jaffle_app_ingest():
    @task(outlets=jaffle_shop.source_assets())
    def land_events() -> int:
        return load_app_events(count=20)

    land_events()


@dag(
    schedule=jaffle_shop.source_assets(),
    start_date=START,
    catchup=False,
    max_active_runs=1,
    tags=["dbt-watcher", "example"],
)
def jaffle_app_events():
    events()


jaffle_app_ingest()
jaffle_app_events()
