"""Issue 5 in the real stack: test behaviours, source freshness, templating, asset-driven runs,
per-node overrides, callbacks and hooks, dbt in another virtualenv, connections, OpenLineage."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import duckdb
import pytest

from devstack.stack import AirflowStack

from .conftest import WAREHOUSE_PASSWORD, xcom
from .scenario import assert_all_green, assert_logged, finish, run, wait_until

pytestmark = pytest.mark.integration


def _results(stack: AirflowStack, dag_id: str, run_id: str, group: str = "shop") -> dict[str, str]:
    folder = Path(xcom(stack, dag_id, run_id, f"{group}.dbt_producer"))
    document = json.loads((folder / "run_results.json").read_text())
    return {r["unique_id"]: r["status"] for r in document["results"]}


def test_test_behaviours_build_none_after_all_and_after_each(stack: AirflowStack) -> None:
    after_all = run(stack, "breadth_after_all", {"fail_test": True})
    assert after_all.states["shop.dbt_tests"] == "failed"
    assert all(s == "success" for t, s in after_all.group().items() if t != "dbt_tests")
    assert_logged(stack, "breadth_after_all", after_all.run_id, "shop.dbt_tests", "customer_stats_valid")
    assert not any(uid.startswith("test.") for uid in _results(stack, "breadth_after_all", after_all.run_id))

    after_each = run(stack, "breadth_after_each", {"fail_test": True})
    states = after_each.group()
    assert states["customer_stats"] == "success" and states["customer_stats_tests"] == "failed"
    assert states["stg_customers_tests"] == "success"  # unique + not_null passed: a real watcher, green
    assert "customer_stats_valid" in stack.task_log(
        "breadth_after_each", after_each.run_id, "shop.customer_stats_tests"
    )

    none = run(stack, "breadth_no_tests", {"fail_test": True})
    assert_all_green(stack, none)
    assert not any(uid.startswith("test.") for uid in _results(stack, "breadth_no_tests", none.run_id))
    assert "shop.weekly_report" not in none.states  # exposures get no task


def _raw_events(workspace: Path, loaded_at: datetime | None) -> None:
    with duckdb.connect(str(workspace / "projects" / "shop" / "shop.duckdb")) as con:
        con.execute("drop table if exists main.raw_events")
        if loaded_at is not None:
            con.execute("create table main.raw_events as select 1 as id, ?::timestamp as loaded_at", [loaded_at])


def test_source_freshness_leaves_out_what_reads_a_stale_source(stack: AirflowStack, workspace: Path) -> None:
    _raw_events(workspace, datetime.now(timezone.utc).replace(tzinfo=None) - timedelta(hours=3))
    try:
        out = run(stack, "breadth_freshness")
    finally:
        _raw_events(workspace, None)
    states = out.group()
    assert states["events_daily"] == "skipped"
    assert all(s == "success" for t, s in states.items() if t != "events_daily")
    assert_logged(stack, out.dag_id, out.run_id, "shop.events_daily", "source.shop.raw.events is stale")
    folder = Path(xcom(stack, out.dag_id, out.run_id, "shop.dbt_producer"))
    assert (folder / "attempt-1" / "sources.json").is_file()
    assert "model.shop.events_daily" not in _results(stack, out.dag_id, out.run_id)  # never built

    custom = run(stack, "breadth_freshness_policy")
    assert custom.group()["events_daily"] == "skipped"
    assert_logged(stack, custom.dag_id, custom.run_id, "shop.events_daily", "policy says")


def test_a_templated_select_and_vars_retarget_a_run_from_the_trigger_form(stack: AirflowStack) -> None:
    out = run(stack, "breadth_templated", {"select": "stg_orders", "marker": "from-the-form"})
    states = out.group()
    assert states["stg_orders"] == "success"
    assert states["stg_customers"] == "skipped" and states["orders_enriched"] == "skipped"
    assert "not selected in this run (select='stg_orders')" in stack.task_log(
        out.dag_id, out.run_id, "shop.stg_customers"
    )
    assert '"marker": "from-the-form"' in stack.task_log(out.dag_id, out.run_id, "shop.dbt_producer")
    assert set(_results(stack, out.dag_id, out.run_id)) >= {"model.shop.stg_orders"}


def test_an_asset_triggered_run_builds_only_what_reads_the_changed_source(stack: AirflowStack) -> None:
    dag_id = "breadth_changed_sources"
    stack.wait_for_dags([dag_id])
    assets = stack.api("GET", "/api/v2/assets?uri_pattern=raw_events")["assets"]
    asset_id = next(a["id"] for a in assets if a["uri"] == "duckdb://shop/main/raw_events")
    stack.api("POST", "/api/v2/assets/events", {"asset_id": asset_id, "extra": {"loaded": "today"}})
    run_id = str(
        wait_until(
            lambda: (
                stack.sql("select run_id from dag_run where dag_id=%s and run_type='asset_triggered'", (dag_id,))
                or [(None,)]
            )[0][0]
        )
    )
    out = finish(stack, dag_id, run_id)
    states = out.group()
    assert states["events_daily"] == "success"
    assert states["orders_enriched"] == "skipped" and states["raw_orders"] == "skipped"
    assert_logged(stack, dag_id, run_id, "shop.orders_enriched", "none of the sources it reads changed")


def test_overrides_callbacks_and_model_hooks(stack: AirflowStack, markers: Path, openlineage_file: Path) -> None:
    dag_id = "breadth_hooks"
    since = openlineage_file.stat().st_size if openlineage_file.exists() else 0
    ok = run(stack, dag_id)
    assert ok.state == "success"
    hook = json.loads((markers / "hook_orders_enriched").read_text())
    assert hook["unique_id"] == "model.shop.orders_enriched" and hook["status"] == "success"
    assert (markers / "success__hooked.customer_stats").exists()  # on_success_callback ran on a worker
    assert {"run_results.json", "manifest.json", "attempt-1"} <= set(json.loads((markers / "artifacts").read_text()))
    tasks = {t["task_id"]: t for t in stack.api("GET", f"/api/v2/dags/{dag_id}/tasks")["tasks"]}
    assert (
        tasks["hooked.orders_enriched"]["owner"] == "orders-team"
        and tasks["hooked.raw_orders"]["owner"] != "orders-team"
    )
    assert tasks["hooked.events_daily"]["retries"] == 2  # meta: {airflow: {retries: 2}} in the dbt project
    assert tasks["hooked.orders_enriched"]["retries"] == 1

    # Every consumer here ends on a worker (a callback): the provider's listener reports it, facets included.
    job = f"{dag_id}.hooked.stg_customers"
    _assert_node_lineage(_lineage_event(openlineage_file, since, job), job)

    failing = run(stack, dag_id, {"fail_model": "orders_enriched"})
    assert failing.states["hooked.orders_enriched"] == "failed"
    wait_until((markers / "failure__hooked.orders_enriched").exists, timeout=120)
    assert (markers / "retry__hooked.orders_enriched").exists()  # try 1 failed with a retry left


def test_dbt_from_another_virtualenv_gives_the_same_results(stack: AirflowStack, dbt_venv: Path) -> None:
    venv = run(stack, "breadth_venv")
    assert_all_green(stack, venv)
    assert str(dbt_venv) in stack.task_log("breadth_venv", venv.run_id, "shop.dbt_producer")
    in_process = run(stack, "breadth_no_tests")
    other = {k: v for k, v in _results(stack, "breadth_venv", venv.run_id).items() if not k.startswith("test.")}
    assert other == _results(stack, "breadth_no_tests", in_process.run_id)


def test_a_connection_becomes_the_profile_and_its_secret_stays_out_of_logs(stack: AirflowStack) -> None:
    out = run(stack, "breadth_connection")
    assert_all_green(stack, out)
    for task_id in ("shop.dbt_producer", "shop.orders_enriched"):
        assert WAREHOUSE_PASSWORD not in stack.task_log(out.dag_id, out.run_id, task_id)
    folder = Path(xcom(stack, out.dag_id, out.run_id, "shop.dbt_producer"))
    assert not any(WAREHOUSE_PASSWORD in p.read_text(errors="ignore") for p in folder.rglob("*") if p.is_file())


def _lineage_event(openlineage_file: Path, since: int, job: str) -> dict[str, Any]:
    """The COMPLETE event of ``job`` written after byte ``since`` of the provider's file transport."""

    def completion() -> dict[str, Any] | None:
        if not openlineage_file.exists():
            return None
        with open(openlineage_file, "rb") as fh:
            fh.seek(since)
            lines = fh.read().decode().splitlines()
        for line in lines:
            event: dict[str, Any] = json.loads(line)  # an OpenLineage run event
            if event.get("eventType") == "COMPLETE" and event["job"]["name"] == job and event.get("outputs"):
                return event
        return None

    event = wait_until(completion, timeout=60)
    assert isinstance(event, dict), f"no COMPLETE event of {job}"
    return event


def _assert_node_lineage(event: dict[str, Any], job: str) -> None:
    """stg_customers' event: its datasets and its facets from the run's artifacts, checked with the
    OpenLineage integration's own event matcher (the check Airflow's OpenLineage system tests make)."""
    from openlineage.common.test import match

    namespace = event["outputs"][0]["namespace"]
    raw = "shop.main.raw_customers"
    expected = {
        "eventType": "COMPLETE",
        "job": {"name": job, "facets": {"sql": {"query": "{{ any(result) }}", "dialect": "duckdb"}}},
        "outputs": [
            {
                "namespace": namespace,
                "name": "shop.main.stg_customers",
                "facets": {
                    "schema": {"fields": [{"name": "customer_id"}]},  # the columns the project documents
                    "columnLineage": {
                        "fields": {
                            "customer_id": {"inputFields": [{"name": raw, "field": "customer_id"}]},
                            "name": {"inputFields": [{"name": raw, "field": "name"}]},
                        }
                    },
                },
            }
        ],
    }
    assert match(expected, event, ordered_list=True), json.dumps(event, indent=1)[:4000]
    assert "raw_customers" in event["job"]["facets"]["sql"]["query"]
    inputs = {i["name"]: i for i in event["inputs"]}
    assert set(inputs) == {"shop.main.raw_customers", "shop.main.stg_customers"}
    # The node's tests read its table: an input, with what this run's tests asserted.
    assertions = inputs["shop.main.stg_customers"]["inputFacets"]["dataQualityAssertions"]["assertions"]
    assert sorted((a["assertion"], a["column"], a["success"]) for a in assertions) == [
        ("not_null", "customer_id", True),
        ("unique", "customer_id", True),
    ]


def test_each_consumer_reports_its_own_lineage(stack: AirflowStack, openlineage_file: Path) -> None:
    # Consumers that end in the triggerer: the producer sends their events, with facets from the run's artifacts.
    since = openlineage_file.stat().st_size if openlineage_file.exists() else 0
    out = run(stack, "breadth_no_tests")
    event = _lineage_event(openlineage_file, since, f"{out.dag_id}.shop.orders_enriched")
    assert [o["name"] for o in event["outputs"]] == ["shop.main.orders_enriched"]
    assert {i["name"] for i in event["inputs"]} == {"shop.main.stg_customers", "shop.main.stg_orders"}
    assert "sql" in event["job"]["facets"] and "columnLineage" in event["outputs"][0]["facets"]

    since = openlineage_file.stat().st_size
    out = run(stack, "shop_duckdb")
    job = f"{out.dag_id}.shop.stg_customers"
    _assert_node_lineage(_lineage_event(openlineage_file, since, job), job)


def test_install_deps_installs_packages_before_parsing(stack: AirflowStack) -> None:
    out = run(stack, "names_install_deps")
    assert out.state == "success"
    assert "names_fresh_checkout.names_lib__orders" in out.states


def test_defer_and_state_pass_through_to_dbt(stack: AirflowStack) -> None:
    earlier = run(stack, "shop_duckdb")
    state = xcom(stack, "shop_duckdb", earlier.run_id, "shop.dbt_producer")
    assert (Path(state) / "manifest.json").is_file()
    out = run(stack, "breadth_defer", {"state": state})
    assert out.state == "success"
    assert out.group("deferred.") == {"dbt_producer": "success", "orders_enriched": "success", "dbt_audit": "success"}
    log = stack.task_log("breadth_defer", out.run_id, "deferred.dbt_producer")
    build = next(line for line in log.splitlines() if "Running dbt build" in line)
    assert "--defer" in build and f"--state {state}" in build


def test_cosmos_names_run_to_dbts_verdict_with_cosmos_asset_uris(stack: AirflowStack) -> None:
    # Cosmos 1.15.1's own names for this project (tests/unit/data/cosmos_names): the oracle finds each
    # consumer's node through them, not through dbt-watcher's translator.
    from .conftest import asset_events
    from .oracle import assert_verdicts

    data = Path(__file__).parent.parent / "unit" / "data" / "cosmos_names"
    cosmos = json.loads((data / "duckdb_after_each.json").read_text())["task_group"]
    uris = json.loads((data / "asset_uris.json").read_text())["duckdb"]["airflow_normalized"]
    task_nodes = {
        task_id.removeprefix("jaffle_shop."): uid
        for uid, node in cosmos["nodes"].items()
        for task_id in node["task_ids"]
        if not task_id.endswith(".test")
    }
    dag_id = "jaffle_shop_cosmos_names"
    out = run(stack, dag_id, timeout=400)
    expected = {f"jaffle_shop.{t}" for t in task_nodes} | {"jaffle_shop.dbt_producer_watcher"}
    assert expected <= set(out.states), sorted(expected - set(out.states))
    assert {t for t in out.states if t.endswith(".test")} == {t for t in cosmos["tasks"] if t.endswith(".test")}
    assert_verdicts(stack, out, "jaffle_shop", gating=False, producer="dbt_producer_watcher", task_nodes=task_nodes)
    assert_all_green(stack, out)
    emitted = {uri for uri, _, _ in asset_events(stack, dag_id, out.run_id)}
    assert emitted == {uri for node_uris in uris.values() for uri in node_uris}
