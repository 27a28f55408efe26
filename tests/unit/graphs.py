"""Small hand-made dbt graphs for unit tests (no dbt involved)."""

from __future__ import annotations

from dbt_watcher.invocation.target import Target
from dbt_watcher.project.graph import DbtNode, ProjectGraph, Relation

DUCKDB = Target(adapter_type="duckdb", profile_name="p", target_name="dev", database="shop", schema="main", threads=4)


def model(name: str, *parents: str, package: str = "shop", materialized: str = "table", **kw: object) -> DbtNode:
    return DbtNode(
        unique_id=f"model.{package}.{name}",
        resource_type="model",
        name=name,
        package=package,
        fqn=(package, name),
        depends_on=tuple(parents),
        materialized=materialized,
        relation=Relation("shop", "main", name),
        **kw,  # type: ignore[arg-type]
    )


def dbt_test(name: str, *parents: str, attached: str | None = None) -> DbtNode:
    return DbtNode(
        unique_id=f"test.shop.{name}.abc",
        resource_type="test",
        name=name,
        package="shop",
        fqn=("shop", name),
        depends_on=tuple(parents),
        materialized="test",
        attached_node=attached,
    )


def graph(*nodes: DbtNode, selected: set[str] | None = None, target: Target = DUCKDB) -> ProjectGraph:
    by_id = {n.unique_id: n for n in nodes}
    return ProjectGraph("shop", by_id, frozenset(selected if selected is not None else by_id), target)
