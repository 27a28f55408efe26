"""Airflow Assets for dbt relations, and the alias through which the producer emits their events.

One table is one asset whoever declares it, so a relation's URI is the one Airflow's own provider
for that warehouse accepts and produces (each provider registers a URI check, ``asset-uris`` in its
``provider.yaml``, that ``Asset(...)`` runs when the provider is installed; a URI it rejects is a
DAG import error). The rules, per dbt adapter type (docs/assets.md has the table):

* ``scheme://authority/part/part...``: the authority is the target's host (with the default port
  the provider adds, so the URI is the same with or without the provider installed), or its
  Snowflake account, BigQuery project, Athena region endpoint;
* the parts are the relation's ``database``, ``schema`` and ``identifier`` — without the database
  where the warehouse has one level fewer (BigQuery's project is the authority; MySQL, Teradata,
  ClickHouse and Spark have no database above the schema);
* DuckDB: ``duckdb://<database>/<schema>/<table>``, where the database is dbt's name for the file
  (its stem). The file's path is left out on purpose: it differs between laptops, CI and production
  while the table is the same;
* any other adapter: ``<adapter>://<host[:port], or database>/<database>/<schema>/<table>``.

No part is ever empty (providers split on ``/`` and count parts). A group's ``translator=`` may name
assets differently (:mod:`dbt_watcher.rules.translator`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal
from urllib.parse import quote

from dbt_watcher.invocation.target import Target
from dbt_watcher.project.graph import Relation

if TYPE_CHECKING:
    from airflow.sdk import AssetAlias

Authority = Literal["host", "account", "project", "athena", "database"]
Level = Literal["database", "schema", "identifier"]
_THREE: tuple[Level, ...] = ("database", "schema", "identifier")
_TWO: tuple[Level, ...] = ("schema", "identifier")


@dataclass(frozen=True)
class UriRule:
    """How one adapter's relations become asset URIs: scheme, what names the server, which levels."""

    scheme: str
    authority: Authority
    default_port: int | None
    levels: tuple[Level, ...]


#: Per dbt adapter type. Schemes, default ports and part counts are those of the providers' URI
#: checks (apache-airflow-providers-postgres 7.1, amazon 9.39 ``redshift``, snowflake 6.20, google
#: 22.8 ``bigquery``, databricks 7.23, trino 6.7, microsoft-mssql 4.7, mysql 6.7, oracle 4.7,
#: teradata 3.7, vertica 4.4) and, for warehouses no provider checks, the OpenLineage naming spec.
URI_RULES: dict[str, UriRule] = {
    "postgres": UriRule("postgres", "host", 5432, _THREE),
    "redshift": UriRule("redshift", "host", 5439, _THREE),
    "snowflake": UriRule("snowflake", "account", None, _THREE),
    "bigquery": UriRule("bigquery", "project", None, _TWO),
    "databricks": UriRule("databricks", "host", None, _THREE),
    "trino": UriRule("trino", "host", 8080, _THREE),
    "sqlserver": UriRule("mssql", "host", 1433, _THREE),
    "fabric": UriRule("fabric-warehouse", "host", None, _THREE),
    "synapse": UriRule("mssql", "host", 1433, _THREE),
    "mysql": UriRule("mysql", "host", 3306, _TWO),
    "mariadb": UriRule("mysql", "host", 3306, _TWO),  # the mysql provider's scheme for both
    "oracle": UriRule("oracle", "host", 1521, _THREE),
    "teradata": UriRule("teradata", "host", 1025, _TWO),
    "vertica": UriRule("vertica", "host", 5433, _THREE),
    "clickhouse": UriRule("clickhouse", "host", 8123, _TWO),
    "spark": UriRule("spark", "host", 443, _TWO),
    "athena": UriRule("awsathena", "athena", None, _THREE),
    "duckdb": UriRule("duckdb", "database", None, _TWO),
}


def relation_uri(target: Target, relation: Relation) -> str:
    """The asset URI of a relation written or read through ``target`` (rules above).

    Raises:
        ValueError: a fact the rule needs is unknown (the target's host, say), so no provider would
            accept the URI; the translator reports it as a ConfigurationError.
    """
    rule = URI_RULES.get(target.adapter_type)
    values = {
        "database": relation.database or target.database,
        "schema": relation.schema or target.schema,
        "identifier": relation.identifier,
    }
    if rule is None:  # an adapter nobody checks: keep every known level, name the server as best we can
        authority = _host(target, None) if target.host else (values["database"] or "default")
        return _uri(target.adapter_type, authority, [values[level] for level in _THREE if values[level]])
    server = _authority(rule, target, values["database"])
    if not server:
        raise ValueError(f"a {rule.scheme} asset URI names the {_AUTHORITY_FACT[rule.authority]}, which is not set")
    missing = [level for level in rule.levels if not values[level]]
    if missing:
        raise ValueError(f"a {rule.scheme} asset URI needs the relation's {' and '.join(missing)}")
    parts = [values[level] for level in rule.levels]
    if rule.scheme == "databricks":  # Unity Catalog names are lower case; the provider lowercases them
        parts = [str(p).lower() for p in parts]
    return _uri(rule.scheme, server, parts)


_AUTHORITY_FACT: dict[Authority, str] = {
    "host": "target's host",
    "account": "target's account",
    "project": "target's project (dbt's database)",
    "athena": "target's region_name",
    "database": "target's database",
}


def _authority(rule: UriRule, target: Target, database: str | None) -> str | None:
    if rule.authority == "host":
        return _host(target, rule.default_port) if target.host else None
    if rule.authority == "account":
        return (target.account or "").lower() or None
    if rule.authority == "athena":
        return f"athena.{target.region}.amazonaws.com" if target.region else None
    return database  # "project" (BigQuery) and "database" (DuckDB)


def _host(target: Target, default_port: int | None) -> str:
    host = str(target.host).strip().lower()
    if ":" in host and not host.startswith("["):  # an IPv6 address, bracketed as in any URL
        host = f"[{host}]"
    port = target.port or default_port
    return f"{host}:{port}" if port else host


def _uri(scheme: str, authority: str, parts: list[str | None]) -> str:
    return f"{scheme}://{quote(authority, safe='.-:[]')}/" + "/".join(quote(str(p), safe="") for p in parts)


def producer_alias(dag_id: str, group_id: str) -> AssetAlias:
    """The alias through which the producer emits the events of nodes consumers end without a worker.

    Named ``dbt-watcher:<dag_id>/<group_id>``: neither id can hold a ``/`` (Airflow's id rule), so no
    two (DAG, group) pairs share an alias.
    """
    from airflow.sdk import AssetAlias

    return AssetAlias(name=f"dbt-watcher:{dag_id}/{group_id}")
