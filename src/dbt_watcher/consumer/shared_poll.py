"""One poll per run in a triggerer process, whatever the number of its waiting consumers.

Every consumer (and the audit) of a run defers on a trigger of its own; the triggerer runs all of
them in one event loop. The first trigger of a run that starts following it starts the run's poll
(:func:`poll_run`, one :class:`~dbt_watcher.consumer.poller.RunPoller`); each later one subscribes to
the same ticks; the poll stops when the last one leaves. This works the same on every Airflow line:
it needs nothing of the triggerer but its event loop (Airflow 3.3's shared trigger streams do the
same, but earlier lines lack them, and one mechanism is simpler than two).

Each subscriber gets every tick in order (an unbounded queue per subscriber: a snapshot says what
changed since the one before, so none may be dropped). A poll that dies hands its error to every
subscriber, whose trigger then fails with it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Hashable
from dataclasses import dataclass, field

from dbt_watcher.channel.store import RunAddress
from dbt_watcher.consumer.poller import DEMANDS, RunPoller, Snapshot

log = logging.getLogger(__name__)


def stream_key(address: RunAddress) -> Hashable:
    """What identifies one run's channel (and map index) among the polls of a process."""
    return ("dbt-watcher", address.dag_id, address.run_id, address.map_index, address.producer_task_id)


async def poll_run(address: RunAddress, poke_interval: float, group_id: str = "") -> AsyncGenerator[Snapshot, None]:
    """Tick after tick, the snapshot of one run's channel (and the task states some decision needs)."""
    key = stream_key(address)
    poller = RunPoller(key, address, poke_interval)
    try:
        while True:
            yield await poller.poll()
            await asyncio.sleep(poke_interval)
    finally:
        if DEMANDS.get(key) is poller.demand:  # a newer poll of the same run keeps its own
            del DEMANDS[key]
        # Ends when the run's last waiting trigger leaves: the cost of following the run.
        log.info(
            "dbt-watcher poll of %s run %s ended: %d ticks, %d channel reads, %d task-state reads",
            group_id or "the group",
            address.run_id,
            *poller.cost,
        )


@dataclass
class _Poll:
    loop: asyncio.AbstractEventLoop
    subscribers: set[asyncio.Queue[Snapshot | BaseException]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None
    #: Every trigger that has followed this poll, for the cost line consumers log.
    followers: int = 0


#: The running polls of this process, by run (see :func:`stream_key`).
_POLLS: dict[Hashable, _Poll] = {}


async def follow(key: Hashable, start: Callable[[], AsyncIterator[Snapshot]]) -> AsyncGenerator[Snapshot, None]:
    """The ticks of the run ``key`` names, from the poll this process already runs for it, or from
    one started with ``start()``. Close the iterator (``contextlib.aclosing``) to leave."""
    loop = asyncio.get_running_loop()
    poll = _POLLS.get(key)
    if poll is None or poll.loop is not loop or poll.task is None or poll.task.done():
        # dag.test() runs each trigger in an event loop of its own: a poll of another loop is not shared.
        poll = _POLLS[key] = _Poll(loop)
        poll.task = loop.create_task(_pump(poll, start()))
    queue: asyncio.Queue[Snapshot | BaseException] = asyncio.Queue()
    poll.subscribers.add(queue)
    poll.followers += 1
    try:
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise RuntimeError(f"the poll of this run failed: {item}") from item
            yield item
    finally:
        poll.subscribers.discard(queue)
        if not poll.subscribers:
            if _POLLS.get(key) is poll:
                del _POLLS[key]
            if poll.task is not None:
                poll.task.cancel()


async def _pump(poll: _Poll, stream: AsyncIterator[Snapshot]) -> None:
    try:
        async for snapshot in stream:
            shared = dataclasses.replace(snapshot, followers=poll.followers)
            for queue in list(poll.subscribers):
                queue.put_nowait(shared)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("dbt-watcher's poll of a run failed")
        for queue in list(poll.subscribers):
            queue.put_nowait(exc)
    finally:
        aclose = getattr(stream, "aclose", None)
        if aclose is not None:
            await aclose()


def polls() -> int:
    """How many runs this process polls now (for tests and diagnostics)."""
    return len(_POLLS)
