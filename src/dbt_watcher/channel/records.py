"""What the channel carries about one run: the readers' view of its status, the run's dbt arguments, and
which consumer task watches which node."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dbt_watcher.channel.wire import RUNNING, ProducerPhase
from dbt_watcher.invocation.events import NodeResult


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
    #: Each node with a consumer that the run's dbt invocations selected, with the tests that gate it
    #: (test id -> dbt selector) as the latest invocation that selected the node selected them.
    selection: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: The latest attempt whose invocation's selection is published in full (None: none yet).
    selection_attempt: int | None = None

    @property
    def finished(self) -> bool:
        return self.state != RUNNING

    @property
    def selection_current(self) -> bool:
        """The current attempt's selection is published: a node it does not list is not built by it."""
        return self.selection_attempt == self.attempt


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
    """One consumer task of a group in its :class:`TaskMap`: the node it watches, whether the tests the run
    selects for the node gate it (the run's selection says which), its asset."""

    node: str
    gated: bool = True
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
            "tasks": {t: {"node": e.node, "gated": e.gated, "asset": e.asset} for t, e in self.tasks.items()},
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
            asset = entry.get("asset")
            gated = entry.get("gated", True) is not False
            tasks[str(task_id)] = ConsumerEntry(entry["node"], gated, asset if isinstance(asset, str) else None)
        return cls(str(data.get("group") or ""), tasks)
