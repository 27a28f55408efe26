"""A DAG scheduled on a dbt model: it runs whenever dbt-watcher reports `orders` rebuilt."""

from __future__ import annotations

import pendulum
from airflow.sdk import dag, task
from jaffle_shop_dag import jaffle_shop

ORDERS = jaffle_shop.asset("orders")


@dag(
    schedule=[ORDERS],
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    tags=["dbt-watcher", "example"],
)
def jaffle_orders_report():
    @task
    def summarize(**context) -> dict:
        events = context["triggering_asset_events"][ORDERS]
        extra = events[-1].extra if events else {}
        print("orders rebuilt:", extra)
        return dict(extra)

    summarize()


jaffle_orders_report()
