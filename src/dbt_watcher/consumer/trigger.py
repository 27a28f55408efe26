"""The consumers' trigger: every consumer of a run in a triggerer follows one poll of the channel.

Each consumer defers on its own :class:`ConsumerTrigger`; all the triggers of one run in a triggerer
process follow the same poll (:mod:`dbt_watcher.consumer.shared_poll`) and each hands every tick's
snapshot to :meth:`~ConsumerTrigger.follow`. A trigger decides again only when the snapshot concerns
its node or the tests the run selected for it, or something else changed (the producer's state, an
attempt, the run's selection).

A consumer whose node succeeded ends right here, without a worker (``TaskSuccessEvent``). A node that
did not ends it failed in a way Airflow retries: with ``TaskFailedEvent`` where the triggerer routes
it through the task's retries (Airflow 3.3), else by resuming on a worker that raises. Only a consumer
that must build its node itself, or has work to do on success (an ``on_success_callback``), resumes on
a worker otherwise. Nothing here reads the task's DAG: the triggerer may start it without one
(:mod:`dbt_watcher.consumer.triggerer_start`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import AsyncGenerator, AsyncIterator, Hashable, MutableMapping
from contextlib import aclosing
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import (
    BaseTrigger,
    TaskFailedEvent,
    TaskSkippedEvent,
    TaskSuccessEvent,
    TriggerEvent,
)

from dbt_watcher import airflow_lines
from dbt_watcher.channel.store import RunAddress
from dbt_watcher.channel.wire import encode_result
from dbt_watcher.consumer.poller import DEMANDS, Demand, Snapshot
from dbt_watcher.consumer.shared_poll import follow, poll_run, stream_key
from dbt_watcher.rules.links import ConsumerAt, link_xcoms
from dbt_watcher.rules.verdict import Action, Decision, decide
from dbt_watcher.rules.watch import Watch

log = logging.getLogger(__name__)

CLASSPATH = "dbt_watcher.consumer.trigger.ConsumerTrigger"
#: Airflow's own trigger timeout is set this much later than ours, so ours fires first and says why.
TIMEOUT_GRACE_SECONDS = 60.0
# The XCom that holds why a consumer was skipped or failed. Its log says so too, but Airflow's triggerer
# can drop a trigger's last log lines (apache/airflow#66158: they travel on a socket apart from the end
# event); an end event's XComs are written with the task's state, so the reason always reaches the UI.
REASON_XCOM = "dbt_reason"
#: A waiting consumer says how it waits once at start and then once per this period, each at its own
#: point of the period: a line per consumer in the same tick would burst through the triggerer's log
#: socket, which Airflow does not drain while it sends its runner a large message.
_PROGRESS_EVERY = 60.0
#: A trigger that a worker deferred to does not hand the task back to a worker sooner than this after the
#: deferral. Airflow's scheduler can read the deferring worker's exit ("success") after the resumed try
#: is already queued or running, take it for that try's, and fail it as killed externally
#: (apache/airflow#67287, #72716; open in 3.3). The hold gives the scheduler time to read that exit first.
#: It costs only resumes that come this soon after a deferral: a consumer that ends in the triggerer
#: (a success, a skip, a failure on 3.3) is never held, and a worker decides once before deferring.
RESUME_HOLD_SECONDS = 10.0


async def hold_resume(event: TriggerEvent, deferred_at: float | None, logger: Any) -> None:
    """Hold an event that hands the task back to a worker until RESUME_HOLD_SECONDS after a worker
    deferred it (``deferred_at``; None: the task started in the triggerer, nothing to wait for)."""
    if deferred_at is None or isinstance(event, (TaskSuccessEvent, TaskFailedEvent, TaskSkippedEvent)):
        return  # ends in the triggerer: no worker takes the task again
    wait = deferred_at + RESUME_HOLD_SECONDS - time.time()
    if wait > 0:
        logger.info("Handing the task back to a worker in %.1f s (apache/airflow#72716)", wait)
        await asyncio.sleep(wait)


def release_dag(ti: Any, context: MutableMapping[str, Any]) -> None:
    """Drop the references a started-in-the-triggerer task instance keeps to its deserialized DAG.

    Only where the triggerer built one (fast start off or not installed): a copy of the whole DAG per
    waiting consumer, held with its template context. Only memory is at stake: if an Airflow version
    refuses, the consumer keeps the copy and runs on.
    """
    try:
        context.clear()  # it is also the task instance's cached template context: task, dag, ti, ...
        if ti is not None and getattr(ti, "task", None) is not None:
            ti.task = None  # the operator, whose .dag holds every other task
    except Exception as exc:
        log.debug("dbt-watcher kept the triggerer's DAG copy: %s", exc)


class ConsumerTrigger(BaseTrigger):
    """Waits for one dbt node (and the tests that gate it) in one DAG run."""

    def __init__(
        self,
        *,
        node: str,
        producer_task_id: str,
        poke_interval: float,
        timeout: float,
        group_id: str = "",
        gated: bool = True,
        upstream: list[str] | tuple[str, ...] = (),
        producer_resumes: bool = False,
        finish_on_worker: bool = False,
        dag_id: str = "",
        run_id: str = "",
        map_index: int = -1,
        try_number: int = 0,
        deferred_at: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.node = node
        self.producer_task_id = producer_task_id
        self.poke_interval = float(poke_interval)
        self.timeout = float(timeout)
        self.group_id = group_id
        self.gated = bool(gated)
        self.upstream = list(upstream)
        self.producer_resumes = producer_resumes
        self.finish_on_worker = finish_on_worker
        self.dag_id, self.run_id, self.map_index, self.try_number = dag_id, run_id, int(map_index), int(try_number)
        self.deferred_at = deferred_at  # set when a worker deferred (None: started in the triggerer)
        self._deadline: float | None = None
        self._next_progress: float | None = None

    @property
    def watch(self) -> Watch:
        return Watch(self.node, self.gated, tuple(self.upstream), self.producer_resumes)

    def _bind(self) -> None:
        # Started by the triggerer, the kwargs are the same for every run: the run comes from the
        # task instance the triggerer attached (ids only; no DAG, no template context).
        ti = self.task_instance
        if ti is not None:
            address = RunAddress.of(ti, self.producer_task_id)
            self.dag_id, self.run_id, self.map_index = address.dag_id, address.run_id, address.map_index
            self.try_number = int(ti.try_number)

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render as Airflow does (nothing of ours is templated), then let go of the DAG copy."""
        super().render_template_fields(context, jinja_env)
        release_dag(self.task_instance, context)

    @property
    def address(self) -> RunAddress:
        return RunAddress(self.dag_id, self.run_id, self.producer_task_id, self.map_index)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "node": self.node,
                "producer_task_id": self.producer_task_id,
                "poke_interval": self.poke_interval,
                "timeout": self.timeout,
                "group_id": self.group_id,
                "gated": self.gated,
                "upstream": list(self.upstream),
                "producer_resumes": self.producer_resumes,
                "finish_on_worker": self.finish_on_worker,
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "map_index": self.map_index,
                "try_number": self.try_number,
                "deferred_at": self.deferred_at,
            },
        )

    def run_key(self) -> Hashable:
        """The run this trigger follows (the key of its poll in this process)."""
        self._bind()
        return stream_key(self.address)

    def snapshots(self) -> AsyncGenerator[Snapshot, None]:
        """The ticks of this run's poll, shared with every other trigger of the run in this process."""
        self._bind()
        address, interval, group = self.address, self.poke_interval, self.group_id
        return follow(stream_key(address), lambda: poll_run(address, interval, group))

    async def follow(self, snapshots: AsyncIterator[Snapshot]) -> AsyncIterator[TriggerEvent]:
        """Decide on every tick that concerns this consumer; yield the one event that ends it."""
        self._bind()
        control = None
        async for snapshot in snapshots:
            if control is not None and snapshot.control == control and not snapshot.concerns(self._watched(snapshot)):
                event = self._check_deadline(snapshot)  # nothing new for this consumer: no decision
            else:
                control = snapshot.control
                event = self.react(snapshot)
            if event is not None:
                await hold_resume(event, self.deferred_at, self.log)
                yield event
                return

    def _watched(self, snapshot: Snapshot) -> tuple[str, ...]:
        """The node and the tests this run selected for it (a change to any of them calls for a decision)."""
        status = snapshot.view.status
        return (self.node, *(status.selection.get(self.node, ()) if status is not None else ()))

    async def run(self) -> AsyncIterator[TriggerEvent]:
        async with aclosing(self.snapshots()) as snapshots:
            async for event in self.follow(snapshots):
                yield event
                return

    def _deadline_at(self, now: float) -> float:
        if self._deadline is None:
            timeout_after = getattr(self, "timeout_after", None)
            if isinstance(timeout_after, datetime):
                aware = timeout_after if timeout_after.tzinfo else timeout_after.replace(tzinfo=timezone.utc)
                self._deadline = aware.timestamp() - TIMEOUT_GRACE_SECONDS
            else:
                self._deadline = now + self.timeout
        return self._deadline

    def react(self, snapshot: Snapshot) -> TriggerEvent | None:
        decision = decide(self.watch, snapshot.view, try_number=self.try_number)
        if decision.action is Action.WAIT:
            if decision.needs_task_states:
                until = snapshot.at + 3 * self.poke_interval + 1
                DEMANDS.setdefault(self.run_key(), Demand()).ask([*self.upstream, self.producer_task_id], until)
            return self._waiting(decision, snapshot)
        ticks, reads, state_reads = snapshot.cost
        cost = (
            f"Poll of {self.group_id or 'the group'} for this run so far: {ticks} ticks, {reads} channel reads, "
            f"{state_reads} task-state reads, followed by {snapshot.followers} triggers"
        )
        return self._conclude(decision, cost)

    def _check_deadline(self, snapshot: Snapshot) -> TriggerEvent | None:
        if snapshot.at < self._deadline_at(snapshot.at) and (
            self._next_progress is None or snapshot.at < self._next_progress
        ):
            return None
        return self.react(snapshot)

    def _waiting(self, decision: Decision, snapshot: Snapshot) -> TriggerEvent | None:
        if snapshot.at >= self._deadline_at(snapshot.at):
            self.log.error(
                "Timed out after %.0f s while %s; the producer keeps running, this consumer fails.",
                self.timeout,
                decision.reason,
            )
            return self._fail(f"timed out after {self.timeout:.0f} s while {decision.reason}")
        reason = (
            decision.reason if not snapshot.read_error else f"{decision.reason} (read failed: {snapshot.read_error})"
        )
        if self._next_progress is None:
            self.log.info(
                "Waiting for dbt node %s%s in run %s, try %d: %s",
                self.node,
                " and the tests this run selects for it" if self.gated else "",
                self.run_id,
                self.try_number,
                reason,
            )
            phase = zlib.crc32(self.node.encode()) % int(_PROGRESS_EVERY)
            self._next_progress = snapshot.at + _PROGRESS_EVERY + phase
        elif snapshot.at >= self._next_progress:
            self.log.info("Still waiting: %s", reason)
            self._next_progress = snapshot.at + _PROGRESS_EVERY
        return None

    def _conclude(self, decision: Decision, cost: str) -> TriggerEvent:
        # One line per conclusion: a failed producer ends every waiting consumer in the same tick.
        result = decision.result
        if decision.action is Action.SUCCEED and result is not None:
            for warning in decision.warnings:
                self.log.warning("%s", warning)
            self.log.info(
                "dbt node %s: %s in %ss (rows affected: %s). %s",
                self.node,
                result.status,
                result.execution_time,
                result.rows_affected,
                cost,
            )
            if self.finish_on_worker:
                return TriggerEvent({"action": "succeed", "result": encode_result(result)})
            return TaskSuccessEvent(xcoms=self._end_xcoms({"dbt_result": result.to_dict()}))
        if decision.action is Action.RUN_LOCALLY:
            self.log.info("Try %d: %s. Building the node on a worker. %s", self.try_number, decision.reason, cost)
            return TriggerEvent({"action": "run_locally", "reason": decision.reason})
        if decision.action is Action.SKIP:
            self.log.info("Skipped: %s. %s", decision.reason, cost)
            return TaskSkippedEvent(xcoms=self._end_xcoms({REASON_XCOM: decision.reason}))
        self.log.error("dbt node %s did not succeed: %s. %s", self.node, decision.reason, cost)
        return self._fail(decision.reason)

    def _fail(self, reason: str) -> TriggerEvent:
        """End the consumer failed, in a way Airflow retries when it has retries left."""
        if airflow_lines.triggerer_retries_failed_tasks():
            return TaskFailedEvent(xcoms=self._end_xcoms({REASON_XCOM: reason}))
        return TriggerEvent({"action": "fail", "reason": reason})  # the worker raises: Airflow retries it

    def _end_xcoms(self, xcoms: dict[str, Any]) -> dict[str, Any]:
        """The XComs a consumer ending in the triggerer writes: its own, plus its extra links (which
        Airflow writes only for tasks that end on a worker)."""
        ti = self.task_instance
        if ti is None:
            return xcoms
        try:
            at = ConsumerAt(self.dag_id, self.run_id, ti.task_id, self.map_index, self.producer_task_id, self.node)
            return {**link_xcoms(at), **xcoms}
        except Exception:  # links are a convenience: they must never cost a consumer its end state
            self.log.warning("Could not build this task's extra links", exc_info=True)
            return xcoms
