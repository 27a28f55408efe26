"""The status channel: one writer (the producer), many readers (the consumers), per DAG run.

Where it lives: Airflow's Asset State Store, under one asset per (DAG, group) and keys that start
with the run id. It is run-scoped, readable by every task and trigger through the execution API,
and — unlike XComs — not wiped when the producer retries or is cleared.

Layout of one run (``<run>`` is the run id):

* ``<run>/head`` — the small, frequently rewritten part: producer attempt, state
  (``running``/``finished``/``failed``), heartbeat time, how many chunks are closed, the results
  published since the last closed chunk, and the error when dbt could not run at all;
* ``<run>/chunk/<k>`` — closed, never rewritten batches of results.

A reader therefore reads one key per tick (the head) and each closed chunk once: the cost of
following a run grows with its length, not with the number of consumers or their polls.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dbt_watcher.events import NodeResult

log = logging.getLogger(__name__)

WIRE_VERSION = 1
RUNNING, FINISHED, FAILED = "running", "finished", "failed"
CHUNK_SIZE = 200


class StateStore(Protocol):
    """The key/value operations the channel needs (Airflow's Asset State Store in production)."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any) -> None: ...


class AsyncStateStore(Protocol):
    async def aget(self, key: str) -> Any: ...


def run_prefix(run_id: str) -> str:
    """Key prefix of a run; long run ids are hashed to stay inside the 512-character key limit."""
    if len(run_id) <= 400:
        return run_id
    return "sha256:" + hashlib.sha256(run_id.encode()).hexdigest()


def head_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}/head"


def chunk_key(run_id: str, index: int) -> str:
    return f"{run_prefix(run_id)}/chunk/{index}"


def invocation_key(run_id: str) -> str:
    return f"{run_prefix(run_id)}/invocation"


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
)


def encode_result(result: NodeResult) -> dict[str, Any]:
    return {short: getattr(result, name) for short, name in _WIRE_FIELDS if getattr(result, name) is not None}


def decode_result(entry: Mapping[str, Any]) -> NodeResult:
    return NodeResult(**{name: entry[short] for short, name in _WIRE_FIELDS if short in entry})


@dataclass(frozen=True)
class RunStatus:
    """A reader's view of one run: the producer's state and the latest result of every node."""

    attempt: int
    state: str
    heartbeat: float
    results: Mapping[str, NodeResult] = field(default_factory=dict)
    error: str | None = None
    complete: bool = True

    def is_stale(self, now: float, stale_after: float) -> bool:
        return self.state == RUNNING and now - self.heartbeat > stale_after


class StatusReader:
    """Follows one run; caches closed chunks so each is fetched once."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._chunks: dict[int, list[dict[str, Any]]] = {}
        self.reads = 0

    def _wanted_chunks(self, head: Mapping[str, Any]) -> list[int]:
        return [i for i in range(int(head.get("closed", 0))) if i not in self._chunks]

    def _keep_chunk(self, index: int, value: Any) -> None:
        if isinstance(value, list):
            self._chunks[index] = value

    def _assemble(self, head: Any) -> RunStatus | None:
        if not isinstance(head, dict) or head.get("v") != WIRE_VERSION:
            return None
        results: dict[str, NodeResult] = {}
        complete = True
        for index in range(int(head.get("closed", 0))):
            entries = self._chunks.get(index)
            if entries is None:
                complete = False
                continue
            for entry in entries:
                results[entry["u"]] = decode_result(entry)
        for entry in head.get("open", []):
            results[entry["u"]] = decode_result(entry)
        return RunStatus(
            attempt=int(head.get("attempt", 1)),
            state=str(head.get("state", RUNNING)),
            heartbeat=float(head.get("beat", 0.0)),
            results=results,
            error=head.get("error"),
            complete=complete,
        )

    def read(self, store: StateStore) -> RunStatus | None:
        head = store.get(head_key(self.run_id))
        self.reads += 1
        if isinstance(head, dict):
            for index in self._wanted_chunks(head):
                self._keep_chunk(index, store.get(chunk_key(self.run_id, index)))
                self.reads += 1
        return self._assemble(head)

    async def aread(self, store: AsyncStateStore) -> RunStatus | None:
        head = await store.aget(head_key(self.run_id))
        self.reads += 1
        if isinstance(head, dict):
            for index in self._wanted_chunks(head):
                self._keep_chunk(index, await store.aget(chunk_key(self.run_id, index)))
                self.reads += 1
        return self._assemble(head)


class StatusWriter:
    """The single writer of a run's status. Thread-safe: dbt calls :meth:`publish` from its threads.

    Results are batched: a background thread writes the head at most every ``flush_interval``
    seconds when something changed, and at least every ``heartbeat_interval`` seconds so readers
    can tell a live producer from a dead one. The writer keeps every entry of the run, so its final
    write restores the whole channel even if somebody emptied the store meanwhile.
    """

    def __init__(
        self,
        store: StateStore,
        run_id: str,
        attempt: int,
        *,
        flush_interval: float = 0.2,
        heartbeat_interval: float = 1.0,
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self._store = store
        self._run_id = run_id
        self._attempt = attempt
        self._flush_interval = flush_interval
        self._heartbeat_interval = heartbeat_interval
        self._chunk_size = chunk_size
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._entries: list[dict[str, Any]] = []
        self._closed_written = 0
        self._dirty = True
        self.writes = 0

    def carry_over(self, previous: RunStatus) -> None:
        """Start from what earlier attempts of this run published (before :meth:`start`)."""
        self._entries = [encode_result(r) for r in previous.results.values()]

    def start(self) -> None:
        self._flush(RUNNING)
        self._thread = threading.Thread(target=self._loop, name="dbt-watcher-status", daemon=True)
        self._thread.start()

    def publish(self, result: NodeResult) -> None:
        entry = encode_result(result.with_attempt(self._attempt))
        with self._lock:
            self._entries.append(entry)
            self._dirty = True
        self._wake.set()

    def finish(self, state: str = FINISHED, error: str | None = None) -> None:
        """Stop the background thread and write the final head (synchronously, with retries)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for delay in (0.0, 0.5, 1.0, 2.0, 4.0):
            time.sleep(delay)
            try:
                self._flush(state, error, rewrite_chunks=True)
                return
            except Exception:
                log.exception("Writing the final dbt-watcher status failed; retrying")
        raise RuntimeError("dbt-watcher could not write the final status of this run")

    def _loop(self) -> None:
        last_write = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(timeout=self._heartbeat_interval)
            if self._stop.is_set():
                return
            time.sleep(self._flush_interval)  # let results of the same instant share one write
            self._wake.clear()
            with self._lock:
                due = self._dirty or time.monotonic() - last_write >= self._heartbeat_interval
            if not due:
                continue
            try:
                self._flush(RUNNING)
                last_write = time.monotonic()
            except Exception:
                # Readers see a stale heartbeat and ask Airflow for the producer's state; the
                # next flush carries everything still pending.
                log.exception("Publishing dbt-watcher status failed; will retry")

    def _flush(self, state: str, error: str | None = None, *, rewrite_chunks: bool = False) -> None:
        with self._lock:
            entries = list(self._entries)
            self._dirty = False
        try:
            closed = len(entries) // self._chunk_size
            first = 0 if rewrite_chunks else self._closed_written
            for index in range(first, closed):
                # Chunks first, head last: a reader never sees a head pointing at a missing chunk.
                chunk = entries[index * self._chunk_size : (index + 1) * self._chunk_size]
                self._store.set(chunk_key(self._run_id, index), chunk)
                self.writes += 1
            self._closed_written = closed
            head = {
                "v": WIRE_VERSION,
                "attempt": self._attempt,
                "state": state,
                "beat": time.time(),
                "closed": closed,
                "open": entries[closed * self._chunk_size :],
                "error": error,
            }
            self._store.set(head_key(self._run_id), head)
            self.writes += 1
        except Exception:
            with self._lock:
                self._dirty = True
            raise
