"""The channel's wire format: its keys, the producer's phases, and one node result as a compact entry.

Readers and the writer agree on these and nothing else; :mod:`dbt_watcher.channel.channel` says what
each key holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from dbt_watcher.invocation.events import NodeResult
from dbt_watcher.strenum import StrEnum

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


#: The kind of entry that says a node was selected by an attempt's dbt invocation, with its gating tests.
SELECTED = "sel"


def encode_selected(unique_id: str, tests: Mapping[str, str]) -> dict[str, Any]:
    """An entry saying this attempt's dbt invocation selected the node, with the tests that gate its
    consumer (test id -> dbt selector), as the invocation selected them."""
    return {"u": unique_id, "k": SELECTED, "g": dict(tests)}


def encode_result(result: NodeResult) -> dict[str, Any]:
    return {short: value for short, name in _WIRE_FIELDS if (value := getattr(result, name)) not in (None, False)}


def decode_result(entry: Mapping[str, Any]) -> NodeResult:
    return NodeResult(**{name: entry[short] for short, name in _WIRE_FIELDS if short in entry})
