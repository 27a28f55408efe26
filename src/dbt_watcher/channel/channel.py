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
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from dbt_watcher.invocation.events import NodeResult

if TYPE_CHECKING:
    from dbt_watcher.channel.writer import ChannelWriter

log = logging.getLogger(__name__)

WIRE_VERSION = 2


class ProducerPhase(StrEnum):
    """Where the producer's attempt stands, as its channel's head says."""

    RUNNING = "running"
    FINISHED = "finished"
    #: The attempt ended before dbt's closing record (an exception, a failed hook).
    FAILED = "failed"


RUNNING, FINISHED, FAILED = ProducerPhase.RUNNING, ProducerPhase.FINISHED, ProducerPhase.FAILED
_PREFIX = "dbt_watcher."
HEAD = _PREFIX + "head"
INVOCATION = _PREFIX + "invocation"
TASKS = _PREFIX + "tasks"
#: A chunk closes at this many results or bytes (the Task State Store mirror takes 64 KiB a value).
CHUNK_RESULTS, CHUNK_BYTES = 100, 32_000


def chunk_key(attempt: int, index: int) -> str:
    return f"{_PREFIX}chunk.{attempt}.{index}"


class Store(Protocol):
    """Key/value operations on one task's state (XComs of the producer, or its Task State Store)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class AsyncStore(Protocol):
    async def aget(self, key: str) -> Any: ...


_WIRE_FIELDS = (
    ("u", "unique_id"),
    ("s", "status"),
    ("t", "resource_type"),
    ("m", "message"),
    ("b", "started_at"),
    ("f", "completed_at"),
    ("x", "execution_time"),
    ("r", "rows_affected"),
    ("c", "adapter_code"),
    ("n", "failures"),
    ("l", "relation_name"),
    ("a", "attempt"),
    ("q", "closing"),
)


def encode_result(result: NodeResult) -> dict[str, Any]:
    return {short: value for short, name in _WIRE_FIELDS if (value := getattr(result, name)) not in (None, False)}


def decode_result(entry: Mapping[str, Any]) -> NodeResult:
    return NodeResult(**{name: entry[short] for short, name in _WIRE_FIELDS if short in entry})


@dataclass(frozen=True)
class RunStatus:
    """A reader's view of one run: the producer's state and the latest result of every node."""

    generation: str
    attempt: int
    state: ProducerPhase
    results: Mapping[str, NodeResult] = field(default_factory=dict)
    error: str | None = None
    exit_code: int | None = None
    #: Results count only once dbt's closing record (run_results.json) confirmed them: dbt runs with
    #: ``--fail-fast``, which can mark nodes skipped after they finished.
    final_only: bool = False
    #: Every closed chunk was read (a missing one is retried next tick; never read as "no result").
    complete: bool = True
    #: dbt has started running nodes in this generation of the run (a producer attempt built).
    built: bool = True
    seq: int = 0

    @property
    def finished(self) -> bool:
        return self.state != RUNNING


@dataclass(frozen=True)
class Invocation:
    """The dbt arguments one DAG run gives dbt, decided once by the producer, reused by rebuilds."""

    vars: Mapping[str, Any] = field(default_factory=dict)
    full_refresh: bool = False
    dbt_args: tuple[str, ...] = ()
    #: Where the run's artifacts live (a local folder or an object-storage URL).
    artifacts: str | None = None

    def mask_secrets(self) -> Invocation:
        """Have Airflow mask, in every log line from here on, the values of vars whose names it deems
        sensitive (password, token, api_key, ...; Airflow's secrets masker rule). Returns self."""
        from airflow.sdk.log import mask_secret

        mask_secret(dict(self.vars))
        return self

    def to_json(self) -> dict[str, Any]:
        return {
            "vars": dict(self.vars),
            "full_refresh": self.full_refresh,
            "dbt_args": list(self.dbt_args),
            "artifacts": self.artifacts,
        }

    @classmethod
    def from_json(cls, data: Any) -> Invocation | None:
        if not isinstance(data, Mapping) or not isinstance(data.get("vars", {}), Mapping):
            return None
        return cls(
            vars=dict(data.get("vars") or {}),
            full_refresh=bool(data.get("full_refresh")),
            dbt_args=tuple(str(a) for a in data.get("dbt_args") or ()),
            artifacts=data.get("artifacts"),
        )


@dataclass(frozen=True)
class ConsumerEntry:
    """One consumer task of a group in its :class:`TaskMap`: the node it watches, its gating tests, its asset."""

    node: str
    tests: tuple[str, ...] = ()
    asset: str | None = None


@dataclass(frozen=True)
class TaskMap:
    """Which consumer task watches which node (``dbt_watcher.tasks``), written by each producer try for
    the UI plugin: the key from dbt's nodes to Airflow's tasks."""

    group: str
    tasks: Mapping[str, ConsumerEntry] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "tasks": {t: {"node": e.node, "tests": list(e.tests), "asset": e.asset} for t, e in self.tasks.items()},
        }

    @classmethod
    def from_json(cls, data: Any) -> TaskMap | None:
        """The record, or None when it is not one (a reader then says so rather than guess)."""
        if not isinstance(data, Mapping) or not isinstance(data.get("tasks") or {}, Mapping):
            return None
        tasks = {}
        for task_id, entry in (data.get("tasks") or {}).items():
            if not isinstance(entry, Mapping) or not isinstance(entry.get("node"), str):
                return None
            tests, asset = entry.get("tests"), entry.get("asset")
            tests = tuple(str(t) for t in tests) if isinstance(tests, list) else ()
            tasks[str(task_id)] = ConsumerEntry(entry["node"], tests, asset if isinstance(asset, str) else None)
        return cls(str(data.get("group") or ""), tasks)


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
        from dbt_watcher.channel.writer import ChannelWriter

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
        )
        self._last = status
        return Read(status, frozenset(changed) if changed is not None else None)

    def _take(self, entries: list[Any], changed: set[str] | None) -> None:
        for entry in entries:
            result = decode_result(entry)
            self._results[result.unique_id] = result
            if changed is not None:
                changed.add(result.unique_id)

    def _reset(self, key: tuple[str, int] | None) -> None:
        # A new dict, never a cleared one: a consumer still deciding on the previous snapshot keeps
        # the results it was handed.
        self._key, self._chunks, self._results, self._open_seen, self._last = key, {}, {}, (0, 0), None
