"""Asset events of the nodes whose consumers end in the triggerer: who emits them, and when.

Airflow registers a task's asset events only when the task succeeds on a worker: the Task SDK sends
them with ``SucceedTask`` (``airflow/sdk/execution_time/task_runner.py``); a task ended by its trigger,
or one that fails, registers none. A consumer that ends in the triggerer therefore has its event
emitted, through the group's AssetAlias (:func:`dbt_watcher.rules.assets.producer_alias`), by a task that
ends green on a worker:

* the producer, when its try ends green (dbt exited 0: the usual case);
* else the audit: once the producer has ended red for good (a model failed, a hook failed, the
  producer was killed), the audit resumes on a worker for a moment and emits the events of the nodes
  that did succeed, so a failed build still schedules what depends on its green models.

Each node's event is emitted once per generation of the run. Both tasks keep what they emitted (the
producer in its ledger, the audit in its own Task State Store, both kept across tries and clears) and
publish it as an XCom of their own under :data:`EMITTED`, which the other reads before it emits. A
task registers its events only as its last step, once nothing else of its try can fail.

Which nodes: those dbt's final word for the run reports successful with their gating tests, the same
rule that makes a consumer green (a node rebuilt by the producer's resume retry gets its event even
if its first-try consumer already failed: the table was rebuilt). An audit that finds a false green
fails, and emits nothing.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbt_watcher.channel.records import RunStatus
from dbt_watcher.rules.verdict import Action, final_decision
from dbt_watcher.rules.watch import ConsumerTask

if TYPE_CHECKING:
    from airflow.sdk import AssetAlias

#: The key of each task's record of the events it emitted (XCom; the audit's Task State Store too).
EMITTED = "dbt_watcher.rules.assets_emitted"


@dataclass(frozen=True)
class NodeAssetEvent:
    """One asset event to emit: the node, its asset's URI and the event's ``extra``."""

    unique_id: str
    uri: str
    extra: dict[str, Any]


def pending_events(
    consumers: Iterable[ConsumerTask], status: RunStatus, emitted: Collection[str]
) -> list[NodeAssetEvent]:
    """Events of the green nodes whose consumers end in the triggerer, minus those already emitted.

    Green is the consumer's own final decision on ``status`` (dbt's final word for the run).
    """
    events = []
    for consumer in consumers:
        uid = consumer.watch.unique_id
        if not consumer.producer_emits or consumer.asset_uri is None or uid in emitted:
            continue
        decision = final_decision(consumer.watch, status)
        if decision.action is Action.SUCCEED and decision.result is not None:
            events.append(NodeAssetEvent(uid, consumer.asset_uri, decision.result.asset_extra()))
    return events


def add_events(outlet_events: Any, alias: AssetAlias, events: Iterable[NodeAssetEvent]) -> None:
    """Attach ``events`` to the running task's outlet ``alias`` (Airflow registers them on success)."""
    from airflow.sdk import Asset

    accessor = outlet_events[alias]
    for event in events:
        accessor.add(Asset(uri=event.uri), extra=event.extra)


def emitted_record(generation: str, unique_ids: Iterable[str]) -> dict[str, Any]:
    return {"generation": generation, "nodes": sorted(unique_ids)}


def recorded(value: Any, generation: str) -> frozenset[str]:
    """The unique ids a record of :func:`emitted_record` lists for ``generation`` (none for another)."""
    if not isinstance(value, dict) or value.get("generation") != generation:
        return frozenset()
    return frozenset(str(n) for n in value.get("nodes") or ())
