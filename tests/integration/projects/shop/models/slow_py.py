import time


def model(dbt, session):
    # DuckDB only: sleeps `sleep_seconds` (a dbt var, passed through meta in schema.yml). Read as the whole
    # meta: dbt 1.10's meta_get() sees none of the meta schema.yml sets, 1.11 and 1.12 do.
    dbt.config(materialized="table")
    meta = dbt.config.get("meta") or {}
    time.sleep(float(meta.get("sleep_seconds") or 0))
    return dbt.ref("stg_orders")
