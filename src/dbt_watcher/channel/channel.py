"""The status channel of one DAG run's build: one writer (the producer), many readers (the consumers).

Where it lives: XComs of the producer task, in its DAG run and map index, read and written through
Airflow's execution API (:mod:`dbt_watcher.channel.store`). XComs belong to their DAG run: they go
when the run is deleted (a run re-created with the same run id starts empty), ``airflow db clean``
covers them, each map index of a mapped group has its own, and every task and trigger may read them.
Airflow deletes a task's XComs when its next try starts, so the producer mirrors everything it
publishes into its Task State Store (private, kept across its tries, deleted with the run) and
publishes it again first thing in every try (:mod:`dbt_watcher.producer.ledger`).

:class:`StatusChannel` owns every key:

* ``dbt_watcher.head`` — small and rewritten often: generation and attempt of the writer, ``seq``
  (different on every write, so a reader can tell a live writer on its own clock), the producer's
  state, how many chunks are closed, the results since the last closed chunk, dbt's exit code, error;
* ``dbt_watcher.chunk.<attempt>.<k>`` — closed, never rewritten batches of results of one attempt;
* ``dbt_watcher.invocation`` — the run's dbt arguments, which a consumer's rebuild reuses;
* ``dbt_watcher.tasks`` — which consumer task watches which node (with its gating tests and asset),
  written by each producer try for the UI plugin (:mod:`dbt_watcher.ui`); not mirrored.

A reader reads the head each tick and each closed chunk once, and decodes only what is new, so the
cost of following a run grows with its results, not with the number of consumers or ticks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dbt_watcher.channel.records import Invocation, RunStatus
from dbt_watcher.channel.wire import (
    HEAD,
    INVOCATION,
    SELECTED,
    WIRE_VERSION,
    AsyncStore,
    ProducerPhase,
    Store,
    chunk_key,
    decode_result,
)
from dbt_watcher.channel.writer import ChannelWriter
from dbt_watcher.invocation.events import NodeResult

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Read:
    """One read of the channel: the status (None: nothing published), what changed, what went wrong."""

    status: RunStatus | None
    #: Unique ids whose result is new or changed since the previous read; None: anything may have
    #: changed (first read, new generation or attempt).
    changed: frozenset[str] | None
    #: Why the head could not be understood (None: it could).
    malformed: str | None = None


class StatusChannel:
    """Every key of one run's channel, over one store (see the module docstring)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def writer(self, *, generation: str, attempt: int, heartbeat_interval: float, **head: Any) -> ChannelWriter:
        return ChannelWriter(self.store, generation=generation, attempt=attempt, heartbeat=heartbeat_interval, **head)

    def write_invocation(self, invocation: Invocation) -> None:
        self.store.set(INVOCATION, invocation.to_json())

    def read_invocation(self) -> Invocation | None:
        return Invocation.from_json(self.store.get(INVOCATION))

    def read_all(self) -> RunStatus | None:
        """One complete read (a producer's retry reading its mirror, a sensor's first poke)."""
        return ChannelReader().read(self.store).status

    def read_for_rerun(self) -> tuple[Invocation, RunStatus] | None:
        """The run's dbt arguments (secrets masked in this process's logs) and its status, for a task
        that runs dbt again with them; None when the producer never started dbt in this run."""
        invocation, status = self.read_invocation(), self.read_all()
        if invocation is None or status is None:
            return None
        invocation.mask_secrets()
        return invocation, status


class ChannelReader:
    """Follows one run incrementally: each closed chunk is fetched once, each result decoded once."""

    def __init__(self) -> None:
        self.reads = 0
        self._key: tuple[str, int] | None = None
        self._chunks: dict[int, list[Any]] = {}
        self._results: dict[str, NodeResult] = {}
        self._selection: dict[str, dict[str, str]] = {}
        self._open_seen = (0, 0)  # (closed count, open entries already decoded)
        self._last: RunStatus | None = None

    @property
    def last(self) -> RunStatus | None:
        """What the last successful read said."""
        return self._last

    def read(self, store: Store) -> Read:
        head = store.get(HEAD)
        self.reads += 1
        return self._assemble(head, store.get)

    async def aread(self, store: AsyncStore) -> Read:
        head = await store.aget(HEAD)
        self.reads += 1
        missing = self._missing_chunks(head)
        fetched = {}
        for attempt, index in missing:
            fetched[chunk_key(attempt, index)] = await store.aget(chunk_key(attempt, index))
            self.reads += 1
        return self._assemble(head, fetched.get)

    def _missing_chunks(self, head: Any) -> list[tuple[int, int]]:
        if not isinstance(head, Mapping) or head.get("v") != WIRE_VERSION:
            return []
        try:
            attempt, closed = int(head["attempt"]), int(head["closed"])
            same = self._key == (str(head["gen"]), attempt)
        except (KeyError, TypeError, ValueError):
            return []
        return [(attempt, i) for i in range(closed) if not same or i not in self._chunks]

    def _assemble(self, head: Any, fetch: Callable[[str], Any]) -> Read:
        if head is None:
            reset = self._last is not None
            self._reset(None)
            return Read(None, None if reset else frozenset())
        try:
            return self._apply(head, fetch)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            return Read(self._last, frozenset(), malformed=f"{type(exc).__name__}: {exc}")

    def _apply(self, head: Any, fetch: Callable[[str], Any]) -> Read:
        if not isinstance(head, Mapping) or head.get("v") != WIRE_VERSION:
            raise ValueError(f"not a dbt-watcher status of wire version {WIRE_VERSION}: {str(head)[:200]}")
        key = (str(head["gen"]), int(head["attempt"]))
        changed: set[str] | None = set()
        if key != self._key:
            self._reset(key)
            changed = None
        closed = int(head["closed"])
        complete = True
        for index in range(closed):
            if index in self._chunks:
                continue
            chunk = fetch(chunk_key(key[1], index))
            if chunk is None:
                complete = False
                continue
            if not isinstance(chunk, list):
                raise ValueError(f"chunk {index} of attempt {key[1]} is not a list")
            self._chunks[index] = chunk
            self._take(chunk, changed)
        opened = list(head.get("open") or [])
        seen_closed, seen_open = self._open_seen
        self._take(opened[seen_open:] if seen_closed == closed else opened, changed)
        self._open_seen = (closed, len(opened))
        status = RunStatus(
            generation=key[0],
            attempt=key[1],
            state=ProducerPhase(head["state"]),
            results=self._results,
            error=head.get("error"),
            exit_code=head.get("exit"),
            final_only=bool(head.get("final_only")),
            complete=complete,
            built=bool(head.get("built", True)),
            seq=int(head["seq"]),
            selection=self._selection,
            # Known only once every entry is read: a node missing from a chunk not read yet is not "unselected".
            selection_attempt=int(head["sel"]) if complete and head.get("sel") is not None else None,
        )
        self._last = status
        return Read(status, frozenset(changed) if changed is not None else None)

    def _take(self, entries: list[Any], changed: set[str] | None) -> None:
        for entry in entries:
            if entry.get("k") == SELECTED:
                uid = str(entry["u"])
                self._selection[uid] = {str(t): str(s) for t, s in (entry.get("g") or {}).items()}
            else:
                result = decode_result(entry)
                uid = result.unique_id
                self._results[uid] = result
            if changed is not None:
                changed.add(uid)

    def _reset(self, key: tuple[str, int] | None) -> None:
        # A new dict, never a cleared one: a consumer still deciding on the previous snapshot keeps
        # the results it was handed.
        self._key, self._chunks, self._results, self._open_seen, self._last = key, {}, {}, (0, 0), None
        self._selection = {}
