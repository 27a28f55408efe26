"""Issue 7: the scenario suite. Each case runs in the real stack and checks every task's final state
and how many times dbt ran each node. DuckDB everywhere; PostgreSQL for the first three as well."""

from __future__ import annotations

import os
import signal
import time
import urllib.error
from datetime import datetime, timezone
from pathlib import Path

import pytest

from dbt_watcher import airflow_lines
from devstack.stack import AirflowStack

from .conftest import asset_events
from .oracle import assert_verdicts
from .scenario import (
    artifacts,
    assert_all_green,
    assert_logged,
    builds,
    finish,
    run,
    tries,
    trigger,
    wait_until,
)

pytestmark = pytest.mark.integration

ALL_NODES = (
    "events_daily",
    "raw_customers",
    "raw_orders",
    "stg_customers",
    "stg_orders",
    "orders_enriched",
    "order_totals",
    "customer_stats",
    "after_slow",
    "flaky",
    "flaky_child",
)
DUCK_SLOW, PG_SLOW = "slow_py", "slow_pg"


def nodes(slow: str) -> tuple[str, ...]:
    return (*ALL_NODES, slow)


def test_model_sql_error_on_duckdb_and_postgres(stack: AirflowStack) -> None:
    conf = {"fail_model": "orders_enriched"}
    runs = {dag: trigger(stack, dag, conf) for dag in ("shop_duckdb", "shop_postgres")}
    for dag, slow in (("shop_duckdb", DUCK_SLOW), ("shop_postgres", PG_SLOW)):
        out = finish(stack, dag, runs[dag])
        states = out.group()
        assert out.state == "failed"
        assert states["dbt_producer"] == "failed"  # dbt exited 1
        assert states["orders_enriched"] == "failed" and states["order_totals"] == "failed"
        assert_verdicts(stack, out)
        assert all(states[n] == "success" for n in nodes(slow) if n not in ("orders_enriched", "order_totals"))
        assert out.states["done"] == "upstream_failed"
        counts = builds(artifacts(stack, out))
        assert counts["orders_enriched"] == 1 and counts["order_totals"] == 0  # dbt skipped it
        assert all(counts[n] == 1 for n in nodes(slow) if n not in ("order_totals",))


def test_test_failure_under_build_on_duckdb_and_postgres(stack: AirflowStack) -> None:
    runs = {dag: trigger(stack, dag, {"fail_test": True}) for dag in ("shop_duckdb", "shop_postgres")}
    for dag, slow in (("shop_duckdb", DUCK_SLOW), ("shop_postgres", PG_SLOW)):
        out = finish(stack, dag, runs[dag])
        states = out.group()
        assert states["customer_stats"] == "failed"
        assert all(states[n] == "success" for n in nodes(slow) if n != "customer_stats")
        assert_verdicts(stack, out)
        assert_logged(stack, dag, out.run_id, "shop.customer_stats", "customer_stats_valid")
        assert all(c == 1 for c in builds(artifacts(stack, out)).values())


def _producer_pid(stack: AirflowStack, dag_id: str, run_id: str) -> int:
    def pid() -> int | None:
        try:
            log = stack.task_log(dag_id, run_id, "shop.dbt_producer")
        except urllib.error.HTTPError:  # no log before the task starts
            return None
        for line in log.splitlines():
            if "runs in process" in line:
                return int(line.split("runs in process", 1)[1].split()[0])
        return None

    return int(wait_until(pid, timeout=120))


@pytest.mark.row
def test_producer_killed_mid_build_on_duckdb_and_postgres(stack: AirflowStack) -> None:
    dags = {"shop_retry_duckdb": DUCK_SLOW, "shop_retry_postgres": PG_SLOW}
    runs = {dag: trigger(stack, dag, {"sleep_seconds": 20}) for dag in dags}
    killed_at = {}
    for dag, run_id in runs.items():
        pid = _producer_pid(stack, dag, run_id)
        slow = dags[dag]

        def only_slow_left(d: str = dag, r: str = run_id, slow: str = slow) -> bool:
            states = stack.task_states(d, r)
            return all(states.get(f"shop.{n}") == "success" for n in nodes(slow) if n not in (slow, "after_slow"))

        wait_until(only_slow_left, timeout=120)
        # else the scenario did not happen: the slow node did not sleep (dbt 1.10 once ignored its meta)
        assert stack.task_states(dag, run_id).get("shop.dbt_producer") == "running", "dbt finished before the kill"
        os.kill(pid, signal.SIGKILL)  # a task process of our own stack: OOM-killer style
        killed_at[dag] = datetime.now(timezone.utc)
    for dag, slow in dags.items():
        out = finish(stack, dag, runs[dag], timeout=400)
        assert_verdicts(stack, out)
        assert all(out.group()[n] == "success" for n in nodes(slow)) and out.group()["dbt_audit"] == "success"
        producer = tries(stack, dag, out.run_id, "shop.dbt_producer")
        if airflow_lines.has_task_state_store():
            # killed; its retry published what was built, built nothing, and is red: dbt never finished the build
            assert [t[1] for t in producer] == ["failed", "failed"]
            assert "did not finish" in stack.task_log(dag, out.run_id, "shop.dbt_producer", try_number=2)
        else:  # no record of the try to skip from (before Airflow 3.3): the producer has no retries
            assert [t[1] for t in producer] == ["failed"]
        folder = artifacts(stack, out)
        assert sorted(p.name for p in folder.glob("attempt-*")) == ["attempt-1"]
        counts = builds(folder)
        # the slow node and its child never finished in the producer: their consumers noticed the
        # death, failed their first try, and rebuilt the node themselves on the retry
        for name in (slow, "after_slow"):
            first, second = tries(stack, dag, out.run_id, f"shop.{name}")[:2]
            assert first[1] == "failed" and second[1] == "success"
        assert counts[slow] == 2 and counts["after_slow"] == 1  # started by the producer, then once locally
        assert all(counts[n] == 1 for n in nodes(slow) if n not in (slow, "after_slow"))
        slow_first = tries(stack, dag, out.run_id, f"shop.{slow}")[0]
        assert slow_first[2] is not None  # a finished try has an end date
        noticed = (slow_first[2] - killed_at[dag]).total_seconds()
        print(f"{dag}: consumer noticed the producer's death {noticed:.1f}s after SIGKILL (poke_interval 0.5s)")
        assert noticed < 30
        # every green node has exactly one asset event, whoever built it (the audit emits those of the
        # nodes the red producer built, the consumers those they rebuilt)
        uris = [uri for uri, _, _ in asset_events(stack, dag, out.run_id)]
        green = {n for n, s in out.group().items() if s == "success" and n not in ("dbt_producer", "dbt_audit")}
        assert len(uris) == len(set(uris)) and {u.rsplit("/", 1)[-1] for u in uris} == green


def test_producer_resume_mode_reruns_only_what_failed_in_one_invocation(stack: AirflowStack, workspace: Path) -> None:
    dag = "shop_resume"
    out = run(stack, dag, {"flaky": True})
    assert out.group()["flaky"] == "failed" and out.group()["flaky_child"] == "failed"
    assert_verdicts(stack, out)
    # dbt exited 1, so the producer failed and its automatic retry resumed: flaky failed again
    assert [t[1] for t in tries(stack, dag, out.run_id, "shop.dbt_producer")] == ["failed", "failed"]
    (workspace / "projects" / "shop" / "flaky_input.csv").write_text("x\n1\n")
    try:
        stack.clear_tasks(dag, out.run_id, ["shop.dbt_producer", "shop.flaky", "shop.flaky_child", "done"])
        out = finish(stack, dag, out.run_id)
    finally:
        (workspace / "projects" / "shop" / "flaky_input.csv").unlink()
    assert_all_green(stack, out)
    assert_verdicts(stack, out)
    folder = artifacts(stack, out)
    assert sorted(p.name for p in folder.glob("attempt-*")) == ["attempt-1", "attempt-2", "attempt-3"]
    assert not (folder / "local").exists()  # consumers waited for the producer instead of rebuilding
    assert set(builds(folder / "attempt-2")) == {"flaky"}  # the automatic retry: flaky failed again
    assert set(builds(folder / "attempt-3")) == {"flaky", "flaky_child"}  # one invocation, what had not succeeded
    counts = builds(folder)
    assert counts["flaky"] == 3 and counts["flaky_child"] == 1
    assert all(counts[n] == 1 for n in nodes(DUCK_SLOW) if n not in ("flaky", "flaky_child"))


@pytest.mark.row
def test_ui_clear_of_a_failed_branch_rebuilds_it_in_dbt_order(stack: AirflowStack, workspace: Path) -> None:
    dag = "shop_duckdb"
    out = run(stack, dag, {"flaky": True})
    assert out.group()["flaky"] == "failed" and out.group()["flaky_child"] == "failed"
    (workspace / "projects" / "shop" / "flaky_input.csv").write_text("x\n1\n")
    try:
        stack.clear_tasks(dag, out.run_id, ["shop.flaky"], downstream=True)
        out = finish(stack, dag, out.run_id)
    finally:
        (workspace / "projects" / "shop" / "flaky_input.csv").unlink()
    # the branch is green now; the producer stays red (its dbt invocation exited 1) until it is cleared
    assert all(s == "success" for t, s in out.group().items() if t != "dbt_producer")
    assert out.group()["dbt_producer"] == "failed"
    assert_verdicts(stack, out)
    if not airflow_lines.has_task_state_store():
        return  # below Airflow 3.3 a cleared producer has no record of the run and builds it again
    # as in the UI, with what follows the producer (`done` waited for it and is upstream_failed)
    stack.clear_tasks(dag, out.run_id, ["shop.dbt_producer"], downstream=True)
    out = finish(stack, dag, out.run_id)
    assert_all_green(stack, out)  # every node succeeded in this run: the cleared producer is green, built nothing
    folder = artifacts(stack, out)
    assert sorted(p.name for p in folder.glob("attempt-*")) == ["attempt-1"]  # no second producer build
    counts = builds(folder)
    assert counts["flaky"] == 2 and counts["flaky_child"] == 1  # each rebuilt once, on its own
    parent_end = tries(stack, dag, out.run_id, "shop.flaky")[-1][2]
    child_log = stack.task_log(dag, out.run_id, "shop.flaky_child", try_number=2)
    line = next(x for x in child_log.splitlines() if "Running dbt build for model.shop.flaky_child alone" in x)
    child_rebuild = datetime.fromisoformat(line.split()[0].replace("Z", "+00:00"))
    assert parent_end is not None and child_rebuild >= parent_end  # the child rebuilt after its parent was green
    # one asset event per node: the audit's for the first (red) build, the rebuilt ones' from their
    # consumers, none again from the producer that turned green
    uris = [uri for uri, _, _ in asset_events(stack, dag, out.run_id)]
    assert len(uris) == len(set(uris)), sorted(uris)


@pytest.mark.parametrize("component", ["triggerer", "scheduler"])
def test_restarting_a_component_mid_run_changes_nothing(stack: AirflowStack, component: str) -> None:
    dag = "shop_duckdb"
    run_id = trigger(stack, dag, {"sleep_seconds": 12})
    wait_until(lambda: stack.task_states(dag, run_id).get("shop.dbt_producer") == "running", timeout=120)
    time.sleep(2)
    # A SIGTERMed scheduler lets its LocalExecutor finish the running tasks (the producer) before it
    # exits: give it that time. A producer killed with it is the producer-death scenario, not this one.
    stack.restart_component(component, grace=180)
    out = finish(stack, dag, run_id, timeout=400)
    assert_all_green(stack, out)
    assert all(c == 1 for c in builds(artifacts(stack, out)).values())


def test_overlapping_runs_keep_separate_status(stack: AirflowStack) -> None:
    dag = "shop_overlap"
    bad = trigger(stack, dag, {"sleep_seconds": 8, "schema_suffix": "a", "fail_model": "orders_enriched"})
    good = trigger(stack, dag, {"sleep_seconds": 8, "schema_suffix": "b"})
    bad_out, good_out = finish(stack, dag, bad), finish(stack, dag, good)
    assert bad_out.group()["orders_enriched"] == "failed"
    assert_verdicts(stack, bad_out)
    assert_all_green(stack, good_out)
    assert_verdicts(stack, good_out)
    windows = stack.sql("select start_date, end_date from dag_run where dag_id=%s order by start_date", (dag,))
    assert windows[1][0] < windows[0][1], "the two runs did overlap"


def test_an_emptied_status_store_never_makes_a_false_green(stack: AirflowStack) -> None:
    dag = "shop_duckdb"
    run_id = trigger(stack, dag, {"sleep_seconds": 10})
    wait_until(lambda: stack.task_states(dag, run_id).get("shop.stg_orders") == "success", timeout=120)
    channel = "delete from xcom where run_id = %s and task_id = 'shop.dbt_producer' and key like 'dbt_watcher.%%'"
    stack.sql(channel, (run_id,))  # mid-build: the producer's final write restores it
    out = finish(stack, dag, run_id)
    assert_all_green(stack, out)
    assert all(c == 1 for c in builds(artifacts(stack, out)).values())
    # after the run: the status and the run's dbt arguments are gone; a cleared consumer can neither
    # confirm its node nor rebuild it with the run's arguments, so it fails saying so
    folder = artifacts(stack, out)
    stack.sql(channel, (run_id,))
    stack.clear_tasks(dag, run_id, ["shop.customer_stats"])
    out = finish(stack, dag, run_id)
    assert out.states["shop.customer_stats"] == "failed"
    assert builds(folder)["customer_stats"] == 1
    log = stack.task_log(dag, run_id, "shop.customer_stats", try_number=2)
    assert "published no status" in log and "no record of the run's dbt arguments" in log


def test_a_profile_that_cannot_connect_fails_the_producer_and_no_consumer_goes_green(stack: AirflowStack) -> None:
    out = run(stack, "shop_unreachable")
    states = out.group()
    assert states["dbt_producer"] == "failed"
    assert all(state == "failed" for name, state in states.items() if name not in ("dbt_producer", "dbt_audit"))
    assert states["dbt_audit"] == "success"  # no consumer is green: nothing to contradict dbt
    assert_logged(stack, out.dag_id, out.run_id, "shop.orders_enriched", "Connection refused")
    assert asset_events(stack, out.dag_id, out.run_id) == []
    assert_verdicts(stack, out)


def test_timeout_fails_the_consumer_not_the_producer(stack: AirflowStack) -> None:
    out = run(stack, "shop_timeout", {"sleep_seconds": 35})
    states = out.group()
    assert states["dbt_producer"] == "success"
    assert states[DUCK_SLOW] == "failed" and states["after_slow"] == "failed"
    assert all(states[n] == "success" for n in nodes(DUCK_SLOW) if n not in (DUCK_SLOW, "after_slow"))
    assert_logged(stack, out.dag_id, out.run_id, f"shop.{DUCK_SLOW}", "Timed out after 20 s")
    assert states["dbt_audit"] == "success"  # red although dbt succeeded: a warning, not a trust problem
    assert_logged(stack, out.dag_id, out.run_id, "shop.dbt_audit", "although dbt reported success")
    assert all(c == 1 for c in builds(artifacts(stack, out)).values())


def test_bad_dag_files_fail_to_import_with_the_problem_and_the_fix(stack: AirflowStack) -> None:
    def errors() -> dict[str, str]:
        return {e["filename"]: e["stack_trace"] for e in stack.import_errors()}

    found = wait_until(lambda: len(errors()) >= 2 and errors(), timeout=120)
    assert isinstance(found, dict)
    missing = found["broken_missing_project.py"]
    assert "no_such_project" in missing and "does not exist" in missing and "How to fix" in missing
    empty = found["broken_empty_selection.py"]
    assert "tag:no_such_tag" in empty and "matches no dbt model" in empty and "How to fix" in empty


def test_names_versions_ephemeral_and_disabled_models(stack: AirflowStack) -> None:
    out = run(stack, "names_dag")
    assert out.state == "success"
    assert set(out.group("names.")) == {
        "dbt_producer",
        "dbt_audit",
        "names__orders",
        "names_lib__orders",
        "daily-sales",
        "customers_v1",
        "customers_v2",
        "report",
    }
    shop_tasks = stack.task_states(
        "shop_duckdb", stack.sql("select run_id from dag_run where dag_id='shop_duckdb' limit 1")[0][0]
    )
    assert "shop.int_orders" not in shop_tasks and "shop.disabled_model" not in shop_tasks
    assert stack.log_lines("no task for model.shop.int_orders: ephemeral")
