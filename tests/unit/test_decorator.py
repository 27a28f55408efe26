"""Rendering: the decorator turns the example project into the expected TaskGroup."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
from airflow.sdk import DAG, dag, task

from dbt_watcher import ConfigurationError, airflow_lines, dbt_watcher_group
from dbt_watcher.consumer.operator import DbtConsumerOperator
from dbt_watcher.producer.operator import DbtProducerOperator
from tests.airflow_line import DagSerialization

from ..conftest import JAFFLE_SHOP

if TYPE_CHECKING:
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk.types import Operator

    from dbt_watcher.invocation.target import Target
    from dbt_watcher.project.graph import DbtNode, Relation

START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)


@pytest.fixture(autouse=True)
def _cache(cache_dir: Path) -> None:
    """Every test here shares the example project's parse through the cache dir."""


@dbt_watcher_group(project_dir=str(JAFFLE_SHOP), threads=2, setup_operator_args={"queue": "dbt"})
def jaffle_shop() -> None: ...


def trigger_kwargs(task: Operator) -> dict[str, Any]:
    """What a task that starts in the triggerer hands its trigger."""
    assert task.start_trigger_args is not None and task.start_trigger_args.trigger_kwargs is not None
    return task.start_trigger_args.trigger_kwargs


def test_group_renders_producer_and_one_consumer_per_built_node() -> None:
    with DAG("render", schedule=None, start_date=START) as d:
        group = jaffle_shop()
    assert group.group_id == "jaffle_shop"
    ids = set(d.task_dict)
    assert "jaffle_shop.dbt_producer" in ids
    for name in ("raw_orders", "stg_orders", "orders", "customers_snapshot", "customer_lifetime_value"):
        assert f"jaffle_shop.{name}" in ids
    assert len(group.consumers) == 18  # 4 seeds, 13 models, 1 snapshot
    assert not any(t.endswith("not_null_orders_order_id") for t in ids)  # tests run inside the build
    orders = d.task_dict["jaffle_shop.orders"]
    assert orders.upstream_task_ids == {"jaffle_shop.stg_orders", "jaffle_shop.int_order_payments"}


def test_producer_gets_setup_operator_args_and_consumers_do_not() -> None:
    with DAG("queues", schedule=None, start_date=START) as d:
        jaffle_shop()
    assert d.task_dict["jaffle_shop.dbt_producer"].queue == "dbt"
    assert d.task_dict["jaffle_shop.orders"].queue != "dbt"


def test_deferrable_consumers_start_in_the_triggerer_and_wait_eagerly() -> None:
    with DAG("eager", schedule=None, start_date=START) as d:
        group = jaffle_shop()
    assert group.plan is not None
    orders = d.task_dict["jaffle_shop.orders"]
    raw = d.task_dict["jaffle_shop.raw_orders"]
    assert isinstance(orders, DbtConsumerOperator) and orders.start_from_trigger
    assert orders.trigger_rule == "always" and raw.trigger_rule == "all_success"
    kwargs = trigger_kwargs(orders)
    assert kwargs["node"] == "model.jaffle_shop.orders"
    assert kwargs["upstream"] == ["jaffle_shop.int_order_payments", "jaffle_shop.stg_orders"]
    assert kwargs["gated"] is True  # by the tests the run's dbt invocation selects for its node
    assert any("unique_orders_order_id" in t for t in group.plan.find("orders").tests)  # what render expects


def test_the_dag_serializes_for_the_scheduler() -> None:
    with DAG("serialize", schedule=None, start_date=START) as d:
        jaffle_shop()
    data = DagSerialization.to_dict(d)
    restored = DagSerialization.from_dict(data)
    task_ = restored.get_task("jaffle_shop.orders")
    assert task_.start_from_trigger
    assert task_.start_trigger_args is not None
    assert task_.start_trigger_args.trigger_cls == "dbt_watcher.consumer.trigger.ConsumerTrigger"
    audit = restored.get_task("jaffle_shop.dbt_audit")
    assert audit.start_trigger_args is not None
    assert (
        audit.start_from_trigger and audit.start_trigger_args.trigger_cls == "dbt_watcher.consumer.audit.AuditTrigger"
    )


@pytest.mark.skipif(not airflow_lines.has_triggerer_workloads(), reason="the triggerer ships no DAG before Airflow 3.3")
def test_a_consumer_started_in_the_triggerer_lets_go_of_its_dag() -> None:
    """Built the way Airflow's triggerer builds it; afterwards nothing holds the DAG copy."""
    import gc
    import uuid
    import weakref

    from airflow.executors.workloads.task import TaskInstanceDTO
    from airflow.jobs.triggerer_job_runner import TriggerRunner

    from dbt_watcher.consumer.trigger import ConsumerTrigger

    with DAG("release", schedule=None, start_date=START) as d:
        jaffle_shop()
    data = DagSerialization.to_dict(d)
    ti = TaskInstanceDTO(
        id=uuid.uuid4(),
        task_id="jaffle_shop.orders",
        dag_id="release",
        run_id="r1",
        try_number=1,
        dag_version_id=uuid.uuid4(),
        pool_slots=1,
        priority_weight=1,
    )
    run = {
        "dag_id": "release",
        "run_id": "r1",
        "logical_date": START,
        "data_interval_start": START,
        "data_interval_end": START,
        "run_after": START,
        "start_date": START,
        "end_date": None,
        "run_type": "manual",
        "state": "running",
        "consumed_asset_events": [],
        "partition_key": None,
    }
    runtime_ti = TriggerRunner.create_runtime_ti(ti, data, run)
    context = runtime_ti.get_template_context()
    dag_copy = weakref.ref(runtime_ti.task.dag)
    trigger = ConsumerTrigger(**trigger_kwargs(d.task_dict["jaffle_shop.orders"]))
    # as Airflow's triggerer does; BaseTrigger declares the database model, TaskInstance
    trigger.task_instance = cast("TaskInstance", runtime_ti)
    trigger.render_template_fields(context=context)
    del context
    gc.collect()
    assert dag_copy() is None
    assert trigger.run_key() == ("dbt-watcher", "release", "r1", -1, "jaffle_shop.dbt_producer")


def test_works_with_shift_operators_on_both_sides_inside_a_taskflow_dag() -> None:
    @dag(schedule=None, start_date=START)
    def flow() -> None:
        @task
        def before() -> int:
            return 1

        @task
        def after() -> None: ...

        before() >> jaffle_shop() >> after()

    d = flow()
    assert "before" in d.task_dict["jaffle_shop.dbt_producer"].upstream_task_ids
    assert "before" in d.task_dict["jaffle_shop.raw_orders"].upstream_task_ids
    assert "jaffle_shop.customer_lifetime_value" in d.task_dict["after"].upstream_task_ids
    assert "jaffle_shop.dbt_producer" in d.task_dict["after"].upstream_task_ids


def test_override_changes_one_use_only() -> None:
    with DAG("override", schedule=None, start_date=START) as d:
        full = jaffle_shop()
        marts = jaffle_shop.override(group_id="marts_only", select="tag:marts")()
    assert len(full.consumers) == 18 and len(marts.consumers) == 5
    assert "marts_only.orders" in d.task_dict
    assert jaffle_shop.config.select is None


def test_assets_are_emitted_per_model_and_reachable_at_parse_time() -> None:
    with DAG("assets", schedule=None, start_date=START) as d:
        group = jaffle_shop()
    asset = group.asset("orders")
    assert asset.uri == "duckdb://jaffle_shop/main/orders"
    assert jaffle_shop.asset("orders") == asset
    assert d.task_dict["jaffle_shop.orders"].outlets == [asset]
    producer = d.task_dict["jaffle_shop.dbt_producer"]
    assert isinstance(producer, DbtProducerOperator) and sum(c.producer_emits for c in producer.consumers) == 18
    orders_plan = next(c for c in producer.consumers if c.task_id == "jaffle_shop.orders")
    assert orders_plan.lineage.output == "duckdb://jaffle_shop/main/orders"
    assert orders_plan.lineage.inputs == (
        "duckdb://jaffle_shop/main/int_order_payments",
        "duckdb://jaffle_shop/main/stg_orders",
    )


def test_emit_assets_false_and_non_deferrable() -> None:
    with DAG("plain", schedule=None, start_date=START) as d:
        jaffle_shop.override(emit_assets=False, deferrable=False)()
    orders = d.task_dict["jaffle_shop.orders"]
    assert orders.outlets == [] and not orders.start_from_trigger and orders.trigger_rule == "none_failed"
    producer = d.task_dict["jaffle_shop.dbt_producer"]
    assert isinstance(producer, DbtProducerOperator)
    assert producer.alias is None and not any(c.producer_emits for c in producer.consumers)


def test_calling_outside_a_dag_and_bad_parameters_are_clear_errors() -> None:
    with pytest.raises(ConfigurationError, match="outside a DAG"):
        jaffle_shop()
    # the signature is explicit (mypy names an unknown or missing parameter statically); at run time a
    # misspelt or Cosmos-style keyword gets a suggestion, still as the TypeError Python would raise
    with pytest.raises(TypeError, match="thread") as typo:
        dbt_watcher_group(project_dir=str(JAFFLE_SHOP), thread=4)  # type: ignore[call-arg]
    assert isinstance(typo.value, ConfigurationError) and "did you mean threads= instead of thread=?" in typo.value.fix
    with pytest.raises(ConfigurationError, match="render_config") as cosmos:
        dbt_watcher_group(project_dir=str(JAFFLE_SHOP), render_config=object())  # type: ignore[call-arg]
    assert "select=" in cosmos.value.fix and "docs/parameters.md" in cosmos.value.fix
    with pytest.raises(TypeError, match="keyword arguments only"):
        dbt_watcher_group(str(JAFFLE_SHOP))  # type: ignore[misc]
    with pytest.raises(TypeError, match="project_dir"):
        dbt_watcher_group(threads=4)  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="poke_interval"):
        jaffle_shop.override(poke_interval=0)
    with pytest.raises(ConfigurationError, match=r"unknown parameter.*pokeinterval") as override:
        jaffle_shop.override(pokeinterval=1)
    assert "did you mean poke_interval=" in override.value.fix


def test_missing_project_is_an_import_time_error(tmp_path: Path) -> None:
    @dbt_watcher_group(project_dir=str(tmp_path / "missing"))
    def ghost() -> None: ...

    with DAG("ghost", schedule=None, start_date=START), pytest.raises(ConfigurationError, match="does not exist"):
        ghost()


def test_empty_selection_is_an_import_time_error() -> None:
    with DAG("empty", schedule=None, start_date=START), pytest.raises(ConfigurationError, match="matches no dbt"):
        jaffle_shop.override(select="tag:does_not_exist")()


SHOP = JAFFLE_SHOP.parent.parent / "tests" / "integration" / "projects" / "shop"


@dbt_watcher_group(project_dir=str(SHOP))
def shop() -> None: ...


def test_after_all_runs_the_tests_once_after_every_consumer() -> None:
    with DAG("after_all", schedule=None, start_date=START) as d:
        jaffle_shop.override(test_behavior="after_all")()
    tests = d.task_dict["jaffle_shop.dbt_tests"]
    assert len(tests.upstream_task_ids) == 18
    assert trigger_kwargs(d.task_dict["jaffle_shop.orders"])["gated"] is False


def test_after_each_adds_a_real_test_watcher_per_tested_model() -> None:
    with DAG("after_each", schedule=None, start_date=START) as d:
        jaffle_shop.override(test_behavior="after_each")()
    watcher = d.task_dict["jaffle_shop.orders_tests"]
    assert isinstance(watcher, DbtConsumerOperator) and watcher.watches_tests_only
    assert watcher.upstream_task_ids == {"jaffle_shop.orders"} and watcher.watch.gated
    orders = d.task_dict["jaffle_shop.orders"]
    assert isinstance(orders, DbtConsumerOperator)
    assert not orders.watch.gated
    assert "jaffle_shop.raw_orders_tests" not in d.task_dict  # seeds without tests get no watcher
    with pytest.raises(ConfigurationError, match="test_behavior"):
        jaffle_shop.override(test_behavior="sometimes")


def test_per_node_arguments_come_from_selection_keys_and_dbt_meta() -> None:
    overrides = {"tag:marts": {"pool": "marts", "retries": 2}, "orders": {"retries": 7}}
    with DAG("overrides", schedule=None, start_date=START) as d:
        jaffle_shop.override(node_operator_args=overrides, operator_args={"owner": "team"})()
    assert d.task_dict["jaffle_shop.orders"].retries == 7 and d.task_dict["jaffle_shop.orders"].pool == "marts"
    assert d.task_dict["jaffle_shop.customers"].retries == 2 and d.task_dict["jaffle_shop.customers"].owner == "team"
    assert d.task_dict["jaffle_shop.stg_orders"].pool != "marts"
    with pytest.raises(ConfigurationError, match="trigger_rule"):
        jaffle_shop.override(node_operator_args={"orders": {"trigger_rule": "always"}}).load()


def test_a_model_hook_runs_right_after_its_consumer_with_the_result() -> None:
    hooked = jaffle_shop.override(group_id="hooked")

    @hooked.model("orders", retries=3)
    def publish_orders(result: dict[str, object]) -> None: ...

    with DAG("hooks", schedule=None, start_date=START) as d:
        hooked()
    task_ = d.task_dict["hooked.publish_orders"]
    assert task_.upstream_task_ids == {"hooked.orders"} and task_.retries == 3
    assert not jaffle_shop.hooks  # registering on an override leaves the original alone


def test_sources_templated_select_and_freshness_settings_reach_the_producer() -> None:
    with DAG("sources", schedule=None, start_date=START) as d:
        group = shop.override(select="{{ params.select }}", source_freshness=True, only_changed_sources=True)()
    assert [a.uri for a in group.source_assets()] == ["duckdb://shop/main/raw_events"]
    assert shop.source_assets() == group.source_assets()
    producer = d.task_dict["shop.dbt_producer"]
    assert isinstance(producer, DbtProducerOperator)
    assert producer.dbt_select == "{{ params.select }}"  # rendered by Airflow at run time
    assert len(group.consumers) == 14  # a templated select renders every node
    rt = producer.runtime
    assert rt.freshness_sources_by_id == {"source.shop.raw.events": "source:raw.events"}
    assert rt.source_selectors_by_uri == {"duckdb://shop/main/raw_events": "source:raw.events"}


def test_a_connection_replaces_profiles_yml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AIRFLOW_CONN_WAREHOUSE", f'{{"conn_type": "duckdb", "host": "{tmp_path / "w.duckdb"}"}}')
    with DAG("conn", schedule=None, start_date=START):
        group = jaffle_shop.override(group_id="conn", connection_id="warehouse")()
    assert group.asset("orders").uri == "duckdb://w/main/orders"
    assert group.producer is not None and group.producer.runtime.config.connection_id == "warehouse"


def test_a_translator_changes_one_rule_and_keeps_the_others() -> None:
    from dbt_watcher.rules.translator import DbtWatcherTranslator

    class Prefixed(DbtWatcherTranslator):
        def task_id(self, node: DbtNode) -> str:
            return f"dbt_{node.name}"

        def asset_uri(self, target: Target, relation: Relation) -> str:
            return f"warehouse://analytics/{relation.identifier}"

        def operator_args(self, node: DbtNode) -> dict[str, Any]:
            return {"pool": "dbt"} if node.name == "orders" else {}

    with DAG("translated", schedule=None, start_date=START) as d:
        group = jaffle_shop.override(translator=Prefixed())()
    orders = d.task_dict["jaffle_shop.dbt_orders"]
    assert isinstance(orders, DbtConsumerOperator)
    assert orders.pool == "dbt" and d.task_dict["jaffle_shop.dbt_customers"].pool != "dbt"
    assert group.asset("orders").uri == "warehouse://analytics/orders" and orders.outlets == [group.asset("orders")]
    assert orders.consumer.lineage.output == "warehouse://analytics/orders"
    assert "model.jaffle_shop.orders" in (orders.doc_md or "")  # the default doc rule, untouched
    # ... which shows dbt's description of the model and its columns, from the manifest
    assert "One row per order with its paid amount." in (orders.doc_md or "")
    assert "| `order_id` | The order's key, from the shop's order system. |" in (orders.doc_md or "")
    with pytest.raises(ConfigurationError, match="translator"):
        jaffle_shop.override(translator=object())


def test_the_decorators_signature_mirrors_every_parameter_of_the_config() -> None:
    import dataclasses
    import inspect

    from dbt_watcher.config import WatcherConfig

    parameters = inspect.signature(dbt_watcher_group).parameters
    for f in dataclasses.fields(WatcherConfig):
        default = f.default if f.default is not dataclasses.MISSING else inspect.Parameter.empty
        if f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        assert parameters[f.name].default == default, f.name
    assert set(parameters) == {f.name for f in dataclasses.fields(WatcherConfig)}


def test_a_cold_parse_close_to_the_import_timeout_warns_once_a_cached_one_does_not(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT", "0.2")  # any real dbt parse takes longer

    @dbt_watcher_group(project_dir=str(JAFFLE_SHOP))
    def cold() -> None: ...

    with caplog.at_level("WARNING", logger="dbt_watcher"):
        cold.load()
        cold.load()  # from the graph cache: no dbt, no warning
    slow = [r.getMessage() for r in caplog.records if "dagbag_import_timeout" in r.getMessage()]
    assert len(slow) == 1 and "dbt-watcher prepare" in slow[0]
