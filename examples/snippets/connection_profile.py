"""dbt profile from an Airflow connection: no profiles.yml in the repo, no secret in any file.

The connection's password reaches dbt as a DBT_ENV_SECRET_* environment variable, which dbt
scrubs from its logs; the rendered profile lives in a private temporary folder for one run.
"""

from __future__ import annotations

import pendulum
from airflow.sdk import dag

from dbt_watcher import dbt_watcher_group


@dbt_watcher_group(project_dir="../jaffle_shop", connection_id="jaffle_warehouse", threads=8)
def jaffle_shop_on_postgres(): ...


@dag(schedule="@daily", start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def jaffle_shop_from_connection():
    jaffle_shop_on_postgres()


jaffle_shop_from_connection()
