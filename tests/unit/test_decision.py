from __future__ import annotations

import pytest

from dbt_watcher.decision import Action, Watch, decide, needs_producer_state
from dbt_watcher.events import NodeResult
from dbt_watcher.status import FAILED, FINISHED, RUNNING, RunStatus

NOW = 1_000_000.0
NODE = "model.shop.orders"
TEST = "test.shop.unique_orders_id.abc"


def status(state: str = RUNNING, *results: NodeResult, attempt: int = 1, beat: float = NOW, **kw: object) -> RunStatus:
    return RunStatus(attempt, state, beat, {r.unique_id: r for r in results}, **kw)  # type: ignore[arg-type]


def res(uid: str = NODE, state: str = "success", attempt: int = 1, message: str | None = None) -> NodeResult:
    return NodeResult(uid, state, attempt=attempt, message=message)


def run(watch: Watch, st: RunStatus | None, *, try_number: int = 1, producer: str | None = None, **kw: object):
    return decide(watch, st, try_number=try_number, producer_state=producer, now=NOW, stale_after=5.0, **kw)  # type: ignore[arg-type]


W = Watch(NODE)


def test_green_only_for_a_success_in_this_run() -> None:
    d = run(W, status(RUNNING, res()))
    assert d.action is Action.SUCCEED and d.result is not None


@pytest.mark.parametrize("dbt_status", ["error", "fail", "partial success", "unknown"])
def test_any_other_status_fails_the_first_try_with_dbts_message(dbt_status: str) -> None:
    d = run(W, status(RUNNING, res(state=dbt_status, message="Database Error: boom")))
    assert d.action is Action.FAIL
    assert dbt_status in d.reason


def test_node_skipped_by_dbt_never_goes_green() -> None:
    d = run(W, status(FINISHED, res(state="skipped")))
    assert d.action is Action.FAIL and "skipped" in d.reason


def test_waits_while_the_producer_is_alive_and_the_node_is_pending() -> None:
    assert run(W, status(RUNNING)).action is Action.WAIT
    assert run(W, None, producer="running").action is Action.WAIT
    assert run(W, None, producer=None).action is Action.WAIT


def test_a_finished_build_without_the_node_is_not_green() -> None:
    d = run(W, status(FINISHED, res("model.shop.other")))
    assert d.action is Action.FAIL and "without building this node" in d.reason


def test_dbt_that_could_not_run_fails_consumers_with_its_error() -> None:
    d = run(W, status(FAILED, error="Could not find profile named 'nope'"))
    assert d.action is Action.FAIL and "nope" in d.reason


def test_a_dead_producer_is_noticed_through_a_stale_heartbeat() -> None:
    stale = status(RUNNING, beat=NOW - 60)
    assert needs_producer_state(stale, NOW, 5.0)
    assert not needs_producer_state(status(RUNNING), NOW, 5.0)
    assert run(W, stale, producer="running").action is Action.WAIT  # slow, not dead
    d = run(W, stale, producer="failed")
    assert d.action is Action.FAIL and "stopped" in d.reason


def test_a_producer_that_will_resume_is_waited_for() -> None:
    stale = status(RUNNING, beat=NOW - 60)
    resuming = Watch(NODE, producer_resumes=True)
    assert run(resuming, stale, producer="up_for_retry").action is Action.WAIT
    assert run(W, stale, producer="up_for_retry").action is Action.FAIL


def test_producer_that_never_ran_skips_the_consumer() -> None:
    d = run(W, None, producer="upstream_failed")
    assert d.action is Action.SKIP


def test_status_lost_after_the_producer_ended_is_not_green() -> None:
    d = run(W, None, producer="success")
    assert d.action is Action.FAIL and "no status" in d.reason


def test_attached_test_failure_fails_the_model_and_names_the_test() -> None:
    watch = Watch(NODE, tests=(TEST,))
    d = run(watch, status(RUNNING, res(), res(TEST, "fail", message="Got 3 results")))
    assert d.action is Action.FAIL and "unique_orders_id" in d.reason and "Got 3 results" in d.reason


def test_model_waits_for_its_tests_then_warnings_do_not_fail() -> None:
    watch = Watch(NODE, tests=(TEST,))
    assert run(watch, status(RUNNING, res())).action is Action.WAIT
    d = run(watch, status(RUNNING, res(), res(TEST, "warn", message="1 row")))
    assert d.action is Action.SUCCEED and d.warnings and "warned" in d.warnings[0]


def test_test_without_result_after_the_build_is_a_warning_not_a_failure() -> None:
    watch = Watch(NODE, tests=(TEST,))
    d = run(watch, status(FINISHED, res()))
    assert d.action is Action.SUCCEED and "no result" in d.warnings[0]


def test_retry_rebuilds_locally_when_there_is_no_upstream() -> None:
    d = run(W, status(FINISHED, res(state="error")), try_number=2)
    assert d.action is Action.RUN_LOCALLY


def test_retry_of_a_green_node_stays_green_without_rebuilding() -> None:
    d = run(W, status(FINISHED, res()), try_number=3)
    assert d.action is Action.SUCCEED


def test_retry_waits_in_dbt_order_for_upstream_consumers() -> None:
    watch = Watch(NODE, upstream=("g.stg",))
    st = status(FINISHED, res(state="skipped"))
    unknown = run(watch, st, try_number=2)
    assert unknown.action is Action.WAIT and unknown.needs_task_states
    assert run(watch, st, try_number=2, task_states={"g.stg": "up_for_retry"}).action is Action.WAIT
    assert run(watch, st, try_number=2, task_states={"g.stg": "success"}).action is Action.RUN_LOCALLY
    blocked = run(watch, st, try_number=2, task_states={"g.stg": "failed"})
    assert blocked.action is Action.FAIL and "g.stg" in blocked.reason


def test_old_attempt_result_waits_for_a_resuming_producer() -> None:
    watch = Watch(NODE, producer_resumes=True)
    st = status(RUNNING, res(state="error", attempt=1), attempt=2)
    assert run(watch, st, try_number=2).action is Action.WAIT
    assert run(W, st, try_number=2).action is Action.RUN_LOCALLY


def test_incomplete_status_is_never_green() -> None:
    st = status(FINISHED, complete=False)
    assert run(W, st).action is Action.FAIL


def test_a_lost_worker_fails_first_tries_but_retries_wait_for_airflow_to_end_the_producer() -> None:
    silent = status(RUNNING, beat=NOW - 120)
    first = run(W, silent, producer="running")
    assert first.action is Action.FAIL and "silent for 120 s" in first.reason
    retry = run(W, silent, try_number=2, producer="running")
    assert retry.action is Action.WAIT  # it may still be building: never rebuild next to it
    assert run(W, silent, try_number=2, producer="failed").action is Action.RUN_LOCALLY


def test_in_skip_mode_a_failed_node_is_rebuilt_even_while_the_producer_runs() -> None:
    st = status(RUNNING, res(state="error"))
    assert run(W, st, try_number=2, producer="running").action is Action.RUN_LOCALLY


def test_in_resume_mode_a_retry_waits_until_the_producer_cannot_build_any_more() -> None:
    watch = Watch(NODE, producer_resumes=True)
    st = status(FINISHED, res(state="error"))
    unknown = run(watch, st, try_number=2)
    assert unknown.action is Action.WAIT and unknown.needs_task_states
    assert run(watch, st, try_number=2, producer="queued").action is Action.WAIT
    assert run(watch, st, try_number=2, producer="up_for_retry").action is Action.WAIT
    assert run(watch, st, try_number=2, producer="success").action is Action.RUN_LOCALLY


def test_a_node_left_out_of_the_run_is_skipped_with_the_reason_on_every_try() -> None:
    left_out = NodeResult(NODE, "excluded", message="source fhir.patient is stale")
    for try_number in (1, 2):
        d = run(W, status(FINISHED, left_out), try_number=try_number)
        assert d.action is Action.SKIP and "stale" in d.reason
