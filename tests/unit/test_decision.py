"""The consumer's decision: green only on positive evidence from this run's own dbt invocation."""

from __future__ import annotations

import pytest

from dbt_watcher.channel.records import RunStatus
from dbt_watcher.channel.wire import FAILED, FINISHED, RUNNING
from dbt_watcher.invocation.events import NodeResult
from dbt_watcher.rules.verdict import UNREADABLE_LIMIT, Action, Decision, View, decide, final_decision
from dbt_watcher.rules.watch import Watch

NODE = "model.shop.orders"
TEST = "test.shop.unique_orders_id.abc"
TEST2 = "test.shop.relationships_orders_customer.def"


#: What the run's dbt invocation selected, unless a test says otherwise: the node and its two tests.
SELECTED = {NODE: {TEST: "fqn:unique", TEST2: "fqn:relationships"}}


def status(state: str = RUNNING, *results: NodeResult, attempt: int = 1, **kw: object) -> RunStatus:
    kw.setdefault("selection", SELECTED)
    kw.setdefault("selection_attempt", attempt)
    return RunStatus("gen1", attempt, state, {r.unique_id: r for r in results}, **kw)  # type: ignore[arg-type]


def res(
    uid: str = NODE, state: str = "success", attempt: int = 1, message: str | None = None, **kw: object
) -> NodeResult:
    return NodeResult(uid, state, attempt=attempt, message=message, **kw)  # type: ignore[arg-type]


def run(
    watch: Watch, st: RunStatus | None, *, try_number: int = 1, producer: str | None = None, **kw: object
) -> Decision:
    return decide(watch, View(st, producer_state=producer, **kw), try_number=try_number)  # type: ignore[arg-type]


#: A consumer whose node's tests do not gate it, and one gated by the tests the run selected for its node.
W = Watch(NODE, gated=False)
TESTED = Watch(NODE)


def test_green_only_for_a_success_in_this_run() -> None:
    d = run(W, status(RUNNING, res()))
    assert d.action is Action.SUCCEED and d.result is not None


@pytest.mark.parametrize("dbt_status", ["error", "fail", "partial success", "unknown", "runtime error"])
def test_any_other_status_fails_the_first_try_with_dbts_message(dbt_status: str) -> None:
    d = run(W, status(RUNNING, res(state=dbt_status, message="Database Error: boom")))
    assert d.action is Action.FAIL
    assert dbt_status in d.reason and "boom" in d.reason


def test_node_skipped_by_dbt_never_goes_green_and_says_why() -> None:
    skipped = res(
        state="skipped", message="dbt skipped it because model.shop.stg (error) upstream of it did not succeed"
    )
    d = run(W, status(FINISHED, skipped))
    assert d.action is Action.FAIL and "model.shop.stg (error)" in d.reason


def test_waits_while_the_producer_may_still_publish() -> None:
    assert run(W, status(RUNNING)).action is Action.WAIT
    assert run(W, None, producer="running").action is Action.WAIT
    assert run(W, None, producer=None).action is Action.WAIT


def test_a_finished_build_without_the_node_is_not_green() -> None:
    d = run(W, status(FINISHED, res("model.shop.other")))
    assert d.action is Action.FAIL and "without building this node" in d.reason


def test_dbt_that_could_not_run_fails_consumers_with_its_error() -> None:
    d = run(W, status(FAILED, error="Could not find profile named 'nope'"))
    assert d.action is Action.FAIL and "nope" in d.reason


# ---------------------------------------------------------------- kind 1: missing evidence is not a pass
def test_tests_still_running_are_waited_for() -> None:
    assert run(TESTED, status(RUNNING, res(), res(TEST, "pass"))).action is Action.WAIT


@pytest.mark.parametrize("producer", ["success", "failed", "up_for_retry"])
def test_tests_without_a_result_once_dbt_is_done_are_not_green(producer: str) -> None:
    # --fail-fast cancelled them, or the producer died after the model and before its tests
    finished = run(TESTED, status(FINISHED, res(), res(TEST, "pass")), producer=producer)
    assert finished.action is Action.FAIL and "relationships_orders_customer" in finished.reason
    died = run(TESTED, status(RUNNING, res(), res(TEST, "pass")), producer=producer)
    assert died.action is Action.FAIL and "no result" in died.reason


def test_skipped_and_failed_tests_are_not_green() -> None:
    skipped = run(TESTED, status(FINISHED, res(), res(TEST, "pass"), res(TEST2, "skipped")))
    assert skipped.action is Action.FAIL and "skipped" in skipped.reason
    failed = run(TESTED, status(RUNNING, res(), res(TEST, "fail", message="3 rows"), res(TEST2, "pass")))
    assert failed.action is Action.FAIL and "3 rows" in failed.reason


def test_warned_tests_are_green_with_a_warning() -> None:
    d = run(TESTED, status(RUNNING, res(), res(TEST, "warn", message="2 rows"), res(TEST2, "pass")))
    assert d.action is Action.SUCCEED and any("2 rows" in w for w in d.warnings)


def test_a_test_of_an_earlier_attempt_does_not_prove_a_later_build() -> None:
    # attempt 2 rebuilt the node and ran one of its tests before dbt stopped; the other passed in attempt 1
    rebuilt = status(FINISHED, res(attempt=2), res(TEST, "pass", attempt=1), res(TEST2, "pass", attempt=2), attempt=2)
    d = run(TESTED, rebuilt)
    assert d.action is Action.FAIL and "unique_orders_id" in d.reason
    resumed = status(FINISHED, res(attempt=1), res(TEST, "pass", attempt=2), res(TEST2, "pass", attempt=1), attempt=2)
    assert run(TESTED, resumed).action is Action.SUCCEED  # the tests re-ran on the build they check, or a later


# ---------------------------------------------------------------- kind 2: a node's verdict is its final one
def test_partial_success_is_not_success() -> None:
    d = run(W, status(FINISHED, res(state="partial success", message="PARTIAL SUCCESS (2/3)")))
    assert d.action is Action.FAIL and "partial success" in d.reason


def test_with_fail_fast_only_dbts_closing_record_counts() -> None:
    streamed = status(RUNNING, res(), final_only=True)
    assert run(W, streamed).action is Action.WAIT  # dbt may still call it skipped in run_results.json
    closed = status(FINISHED, res(closing=True), final_only=True)
    assert run(W, closed).action is Action.SUCCEED
    never = run(W, status(FINISHED, res(), final_only=True))
    assert never.action is Action.FAIL and "closing record" in never.reason


# ---------------------------------------------------------------- kind 3 and 4: whose word, and is anyone there
def test_a_status_not_known_to_be_the_current_tries_word_is_never_green() -> None:
    # A cleared DAG run keeps the producer's XComs until its next try starts: they must not count.
    d = run(W, status(FINISHED, res()), producer="queued", trusted=False)
    assert d.action is Action.WAIT and d.needs_task_states


def test_silence_alone_never_ends_anything() -> None:
    # A live producer whose writes do not reach us (clock skew, an api-server outage): Airflow says running.
    assert run(TESTED, status(RUNNING, res()), producer="running").action is Action.WAIT
    assert run(W, status(RUNNING), producer="running").action is Action.WAIT


def test_a_dead_producer_is_only_declared_by_airflow() -> None:
    d = run(W, status(RUNNING), producer="failed")
    assert d.action is Action.FAIL and "stopped" in d.reason
    resuming = Watch(NODE, gated=False, producer_resumes=True)
    assert run(resuming, status(RUNNING), producer="up_for_retry").action is Action.WAIT
    assert run(W, status(RUNNING), producer="up_for_retry").action is Action.FAIL


def test_a_producer_that_never_started_dbt_builds_everything_on_its_retry() -> None:
    # kind 5: it died while parsing; its retry is a first build, so a retried consumer waits for it
    unbuilt = status(RUNNING, built=False)
    assert run(W, unbuilt, try_number=2, producer="up_for_retry").action is Action.WAIT
    assert run(W, None, try_number=2, producer="up_for_retry").action is Action.WAIT


def test_unreadable_status_fails_after_a_bounded_number_of_reads() -> None:
    assert run(W, status(RUNNING), unreadable=UNREADABLE_LIMIT - 1).action is Action.WAIT
    d = run(W, status(RUNNING), unreadable=UNREADABLE_LIMIT, unreadable_reason="ValueError: garbage")
    assert d.action is Action.FAIL and "garbage" in d.reason


def test_producer_that_never_ran_skips_the_consumer() -> None:
    assert run(W, None, producer="upstream_failed").action is Action.SKIP


def test_a_node_left_out_of_the_run_is_skipped() -> None:
    d = run(W, status(FINISHED, res(state="excluded", message="source is stale")))
    assert d.action is Action.SKIP and "stale" in d.reason


# ---------------------------------------------------------------- retries
def test_retry_rebuilds_only_once_nobody_else_can_and_upstream_is_green() -> None:
    watch = Watch(NODE, gated=False, upstream=("g.stg",))
    failed = status(FINISHED, res(state="error"))
    assert run(watch, failed, try_number=2, producer="running").action is Action.WAIT
    assert run(watch, failed, try_number=2, producer="success").needs_task_states
    ready = run(watch, failed, try_number=2, producer="success", task_states={"g.stg": "success"})
    assert ready.action is Action.RUN_LOCALLY
    blocked = run(watch, failed, try_number=2, producer="success", task_states={"g.stg": "failed"})
    assert blocked.action is Action.FAIL and "g.stg" in blocked.reason


def test_a_resuming_producer_is_waited_for_instead_of_rebuilding() -> None:
    watch = Watch(NODE, gated=False, producer_resumes=True)
    earlier = status(RUNNING, res(state="error", attempt=1), attempt=2)
    assert run(watch, earlier, try_number=2, producer="running").action is Action.WAIT


def test_final_decision_is_what_the_producer_uses_for_asset_events() -> None:
    assert final_decision(TESTED, status(FINISHED, res(), res(TEST, "pass"))).action is Action.FAIL
    assert (
        final_decision(TESTED, status(FINISHED, res(), res(TEST, "pass"), res(TEST2, "pass"))).action is Action.SUCCEED
    )


# ---------------------------------------------------------------- the run decides which tests gate a consumer
RUNTIME_ONLY = "test.shop.not_null_orders_amount_strict.aaa"


def test_a_test_only_the_run_selected_gates_the_consumer() -> None:
    # enabled by a run-time var: the DAG file never saw it, dbt's selection of this run has it
    selected = {NODE: {RUNTIME_ONLY: "fqn:strict"}}
    failed = run(TESTED, status(FINISHED, res(), res(RUNTIME_ONLY, "fail", message="4 rows"), selection=selected))
    assert failed.action is Action.FAIL and "4 rows" in failed.reason
    waiting = run(TESTED, status(RUNNING, res(), selection=selected))
    assert waiting.action is Action.WAIT


def test_tests_the_run_did_not_select_are_not_awaited() -> None:
    # --indirect-selection cautious or empty, or tests disabled by run-time vars: dbt runs none of them
    d = run(TESTED, status(FINISHED, res(), selection={NODE: {}}))
    assert d.action is Action.SUCCEED


def test_green_waits_for_the_runs_selection() -> None:
    unknown = status(RUNNING, res(), selection={}, selection_attempt=None)
    assert run(TESTED, unknown).action is Action.WAIT
    never = run(TESTED, status(FINISHED, res(), selection={}, selection_attempt=None))
    assert never.action is Action.FAIL and "which tests gate it is unknown" in never.reason


def test_a_node_the_run_did_not_select_is_skipped_at_once_and_never_rebuilt() -> None:
    other: dict[str, dict[str, str]] = {"model.shop.customers": {}}
    d = run(TESTED, status(RUNNING, selection=other))
    assert d.action is Action.SKIP and "did not select it" in d.reason
    retry = run(TESTED, status(FINISHED, selection=other), try_number=2, producer="success")
    assert retry.action is Action.SKIP
    # before the current attempt's selection is known, the node may still be selected by it
    assert run(TESTED, status(RUNNING, attempt=2, selection=other, selection_attempt=1)).action is Action.WAIT


def test_a_result_for_a_node_the_selection_does_not_list_is_not_green() -> None:
    d = run(TESTED, status(FINISHED, res(), selection={"model.shop.customers": {}}))
    assert d.action is Action.FAIL and "did not report selecting it" in d.reason
