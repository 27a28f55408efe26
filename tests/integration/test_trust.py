"""Green is proof: each way a consumer could end green without its node succeeding in this run, tried
in the real stack and checked against dbt's own verdict for the run (tests/integration/oracle.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path

import pytest

from devstack.stack import AirflowStack

from .oracle import assert_verdicts
from .scenario import artifacts, assert_all_green, builds, finish, log_with, run, tries, trigger, wait_until

pytestmark = pytest.mark.integration


def test_tests_cancelled_by_fail_fast_leave_their_model_red(stack: AirflowStack) -> None:
    # kind 1: --fail-fast cancels pending tests; a model whose tests never ran is not proven
    out = run(stack, "shop_duckdb", {"fail_model": "orders_enriched", "dbt_args": ["--fail-fast"]})
    verdict = assert_verdicts(stack, out)
    states = out.group()
    assert states["orders_enriched"] == "failed" and states["dbt_producer"] == "failed"
    producer_log = stack.task_log(out.dag_id, out.run_id, "shop.dbt_producer")
    assert "--fail-fast" in producer_log
    if verdict.selection_unknown:
        # dbt-duckdb sometimes raises while fail-fast cancels the other threads' queries ("Connection
        # already closed!"): no run_results.json, the live events are dbt's last word (the oracle reads
        # them from dbt's log), and the tests dbt never ran leave their models red
        assert "dbt wrote no run_results.json" in producer_log
    else:
        cancelled = [uid for uid, s in verdict.status.items() if s == "skipped"]
        assert cancelled, "dbt cancelled something"


def test_a_relationships_test_skipped_because_its_other_parent_failed_is_not_a_pass(stack: AirflowStack) -> None:
    # kind 1: stg_orders built fine, but its relationships test (to customers_dim) was skipped
    out = run(stack, "shop_duckdb", {"fail_model": "customers_dim"})
    assert_verdicts(stack, out)
    states = out.group()
    assert states["stg_orders"] == "failed" and states["customers_dim"] == "failed"
    log = log_with(stack, out.dag_id, out.run_id, "shop.stg_orders", "relationships_stg_orders")
    assert "relationships_stg_orders" in log and "skipped" in log


def test_a_microbatch_model_with_a_failed_batch_is_not_green_nor_its_child(stack: AirflowStack) -> None:
    # kind 2: three batches, the second fails: dbt's final status is "partial success"
    out = run(stack, "shop_microbatch", {"fail_batch_day": 2})
    verdict = assert_verdicts(stack, out)
    states = out.group()
    assert verdict.status["model.shop.events_mb"] == "partial success"
    assert states["events_mb"] == "failed" and states["events_mb_child"] == "failed"
    assert "partial success" in log_with(stack, out.dag_id, out.run_id, "shop.events_mb", "partial success")
    upstream = "model.shop.events_mb (partial success)"
    assert upstream in log_with(stack, out.dag_id, out.run_id, "shop.events_mb_child", upstream)
    good = run(stack, "shop_microbatch")
    assert_all_green(stack, good)
    assert_verdicts(stack, good)


def test_a_failing_project_hook_fails_the_producer_and_nothing_else(stack: AirflowStack) -> None:
    # kind 6: every node succeeded, on-run-end failed: dbt exited 1
    out = run(stack, "shop_duckdb", {"fail_hook": True})
    assert_verdicts(stack, out)
    states = out.group()
    assert states["dbt_producer"] == "failed"
    assert all(s == "success" for t, s in states.items() if t != "dbt_producer")
    assert "no_such_table_for_the_hook" in stack.task_log(out.dag_id, out.run_id, "shop.dbt_producer")


def test_a_failing_test_on_a_source_fails_only_what_dbt_skipped(stack: AirflowStack) -> None:
    # kind 7: the test checks a source, which has no task; dbt skips what reads the source
    out = run(stack, "shop_duckdb", {"fail_source_test": True})
    assert_verdicts(stack, out)
    states = out.group()
    assert all(s == "success" for t, s in states.items() if t != "dbt_producer")
    # events_daily (retries: 2, from dbt meta): its first try failed naming the test; its retry rebuilt
    # it alone, where the source's test does not run: dbt's verdict for that invocation is success
    first, *_ = tries(stack, out.dag_id, out.run_id, "shop.events_daily")
    assert first[1] == "failed" and "raw_events_sane" in stack.task_log(out.dag_id, out.run_id, "shop.events_daily")
    assert builds(artifacts(stack, out))["events_daily"] == 1


@pytest.mark.parametrize("dag_id", ["shop_retry_duckdb", "shop_retry_postgres"])
def test_a_producer_that_died_before_dbt_started_builds_on_its_retry(
    stack: AirflowStack, tmp_path: Path, dag_id: str
) -> None:
    # kind 5: the run-time hook fails on try 1; nothing was built, so try 2 is a first build
    out = run(stack, dag_id, {"hook_fails_once": str(tmp_path / "hook-failed")}, timeout=400)
    assert_all_green(stack, out)
    assert_verdicts(stack, out)
    assert [t[1] for t in tries(stack, dag_id, out.run_id, "shop.dbt_producer")] == ["failed", "success"]
    folder = artifacts(stack, out)
    assert sorted(p.name for p in folder.glob("attempt-*")) == ["attempt-2"] and not (folder / "local").exists()
    assert all(c == 1 for c in builds(folder).values())


def _delete_run(stack: AirflowStack, dag_id: str, run_id: str) -> None:
    stack.api("DELETE", f"/api/v2/dags/{dag_id}/dagRuns/{urllib.parse.quote(run_id, safe='')}")


@pytest.mark.parametrize("dag_id", ["shop_duckdb", "shop_postgres"])
def test_a_run_id_used_again_and_a_whole_run_clear_build_again(stack: AirflowStack, dag_id: str) -> None:
    # kind 3: the earlier run's status must reach neither a re-created run nor a reprocessed one
    run_id = f"reused__{dag_id}__{int(time.time())}"
    stack.wait_for_dags([dag_id])
    first = finish(stack, dag_id, stack.trigger(dag_id, run_id=run_id))
    assert_all_green(stack, first)
    first_folder = artifacts(stack, first)
    _delete_run(stack, dag_id, run_id)
    # kind 9: the run's channel (XComs) and the producer's record (Task State Store) went with it
    for table in ("xcom", "task_state_store"):
        left = stack.sql(f"select count(*) from {table} where dag_id = %s and run_id = %s", (dag_id, run_id))
        assert left[0][0] == 0, table
    assert stack.sql("select count(*) from asset_state_store")[0][0] == 0  # dbt-watcher keeps nothing there
    again = finish(stack, dag_id, stack.trigger(dag_id, run_id=run_id))
    assert_all_green(stack, again)
    assert_verdicts(stack, again)
    second_folder = artifacts(stack, again)
    assert second_folder != first_folder and all(c == 1 for c in builds(second_folder).values())
    producer_start = stack.sql(
        "select start_date from task_instance where dag_id=%s and run_id=%s and task_id='shop.dbt_producer'",
        (dag_id, run_id),
    )[0][0]
    ends = stack.sql(
        "select min(end_date) from task_instance where dag_id=%s and run_id=%s and task_id not in "
        "('shop.dbt_producer', 'done')",
        (dag_id, run_id),
    )[0][0]
    assert ends > producer_start  # no consumer ended on the deleted run's status
    # the whole run cleared (as a backfill with reprocessing does): a new generation, built once more
    stack.clear_tasks(dag_id, run_id, list(again.states))
    third = finish(stack, dag_id, run_id)
    assert_all_green(stack, third)
    third_folder = artifacts(stack, third)
    assert third_folder != second_folder and builds(third_folder) and all(c == 1 for c in builds(third_folder).values())


def test_an_api_server_outage_is_neither_a_false_green_nor_a_failure(stack: AirflowStack) -> None:
    # kind 4: readers measure silence on their own clock and ask Airflow; an outage is not a verdict.
    # Airflow itself terminates a task whose heartbeats fail ([workers] max_failed_heartbeats): the
    # producer may be terminated meanwhile; its retry then publishes dbt's own record (run_results.json).
    dag_id = "shop_retry_duckdb"
    run_id = trigger(stack, dag_id, {"sleep_seconds": 45})
    wait_until(lambda: stack.task_states(dag_id, run_id).get("shop.stg_orders") == "success", timeout=180)
    stack.stop_component("api-server")
    try:
        time.sleep(35)
    finally:
        stack.start_component("api-server")
        stack.wait_healthy()
    out = finish(stack, dag_id, run_id, timeout=400)
    assert_verdicts(stack, out)
    assert_all_green(stack, out)


def test_dag_test_runs_the_group_to_dbts_verdict(stack: AirflowStack, workspace: Path, tmp_path: Path) -> None:
    # kind 11: dag.test() runs tasks one at a time in one process; consumers must not wait forever.
    # Its own metadata database, so the stack's scheduler never sees this run.
    script = (
        "import sys\n"
        "from dbt_watcher.airflow_lines import dag_bag as DagBag\n"
        "dag = DagBag(dag_folder=sys.argv[1]).get_dag('shop_dag_test')\n"
        "run = dag.test(run_conf={'fail_model': 'orders_enriched'})\n"
        "print('STATES', {ti.task_id: ti.state for ti in run.get_task_instances()})\n"
        "from airflow.models.asset import AssetEvent, AssetModel\n"
        "from airflow.utils.session import create_session\n"
        "with create_session() as session:\n"
        "    rows = session.query(AssetModel.uri).join(AssetEvent, AssetEvent.asset_id == AssetModel.id)"
        ".filter(AssetEvent.source_run_id == run.run_id).all()\n"
        "print('EVENTS', sorted(uri for (uri,) in rows))\n"
    )
    env = {
        **stack.env,
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{tmp_path / 'airflow.db'}",
        "AIRFLOW__CORE__DAGS_FOLDER": str(workspace / "dags"),
    }
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, check=True, capture_output=True)
    done = subprocess.run(  # noqa: PLW1510 - the output explains a failure better than check=True would
        [sys.executable, "-c", script, str(workspace / "dags" / "shop_dags.py")],
        env=env,
        cwd=workspace / "dags",
        capture_output=True,
        text=True,
        timeout=600,
    )
    line = next((x for x in done.stdout.splitlines() if x.startswith("STATES")), None)
    assert line is not None, done.stdout[-3000:] + done.stderr[-3000:]
    states = eval(line.removeprefix("STATES "))  # a dict literal printed by the script
    assert states["shop.orders_enriched"] == "failed" and states["shop.order_totals"] == "failed"
    assert states["shop.stg_orders"] == "success" and states["shop.dbt_producer"] == "failed"
    assert states["shop.dbt_audit"] == "success"
    assert os.path.exists(workspace / "projects" / "shop" / "shop.duckdb")
    # The producer does not wait for consumers that dag.test() runs only after it.
    assert "have not ended" not in done.stdout + done.stderr
    # Each green node's asset event once: its consumer's, on the worker (not the producer's or audit's too).
    events_line = next(x for x in done.stdout.splitlines() if x.startswith("EVENTS"))
    uris = eval(events_line.removeprefix("EVENTS "))  # a list literal printed by the script
    green = {t.removeprefix("shop.") for t, s in states.items() if s == "success" and t.startswith("shop.")}
    assert len(uris) == len(set(uris)) and uris, uris
    assert {uri.rsplit("/", 1)[-1] for uri in uris} == green - {"dbt_audit"}
