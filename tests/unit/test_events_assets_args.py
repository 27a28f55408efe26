from __future__ import annotations

import pytest

from dbt_watcher.assets import relation_uri, status_asset
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.events import node_result_from_event
from dbt_watcher.graph import Relation, Target
from dbt_watcher.run_args import RunArguments, call_hook

FINISHED_EVENT = {
    "node_info": {
        "unique_id": "model.shop.orders",
        "resource_type": "model",
        "node_started_at": "2026-11-25T06:38:04.876556",
        "node_finished_at": "2026-11-25T06:38:04.946050",
        "node_relation": {"relation_name": '"shop"."main"."orders"'},
    },
    "run_result": {
        "status": "success",
        "message": "SELECT 42",
        "timing_info": [
            {"name": "compile", "started_at": "2026-11-25T06:38:04.8777Z", "completed_at": "2026-11-25T06:38:04.883Z"},
            {"name": "execute", "started_at": "2026-11-25T06:38:04.8834Z", "completed_at": "2026-11-25T06:38:04.945Z"},
        ],
        "execution_time": 0.068716526,
        "adapter_response": {"_message": "SELECT 42", "code": "SELECT", "rows_affected": 42.0},
    },
}


def test_node_finished_event_becomes_a_typed_result() -> None:
    r = node_result_from_event(FINISHED_EVENT)
    assert r.unique_id == "model.shop.orders" and r.succeeded
    assert r.rows_affected == 42 and r.adapter_code == "SELECT"
    assert r.completed_at == "2026-11-25T06:38:04.945000+00:00"
    assert r.execution_time == 0.0687
    assert r.asset_extra()["rows_affected"] == 42


def test_skipped_node_without_timing_gets_a_completion_time() -> None:
    r = node_result_from_event({"node_info": {"unique_id": "m", "node_status": "skipped"}, "run_result": {}})
    assert r.skipped and r.completed_at is not None


def test_asset_uris_follow_the_documented_scheme() -> None:
    pg = Target("postgres", "p", "t", host="db.example", port=5433, database="wh", schema="analytics")
    assert relation_uri(pg, Relation("wh", "analytics", "orders")) == "postgres://db.example:5433/wh/analytics/orders"
    duck = Target("duckdb", "p", "t", database="jaffle", schema="main")
    assert relation_uri(duck, Relation("jaffle", "main", "orders")) == "duckdb://jaffle/main/orders"
    other = Target("snowflake", "p", "t", database="DB")
    assert relation_uri(other, Relation("DB", "S", "T")) == "snowflake://DB/DB/S/T"


def test_status_asset_is_per_dag_and_group() -> None:
    a, b = status_asset("dag", "g1"), status_asset("dag", "g2")
    assert a.name != b.name and a.uri.startswith("dbt-watcher://status/dag/")


def test_hook_receives_context_keys_and_call_arguments() -> None:
    def hook(ds: str, region: str, unused: int = 1) -> dict[str, object]:
        return {"vars": {"day": ds, "region": region}, "full_refresh": True}

    returned = call_hook(hook, {"ds": "2026-01-01", "params": {}}, {"region": "eu"})
    merged = RunArguments(vars={"a": 1}).merged_with(returned)
    assert merged.vars == {"a": 1, "day": "2026-01-01", "region": "eu"} and merged.full_refresh


def test_hook_with_kwargs_gets_everything_and_bad_returns_are_named() -> None:
    assert call_hook(lambda **ctx: ctx["ds"], {"ds": "x"}, {}) == "x"
    with pytest.raises(ConfigurationError, match="unknown key"):
        RunArguments().merged_with({"select": "x"})
    with pytest.raises(ConfigurationError, match="needs missing_param"):
        call_hook(lambda missing_param: None, {"ds": "x"}, {})


def test_run_arguments_round_trip() -> None:
    args = RunArguments(vars={"x": 1}, full_refresh=True, dbt_args=("--fail-fast",))
    assert RunArguments.from_json(args.to_json()) == args
    assert RunArguments.from_json(None) is None
