from __future__ import annotations

import pytest

from dbt_watcher.channel.records import Invocation
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.invocation.events import InvocationEvents, node_result_from_event
from dbt_watcher.invocation.target import Target
from dbt_watcher.producer.run_args import call_hook, merge_returned
from dbt_watcher.project.graph import Relation
from dbt_watcher.rules.assets import producer_alias, relation_uri

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
    other = Target("materialize", "p", "t", host="mz.example", port=6875, database="db")
    assert relation_uri(other, Relation(None, "s", "t")) == "materialize://mz.example:6875/db/s/t"


def test_producer_aliases_of_dag_and_group_pairs_never_collide() -> None:
    # "a__b" + "c" and "a" + "b__c" joined with "__" were one name; ids cannot hold "/".
    assert producer_alias("a__b", "c").name != producer_alias("a", "b__c").name
    assert producer_alias("dag", "g1").name == "dbt-watcher:dag/g1"


def test_hook_receives_context_keys_and_call_arguments() -> None:
    def hook(ds: str, region: str, unused: int = 1) -> dict[str, object]:
        return {"vars": {"day": ds, "region": region}, "full_refresh": True}

    returned = call_hook(hook, {"ds": "2026-01-01", "params": {}}, {"region": "eu"})
    merged = merge_returned(Invocation(vars={"a": 1}), returned)
    assert merged.vars == {"a": 1, "day": "2026-01-01", "region": "eu"} and merged.full_refresh


def test_hook_with_kwargs_gets_everything_and_bad_returns_are_named() -> None:
    assert call_hook(lambda **ctx: ctx["ds"], {"ds": "x"}, {}) == "x"
    with pytest.raises(ConfigurationError, match="unknown key"):
        merge_returned(Invocation(), {"select": "x"})
    with pytest.raises(ConfigurationError, match="needs missing_param"):
        call_hook(lambda missing_param: None, {"ds": "x"}, {})
    with pytest.raises(ConfigurationError, match="--select"):
        merge_returned(Invocation(), {"dbt_args": ["--select", "orders"]})  # the group's select= owns it
    with pytest.raises(ConfigurationError, match="vars"):
        merge_returned(Invocation(), {"vars": ["not", "a", "dict"]})


def test_invocation_round_trips_and_rejects_what_is_not_one() -> None:
    args = Invocation(vars={"x": 1}, full_refresh=True, dbt_args=("--fail-fast",), artifacts="/a")
    assert Invocation.from_json(args.to_json()) == args
    assert Invocation.from_json(None) is None and Invocation.from_json({"vars": [1]}) is None


def _event(name: str, uid: str, status: str | None = None) -> tuple[str, dict[str, object]]:
    data: dict[str, object] = {"node_info": {"unique_id": uid, "node_status": status or "started"}}
    if status is not None:
        data["run_result"] = {"status": status}
    return name, data


def test_a_microbatch_model_publishes_only_its_final_status() -> None:
    # dbt >= 1.9 runs each batch through its own NodeStart/NodeFinished pair, nested inside the model's.
    published: list[tuple[str, str]] = []
    started: list[bool] = []
    events = InvocationEvents(
        on_node=lambda r: published.append((r.unique_id, r.status)), on_start=lambda: started.append(True)
    )
    mb = "model.shop.events_mb"
    for name, data in [
        _event("NodeStart", mb),
        _event("NodeStart", mb),
        _event("NodeFinished", mb, "success"),  # batch 1
        _event("NodeStart", mb),
        _event("NodeFinished", mb, "error"),  # batch 2
        _event("NodeFinished", mb, "partial success"),  # the model
        _event("NodeStart", "model.shop.child"),
        _event("NodeFinished", "model.shop.child", "skipped"),
    ]:
        events(name, data)
    assert published == [(mb, "partial success"), ("model.shop.child", "skipped")]
    assert started == [True] and events.batches == 2 and events.failed == {mb: "partial success"}


def test_skip_sources_and_hooks_are_recorded() -> None:
    events = InvocationEvents()
    events("MarkSkippedChildren", {"unique_id": "test.shop.t1", "status": "fail"})
    events("MarkSkippedChildren", {"unique_id": "model.shop.ok", "status": "skipped"})
    events("LogHookEndLine", {"status": "error", "node_info": {"unique_id": "operation.shop.shop-on-run-end-0"}})
    assert events.failed == {"test.shop.t1": "fail"}
    assert events.failed_hooks == ["operation.shop.shop-on-run-end-0"]
