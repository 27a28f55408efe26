"""One poll of a run's channel per tick, shared by every consumer of the run in the process.

Deferrable consumers share it in the triggerer (:mod:`dbt_watcher.consumer.shared_poll`: one poller
per run and triggerer); a non-deferrable consumer keeps one between its pokes. Each tick reads the channel's head
(and any newly closed chunk) and, only when a decision needs it, Airflow's states of the producer and
of the upstream consumers some retry waits for — by task id, never by group: a group query makes
Airflow load the whole DAG. The snapshot a tick produces says what changed, so a consumer whose node
did not change skips its decision.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dbt_watcher import compat
from dbt_watcher.channel.channel import ChannelReader, Read
from dbt_watcher.channel.liveness import Liveness, stale_after, trusted
from dbt_watcher.channel.records import RunStatus
from dbt_watcher.channel.store import ProducerXComs, RunAddress
from dbt_watcher.rules.verdict import View
from dbt_watcher.task_states import NO_STATE, NOT_STARTED

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    """One tick of a run's poll, handed to every waiting consumer of the run."""

    view: View
    #: Results new or changed in this tick (None: anything may have changed, decide again).
    changed: frozenset[str] | None
    #: Changes whenever something other than results changed: producer state, trust, attempt, ...
    control: int
    at: float
    read_error: str | None = None
    #: The poll's cumulative cost for this run so far: (ticks, channel reads, task-state reads).
    cost: tuple[int, int, int] = (0, 0, 0)
    #: How many triggers have followed this poll so far (:mod:`dbt_watcher.consumer.shared_poll`).
    followers: int = 0

    def concerns(self, unique_ids: Iterable[str]) -> bool:
        return self.changed is None or any(uid in self.changed for uid in unique_ids)


@dataclass
class Demand:
    """Upstream task ids whose Airflow state some consumer's retry waits for, until a deadline."""

    until: dict[str, float] = field(default_factory=dict)

    def ask(self, task_ids: Iterable[str], until: float) -> None:
        for task_id in task_ids:
            self.until[task_id] = max(until, self.until.get(task_id, 0.0))

    def wanted(self, now: float) -> set[str]:
        return {task_id for task_id, until in self.until.items() if until > now}


#: Per shared-stream key: the pollers and their consumers share one event loop in the triggerer.
DEMANDS: dict[Hashable, Demand] = {}


class RunPoller:
    """Follows one run's channel for every consumer of the run in this process."""

    def __init__(self, key: Hashable, address: RunAddress, poke_interval: float) -> None:
        self.key = key
        self.address = address
        self.store = ProducerXComs(address)
        self.reader = ChannelReader()
        self.liveness = Liveness()
        self.stale_after = stale_after(poke_interval)
        self.demand = DEMANDS.setdefault(key, Demand())
        self.ticks = self.state_reads = 0
        self._producer_state: str | None = None
        self._head_seen = False
        self._unreadable = 0
        self._reason: str | None = None
        self._control_key: tuple[Any, ...] = ()
        self.control = 0

    @property
    def cost(self) -> tuple[int, int, int]:
        return (self.ticks, self.reader.reads, self.state_reads)

    # ---------------------------------------------------------------- one tick, async and sync
    async def poll(self) -> Snapshot:
        self.ticks += 1
        now = time.time()
        try:
            read = Read(None, frozenset())
            if self._should_read_channel():
                read = await self.reader.aread(self.store)
            wanted = self._states_wanted(read, now)
            states = (
                await compat.atask_states(self._dag, self._run, task_ids=wanted, map_index=self._map)
                if wanted
                else None
            )
            return self._snapshot(read, states, now)
        except Exception as exc:  # a failed read is a missed tick, never a verdict
            return self._failed(exc, now)

    def poll_sync(self) -> Snapshot:
        self.ticks += 1
        now = time.time()
        try:
            read = self.reader.read(self.store) if self._should_read_channel() else Read(None, frozenset())
            wanted = self._states_wanted(read, now)
            states = compat.task_states(self._dag, self._run, task_ids=wanted, map_index=self._map) if wanted else None
            return self._snapshot(read, states, now)
        except Exception as exc:
            return self._failed(exc, now)

    # ---------------------------------------------------------------- the rules of a tick
    @property
    def _dag(self) -> str:
        return self.address.dag_id

    @property
    def _run(self) -> str:
        return self.address.run_id

    @property
    def _map(self) -> int:
        return self.address.map_index

    def _should_read_channel(self) -> bool:
        # Before the producer's try starts there is nothing of this run's to read (and Airflow logs
        # every read of a missing XCom as an error): once Airflow said so, wait for it to start.
        return self._head_seen or self._producer_state not in NOT_STARTED

    def _states_wanted(self, read: Read, now: float) -> set[str]:
        status = read.status
        self._head_seen = self._head_seen or status is not None
        self.liveness.observe((status.generation, status.attempt, status.seq) if status else None, time.monotonic())
        wanted = self.demand.wanted(now)
        need_producer = (
            status is None  # nothing published: has the producer started, or ended?
            or not trusted(self.liveness.seen_change, self._producer_state)  # left from an earlier try?
            or (not status.finished and not self.liveness.alive(self.stale_after))  # gone silent
        )
        if need_producer or wanted:
            wanted.add(self.address.producer_task_id)
        return wanted

    def _snapshot(self, read: Read, states: Mapping[str, str] | None, now: float) -> Snapshot:
        if states is not None:
            self.state_reads += 1
            self._producer_state = states.get(self.address.producer_task_id, NO_STATE)
        if read.malformed:
            self._unreadable += 1
            self._reason = read.malformed
        elif read.status is not None or read.changed is None:
            self._unreadable, self._reason = 0, None
        status: RunStatus | None = read.status
        view = View(
            status=status,
            trusted=trusted(self.liveness.seen_change, self._producer_state),
            producer_state=self._producer_state if states is not None else None,
            task_states=states,
            unreadable=self._unreadable,
            unreadable_reason=self._reason,
        )
        control_key = (
            view.trusted,
            view.producer_state,
            tuple(sorted(states.items())) if states is not None else None,
            status.state if status else None,
            status.attempt if status else None,
            status.generation if status else None,
            status.complete if status else None,
            self._unreadable,
        )
        if control_key != self._control_key:
            self._control_key = control_key
            self.control += 1
        return Snapshot(view, read.changed, self.control, now, cost=self.cost)

    def _failed(self, exc: Exception, now: float) -> Snapshot:
        self.liveness.read_failed()
        log.warning("dbt-watcher could not read the status of run %s: %s", self._run, exc)
        status = self.reader.last  # what the last good read said still stands
        view = View(status, trusted=False, unreadable=self._unreadable, unreadable_reason=self._reason)
        return Snapshot(view, frozenset(), self.control, now, read_error=str(exc), cost=self.cost)
