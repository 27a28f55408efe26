"""Run scoping, per-node operator arguments, and profiles rendered from Airflow connections."""

from __future__ import annotations

import os
from datetime import timedelta
from types import SimpleNamespace

import pytest
import yaml

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.group.overrides import node_args, validate, validate_mapping
from dbt_watcher.invocation.connection_profiles import SECRET_PREFIX, profile_outputs
from dbt_watcher.invocation.profiles import environment
from dbt_watcher.invocation.runners import SourceFreshness
from dbt_watcher.producer.narrowing import RunScope, default_freshness_policy
from dbt_watcher.project.graph import ProjectGraph

from .graphs import DUCKDB, model

PASSWORD_ENV = SECRET_PREFIX + "PASSWORD"


def test_scope_keeps_the_first_reason_and_reports_left_out_nodes_as_excluded() -> None:
    scope = RunScope(("a", "b", "c"))
    scope.exclude(["b", "zzz"], "source x is stale")
    scope.keep_only(["a"], "not selected")
    assert scope.excluded == {"b": "source x is stale", "c": "not selected"} and scope.built == ["a"]
    assert {r.unique_id: (r.status, r.message) for r in scope.results()} == {
        "b": ("excluded", "source x is stale"),
        "c": ("excluded", "not selected"),
    }


def test_default_freshness_policy_acts_on_errors_not_warnings() -> None:
    stale = default_freshness_policy(
        [
            SourceFreshness("source.p.s.fresh", "pass"),
            SourceFreshness("source.p.s.late", "warn", age_seconds=100),
            SourceFreshness("source.p.s.old", "error", age_seconds=7200),
            SourceFreshness("source.p.s.missing", "runtime error", message="table not found"),
        ]
    )
    assert set(stale) == {"source.p.s.old", "source.p.s.missing"}
    assert "7200 s ago" in stale["source.p.s.old"] and "table not found" in stale["source.p.s.missing"]


def test_only_safe_operator_arguments_are_accepted_and_durations_may_be_seconds() -> None:
    assert validate({"retries": 3, "retry_delay": 30}, "x") == {"retries": 3, "retry_delay": timedelta(seconds=30)}
    with pytest.raises(ConfigurationError, match="task_id, trigger_rule") as info:
        validate({"task_id": "x", "trigger_rule": "always", "pool": "p"}, "node_operator_args['orders']")
    assert "retries" in info.value.fix
    with pytest.raises(ConfigurationError, match="dict keyed by dbt selection"):
        validate_mapping(["retries"])  # type: ignore[arg-type]


def test_operator_arguments_compose_meta_then_selection_keys_in_order() -> None:
    orders = model("orders", airflow_meta={"retries": 1, "owner": "analytics"})
    graph = ProjectGraph(
        "shop",
        {orders.unique_id: orders},
        frozenset({orders.unique_id}),
        DUCKDB,
        matches={"tag:finance": frozenset({orders.unique_id}), "orders": frozenset({orders.unique_id})},
    )
    mapping = validate_mapping({"tag:finance": {"pool": "finance", "retries": 2}, "orders": {"retries": 5}})
    assert node_args(orders, graph, mapping) == {"retries": 5, "owner": "analytics", "pool": "finance"}


def _conn(**kw: object) -> SimpleNamespace:
    values = {
        "conn_id": "wh",
        "conn_type": "postgres",
        "host": "db",
        "port": 5433,
        "login": "dbt",
        "password": "s3cret",
        "schema": "warehouse",
        "extra_dejson": {"dbt_schema": "analytics"},
    }
    values.update(kw)
    return SimpleNamespace(**values)


def test_a_postgres_connection_becomes_a_profile_without_its_secret() -> None:
    output, secrets = profile_outputs(_conn(), threads=8)
    assert output["host"] == "db" and output["port"] == 5433 and output["dbname"] == "warehouse"
    assert output["schema"] == "analytics" and output["threads"] == 8
    assert "s3cret" not in yaml.safe_dump(output) and secrets == {PASSWORD_ENV: "s3cret"}
    assert PASSWORD_ENV.startswith("DBT_ENV_SECRET_")  # dbt scrubs these from its logs


def test_a_duckdb_connection_and_unsupported_types() -> None:
    output, secrets = profile_outputs(
        _conn(conn_type="duckdb", host=None, extra_dejson={"path": "/data/w.duckdb"}), None
    )
    assert output == {"type": "duckdb", "path": "/data/w.duckdb", "schema": "main"} and secrets == {}
    with pytest.raises(ConfigurationError, match="has no database file"):
        profile_outputs(_conn(conn_type="duckdb", host=None, extra_dejson={}), None)
    with pytest.raises(ConfigurationError, match=r"renders profiles for the connection types .*snowflake"):
        profile_outputs(_conn(conn_type="mysql"), None)


def test_environment_is_restored_after_the_invocation() -> None:
    os.environ.pop(PASSWORD_ENV, None)
    with environment({PASSWORD_ENV: "x"}):
        assert os.environ[PASSWORD_ENV] == "x"
    assert PASSWORD_ENV not in os.environ


def test_openlineage_dataset_names_follow_the_asset_uris() -> None:
    from dbt_watcher.rules.lineage import NodeLineage, dataset_name, operator_lineage

    assert dataset_name("postgres://db:5432/wh/analytics/orders") == ("postgres://db:5432", "wh.analytics.orders")
    assert dataset_name("duckdb://shop/main/orders") == ("duckdb://shop", "shop.main.orders")
    node = NodeLineage(("duckdb://shop/main/stg",), "duckdb://shop/main/orders")
    lineage = operator_lineage(node, None, "model.shop.orders")
    assert [d.name for d in lineage.inputs] == ["shop.main.stg"] and [d.name for d in lineage.outputs] == [
        "shop.main.orders"
    ]
