"""The example group again, on dbt-postgres (the second adapter), for the integration suite."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pendulum
from airflow.sdk import dag, task
from jaffle_shop_dag import jaffle_shop

if TYPE_CHECKING:
    from airflow.sdk import Context
    from typing_extensions import Unpack


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False, params={"currency": "USD"})
def jaffle_shop_postgres() -> None:
    @task
    def ingest() -> str:
        return "ok"

    ingest() >> jaffle_shop.override(group_id="jaffle_pg", target="postgres", threads=4)()


jaffle_shop_postgres()


PG_ORDERS = jaffle_shop.override(target="postgres").asset("orders")


@dag(schedule=[PG_ORDERS], start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
def jaffle_pg_orders_report() -> None:
    @task
    def summarize(**context: Unpack[Context]) -> None:
        print(context["triggering_asset_events"])

    summarize()


jaffle_pg_orders_report()
