"""What a consumer does next, given what the status channel and Airflow say. Pure: no I/O.

The trigger (deferrable) and the sensor (on a worker) both call :func:`decide`, so they cannot
disagree. The invariants:

* ``SUCCEED`` only for a node whose result in *this* run is a success and none of whose attached
  tests failed;
* a first try reports a failure (``FAIL``); a retry — automatic or a user's clear — rebuilds the
  node on a worker (``RUN_LOCALLY``), but only once the producer can no longer build it and every
  upstream consumer is green in this run, so retries run in dbt order;
* a consumer whose producer never ran in this DAG run ends ``SKIP`` (it was never built).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from dbt_watcher.events import NodeResult
from dbt_watcher.status import RUNNING, RunStatus

#: Producer task states in which it may still publish results for this run.
PRODUCER_ACTIVE_STATES = frozenset(
    {"none", "scheduled", "queued", "running", "restarting", "up_for_reschedule", "deferred"}
)
#: Producer states meaning it did not run at all in this DAG run.
PRODUCER_NEVER_RAN = frozenset({"upstream_failed", "skipped", "removed"})
#: Consumer states that end a task for good (an upstream in one of them blocks a rebuild).
_TERMINAL_NOT_GREEN = frozenset({"failed", "upstream_failed", "skipped", "removed"})
_TEST_FAILURE_STATUSES = frozenset({"fail", "error"})


class Action(Enum):
    WAIT = "wait"
    SUCCEED = "succeed"
    FAIL = "fail"
    SKIP = "skip"
    RUN_LOCALLY = "run_locally"


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str
    result: NodeResult | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)
    #: True when the decision is WAIT only because the upstream consumers' states are unknown.
    needs_task_states: bool = False


@dataclass(frozen=True)
class Watch:
    """What one consumer watches: its node, the tests attached to it and its upstream consumers."""

    unique_id: str
    tests: tuple[str, ...] = ()
    upstream: tuple[str, ...] = ()
    producer_resumes: bool = False


def needs_producer_state(status: RunStatus | None, now: float, stale_after: float) -> bool:
    """Whether the channel alone cannot tell if the producer is alive (ask Airflow then)."""
    return status is None or status.is_stale(now, stale_after)


def lost_after(stale_after: float) -> float:
    """How long a silent producer that Airflow still calls running is trusted before it counts as lost.

    A killed task process is reported by its supervisor at once (its state turns failed); only a
    lost worker leaves a silent producer "running" until Airflow's own heartbeat timeout.
    """
    return max(30.0, 15.0 * stale_after)


def decide(
    watch: Watch,
    status: RunStatus | None,
    *,
    try_number: int,
    producer_state: str | None,
    now: float,
    stale_after: float,
    task_states: Mapping[str, str] | None = None,
) -> Decision:
    stopped = _stopped(producer_state, watch)
    verdict = _Verdict(watch, try_number > 1, task_states, producer_state, stopped)
    if status is None:
        if producer_state in PRODUCER_NEVER_RAN:
            return Decision(Action.SKIP, f"the producer did not run in this DAG run ({producer_state})")
        if not stopped:
            return _wait("waiting for the producer to start publishing")
        return verdict.not_green(f"the producer ended ({producer_state}) but no status of this run exists")
    result = status.results.get(watch.unique_id)
    silent = status.is_stale(now, stale_after)
    gone = silent and (stopped or now - status.heartbeat > lost_after(stale_after))
    if result is None:
        if status.state == RUNNING and not gone:
            return _wait("waiting for dbt to build this node")
        if not status.complete:
            return verdict.not_green("part of this run's status is missing from the status store", may_build=True)
        why = "the dbt invocation ended without building this node"
        if status.state == RUNNING:
            why = f"the producer stopped ({producer_state}) before dbt built this node"
            if not stopped:
                why = f"the producer has been silent for {now - status.heartbeat:.0f} s before dbt built this node"
        reason = f"{why}: {status.error}" if status.error else why
        return verdict.not_green(reason, may_build=status.state == RUNNING)
    if result.excluded:
        return Decision(Action.SKIP, result.message or "left out of this run", result)
    if result.attempt < status.attempt and status.state == RUNNING and watch.producer_resumes:
        return _wait(f"producer attempt {status.attempt} is re-running failed nodes")
    if result.skipped:
        return verdict.not_green("dbt skipped this node because a node or test upstream of it failed", result)
    if not result.succeeded:
        return verdict.not_green(f"dbt reported {result.status}: {result.message or 'no message'}", result)
    return verdict.with_tests(status, result, gone)


@dataclass(frozen=True)
class _Verdict:
    watch: Watch
    is_retry: bool
    task_states: Mapping[str, str] | None
    producer_state: str | None
    producer_stopped: bool

    def with_tests(self, status: RunStatus, result: NodeResult, producer_gone: bool) -> Decision:
        failed, warned, missing = [], [], []
        for test_id in self.watch.tests:
            test = status.results.get(test_id)
            if test is None:
                missing.append(test_id)
            elif test.status in _TEST_FAILURE_STATUSES:
                failed.append(f"{_short(test_id)} ({test.status}: {test.message or 'no message'})")
            elif test.status == "warn":
                warned.append(f"test {_short(test_id)} warned: {test.message or 'no message'}")
        if failed:
            return self.not_green("the node was built but its tests failed: " + "; ".join(failed), result)
        if missing and status.state == RUNNING and not producer_gone:
            return _wait(f"node built; waiting for {len(missing)} of its tests")
        warnings = warned + [f"test {_short(t)} reported no result in this run" for t in missing]
        return Decision(Action.SUCCEED, f"dbt reported {result.status}", result, tuple(warnings))

    def not_green(self, reason: str, result: NodeResult | None = None, *, may_build: bool = False) -> Decision:
        """Report on a first try; on a retry rebuild locally once nobody else can build the node.

        ``may_build``: the producer's current attempt may still build this node (it has no result
        yet). A producer that resumes may build any node that is not green yet.
        """
        if not self.is_retry:
            return Decision(Action.FAIL, reason, result)
        if (may_build or self.watch.producer_resumes) and not self.producer_stopped:
            if self.producer_state is None:
                return _wait("checking the producer before rebuilding", needs_states=True)
            return _wait(f"the producer ({self.producer_state}) may still build this node; not rebuilding yet")
        if not self.watch.upstream:
            return Decision(Action.RUN_LOCALLY, reason, result)
        if self.task_states is None:
            return _wait("checking the upstream consumers before rebuilding", needs_states=True)
        waiting = []
        for upstream in self.watch.upstream:
            state = self.task_states.get(upstream, "none")
            if state in _TERMINAL_NOT_GREEN:
                return Decision(
                    Action.FAIL,
                    f"{reason}; upstream task {upstream} ended {state}, so this node is not rebuilt",
                    result,
                )
            if state != "success":
                waiting.append(upstream)
        if waiting:
            return _wait(f"waiting for {', '.join(waiting)} to succeed before rebuilding", needs_states=True)
        return Decision(Action.RUN_LOCALLY, reason, result)


def _stopped(producer_state: str | None, watch: Watch) -> bool:
    """True when the producer will not publish anything more for this run."""
    if producer_state is None or producer_state in PRODUCER_ACTIVE_STATES:
        return False
    return not (producer_state == "up_for_retry" and watch.producer_resumes)


def _wait(reason: str, *, needs_states: bool = False) -> Decision:
    return Decision(Action.WAIT, reason, needs_task_states=needs_states)


def _short(unique_id: str) -> str:
    parts = unique_id.split(".")
    return parts[2] if len(parts) > 2 else unique_id
