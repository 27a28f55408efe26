"""After the build: do the consumers end? A stalled or saturated triggerer is reported, never silent.

Once the producer published the last result, every consumer that dbt's results make green should end
within a few poll ticks. Only those are watched: a consumer that is not green may be on a retry, and a
retry waits for the producer to end before it rebuilds its node, so the producer must not wait for it.
The producer (the one task of the group outside the triggerer) watches their Airflow states for a
bounded window and logs an error naming those still waiting, so a triggerer that stopped starting
triggers (or has too little capacity for the group) shows up in the producer's log instead of as a
run that stays "running".
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence

from dbt_watcher.channel.records import RunStatus
from dbt_watcher.rules.verdict import Action, final_decision
from dbt_watcher.rules.watch import ConsumerTask
from dbt_watcher.task_states import NO_STATE, WAITING

log = logging.getLogger(__name__)


def waiting_consumers(consumers: Sequence[ConsumerTask], status: RunStatus, states: Mapping[str, str]) -> list[str]:
    """Consumers that dbt's word in ``status`` makes green but that are still waiting."""
    return [
        c.task_id
        for c in consumers
        if states.get(c.task_id, NO_STATE) in WAITING and final_decision(c.watch, status).action is Action.SUCCEED
    ]


def watch_consumers(
    consumers: Sequence[ConsumerTask],
    status: RunStatus,
    read_states: Callable[[], Mapping[str, str]],
    *,
    window: float,
    every: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> list[str]:
    """Wait up to ``window`` seconds for the consumers to end; return (and log) those that did not."""
    deadline = clock() + window
    waiting: list[str] = []
    while True:
        try:
            waiting = waiting_consumers(consumers, status, read_states())
        except Exception as exc:  # watching is a courtesy: it must never fail the producer
            log.info("Could not read the consumers' states: %s", exc)
            return []
        if not waiting or clock() >= deadline:
            break
        sleep(every)
    if waiting:
        shown = ", ".join(waiting[:10]) + (f" and {len(waiting) - 10} more" if len(waiting) > 10 else "")
        log.error(
            "%d consumer(s) that dbt's results make green have not ended %.0f s after the build (%s). "
            "Airflow's triggerer may be stalled or saturated ([triggerer] capacity, default 1000 triggers per "
            "triggerer): see docs/troubleshooting.md, 'Consumers do not end'.",
            len(waiting),
            window,
            shown,
        )
    return waiting
