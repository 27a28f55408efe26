"""Issue 4: one producer build, live per-model consumers and assets, in a real Airflow stack."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest

from devstack.stack import AirflowStack

from .conftest import asset_events, wait_for_asset_run, xcom
from .oracle import assert_verdicts
from .scenario import Outcome

pytestmark = pytest.mark.integration

MODELS_SEEDS_SNAPSHOTS = 18


def _check_run(stack: AirflowStack, dag_id: str, group: str, uri_prefix: str, report_dag: str) -> dict[str, float]:
    stack.wait_for_dags([dag_id, report_dag])
    run_id = stack.trigger(dag_id)
    assert stack.wait_for_run(dag_id, run_id, timeout=300) == "success"
    tis = stack.task_instances(dag_id, run_id)
    states = {ti["task_id"]: ti["state"] for ti in tis}
    consumers = [
        t for t in states if t.startswith(f"{group}.") and t not in (f"{group}.dbt_producer", f"{group}.dbt_audit")
    ]
    assert len(consumers) == MODELS_SEEDS_SNAPSHOTS
    assert set(states.values()) == {"success"}, states
    assert_verdicts(stack, Outcome(dag_id, run_id, "success", states), group)

    # the producer built once: one try, one attempt folder, every node once in run_results.json
    producer = next(ti for ti in tis if ti["task_id"] == f"{group}.dbt_producer")
    assert producer["try_number"] == 1
    artifacts = Path(xcom(stack, dag_id, run_id, f"{group}.dbt_producer"))
    assert sorted(p.name for p in artifacts.glob("attempt-*")) == ["attempt-1"]
    results = json.loads((artifacts / "run_results.json").read_text())["results"]
    ids = [r["unique_id"] for r in results]
    assert len(ids) == len(set(ids)) == 32  # 18 nodes, 13 tests, 1 on-run-start hook: each exactly once
    assert (artifacts / "manifest.json").is_file()
    dbt_log = (artifacts / "attempt-1" / "logs" / "dbt.log").read_text()
    assert dbt_log.count("Running with dbt=") == 1

    # exactly one asset event per model, seed and snapshot, with the result in its extra
    events = asset_events(stack, dag_id, run_id)
    assert len(events) == MODELS_SEEDS_SNAPSHOTS
    assert len({uri for uri, _, _ in events}) == MODELS_SEEDS_SNAPSHOTS
    assert all(uri.startswith(uri_prefix) for uri, _, _ in events)
    orders = next(extra for uri, _, extra in events if uri.endswith("/orders"))
    assert orders["status"] == "success" and orders["execution_time"] is not None
    assert wait_for_asset_run(stack, report_dag) == "success"

    # how late each consumer ended after dbt finished its node (reported, never asserted as timing)
    completed = {r["unique_id"].split(".")[-1]: r["timing"][-1]["completed_at"] for r in results if r["timing"]}
    delays = {}
    for ti in tis:
        name = ti["task_id"].split(".", 1)[-1]
        if ti["task_id"] in consumers and name in completed:
            end = datetime.fromisoformat(ti["end_date"].replace("Z", "+00:00"))
            done = datetime.fromisoformat(completed[name].replace("Z", "+00:00"))
            delays[name] = (end - done).total_seconds()
    print(f"{dag_id}: node-finished -> task-ended delay max {max(delays.values()):.2f}s")
    return delays


@pytest.mark.row
def test_duckdb_project_runs_once_with_live_consumers_and_assets(stack: AirflowStack) -> None:
    delays = _check_run(stack, "jaffle_shop_daily", "jaffle_shop", "duckdb://jaffle_shop/main/", "jaffle_orders_report")
    assert all(d > 0 for d in delays.values())  # no consumer ended before dbt finished its node


@pytest.mark.postgres_adapter
def test_postgres_project_runs_once_with_live_consumers_and_assets(stack: AirflowStack, pg_database: str) -> None:
    _check_run(
        stack,
        "jaffle_shop_postgres",
        "jaffle_pg",
        f"postgres://127.0.0.1:5432/{pg_database}/analytics/",
        "jaffle_pg_orders_report",
    )


def test_clearing_the_producer_does_not_build_again(stack: AirflowStack) -> None:
    dag_id, group = "jaffle_shop_daily", "jaffle_shop"
    stack.wait_for_dags([dag_id])
    run_id = stack.trigger(dag_id)
    assert stack.wait_for_run(dag_id, run_id, timeout=300) == "success"
    events_before = len(asset_events(stack, dag_id, run_id))
    stack.clear_tasks(dag_id, run_id, [f"{group}.dbt_producer"])
    assert stack.wait_for_run(dag_id, run_id, timeout=300) == "success"
    producer = next(t for t in stack.task_instances(dag_id, run_id) if t["task_id"] == f"{group}.dbt_producer")
    assert producer["try_number"] == 2 and producer["state"] == "success"
    artifacts = Path(xcom(stack, dag_id, run_id, f"{group}.dbt_producer"))
    assert sorted(p.name for p in artifacts.glob("attempt-*")) == ["attempt-1"]  # no second dbt build
    assert "does not build the selection again" in stack.task_log(dag_id, run_id, f"{group}.dbt_producer", try_number=2)
    assert len(asset_events(stack, dag_id, run_id)) == events_before == MODELS_SEEDS_SNAPSHOTS
