"""The consumers' trigger: every consumer of a run in a triggerer shares one poll of the channel.

Each consumer defers on its own :class:`ConsumerTrigger`; the triggerer groups the triggers of one
run by :meth:`~ConsumerTrigger.shared_stream_key`, runs :meth:`~ConsumerTrigger.open_shared_stream`
once for all of them and hands every tick's snapshot to each trigger's
:meth:`~ConsumerTrigger.filter_shared_stream`. A trigger decides again only when the snapshot
concerns its node or tests, or something else changed (the producer's state, an attempt).

A consumer whose node succeeded ends right here, without a worker (``TaskSuccessEvent``); a node
that did not ends it failed (``TaskFailedEvent``, so Airflow's retries apply). Only a consumer that
must build its node itself, or has work to do on success (an ``on_success_callback``), resumes on a
worker. Nothing here reads the task's DAG: the triggerer may start it without one
(:mod:`dbt_watcher.consumer.triggerer_start`).
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections.abc import AsyncIterator, Hashable, MutableMapping
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import (
    BaseEventTrigger,
    TaskFailedEvent,
    TaskSkippedEvent,
    TaskSuccessEvent,
    TriggerEvent,
)

from dbt_watcher.channel.channel import encode_result
from dbt_watcher.channel.store import RunAddress
from dbt_watcher.consumer.decision import Action, Decision, decide
from dbt_watcher.consumer.poller import DEMANDS, Demand, RunPoller, Snapshot
from dbt_watcher.plan.group_plan import Watch
from dbt_watcher.ui.links import ConsumerAt, link_xcoms

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


def stream_key(address: RunAddress) -> Hashable:
    return ("dbt-watcher", address.dag_id, address.run_id, address.map_index, address.producer_task_id)


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


class ConsumerTrigger(BaseEventTrigger):
    """Waits for one dbt node (and the tests that gate it) in one DAG run."""

    def __init__(
        self,
        *,
        node: str,
        producer_task_id: str,
        poke_interval: float,
        timeout: float,
        group_id: str = "",
        tests: list[str] | tuple[str, ...] = (),
        upstream: list[str] | tuple[str, ...] = (),
        producer_resumes: bool = False,
        finish_on_worker: bool = False,
        dag_id: str = "",
        run_id: str = "",
        map_index: int = -1,
        try_number: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.node = node
        self.producer_task_id = producer_task_id
        self.poke_interval = float(poke_interval)
        self.timeout = float(timeout)
        self.group_id = group_id
        self.tests = list(tests)
        self.upstream = list(upstream)
        self.producer_resumes = producer_resumes
        self.finish_on_worker = finish_on_worker
        self.dag_id, self.run_id, self.map_index, self.try_number = dag_id, run_id, int(map_index), int(try_number)
        self._deadline: float | None = None
        self._next_progress: float | None = None

    @property
    def watch(self) -> Watch:
        return Watch(self.node, tuple(self.tests), tuple(self.upstream), self.producer_resumes)

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
                "tests": list(self.tests),
                "upstream": list(self.upstream),
                "producer_resumes": self.producer_resumes,
                "finish_on_worker": self.finish_on_worker,
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "map_index": self.map_index,
                "try_number": self.try_number,
            },
        )

    def shared_stream_key(self) -> Hashable | None:
        self._bind()
        return stream_key(self.address)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Snapshot]:
        address = RunAddress(kwargs["dag_id"], kwargs["run_id"], kwargs["producer_task_id"], kwargs["map_index"])
        key = stream_key(address)
        poller = RunPoller(key, address, kwargs["poke_interval"])
        try:
            while True:
                yield await poller.poll()
                await asyncio.sleep(float(kwargs["poke_interval"]))
        finally:
            DEMANDS.pop(key, None)
            # Ends when the run's last waiting consumer leaves: the cost of following the run.
            log.info(
                "dbt-watcher poll of %s run %s ended: %d ticks, %d channel reads, %d task-state reads",
                kwargs.get("group_id"),
                address.run_id,
                *poller.cost,
            )

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        self._bind()
        watched = (self.node, *self.tests)
        control = None
        async for snapshot in shared_stream:
            if control is not None and snapshot.control == control and not snapshot.concerns(watched):
                event = self._check_deadline(snapshot)  # nothing new for this consumer: no decision
            else:
                control = snapshot.control
                event = self.react(snapshot)
            if event is not None:
                yield event
                return

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self._bind()
        async for event in self.filter_shared_stream(self.open_shared_stream(self.serialize()[1])):
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
                DEMANDS.setdefault(self.shared_stream_key(), Demand()).ask(
                    [*self.upstream, self.producer_task_id], until
                )
            return self._waiting(decision, snapshot)
        ticks, reads, state_reads = snapshot.cost
        cost = (
            f"Poll of {self.group_id or 'the group'} for this run so far: {ticks} ticks, {reads} channel reads, "
            f"{state_reads} task-state reads"
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
            return TaskFailedEvent(
                xcoms=self._end_xcoms({REASON_XCOM: f"timed out after {self.timeout:.0f} s while {decision.reason}"})
            )
        reason = (
            decision.reason if not snapshot.read_error else f"{decision.reason} (read failed: {snapshot.read_error})"
        )
        if self._next_progress is None:
            self.log.info(
                "Waiting for dbt node %s (and %d gating tests) in run %s, try %d: %s",
                self.node,
                len(self.tests),
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
        return TaskFailedEvent(xcoms=self._end_xcoms({REASON_XCOM: decision.reason}))

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
