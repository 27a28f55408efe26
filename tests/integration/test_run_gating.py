"""Which tests gate a consumer is decided by the run's own dbt invocation (issue: green is proof, part two).

Each scenario runs in the real stack and is checked against dbt's own verdict for the run
(tests/integration/oracle.py), which counts the tests the run's invocation selected.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack.stack import AirflowStack

from .oracle import assert_verdicts
from .scenario import artifacts, assert_all_green, builds, finish, log_with, run

pytestmark = pytest.mark.integration

STRICT_TEST = "accepted_values_customers_dim_name"


@pytest.mark.parametrize("dag_id", ["shop_duckdb", "shop_postgres"])
def test_a_test_only_the_run_enables_gates_its_model(stack: AirflowStack, dag_id: str) -> None:
    # kind 1: the var comes from the run (the group function returns the run's conf as vars); the DAG file's
    # parse never saw the test, dbt's selection of this run has it, and it fails
    out = run(stack, dag_id, {"strict": True})
    verdict = assert_verdicts(stack, out)
    assert any(STRICT_TEST in uid and status == "fail" for uid, status in verdict.status.items())
    states = out.group()
    assert states["customers_dim"] == "failed" and states["dbt_producer"] == "failed"
    assert states["dbt_audit"] == "success"  # it checked the consumers against the run's own tests
    assert STRICT_TEST in log_with(stack, out.dag_id, out.run_id, "shop.customers_dim", STRICT_TEST)


def test_a_test_a_templated_env_value_enables_gates_its_model(stack: AirflowStack) -> None:
    # kind 1: env={"SHOP_STRICT": "{{ dag_run.conf... }}"}: parsing sees no value, the run renders "1"
    out = run(stack, "shop_env", {"strict_env": "1"})
    assert_verdicts(stack, out)
    assert out.group()["customers_dim"] == "failed"
    calm = run(stack, "shop_env")
    assert_all_green(stack, calm)
    assert_verdicts(stack, calm)


@pytest.mark.parametrize("dag_id", ["shop_selected", "shop_selected_postgres"])
def test_tests_the_run_does_not_select_are_not_awaited(stack: AirflowStack, dag_id: str) -> None:
    # kind 2: --indirect-selection empty from the run: dbt builds the selected models and runs no test
    out = run(stack, dag_id, {"dbt_args": ["--indirect-selection", "empty"]})
    assert_all_green(stack, out)
    verdict = assert_verdicts(stack, out)
    assert not any(uid.startswith("test.") for uid in verdict.status)
    folder = artifacts(stack, out)
    assert not (folder / "local").exists()  # no consumer rebuilt: nothing was awaited in vain
    assert all(count == 1 for count in builds(folder).values())


def test_cautious_indirect_selection_in_the_groups_dbt_args(stack: AirflowStack) -> None:
    # kind 2: stg_orders' relationships test reads customers_dim, which the group does not select; with
    # --indirect-selection cautious dbt does not run it, so stg_orders' consumer does not wait for it
    out = run(stack, "shop_cautious")
    assert_all_green(stack, out)
    verdict = assert_verdicts(stack, out)
    assert not any("relationships_stg_orders" in uid for uid in verdict.status)
    assert any("unique_stg_customers" in uid for uid in verdict.status)  # tests of selected nodes still gate
    assert not (artifacts(stack, out) / "local").exists()


def test_two_consumer_rebuilds_at_once_take_turns_on_duckdb(stack: AirflowStack, workspace: Path) -> None:
    # kind 3: one DuckDB file takes one writer; two consumers cleared together rebuild one after the other
    out = run(stack, "shop_duckdb", {"flaky": True, "flaky_b": True})
    assert out.group()["flaky"] == "failed" and out.group()["flaky_b"] == "failed"
    marker = workspace / "projects" / "shop" / "flaky_input.csv"
    marker.write_text("x\n1\n")
    try:
        stack.clear_tasks(out.dag_id, out.run_id, ["shop.flaky", "shop.flaky_b"])
        again = finish(stack, out.dag_id, out.run_id)
    finally:
        marker.unlink()
    assert_verdicts(stack, again)
    states = again.group()
    assert states["flaky"] == "success" and states["flaky_b"] == "success"
    counts = builds(artifacts(stack, again))
    assert counts["flaky"] == 2 and counts["flaky_b"] == 2  # the build, then each one's own rebuild


def test_a_test_written_on_a_source_fails_no_model(stack: AirflowStack) -> None:
    # kind 4: a relationships test on a source column reading stg_orders: it checks the source
    out = run(stack, "shop_duckdb", {"source_relationships": True})
    verdict = assert_verdicts(stack, out)
    assert any("relationships_raw_events" in uid and s == "fail" for uid, s in verdict.status.items())
    states = out.group()
    assert states["stg_orders"] == "success" and states["dbt_producer"] == "failed"
    assert all(s == "success" for t, s in states.items() if t != "dbt_producer")
