import time


def model(dbt, session):
    # DuckDB only: sleeps `sleep_seconds` (a dbt var, passed through meta in schema.yml).
    dbt.config(materialized="table")
    seconds = dbt.config.meta_get("sleep_seconds", 0)
    time.sleep(float(seconds or 0))
    return dbt.ref("stg_orders")
