"""A thousand consumers in the real stack: every one ends, and a triggerer that dies mid-run loses none.

Two triggerers share the consumers (Airflow's HA mode). One is killed (SIGKILL) while the build runs;
the other adopts its triggers once Airflow sees its heartbeat stop
(``[triggerer] triggerer_health_check_threshold``), and every consumer still ends with dbt's verdict,
although the survivor has too few slots for all of them at once.
"""

from __future__ import annotations

import signal
import time

import pytest

from devstack.stack import AirflowStack

from .oracle import assert_verdicts
from .scenario import assert_all_green, finish, trigger, wait_until

# Two minutes of a two-core machine: a long workload, run by `make test-long`, not `make test`.
pytestmark = [pytest.mark.integration, pytest.mark.long]

DAG = "wide_views"


def _triggerer_of_each(stack: AirflowStack, run_id: str) -> dict[int, int]:
    rows = stack.sql(
        "select t.triggerer_id, count(*) from task_instance ti join trigger t on t.id = ti.trigger_id "
        "where ti.dag_id = %s and ti.run_id = %s group by t.triggerer_id",
        (DAG, run_id),
    )
    return {int(r[0]): int(r[1]) for r in rows if r[0] is not None}


def _live_triggerers(stack: AirflowStack) -> int:
    rows = stack.sql(
        "select count(*) from job where job_type = 'TriggererJob' and state = 'running' "
        "and latest_heartbeat > now() - interval '10 seconds'"
    )
    return int(rows[0][0])


def test_a_thousand_consumers_end_and_survive_a_triggerer_dying(stack: AirflowStack) -> None:
    # Neither triggerer can hold all 1,001 triggers (1,000 consumers and the audit), so both get some
    # whatever their start order; after the kill the survivor is saturated and adopts the rest as
    # slots free up: consumers still end, only later.
    capacity = {"AIRFLOW__TRIGGERER__CAPACITY": "600"}
    stack.stop_component("triggerer")
    stack.start_component("triggerer", env=capacity)
    stack.start_component("triggerer", name="triggerer-2", env=capacity)
    try:
        stack.wait_for_dags([DAG], timeout=900)
        wait_until(lambda: _live_triggerers(stack) == 2, timeout=180, every=2)
        started = time.monotonic()
        run_id = trigger(stack, DAG)
        split = wait_until(
            lambda: len(_triggerer_of_each(stack, run_id)) == 2 and _triggerer_of_each(stack, run_id),
            timeout=300,
            every=2,
        )
        print(f"consumers per triggerer before the kill: {split}")
        wait_until(
            lambda: sum(1 for s in stack.task_states(DAG, run_id).values() if s == "success") > 50, timeout=600, every=2
        )
        stack.stop_component("triggerer", sig=signal.SIGKILL)  # the first triggerer dies mid-run
        out = finish(stack, DAG, run_id, timeout=900)
        consumers = [
            t for t in out.states if t.startswith("wide.") and t not in ("wide.dbt_producer", "wide.dbt_audit")
        ]
        print(f"{len(consumers)} consumers ended in {time.monotonic() - started:.0f} s")
        assert len(consumers) == 1000
        assert_all_green(stack, out)
        assert_verdicts(stack, out, group="wide")
    finally:
        stack.stop_component("triggerer")
        stack.stop_component("triggerer-2")
        stack.start_component("triggerer")
        stack.wait_healthy()
