"""The producer's private record of its DAG run, in its Task State Store.

The Task State Store is private to the producer task, survives its tries and clears, and is deleted
with the DAG run (Airflow 3.3, ``airflow/models/task_state_store.py``); entries expire after the
group's ``status_retention``. It holds:

* ``dbt_watcher.ledger`` — the run's *generation* (a fresh id whenever the whole run is reprocessed:
  a DAG-run clear or a backfill that clears every task of the group) and, for each producer attempt
  of the generation, whether dbt started running nodes, dbt's exit code and the verdict;
* a mirror of every channel key the producer publishes (:class:`dbt_watcher.channel.store.Mirrored`):
  Airflow deletes the producer's XComs when its next try starts, and the next try publishes the
  mirror again before anything else.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from dbt_watcher.channel.wire import Store

KEY = "dbt_watcher.ledger"


@dataclass(frozen=True)
class AttemptRecord:
    """What one producer attempt did."""

    number: int
    #: dbt started running nodes (the first NodeStart): from here on, the warehouse may have changed.
    dbt_started: bool = False
    #: dbt's exit code (None: the attempt did not run dbt, or died before dbt ended).
    exit_code: int | None = None
    #: Why the build of this attempt is not green (None: it is, or it did not end).
    problem: str | None = None


@dataclass(frozen=True)
class Ledger:
    generation: str
    clear_number: int
    attempts: tuple[AttemptRecord, ...] = ()
    #: Unique ids whose asset event the producer emitted in this generation (once per node).
    assets_emitted: frozenset[str] = field(default_factory=frozenset)

    @classmethod
    def fresh(cls, clear_number: int) -> Ledger:
        return cls(generation=uuid.uuid4().hex[:12], clear_number=clear_number)

    @property
    def built(self) -> bool:
        """Whether an attempt of this generation may have changed the warehouse."""
        return any(a.dbt_started for a in self.attempts)

    @property
    def last_ended(self) -> AttemptRecord | None:
        """The latest attempt whose dbt invocation ran to its end (it has an exit code)."""
        return next((a for a in reversed(self.attempts) if a.exit_code is not None), None)

    def record(self, attempt: AttemptRecord) -> Ledger:
        kept = tuple(a for a in self.attempts if a.number != attempt.number)
        return replace(self, attempts=(*kept, attempt))

    def attempt(self, number: int) -> AttemptRecord:
        return next((a for a in self.attempts if a.number == number), AttemptRecord(number))

    def to_json(self) -> dict[str, Any]:
        return {
            "v": 1,
            "gen": self.generation,
            "clear_number": self.clear_number,
            "attempts": [a.__dict__ for a in self.attempts],
            "assets": sorted(self.assets_emitted),
        }

    @classmethod
    def from_json(cls, data: Any) -> Ledger | None:
        if not isinstance(data, Mapping) or data.get("v") != 1:
            return None
        return cls(
            generation=str(data["gen"]),
            clear_number=int(data.get("clear_number") or 0),
            attempts=tuple(AttemptRecord(**a) for a in data.get("attempts") or ()),
            assets_emitted=frozenset(data.get("assets") or ()),
        )


class LedgerBook:
    """Reads and writes the ledger; one per producer attempt."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def load(self) -> Ledger | None:
        return Ledger.from_json(self.store.get(KEY))

    def save(self, ledger: Ledger) -> Ledger:
        self.store.set(KEY, ledger.to_json())
        return ledger
