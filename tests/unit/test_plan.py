from __future__ import annotations

import logging
from dataclasses import replace

import pytest

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.group.plan import assign_task_ids, build_plan
from dbt_watcher.invocation.selection import TestFacts
from dbt_watcher.project.graph import DbtNode
from dbt_watcher.rules.gating import gated_node, gating
from dbt_watcher.rules.translator import DEFAULT_TRANSLATOR

from .graphs import dbt_test, graph, model


def test_consumers_follow_dbt_lineage_in_dependency_order() -> None:
    plan = build_plan(
        graph(
            model("stg"),
            model("mart", "model.shop.stg"),
            model("report", "model.shop.mart", "model.shop.stg"),
        )
    )
    assert [c.task_id for c in plan.consumers] == ["stg", "mart", "report"]
    assert plan.find("report").upstream == ("mart", "stg")
    assert plan.find("stg").upstream == ()


def test_lineage_passes_through_ephemeral_models_which_get_no_task() -> None:
    plan = build_plan(
        graph(
            model("a"),
            model("eph", "model.shop.a", materialized="ephemeral"),
            model("b", "model.shop.eph"),
        )
    )
    assert [c.task_id for c in plan.consumers] == ["a", "b"]
    assert plan.find("b").upstream == ("a",)
    assert plan.left_out[0][0] == "model.shop.eph"


def test_unselected_parents_are_not_upstream() -> None:
    g = graph(model("a"), model("b", "model.shop.a"), selected={"model.shop.b"})
    plan = build_plan(g)
    assert [c.task_id for c in plan.consumers] == ["b"]
    assert plan.find("b").upstream == ()


def test_tests_attach_to_their_model_and_multi_parent_tests_attach_once() -> None:
    plan = build_plan(
        graph(
            model("customers"),
            model("orders", "model.shop.customers"),
            dbt_test("unique_orders_id", "model.shop.orders", attached="model.shop.orders"),
            dbt_test("relationships", "model.shop.customers", "model.shop.orders", attached="model.shop.orders"),
            dbt_test("custom_check", "model.shop.customers", "model.shop.orders"),
        )
    )
    assert plan.find("orders").tests == (
        "test.shop.custom_check.abc",
        "test.shop.relationships.abc",
        "test.shop.unique_orders_id.abc",
    )
    assert plan.find("customers").tests == ()


def test_a_test_written_on_a_source_gates_no_consumer_even_when_it_reads_a_model() -> None:
    # a relationships test on a source column `to: ref('orders')`: dbt attaches it to no node
    source_test = dbt_test("source_relationships", "source.shop.raw.payments", "model.shop.orders")
    source_test = replace(source_test, file_key_name="sources.raw")
    plan = build_plan(graph(model("orders"), source_test))
    assert plan.find("orders").tests == ()
    assert plan.unattached_tests == (
        ("test.shop.source_relationships.abc", "it checks the source raw, which has no task"),
    )


def test_the_gating_rule_of_the_plan_and_of_the_run_is_one_rule() -> None:
    consumers = {"model.shop.customers": 0, "model.shop.orders": 1}
    attached = TestFacts("t1", attached_node="model.shop.customers", depends_on=("model.shop.orders",))
    singular = TestFacts("t2", depends_on=("model.shop.customers", "model.shop.orders"), fqn=("shop", "t2"))
    on_source = TestFacts("t3", file_key_name="sources.raw", depends_on=("model.shop.orders",))
    gates, ungated = gating([attached, singular, on_source], consumers)
    assert gates == {
        "model.shop.customers": {"t1": "t1"},
        "model.shop.orders": {"t2": "fqn:shop.t2,resource_type:test"},
    }
    assert set(ungated) == {"t3"}
    assert gated_node(TestFacts("t4", attached_node="model.shop.ephemeral"), consumers)[0] is None


def test_empty_selection_is_a_parse_time_error_naming_the_fix() -> None:
    g = graph(model("a"), selected=set())
    with pytest.raises(ConfigurationError, match="matches no dbt model") as info:
        build_plan(g, selection_text="The selection (select='tag:nope')")
    assert "tag:nope" in str(info.value)
    assert "How to fix" in str(info.value)


def _named(name: str, package: str = "shop", version: str | None = None, rtype: str = "model") -> DbtNode:
    suffix = f".v{version}" if version else ""
    return DbtNode(
        unique_id=f"{rtype}.{package}.{name}{suffix}",
        resource_type=rtype,
        name=name,
        package=package,
        fqn=(package, name),
        version=version,
    )


def test_task_ids_are_valid_unique_and_explainable() -> None:
    nodes = [
        _named("orders", version="1"),
        _named("orders", version="2"),
        _named("weird name!"),
        _named("dup", package="shop"),
        _named("dup", package="lib"),
        _named(DEFAULT_TRANSLATOR.producer_task_id()),
    ]
    ids = assign_task_ids(nodes, reserved={DEFAULT_TRANSLATOR.producer_task_id()})
    assert ids["model.shop.orders.v1"] == "orders_v1"
    assert ids["model.shop.orders.v2"] == "orders_v2"
    assert ids["model.shop.weird name!"] == "weird_name"
    assert ids["model.shop.dup"] == "shop__dup"
    assert ids["model.lib.dup"] == "lib__dup"
    assert (
        ids[f"model.shop.{DEFAULT_TRANSLATOR.producer_task_id()}"] == f"shop__{DEFAULT_TRANSLATOR.producer_task_id()}"
    )
    assert len(set(ids.values())) == len(ids)


def test_very_long_names_are_shortened_with_a_stable_hash() -> None:
    long_name = "x" * 400
    ids = assign_task_ids([_named(long_name)])
    task_id = ids[f"model.shop.{long_name}"]
    assert len(task_id) == 200
    assert task_id == assign_task_ids([_named(long_name)])[f"model.shop.{long_name}"]


def test_selector_string_matches_the_node_alone() -> None:
    node = _named("orders", version="2")
    assert node.selector == "fqn:shop.orders,resource_type:model"


def test_plan_notes_warn_about_groups_too_large_for_their_waiting_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    from dbt_watcher.config import WatcherConfig
    from dbt_watcher.group.notes import plan_notes

    def warnings(n: int, deferrable: bool) -> list[str]:
        g = graph(*(model(f"m{i}") for i in range(n)))
        cfg = WatcherConfig(project_dir=".", threads=4, deferrable=deferrable)
        return [message for level, message in plan_notes(g, build_plan(g), cfg) if level >= logging.WARNING]

    assert warnings(40, deferrable=True) == []
    assert "one worker slot per consumer (40 of them)" in warnings(40, deferrable=False)[0]
    assert warnings(1000, deferrable=True) == []  # the triggerer's default capacity holds them all
    (large,) = warnings(1001, deferrable=True)
    assert "1001 consumers wait in the triggerer" in large and "capacity triggers (1000 here)" in large
    # the configured capacity, not Airflow's default: raised, the warning stops; lowered, it comes sooner
    monkeypatch.setenv("AIRFLOW__TRIGGERER__CAPACITY", "2000")
    assert warnings(1001, deferrable=True) == []
    monkeypatch.setenv("AIRFLOW__TRIGGERER__CAPACITY", "30")
    assert "(30 here)" in warnings(40, deferrable=True)[0]


def test_a_dependency_chain_thousands_deep_plans_without_recursion() -> None:
    # the chain is named against its order: a recursive walk would hit Python's recursion limit
    chain = [model(f"c{i:05d}", *([f"model.shop.c{i + 1:05d}"] if i < 2499 else [])) for i in range(2500)]
    plan = build_plan(graph(*chain))
    assert len(plan.consumers) == 2500 and plan.consumers[0].node.name == "c02499"


def test_a_parse_near_the_dag_import_timeout_is_named_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    from dbt_watcher.group.notes import slow_parse_note

    assert slow_parse_note(11.0) is None  # Airflow's default timeout, 30 s: well within it
    note = slow_parse_note(21.0)
    assert note is not None and "21.0 s of the 30 s" in note
    assert "dbt-watcher prepare" in note and "[core] dagbag_import_timeout" in note
    monkeypatch.setenv("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "120")
    assert slow_parse_note(21.0) is None  # the configured timeout, not Airflow's default
