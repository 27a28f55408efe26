"""Whether the producer is alive, and whether what the channel says is this try's word: all rules here.

One clock: a reader never compares its clock with the producer's. The writer changes ``seq`` on every
write (at least once per heartbeat); the reader measures, on its own monotonic clock, how long it has
read without seeing a change. Time during which the reader could not read at all (an api-server
outage) is not silence. Silence alone never ends anything: it makes the reader ask Airflow for the
producer task's state, and only Airflow's verdict (the task ended, or is waiting for a retry) tells a
consumer the producer stopped.

Trust: a head the reader has seen change was written by a live producer try. A head it has never
seen change may be left over from an earlier try (a cleared DAG run keeps the producer's XComs until
the producer's next try starts): it is trusted only once Airflow says no producer try is running or
about to run.
"""

from __future__ import annotations

from dataclasses import dataclass

from dbt_watcher.task_states import NOT_STARTED, TaskState

#: Producer task states in which a try is running or about to run (it may still write).
PRODUCER_ACTIVE = frozenset(
    {*NOT_STARTED, TaskState.RUNNING, TaskState.RESTARTING, TaskState.UP_FOR_RESCHEDULE, TaskState.DEFERRED}
)
#: Producer states meaning it did not run at all in this DAG run.
PRODUCER_NEVER_RAN = frozenset({TaskState.UPSTREAM_FAILED, TaskState.SKIPPED, TaskState.REMOVED})
#: Producer states in which no try runs: what the channel holds is the last try's word.
PRODUCER_SETTLED = frozenset({TaskState.SUCCESS, TaskState.FAILED, TaskState.UP_FOR_RETRY, *PRODUCER_NEVER_RAN})


def stale_after(poke_interval: float) -> float:
    """Seconds of reads without a change after which a reader asks Airflow about the producer.

    Four heartbeats (the writer changes the head at least once per poke interval), two seconds at
    least: a loaded worker that writes late costs a cheap task-state read, never a verdict.
    """
    return max(2.0, 4.0 * heartbeat_interval(poke_interval))


def heartbeat_interval(poke_interval: float) -> float:
    """How often a running producer rewrites the head when nothing else changed: once per poke."""
    return poke_interval


@dataclass
class Liveness:
    """How long the reader has read the channel without a change, on the reader's own clock."""

    _seq: object = None
    _last_ok: float | None = None
    _gap: bool = False
    silent_for: float = 0.0
    #: The reader has seen the head change at least once: it was written by a live writer.
    seen_change: bool = False

    def observe(self, seq: object, now: float) -> bool:
        """A successful read at ``now`` (monotonic seconds) found ``seq``; True if it changed."""
        changed = self._last_ok is not None and seq != self._seq
        if self._last_ok is None:
            self.silent_for = 0.0
        elif changed:
            self.silent_for, self.seen_change = 0.0, True
        elif not self._gap:
            self.silent_for += now - self._last_ok
        self._seq, self._last_ok, self._gap = seq, now, False
        return changed

    def read_failed(self) -> None:
        """A read failed: the time until the next successful read does not count as silence."""
        self._gap = True

    def alive(self, stale_after: float) -> bool:
        return self.seen_change and self.silent_for < stale_after


def producer_stopped(producer_state: str | None, resumes: bool) -> bool:
    """Airflow says the producer will not publish anything more for this run.

    ``up_for_retry`` counts as stopped unless the producer resumes (its next try builds what is left).
    """
    if producer_state is None or producer_state in PRODUCER_ACTIVE:
        return False
    return not (producer_state == TaskState.UP_FOR_RETRY and resumes)


def trusted(seen_change: bool, producer_state: str | None) -> bool:
    """Whether the head is the current producer try's word (see the module docstring)."""
    return seen_change or producer_state in PRODUCER_SETTLED
