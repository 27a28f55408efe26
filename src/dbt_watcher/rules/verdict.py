"""What a consumer does next, given what the channel and Airflow say. Pure: no I/O, no clock.

The trigger (deferrable), the sensor (on a worker), the producer (asset events) and the audit all call
:func:`decide`, so they cannot disagree. The invariant: **green only on positive evidence** — this
DAG run's own dbt invocation reported the node's final status as success and every test that gates
it as pass or warn. Which tests gate it is what that invocation selected (the selection the producer
publishes, :mod:`dbt_watcher.rules.gating`), not what the DAG file expected. Anything missing, skipped,
cancelled, partial, unreadable or not (yet) this try's word is not green:

* a first try reports anything else as a failure (``FAIL``) with dbt's own message;
* a retry — automatic or a user's clear — rebuilds the node on a worker (``RUN_LOCALLY``), but only
  once nobody else can build it and every upstream consumer is green in this run (dbt order);
* a consumer whose producer never ran in this DAG run, or whose node was left out of this run or not
  selected by its dbt invocation, ends ``SKIP``; while evidence may still come, ``WAIT``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum

from dbt_watcher.channel.liveness import PRODUCER_NEVER_RAN, producer_stopped
from dbt_watcher.channel.records import RunStatus
from dbt_watcher.invocation.events import NodeResult, NodeStatus
from dbt_watcher.rules.watch import Watch
from dbt_watcher.task_states import ENDED, NO_STATE, TaskState

#: Consumer states that end a task for good (an upstream in one of them blocks a rebuild).
_TERMINAL_NOT_GREEN = ENDED - {TaskState.SUCCESS}
_TEST_FAILURES = frozenset({NodeStatus.FAIL, NodeStatus.ERROR, NodeStatus.RUNTIME_ERROR})
#: After this many reads in a row that could not be understood, the consumer stops waiting.
UNREADABLE_LIMIT = 20


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
    #: WAIT only because Airflow's task states are unknown: the producer's, or the upstream consumers'.
    needs_task_states: bool = False


@dataclass(frozen=True)
class View:
    """Everything a consumer knows in one tick (see :mod:`dbt_watcher.channel.liveness`)."""

    status: RunStatus | None
    #: The status is the current producer try's word (seen written live, or Airflow says no try runs).
    trusted: bool = True
    #: Airflow's state of the producer task, when it was read this tick.
    producer_state: str | None = None
    #: Airflow's states of the upstream consumers, when they were read this tick.
    task_states: Mapping[str, str] | None = None
    #: Consecutive reads whose content could not be understood, and the last such problem.
    unreadable: int = 0
    unreadable_reason: str | None = None


def decide(watch: Watch, view: View, *, try_number: int) -> Decision:
    """The next step of a consumer of ``watch`` on try ``try_number`` (1 = first try)."""
    # A producer that never started dbt in this run builds everything on its next try.
    builds_next = watch.producer_resumes or view.status is None or not view.status.built
    stopped = producer_stopped(view.producer_state, builds_next)
    verdict = _Verdict(watch, try_number > 1, view.task_states, view.producer_state, stopped, builds_next)
    if view.unreadable >= UNREADABLE_LIMIT:
        return Decision(
            Action.FAIL,
            f"the run's status could not be read {view.unreadable} times in a row: {view.unreadable_reason}",
        )
    status = view.status
    if status is None:
        if view.producer_state in PRODUCER_NEVER_RAN:
            return Decision(Action.SKIP, f"the producer did not run in this DAG run ({view.producer_state})")
        if not stopped:
            return _wait("waiting for the producer to start publishing", needs_states=view.producer_state is None)
        return verdict.not_green(f"the producer ended ({view.producer_state}) but published no status for this run")
    if not view.trusted:
        return _wait(
            "waiting to see the producer's status change (one that never changes may be left from an earlier try)",
            needs_states=True,
        )
    # The current attempt has published its last word, or Airflow says no attempt will publish again. An
    # attempt that never started dbt is not the last word while the producer may run again: its next
    # try builds everything.
    done = stopped or (status.finished and status.built)
    result = status.results.get(watch.unique_id)
    if result is not None and result.excluded:
        return Decision(Action.SKIP, result.message or "left out of this run", result)
    if result is None and _not_selected(watch.unique_id, status, done):
        return Decision(Action.SKIP, NOT_SELECTED)
    if result is None or (status.final_only and not result.closing):
        if not done:
            return _wait("waiting for dbt to build this node")
        return verdict.not_green(_missing_reason(status, view.producer_state, stopped), may_build=not stopped)
    if result.attempt < status.attempt and not done and watch.producer_resumes:
        return _wait(f"producer attempt {status.attempt} is re-running what did not succeed")
    if result.skipped:
        return verdict.not_green(
            f"dbt skipped this node: {result.message or 'a node or test upstream of it failed'}", result
        )
    if not result.succeeded:
        return verdict.not_green(f"dbt reported {result.status}: {result.message or 'no message'}", result)
    return verdict.with_tests(status, result, done)


#: Why a consumer whose node the run's dbt invocation did not select is skipped.
NOT_SELECTED = (
    "this run's dbt invocation did not select it (the run's select, exclude and selector, and the vars and "
    "dbt_args the run gave dbt)"
)


def _not_selected(unique_id: str, status: RunStatus, done: bool) -> bool:
    """Positive evidence that no attempt of this run builds the node: the current attempt's published
    selection (or, once nothing more is coming, the last one published) does not list it."""
    if status.selection_attempt is None or unique_id in status.selection:
        return False
    return status.selection_current or done


def _missing_reason(status: RunStatus, producer_state: str | None, stopped: bool) -> str:
    if not status.complete:
        return "part of this run's status could not be read from the channel"
    if status.final_only:
        why = "dbt's closing record (run_results.json) of this run has no final status for this node"
    elif not status.finished and stopped:
        why = f"the producer stopped ({producer_state}) before dbt built this node"
    else:
        why = "the dbt invocation ended without building this node"
    return f"{why}: {status.error}" if status.error else why


@dataclass(frozen=True)
class _Verdict:
    watch: Watch
    is_retry: bool
    task_states: Mapping[str, str] | None
    producer_state: str | None
    producer_stopped: bool
    #: The producer's next attempt may build any node that is not green yet (it resumes, or it has
    #: not started dbt in this run).
    producer_builds_next: bool

    def with_tests(self, status: RunStatus, result: NodeResult, done: bool) -> Decision:
        tests: Mapping[str, str] = {}
        if self.watch.gated:
            selected = status.selection.get(self.watch.unique_id)
            if selected is None:
                if not (done or status.selection_current):
                    return _wait("node built; waiting for this run's dbt selection (which tests gate it)")
                return self.not_green(
                    "the node was built, but this run's dbt invocation did not report selecting it, so which "
                    "tests gate it is unknown",
                    result,
                    may_build=not self.producer_stopped,
                )
            tests = selected
        bad, warned, missing = [], [], []
        for test_id in tests:
            test = status.results.get(test_id)
            # A test of an earlier attempt checked the relation this attempt's build replaced.
            if test is None or (status.final_only and not test.closing) or test.attempt < result.attempt:
                missing.append(test_id)
            elif test.status in _TEST_FAILURES or test.skipped or not test.succeeded:
                bad.append(f"{_short(test_id)} ({test.status}: {test.message or 'no message'})")
            elif test.status == NodeStatus.WARN:
                warned.append(f"test {_short(test_id)} warned: {test.message or 'no message'}")
        if bad:
            return self.not_green("the node was built but tests that gate it did not pass: " + "; ".join(bad), result)
        if missing and not done:
            return _wait(f"node built; waiting for {len(missing)} of its tests")
        if missing:
            names = ", ".join(_short(t) for t in missing)
            return self.not_green(
                f"the node was built but {len(missing)} of the tests this run selected for it have no result "
                f"({names}): dbt did not run them (--fail-fast cancelled them, or the producer stopped first)",
                result,
                may_build=not self.producer_stopped,
            )
        return Decision(Action.SUCCEED, f"dbt reported {result.status}", result, tuple(warned))

    def not_green(self, reason: str, result: NodeResult | None = None, *, may_build: bool = False) -> Decision:
        """Report on a first try; on a retry rebuild locally once nobody else can build the node.

        ``may_build``: the producer's current attempt may still build this node. A producer whose
        next attempt builds what is not green may build it too.
        """
        if not self.is_retry:
            return Decision(Action.FAIL, reason, result)
        if (may_build or self.producer_builds_next) and not self.producer_stopped:
            if self.producer_state is None:
                return _wait("checking the producer before rebuilding", needs_states=True)
            return _wait(f"the producer ({self.producer_state}) may still build this node; not rebuilding yet")
        if not self.watch.upstream:
            return Decision(Action.RUN_LOCALLY, reason, result)
        if self.task_states is None:
            return _wait("checking the upstream consumers before rebuilding", needs_states=True)
        waiting = []
        for upstream in self.watch.upstream:
            state = self.task_states.get(upstream, NO_STATE)
            if state in _TERMINAL_NOT_GREEN:
                return Decision(
                    Action.FAIL,
                    f"{reason}; upstream task {upstream} ended {state}, so this node is not rebuilt",
                    result,
                )
            if state != TaskState.SUCCESS:
                waiting.append(upstream)
        if waiting:
            return _wait(f"waiting for {', '.join(waiting)} to succeed before rebuilding", needs_states=True)
        return Decision(Action.RUN_LOCALLY, reason, result)


def final_decision(watch: Watch, status: RunStatus) -> Decision:
    """What a first-try consumer decides from a finished attempt's status (the producer's own view)."""
    return decide(watch, View(status, trusted=True, producer_state=TaskState.SUCCESS), try_number=1)


def _wait(reason: str, *, needs_states: bool = False) -> Decision:
    return Decision(Action.WAIT, reason, needs_task_states=needs_states)


def _short(unique_id: str) -> str:
    parts = unique_id.split(".")
    return parts[2] if len(parts) > 2 else unique_id
