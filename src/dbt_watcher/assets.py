"""Airflow Assets for dbt relations, and the asset that carries a group's status channel.

URI scheme (stable; documented in docs/assets.md):

* PostgreSQL: ``postgres://<host>:<port>/<database>/<schema>/<table>`` — the form Airflow's
  Postgres provider and OpenLineage use, so assets match those made by other tools;
* DuckDB: ``duckdb://<database>/<schema>/<table>``, where ``<database>`` is dbt's database name
  for the file (its stem, e.g. ``jaffle_shop`` for ``jaffle_shop.duckdb``). The file's path is
  left out on purpose: it differs between laptops, CI and production while the table is the same;
* any other adapter: ``<adapter>://<host or database>/<database>/<schema>/<table>``.

The producer emits the events of consumers that end in the triggerer through one AssetAlias per
(DAG, group), :func:`producer_alias`.

The asset's name is its URI, so one table is one asset whoever declares it. A group's
``translator=`` may name assets differently (:mod:`dbt_watcher.translator`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import quote

from dbt_watcher.project.graph import Relation, Target

if TYPE_CHECKING:
    from airflow.sdk import AssetAlias


def relation_uri(target: Target, relation: Relation) -> str:
    database = relation.database or target.database or ""
    schema = relation.schema or target.schema or ""
    parts = "/".join(quote(p, safe="") for p in (database, schema, relation.identifier))
    adapter = target.adapter_type
    if adapter == "postgres":
        return f"postgres://{target.host or 'localhost'}:{target.port or 5432}/{parts}"
    if adapter == "duckdb":
        return f"duckdb://{parts}"
    authority = target.host or database or "default"
    return f"{adapter}://{quote(authority, safe='.-')}/{parts}"


def producer_alias(dag_id: str, group_id: str) -> AssetAlias:
    """The alias through which the producer emits the events of nodes consumers end without a worker.

    Named ``dbt-watcher:<dag_id>/<group_id>``: neither id can hold a ``/`` (Airflow's id rule), so no
    two (DAG, group) pairs share an alias.
    """
    from airflow.sdk import AssetAlias

    return AssetAlias(name=f"dbt-watcher:{dag_id}/{group_id}")
