"""The run audits itself: once every consumer has ended, compare each one's state with dbt's verdict.

``audit=True`` (the default) adds one task, ``dbt_audit``, that starts in the triggerer with the run,
follows the same shared poll as the consumers and, once the producer's build is over and every
consumer has ended, checks for each consumer:

* green, but dbt's final word for this run (the channel, which ends with dbt's run_results.json
  closing record) is not a success of its node and its gating tests, and the consumer did not rebuild
  the node itself: a **false green** — the audit fails and names each one;
* not green although dbt reported success: logged as a warning with the consumer's state (a timeout,
  an upstream consumer that failed, a user's action) — a false red is not a trust problem.

It needs no worker: it ends in the triggerer, and costs one task-state read per tick only after the
build is over. One exception: when the producer ended red, Airflow dropped the asset events it would
have emitted for the consumers that ended in the triggerer; the audit then resumes on a worker for a
moment and emits those of the nodes that succeeded (:mod:`dbt_watcher.rules.emission`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Hashable, Mapping, Sequence
from contextlib import aclosing
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, PokeReturnValue
from airflow.triggers.base import (
    BaseTrigger,
    StartTriggerArgs,
    TaskFailedEvent,
    TaskSuccessEvent,
    TriggerEvent,
)

from dbt_watcher import compat
from dbt_watcher.airflow_lines import AirflowException
from dbt_watcher.channel.channel import StatusChannel
from dbt_watcher.channel.records import RunStatus
from dbt_watcher.channel.store import ProducerXComs, RunAddress, private_store
from dbt_watcher.channel.wire import FINISHED
from dbt_watcher.consumer.poller import DEMANDS, Demand, RunPoller, Snapshot
from dbt_watcher.consumer.shared_poll import follow, poll_run, stream_key
from dbt_watcher.consumer.trigger import TIMEOUT_GRACE_SECONDS, hold_resume
from dbt_watcher.invocation.events import SUCCESS_STATUSES
from dbt_watcher.rules.emission import EMITTED, add_events, emitted_record, pending_events, recorded
from dbt_watcher.rules.verdict import Action, final_decision
from dbt_watcher.rules.watch import ConsumerTask, Watch
from dbt_watcher.runtime.group_runtime import GroupRuntime
from dbt_watcher.task_states import ENDED, TaskState

if TYPE_CHECKING:
    from airflow.sdk import AssetAlias, Context

log = logging.getLogger(__name__)

AUDIT_CLASSPATH = "dbt_watcher.consumer.audit.AuditTrigger"


def build_over(snapshot: Snapshot) -> bool:
    """The producer will publish nothing more: its last word is final, or Airflow ended it for good."""
    view = snapshot.view
    if view.status is not None and view.status.finished and view.trusted:
        return True
    return view.producer_state in ENDED  # up_for_retry is not: a retry publishes again


class AuditTrigger(BaseTrigger):
    """Waits until the build is over and every consumer ended, then compares them with dbt."""

    def __init__(
        self,
        *,
        producer_task_id: str,
        poke_interval: float,
        consumers: Mapping[str, Mapping[str, Any]],
        group_id: str = "",
        emits: bool = False,
        dag_id: str = "",
        run_id: str = "",
        map_index: int = -1,
        deferred_at: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)  # type: ignore[no-untyped-call]
        self.deferred_at = deferred_at  # set when a worker deferred (None: started in the triggerer)
        self.producer_task_id = producer_task_id
        #: The group has nodes whose asset events the producer emits (the audit does if it ends red).
        self.emits = bool(emits)
        self.poke_interval = float(poke_interval)
        #: consumer task id -> {"node": unique id, "gated": whether the tests the run selects for it gate it}
        self.consumers = {task: dict(spec) for task, spec in consumers.items()}
        self.group_id = group_id
        self.dag_id, self.run_id, self.map_index = dag_id, run_id, int(map_index)

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            AUDIT_CLASSPATH,
            {
                "producer_task_id": self.producer_task_id,
                "poke_interval": self.poke_interval,
                "consumers": self.consumers,
                "group_id": self.group_id,
                "emits": self.emits,
                "dag_id": self.dag_id,
                "run_id": self.run_id,
                "map_index": self.map_index,
                "deferred_at": self.deferred_at,
            },
        )

    def _bind(self) -> None:
        ti = self.task_instance
        if ti is not None:
            address = RunAddress.of(ti, self.producer_task_id)
            self.dag_id, self.run_id, self.map_index = address.dag_id, address.run_id, address.map_index

    @property
    def address(self) -> RunAddress:
        return RunAddress(self.dag_id, self.run_id, self.producer_task_id, self.map_index)

    def run_key(self) -> Hashable:
        self._bind()
        return stream_key(self.address)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        self._bind()
        address, interval, group = self.address, self.poke_interval, self.group_id
        async with aclosing(follow(stream_key(address), lambda: poll_run(address, interval, group))) as snapshots:
            async for event in self.follow(snapshots):
                yield event
                return

    async def follow(self, snapshots: AsyncIterator[Snapshot]) -> AsyncIterator[TriggerEvent]:
        """Wait on the run's shared poll until the audit can decide; yield its one event."""
        key = self.run_key()
        async for snapshot in snapshots:
            if not build_over(snapshot):
                continue
            DEMANDS.setdefault(key, Demand()).ask(self.consumers, snapshot.at + 3 * self.poke_interval + 1)
            states = self.ready(snapshot)
            if states is None:
                continue
            event = await self._compare(snapshot, states)
            await hold_resume(event, self.deferred_at, self.log)
            yield event
            return

    def ready(self, snapshot: Snapshot) -> Mapping[str, str] | None:
        """Every consumer's state once the audit can decide, else None: the build is over, every
        consumer ended and, in a group that emits assets, the producer ended (who emits depends on it)."""
        states = snapshot.view.task_states or {}
        if not build_over(snapshot) or not all(states.get(task) in ENDED for task in self.consumers):
            return None
        if self.emits and snapshot.view.producer_state not in ENDED:
            return None
        return states

    async def _compare(self, snapshot: Snapshot, states: Mapping[str, str]) -> TriggerEvent:
        status = snapshot.view.status or RunStatus("none", 0, FINISHED)  # nothing published: nothing is proven
        false_green, false_red = [], []
        for task, spec in sorted(self.consumers.items()):
            decision = final_decision(Watch(spec["node"], bool(spec.get("gated", True))), status)
            dbt_green = decision.action is Action.SUCCEED
            green = states.get(task) == TaskState.SUCCESS
            if green and not dbt_green and not await self._rebuilt(task):
                false_green.append(f"{task}: green, but dbt's verdict for {spec['node']}: {decision.reason}")
            elif dbt_green and not green:
                false_red.append(f"{task}: {states.get(task)} although dbt reported success")
        for line in false_red:
            self.log.warning(
                "Not green although dbt succeeded (a timeout, an upstream failure, a user's action): %s", line
            )
        if false_green:
            for line in false_green:
                self.log.error("FALSE GREEN %s", line)
            self.log.error(
                "The audit of %d consumers found %d green without dbt's success.", len(self.consumers), len(false_green)
            )
            return TaskFailedEvent()
        summary: dict[str, Any] = {
            "consumers": len(self.consumers),
            "false_green": 0,
            "not_green_although_dbt_succeeded": len(false_red),
        }
        self.log.info(
            "Audit of %d consumers against dbt's verdict for this run: every green is backed by dbt (%s).",
            len(self.consumers),
            summary,
        )
        any_green = any(states.get(task) == TaskState.SUCCESS for task in self.consumers)
        if self.emits and any_green and snapshot.view.producer_state != TaskState.SUCCESS:
            self.log.info(
                "The producer ended %s: resuming on a worker to emit the asset events of the nodes that "
                "succeeded (Airflow drops those of a failed task).",
                snapshot.view.producer_state,
            )
            return TriggerEvent({"emit": status.generation, "attempt": status.attempt, "audit": summary})
        return TaskSuccessEvent(xcoms={"audit": summary})

    async def _rebuilt(self, task_id: str) -> bool:
        """The consumer rebuilt its node itself and dbt said success then (its ``dbt_result`` XCom)."""
        a = self.address
        result = await compat.axcom_get(a.dag_id, a.run_id, task_id, a.map_index, key="dbt_result")
        return isinstance(result, Mapping) and result.get("status") in SUCCESS_STATUSES and (result.get("attempt") == 0)


class DbtAuditOperator(BaseSensorOperator):
    """The ``dbt_audit`` task: starts in the triggerer and ends there (see the module docstring)."""

    ui_color = "#e3f2fd"

    def __init__(
        self,
        *,
        runtime: GroupRuntime,
        consumers: Sequence[ConsumerTask],
        alias: AssetAlias | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", runtime.poke_interval)
        kwargs.setdefault("timeout", runtime.timeout_seconds + TIMEOUT_GRACE_SECONDS)
        super().__init__(outlets=[alias] if alias else [], **kwargs)
        self.runtime = runtime
        self.consumers = tuple(consumers)
        self.alias = alias
        self.audited = {c.task_id: {"node": c.watch.unique_id, "gated": c.watch.gated} for c in consumers}
        self.start_from_trigger = True
        self.start_trigger_args = StartTriggerArgs(
            trigger_cls=AUDIT_CLASSPATH,
            trigger_kwargs=self._trigger_kwargs(),
            next_method="execute",
            timeout=timedelta(seconds=runtime.timeout_seconds + TIMEOUT_GRACE_SECONDS),
        )

    def _trigger_kwargs(self, **bound: Any) -> dict[str, Any]:
        return {
            "producer_task_id": self.runtime.producer_task_id,
            "poke_interval": self.runtime.poke_interval,
            "consumers": self.audited,
            "group_id": self.runtime.group_id,
            "emits": self.alias is not None,
            **bound,
        }

    def execute(self, context: Context, event: Any = None) -> Any:
        if isinstance(event, Mapping) and "emit" in event:  # resumed by the trigger: the producer ended red
            self._emit(context, event)
            return None
        # Reached when the task did not start in the triggerer: under dag.test() (audit from here, one
        # poke at a time) or where the scheduler does not start tasks in the triggerer (Airflow 3.1, 3.2).
        if compat.runs_inline(context):
            self.mode = "reschedule"
            return super().execute(context)
        own = RunAddress.of(context["ti"], self.runtime.producer_task_id)
        self.defer(
            trigger=AuditTrigger(
                **self._trigger_kwargs(
                    dag_id=own.dag_id, run_id=own.run_id, map_index=own.map_index, deferred_at=time.time()
                )
            ),
            method_name="execute",
            timeout=timedelta(seconds=self.runtime.timeout_seconds + TIMEOUT_GRACE_SECONDS),
        )

    def _emit(self, context: Context, event: Mapping[str, Any]) -> None:
        """The asset events of the green nodes the red producer could not register, once per generation.

        The producer may have moved on between the trigger's decision and this worker (a clear, a
        retry): unless it is still the same ended-red try, the audit waits again and decides anew.
        """
        if self.alias is None:
            return
        ti = context["ti"]
        address = RunAddress.of(ti, self.runtime.producer_task_id)
        producer = compat.task_states(
            address.dag_id, address.run_id, task_ids=[address.producer_task_id], map_index=address.map_index
        ).get(address.producer_task_id)
        status = StatusChannel(ProducerXComs(address)).read_all()
        generation = str(event["emit"])
        if producer == TaskState.SUCCESS:
            log.info("The producer has turned green since: it emitted the asset events")
            return
        same_try = status is not None and (status.generation, status.attempt) == (generation, event.get("attempt"))
        if producer not in ENDED or status is None or not same_try:
            log.info("The producer moved on (state %s) since the audit: waiting for it to end again", producer)
            self.defer(
                trigger=AuditTrigger(
                    **self._trigger_kwargs(
                        dag_id=address.dag_id,
                        run_id=address.run_id,
                        map_index=address.map_index,
                        deferred_at=time.time(),
                    )
                ),
                method_name="execute",
                timeout=timedelta(seconds=self.runtime.timeout_seconds + TIMEOUT_GRACE_SECONDS),
            )
        assert status is not None  # checked above; defer() does not return
        store = private_store(context, self.runtime.config.status_retention)
        own_done = recorded(store.get(EMITTED), generation)
        by_producer = recorded(ProducerXComs(address).get(EMITTED), generation)
        events = pending_events(self.consumers, status, own_done | by_producer)
        add_events(context["outlet_events"], self.alias, events)
        log.info("Emitting %d asset events of nodes that succeeded while the producer ended red", len(events))
        record = emitted_record(generation, own_done | {e.unique_id for e in events})
        # Recorded as the task's last step (Airflow registers the events when it returns): a later try
        # or clear of the audit, and a later green producer try (which reads the XCom), emit none again.
        store.set(EMITTED, record)
        own = RunAddress.of(ti, ti.task_id)
        compat.xcom_set(own.dag_id, own.run_id, ti.task_id, own.map_index, key=EMITTED, value=record)
        summary = event.get("audit")
        if summary is not None:
            compat.xcom_set(own.dag_id, own.run_id, ti.task_id, own.map_index, key="audit", value=summary)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        ti = context["ti"]
        own = RunAddress.of(ti, self.runtime.producer_task_id)
        trigger = AuditTrigger(**self._trigger_kwargs(dag_id=own.dag_id, run_id=own.run_id, map_index=own.map_index))
        address = trigger.address
        poller = RunPoller(stream_key(address), address, self.runtime.poke_interval)
        poller.demand.ask(self.audited, time.time() + 60)
        snapshot = poller.poll_sync()
        states = trigger.ready(snapshot)
        if states is None:
            return False
        event = asyncio.run(trigger._compare(snapshot, states))
        if isinstance(event, TaskFailedEvent):
            raise AirflowException("The audit found consumers green without dbt's success; see the lines above.")
        # No emission here: this task pokes only under dag.test(), where every consumer ended on a worker
        # and emitted its own asset event (the producer emits none there either).
        return PokeReturnValue(True)
