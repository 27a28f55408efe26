"""The consumers' trigger: all consumers of a group in one DAG run share one poll of the channel.

Each consumer defers on its own :class:`ConsumerTrigger`; the triggerer groups the triggers of one
(group, run) by :meth:`shared_stream_key`, runs :meth:`open_shared_stream` once for all of them and
hands every tick's snapshot to each trigger's :meth:`filter_shared_stream`. One read of the
channel's head per tick serves the whole group, however many consumers wait.

A consumer whose node succeeded ends right here, without a worker (``TaskSuccessEvent``); a failed
node ends it failed (``TaskFailedEvent``, so Airflow's retries apply). Only a consumer that must
build its node itself, or that has work to do on success (an ``on_success_callback``), resumes
on a worker.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from collections.abc import AsyncIterator, Hashable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from airflow.triggers.base import (
    BaseEventTrigger,
    TaskFailedEvent,
    TaskSkippedEvent,
    TaskSuccessEvent,
    TriggerEvent,
)

from dbt_watcher.config import stale_after
from dbt_watcher.decision import Action, Decision, Watch, decide, needs_producer_state
from dbt_watcher.status import RunStatus, StatusReader, encode_result

log = logging.getLogger(__name__)

CLASSPATH = "dbt_watcher.trigger.ConsumerTrigger"
#: Airflow's own trigger timeout is set this much later than ours, so ours fires first and says why.
TIMEOUT_GRACE_SECONDS = 60.0
#: A waiting consumer says how it waits once at start and then once per this period. Its log
#: lines go through the triggerer's log socket, which Airflow's triggerer does not drain while it
#: sends a large message to its runner: a burst of lines from every consumer of a big group in one
#: tick (say, when the producer starts) can fill it and stall the triggerer. So: no line per reason
#: change, and each consumer's periodic line lands at its own point of the period.
_PROGRESS_EVERY = 60.0
#: Stream keys whose subscribers asked for the group's task states (retries deciding whether
#: their upstream consumers are green). Poller and subscribers share the triggerer's event loop.
_TASK_STATE_DEMAND: dict[Hashable, float] = {}


@dataclass(frozen=True)
class Snapshot:
    """One tick of the group's poll, broadcast to every waiting consumer of the run."""

    status: RunStatus | None
    producer_state: str | None
    at: float
    task_states: Mapping[str, str] | None = None
    error: str | None = None
    #: The shared poll's cumulative cost for this run so far: (ticks, status reads, task-state reads).
    cost: tuple[int, int, int] = (0, 0, 0)


def release_dag(ti: Any, context: MutableMapping[str, Any]) -> None:
    """Drop the references a started-in-the-triggerer task instance keeps to its deserialized DAG.

    Only memory is at stake: if an Airflow version refuses it, the consumer keeps the copy and runs on.
    """
    try:
        context.clear()  # it is also the task instance's cached template context: task, dag, ti, ...
        if ti is not None and getattr(ti, "task", None) is not None:
            ti.task = None  # the operator, whose .dag holds every other task
    except Exception as exc:
        log.debug("dbt-watcher kept the triggerer's DAG copy: %s", exc)


class GroupPoller:
    """Reads a run's status once per tick; asks Airflow for task states only when needed."""

    def __init__(
        self,
        *,
        key: Hashable,
        status_asset: str,
        dag_id: str,
        run_id: str,
        group_id: str,
        producer_task_id: str,
        poke_interval: float,
    ) -> None:
        from dbt_watcher.airflow_io import AssetStateChannelStore

        self.key = key
        self.store = AssetStateChannelStore(status_asset)
        self.reader = StatusReader(run_id)
        self.dag_id, self.run_id, self.group_id = dag_id, run_id, group_id
        self.producer_task_id = producer_task_id
        self.stale_after = stale_after(poke_interval)
        self.ticks = 0
        self.state_reads = 0

    async def poll(self) -> Snapshot:
        from dbt_watcher.airflow_io import agroup_task_states

        self.ticks += 1
        try:
            status = await self.reader.aread(self.store)
            now = time.time()
            task_states: Mapping[str, str] | None = None
            producer_state = None
            if needs_producer_state(status, now, self.stale_after) or _TASK_STATE_DEMAND.get(self.key, 0.0) > now:
                task_states = await agroup_task_states(self.dag_id, self.run_id, self.group_id)
                producer_state = task_states.get(self.producer_task_id, "none")
                self.state_reads += 1
            return Snapshot(status, producer_state, now, task_states, cost=self.cost)
        except Exception as exc:  # a failed read is a missed tick, never a verdict
            log.warning("dbt-watcher could not read the status of run %s: %s", self.run_id, exc)
            return Snapshot(None, None, time.time(), error=str(exc), cost=self.cost)

    @property
    def cost(self) -> tuple[int, int, int]:
        return (self.ticks, self.reader.reads, self.state_reads)


class ConsumerTrigger(BaseEventTrigger):
    """Waits for one dbt node (and its tests) in one DAG run."""

    def __init__(
        self,
        *,
        node: str,
        status_asset: str,
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
        try_number: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.node = node
        self.status_asset = status_asset
        self.producer_task_id = producer_task_id
        self.poke_interval = float(poke_interval)
        self.timeout = float(timeout)
        self.group_id = group_id
        self.tests = list(tests)
        self.upstream = list(upstream)
        self.producer_resumes = producer_resumes
        self.finish_on_worker = finish_on_worker
        self.dag_id, self.run_id, self.try_number = dag_id, run_id, try_number
        self._deadline: float | None = None
        self._next_progress: float | None = None

    def _bind(self) -> None:
        # Started from the triggerer, the kwargs are the same for every run: the run comes from
        # the task instance the triggerer attached to us.
        ti = self.task_instance
        if ti is not None:
            self.dag_id, self.run_id = ti.dag_id, ti.run_id
            self.try_number = int(ti.try_number)

    def render_template_fields(self, context: Any, jinja_env: Any = None) -> None:
        """Render as Airflow does, then let go of the whole DAG the triggerer built for it.

        A consumer that starts in the triggerer gets a runtime task instance whose task hangs in a
        full deserialized copy of its DAG, one copy per consumer, held with the template context
        for as long as the consumer waits: 0.6 MB at 188 tasks and 5.5 MB at 2,038. The waiting
        consumers of a group would hold consumers x tasks of memory (at 2,000 models, up to the
        triggerer's capacity, 1,000 by default, x 5.5 MB), and every garbage collection would walk
        it. The triggerer calls this once, right after it built them; from here on only the task
        instance's ids are read (nothing of ours is templated).
        """
        super().render_template_fields(context, jinja_env)
        release_dag(self.task_instance, context)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            CLASSPATH,
            {
                "node": self.node,
                "status_asset": self.status_asset,
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
                "try_number": self.try_number,
            },
        )

    def shared_stream_key(self) -> Hashable | None:
        self._bind()
        return ("dbt-watcher", self.status_asset, self.run_id)

    @classmethod
    async def open_shared_stream(cls, kwargs: dict[str, Any]) -> AsyncIterator[Snapshot]:
        poller = GroupPoller(
            key=("dbt-watcher", kwargs["status_asset"], kwargs["run_id"]),
            status_asset=kwargs["status_asset"],
            dag_id=kwargs["dag_id"],
            run_id=kwargs["run_id"],
            group_id=kwargs["group_id"],
            producer_task_id=kwargs["producer_task_id"],
            poke_interval=kwargs["poke_interval"],
        )
        try:
            while True:
                yield await poller.poll()
                await asyncio.sleep(float(kwargs["poke_interval"]))
        finally:
            # Ends when the run's last waiting consumer leaves: the cost of following the run.
            log.info(
                "dbt-watcher poll of %s run %s ended: %d ticks, %d status reads, %d task-state reads",
                kwargs["group_id"],
                kwargs["run_id"],
                poller.ticks,
                poller.reader.reads,
                poller.state_reads,
            )

    async def filter_shared_stream(self, shared_stream: AsyncIterator[Any]) -> AsyncIterator[TriggerEvent]:
        self._bind()
        async for snapshot in shared_stream:
            event = self._react(snapshot)
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

    def _react(self, snapshot: Snapshot) -> TriggerEvent | None:
        watch = Watch(self.node, tuple(self.tests), tuple(self.upstream), self.producer_resumes)
        decision = decide(
            watch,
            snapshot.status,
            try_number=self.try_number,
            producer_state=snapshot.producer_state,
            now=snapshot.at,
            stale_after=stale_after(self.poke_interval),
            task_states=snapshot.task_states,
        )
        if decision.action is Action.WAIT:
            if decision.needs_task_states:
                _TASK_STATE_DEMAND[self.shared_stream_key()] = snapshot.at + 3 * self.poke_interval + 1
            return self._waiting(decision, snapshot)
        ticks, reads, state_reads = snapshot.cost
        cost = (
            f"Shared poll of {self.group_id} for this run so far: {ticks} ticks, {reads} status reads, "
            f"{state_reads} task-state reads"
        )
        return self._conclude(decision, cost)

    def _waiting(self, decision: Decision, snapshot: Snapshot) -> TriggerEvent | None:
        if snapshot.at >= self._deadline_at(snapshot.at):
            self.log.error(
                "Timed out after %.0f s while %s; the producer keeps running, this consumer fails.",
                self.timeout,
                decision.reason,
            )
            return TaskFailedEvent()
        reason = decision.reason if not snapshot.error else f"{decision.reason} (read failed: {snapshot.error})"
        if self._next_progress is None:
            self.log.info(
                "Waiting for dbt node %s (and %d attached tests) in run %s, try %d: %s",
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
            return TaskSuccessEvent(xcoms={"dbt_result": result.to_dict()})
        if decision.action is Action.RUN_LOCALLY:
            self.log.info("Try %d: %s. Building the node on a worker. %s", self.try_number, decision.reason, cost)
            return TriggerEvent({"action": "run_locally", "reason": decision.reason})
        if decision.action is Action.SKIP:
            self.log.info("Skipped: %s. %s", decision.reason, cost)
            return TaskSkippedEvent()
        self.log.error("dbt node %s did not succeed: %s. %s", self.node, decision.reason, cost)
        return TaskFailedEvent()
