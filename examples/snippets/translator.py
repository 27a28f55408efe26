"""A translator: one class that changes how dbt nodes become Airflow tasks and Assets.

Override only the methods whose rule should differ; the others keep dbt-watcher's rules.
Here, consumer task ids carry the model's folder, every node tagged ``pii`` runs in a pool of its own
with its owner taken from the dbt project, and Assets use the warehouse's host alias.
"""

from __future__ import annotations

from typing import Any

import pendulum
from airflow.sdk import dag

from dbt_watcher import DbtNode, DbtWatcherTranslator, dbt_watcher_group


class ShopTranslator(DbtWatcherTranslator):
    def task_id(self, node: DbtNode) -> str:
        # fqn is (package, folder..., name): "staging__stg_orders" instead of "stg_orders".
        folders = node.fqn[1:-1]
        return "__".join([*folders, super().task_id(node)])

    def operator_args(self, node: DbtNode) -> dict[str, Any]:
        if "pii" in node.tags:
            return {"pool": "pii", "owner": str(node.airflow_meta.get("owner", "data-protection"))}
        return {}

    def doc_md(self, node: DbtNode) -> str:
        return f"Built by the shop dbt project: `{node.original_file_path}`"


@dbt_watcher_group(project_dir="../jaffle_shop", translator=ShopTranslator())
def jaffle_shop_translated(): ...


@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"), catchup=False)
def jaffle_shop_with_translator():
    jaffle_shop_translated()


jaffle_shop_with_translator()
