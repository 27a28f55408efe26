"""Issue 4 semantics on failure: red with dbt's message, never a false green, assets only for green nodes."""

from __future__ import annotations

import re

import pytest

from devstack.stack import AirflowStack

from .conftest import asset_events
from .oracle import assert_verdicts
from .scenario import Outcome, assert_logged, log_with

pytestmark = pytest.mark.integration

DAG = "shop_duckdb"


@pytest.mark.row
def test_a_failing_model_turns_red_with_dbts_message_and_its_descendants_never_green(stack: AirflowStack) -> None:
    stack.wait_for_dags([DAG])
    run_id = stack.trigger(DAG, conf={"fail_model": "orders_enriched"})
    assert stack.wait_for_run(DAG, run_id, timeout=300) == "failed"
    states = stack.task_states(DAG, run_id)
    assert states["shop.dbt_producer"] == "failed"  # dbt exited 1: the run's build is not green
    assert states["shop.dbt_audit"] == "success"  # and every consumer agrees with dbt
    assert_verdicts(stack, Outcome(DAG, run_id, "failed", states))
    assert states["shop.orders_enriched"] == "failed"
    assert states["shop.order_totals"] == "failed"  # dbt skipped it: never green
    assert states["done"] == "upstream_failed"
    for green in ("raw_orders", "stg_orders", "stg_customers", "customer_stats", "slow_py", "after_slow"):
        assert states[f"shop.{green}"] == "success", green
    assert "shop.int_orders" not in states  # ephemeral: no task, lineage passes through

    failed_log = log_with(stack, DAG, run_id, "shop.orders_enriched", "no_such_column")
    assert "no_such_column" in failed_log  # dbt's own error message, in the consumer's log
    skipped_log = log_with(stack, DAG, run_id, "shop.order_totals", "model.shop.orders_enriched (error)")
    assert "skipped" in skipped_log
    producer_log = stack.task_log(DAG, run_id, "shop.dbt_producer")
    assert "Running with dbt=" in producer_log and "START sql table model" in producer_log
    assert "dbt exited with code 1" in producer_log and "model.shop.orders_enriched (error)" in producer_log
    assert "model.shop.orders_enriched (error)" in skipped_log  # a skipped node names what failed upstream

    events = asset_events(stack, DAG, run_id)
    uris = {uri for uri, _, _ in events}
    assert not any(u.endswith("/orders_enriched") or u.endswith("/order_totals") for u in uris)
    # Airflow drops a failed producer's asset events: the audit emits those of the nodes that succeeded
    assert {task for uri, task, _ in events if uri.endswith("/customer_stats")} == {"shop.dbt_audit"}


def test_a_failing_test_fails_the_model_it_is_attached_to_and_names_it(stack: AirflowStack) -> None:
    stack.wait_for_dags([DAG])
    run_id = stack.trigger(DAG, conf={"fail_test": True})
    assert stack.wait_for_run(DAG, run_id, timeout=300) == "failed"
    states = stack.task_states(DAG, run_id)
    assert states["shop.customer_stats"] == "failed"
    assert states["shop.orders_enriched"] == "success"
    assert_verdicts(stack, Outcome(DAG, run_id, "failed", states))
    assert_logged(stack, DAG, run_id, "shop.customer_stats", "customer_stats_valid")


@pytest.mark.row
def test_the_group_polls_once_per_tick_not_once_per_consumer(stack: AirflowStack) -> None:
    stack.wait_for_dags([DAG])
    run_id = stack.trigger(DAG, conf={"sleep_seconds": 3})
    assert stack.wait_for_run(DAG, run_id, timeout=300) == "success"
    consumers = [
        t
        for t in stack.task_states(DAG, run_id)
        if t.startswith("shop.") and t not in ("shop.dbt_producer", "shop.dbt_audit")
    ]
    pattern = (
        r"Poll of shop for this run so far: (\d+) ticks, (\d+) channel reads, (\d+) task-state reads, "
        r"followed by (\d+) triggers"
    )
    costs, missing = [], []
    for task_id in consumers:
        # The line is the trigger's last; Airflow's triggerer can drop it under load (apache/airflow#66158).
        found = re.findall(pattern, log_with(stack, DAG, run_id, task_id, "Poll of shop for this run", timeout=20))
        if found:
            costs.append(tuple(map(int, found[-1])))
        else:
            missing.append(task_id)
    # Up to half may be lost: on the Airflow 3.2 row, under CI's load, 6 of 14 were (the rest prove the bound).
    assert costs and len(missing) <= len(consumers) // 2, f"no poll cost logged by {missing}"
    ticks, reads, state_reads, followers = max(costs)  # the last consumer to end saw the whole run's cost
    print(f"{len(consumers)} consumers: {ticks} ticks, {reads} channel reads, {state_reads} task-state reads")
    print(f"followed by {followers} triggers; no cost line from {missing}")
    # One poll for the whole run: every consumer (and the audit, which follows it from the start) followed it,
    # but maybe a consumer whose line was lost, which may have started after the last logged one ended. It
    # read the channel's head once per tick (plus closed chunks, none at this size).
    assert followers >= len(consumers) - len(missing), (costs, missing)
    assert reads <= ticks + 1
    assert state_reads < ticks  # Airflow's states only when a decision needs them
