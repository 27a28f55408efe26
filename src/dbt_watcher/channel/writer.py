"""The single writer of a run's status channel (the producer's attempt); see :mod:`dbt_watcher.channel.channel`."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

from dbt_watcher.channel.records import RunStatus
from dbt_watcher.channel.wire import (
    CHUNK_BYTES,
    CHUNK_RESULTS,
    FINISHED,
    HEAD,
    RUNNING,
    WIRE_VERSION,
    ProducerPhase,
    Store,
    chunk_key,
    encode_result,
    encode_selected,
)
from dbt_watcher.invocation.events import NodeResult

log = logging.getLogger(__name__)


class ChannelWriter:
    """The single writer of a run's status. Thread-safe: dbt calls :meth:`publish` from its threads.

    A background thread writes the head at most every ``flush_interval`` seconds when something
    changed, and at least every ``heartbeat`` seconds with a new ``seq`` so readers can tell a live
    producer from a silent one on their own clock. The writer keeps every entry of the attempt, so
    its final write restores the whole channel even if somebody emptied the store meanwhile.
    """

    def __init__(
        self,
        store: Store,
        *,
        generation: str,
        attempt: int,
        heartbeat: float = 1.0,
        flush_interval: float = 0.2,
        **head: Any,
    ) -> None:
        self._store = store
        self._generation, self._attempt = generation, attempt
        self._heartbeat, self._flush_interval = heartbeat, flush_interval
        self._extra_head = dict(head)
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._entries: list[dict[str, Any]] = []
        self._selection: dict[str, dict[str, str]] = {}
        self._bounds: list[int] = []  # entry index where each closed chunk ends
        self._open_bytes = 0
        self._chunks_written = 0
        self._seq = 0
        self._dirty = True
        self._finished = False
        self.writes = 0

    @property
    def selection(self) -> dict[str, dict[str, str]]:
        """What the run's invocations selected, as published so far (node -> its gating tests)."""
        with self._lock:
            return {uid: dict(tests) for uid, tests in self._selection.items()}

    @property
    def selection_attempt(self) -> int | None:
        """The latest attempt whose selection is published (None: none yet)."""
        value = self._extra_head.get("sel")
        return int(value) if value is not None else None

    def carry_over(self, previous: RunStatus) -> None:
        """Start from what earlier attempts of this generation published (before :meth:`start`)."""
        for unique_id, tests in previous.selection.items():
            self._append(encode_selected(unique_id, tests))
        self._selection.update({uid: dict(tests) for uid, tests in previous.selection.items()})
        for result in previous.results.values():
            self._append(encode_result(result))
        if previous.selection_attempt is not None:
            self._extra_head["sel"] = previous.selection_attempt

    def publish_selection(self, gates: Mapping[str, Mapping[str, str]]) -> None:
        """This attempt's dbt invocation selected these nodes (each with the tests that gate its consumer):
        written with the head that says the attempt's selection is complete."""
        with self._lock:
            for unique_id, tests in gates.items():
                self._append(encode_selected(unique_id, tests))
                self._selection[unique_id] = dict(tests)
            self._extra_head["sel"] = self._attempt
            self._dirty = True
        self._wake.set()

    def start(self) -> None:
        self._flush(RUNNING)
        self._thread = threading.Thread(target=self._loop, name="dbt-watcher-status", daemon=True)
        self._thread.start()

    def set_head(self, **fields: Any) -> None:
        """Change head fields (``built=True`` once dbt starts); written with the next flush."""
        with self._lock:
            self._extra_head.update(fields)
            self._dirty = True
        self._wake.set()

    def publish(self, result: NodeResult) -> None:
        entry = encode_result(result.with_attempt(self._attempt))
        with self._lock:
            self._append(entry)
            self._dirty = True
        self._wake.set()

    def _append(self, entry: dict[str, Any]) -> None:
        self._entries.append(entry)
        self._open_bytes += len(json.dumps(entry))
        first_open = self._bounds[-1] if self._bounds else 0
        if len(self._entries) - first_open >= CHUNK_RESULTS or self._open_bytes >= CHUNK_BYTES:
            self._bounds.append(len(self._entries))
            self._open_bytes = 0

    def finish(self, state: ProducerPhase = FINISHED, error: str | None = None, exit_code: int | None = None) -> None:
        """Stop the background thread and write the final head (synchronously, retrying for a minute).

        The first call is the attempt's last word; later calls change nothing.
        """
        if self._finished:
            return
        self._finished = True
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for delay in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0):
            time.sleep(delay)
            try:
                self._flush(state, error, exit_code, rewrite_chunks=True)
                return
            except Exception:
                log.exception("Writing the final dbt-watcher status failed; retrying")
        raise RuntimeError("dbt-watcher could not write the final status of this run")

    def _loop(self) -> None:
        last_write = time.monotonic()
        while not self._stop.is_set():
            self._wake.wait(timeout=self._heartbeat)
            if self._stop.is_set():
                return
            time.sleep(self._flush_interval)  # let results of the same instant share one write
            self._wake.clear()
            with self._lock:
                due = self._dirty or time.monotonic() - last_write >= self._heartbeat
            if not due:
                continue
            try:
                self._flush(RUNNING)
                last_write = time.monotonic()
            except Exception:
                # Readers see a silent head and ask Airflow whether the producer still runs; the
                # next flush carries everything still pending.
                log.exception("Publishing dbt-watcher status failed; will retry")

    def _flush(
        self,
        state: ProducerPhase,
        error: str | None = None,
        exit_code: int | None = None,
        *,
        rewrite_chunks: bool = False,
    ) -> None:
        with self._lock:
            entries, bounds = list(self._entries), list(self._bounds)
            extra = dict(self._extra_head)
            self._dirty = False
            self._seq += 1
            seq = self._seq
        try:
            first = 0 if rewrite_chunks else self._chunks_written
            for index in range(first, len(bounds)):
                # Chunks first, head last: a reader never sees a head pointing at a missing chunk.
                start = bounds[index - 1] if index else 0
                self._store.set(chunk_key(self._attempt, index), entries[start : bounds[index]])
                self.writes += 1
            self._chunks_written = len(bounds)
            head = {
                "v": WIRE_VERSION,
                "gen": self._generation,
                "attempt": self._attempt,
                "seq": seq,
                "state": state,
                "closed": len(bounds),
                "open": entries[bounds[-1] if bounds else 0 :],
                "error": error,
                "exit": exit_code,
                **extra,
            }
            self._store.set(HEAD, head)
            self.writes += 1
        except Exception:
            with self._lock:
                self._dirty = True
            raise
