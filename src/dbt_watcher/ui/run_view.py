"""What the run page shows, assembled from one DAG run's channel XComs (nothing is recomputed).

Input: the run's ``dbt_watcher.*`` XComs as (task_id, map_index, key, value) rows, as
:func:`dbt_watcher.compat.run_xcoms` reads them. Output (JSON)::

    {"groups": [{"group": "jaffle_shop", "producer_task_id": "jaffle_shop.dbt_producer", "map_index": -1,
                 "phase": "finished", "attempt": 1, "exit_code": 0, "error": null, "problem": null,
                 "artifacts": "/path/or/url", "nodes": [NODE, ...]}]}

    NODE = {"unique_id", "name", "resource_type", "status", "message", "started_at", "completed_at"
            (ISO 8601 UTC, as dbt reports them), "execution_time" (s), "rows_affected", "failures",
            "attempt", "task_id" (the consumer whose verdict it is, or null), "gates" (true for a
            test that gates that consumer), "asset" (the consumer's asset URI)}

Nodes are in the order dbt started them. A group whose channel cannot be read says why in ``problem``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from dbt_watcher.channel.channel import ChannelReader
from dbt_watcher.channel.records import Invocation, TaskMap
from dbt_watcher.channel.wire import HEAD, INVOCATION, TASKS
from dbt_watcher.invocation.events import NodeResult

Row = tuple[str, int, str, Any]


class _Values:
    """One producer's XComs as the channel's read-only store."""

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values

    def get(self, key: str) -> Any:
        return self._values.get(key)

    def set(self, key: str, value: Any) -> None:  # pragma: no cover - the page never writes
        raise NotImplementedError


def by_producer(rows: Iterable[Row]) -> dict[tuple[str, int], dict[str, Any]]:
    """The rows as {(producer task id, map index): {key: value}}: one entry per group's channel."""
    producers: dict[tuple[str, int], dict[str, Any]] = defaultdict(dict)
    for task_id, map_index, key, value in rows:
        producers[(task_id, map_index)][key] = value
    return producers


def artifacts_of(values: Mapping[str, Any]) -> str | None:
    """Where a group's run keeps its artifacts, from the producer's invocation record."""
    invocation = Invocation.from_json(values.get(INVOCATION))
    return invocation.artifacts if invocation is not None and isinstance(invocation.artifacts, str) else None


def gating_tests(values: Mapping[str, Any], node: str) -> list[str]:
    """The tests the run's dbt invocation selected for a node (those that gate its consumer)."""
    status = ChannelReader().read(_Values(values)).status
    return sorted(status.selection.get(node, {})) if status is not None else []


def run_view(rows: Iterable[Row]) -> dict[str, Any]:
    """The run page's data for every dbt-watcher group of one DAG run (see the module docstring)."""
    groups = [
        _group(task_id, map_index, values)
        for (task_id, map_index), values in sorted(by_producer(rows).items())
        if HEAD in values or TASKS in values
    ]
    return {"groups": groups}


def _group(task_id: str, map_index: int, values: Mapping[str, Any]) -> dict[str, Any]:
    tasks = TaskMap.from_json(values.get(TASKS, {}))
    unreadable = None if tasks is not None else "the group's task map (dbt_watcher.tasks) is not readable"
    read = ChannelReader().read(_Values(values))
    status = read.status
    watched = _watched(tasks, status.selection if status is not None else {}) if tasks is not None else {}
    silent = None if status is not None else "the producer has published no status yet"
    problem = read.malformed or unreadable or silent
    results = sorted(
        (status.results.values() if status is not None else ()),
        key=lambda r: (r.started_at or r.completed_at or "~", r.unique_id),
    )
    return {
        "group": (tasks.group if tasks is not None else "") or task_id.rpartition(".")[0],
        "producer_task_id": task_id,
        "map_index": map_index,
        "phase": str(status.state) if status is not None else None,
        "attempt": status.attempt if status is not None else None,
        "exit_code": status.exit_code if status is not None else None,
        "error": status.error if status is not None else None,
        "problem": problem,
        "artifacts": artifacts_of(values),
        "nodes": [_node(r, watched.get(r.unique_id)) for r in results],
        "waiting": sorted(set(watched) - {r.unique_id for r in results}),
    }


def _watched(tasks: TaskMap, selection: Mapping[str, Mapping[str, str]]) -> dict[str, tuple[str, bool, str | None]]:
    """unique id -> (consumer task id whose verdict it is, is a gating test, asset URI); which tests gate
    a consumer is what the run's dbt invocation selected for its node."""
    watched: dict[str, tuple[str, bool, str | None]] = {}
    for consumer, entry in tasks.tasks.items():
        for test in selection.get(entry.node, {}) if entry.gated else ():
            watched.setdefault(test, (consumer, True, None))
        watched[entry.node] = (consumer, False, entry.asset)
    return watched


def node_name(unique_id: str) -> str:
    """The node's name in a unique id (``<type>.<package>.<name>[.<version or test hash>]``, dbt's form)."""
    parts = unique_id.split(".")
    if len(parts) < 3:
        return unique_id
    return f"{parts[2]}.{parts[3]}" if parts[0] == "model" and len(parts) == 4 else parts[2]


def _node(result: NodeResult, watched: tuple[str, bool, str | None] | None) -> dict[str, Any]:
    task_id, gates, asset = watched if watched is not None else (None, False, None)
    return {
        "unique_id": result.unique_id,
        "name": node_name(result.unique_id),
        "resource_type": result.resource_type or result.unique_id.split(".", 1)[0],
        "status": result.status,
        "message": result.message,
        "started_at": result.started_at,
        "completed_at": result.completed_at,
        "execution_time": result.execution_time,
        "rows_affected": result.rows_affected,
        "failures": result.failures,
        "attempt": result.attempt,
        "task_id": task_id,
        "gates": gates,
        "asset": asset,
    }
