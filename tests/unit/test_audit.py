"""The audit's decision at the end of a run: green, a false green, or emit the asset events of a red build."""

from __future__ import annotations

import asyncio
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent, TriggerEvent

from dbt_watcher import airflow_lines, compat
from dbt_watcher.channel.records import RunStatus
from dbt_watcher.channel.wire import FINISHED
from dbt_watcher.config import WatcherConfig
from dbt_watcher.consumer import audit as audit_module
from dbt_watcher.consumer.audit import AuditTrigger, DbtAuditOperator
from dbt_watcher.consumer.poller import Snapshot
from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.invocation.events import NodeResult, NodeStatus
from dbt_watcher.project.selection import Selection
from dbt_watcher.rules.assets import producer_alias
from dbt_watcher.rules.emission import EMITTED
from dbt_watcher.rules.verdict import View
from dbt_watcher.rules.watch import ConsumerTask, Watch
from dbt_watcher.runtime.group_runtime import GroupRuntime
from tests.airflow_line import TaskDeferred

from ..conftest import JAFFLE_SHOP
from .fakes import OutletsFake, TaskStateStoreFake
from .graphs import model

if TYPE_CHECKING:
    from airflow.sdk import Context

A, B = "model.shop.a", "model.shop.b"
CONSUMERS = {"shop.a": {"node": A, "gated": True}, "shop.b": {"node": B, "gated": True}}
#: The run's dbt invocation selected both nodes, no test of them.
SELECTED: dict[str, dict[str, str]] = {A: {}, B: {}}


def compare(producer: str, states: dict[str, str], results: dict[str, str], *, emits: bool = True) -> TriggerEvent:
    trigger = AuditTrigger(producer_task_id="shop.dbt_producer", poke_interval=1.0, consumers=CONSUMERS, emits=emits)
    status = RunStatus(
        "gen1",
        1,
        FINISHED,
        {uid: NodeResult(uid, NodeStatus(s), "model") for uid, s in results.items()},
        selection=SELECTED,
        selection_attempt=1,
    )
    view = View(status, trusted=True, producer_state=producer, task_states=states)
    return asyncio.run(trigger._compare(Snapshot(view, None, 0, 0.0), states))


def payload(event: TriggerEvent) -> Any:
    return event.payload


def test_a_green_producer_emitted_the_events_so_the_audit_ends_in_the_triggerer() -> None:
    event = compare("success", {"shop.a": "success", "shop.b": "success"}, {A: "success", B: "success"})
    assert isinstance(event, TaskSuccessEvent)


def test_a_red_producer_with_green_nodes_resumes_the_audit_on_a_worker_to_emit_them() -> None:
    event = compare("failed", {"shop.a": "success", "shop.b": "failed"}, {A: "success", B: "error"})
    assert not isinstance(event, TaskSuccessEvent | TaskFailedEvent)
    assert payload(event)["emit"] == "gen1" and payload(event)["attempt"] == 1
    assert payload(event)["audit"]["false_green"] == 0


def test_nothing_green_or_nothing_to_emit_needs_no_worker() -> None:
    assert isinstance(compare("failed", {"shop.a": "failed", "shop.b": "failed"}, {}), TaskSuccessEvent)
    no_assets = compare("failed", {"shop.a": "success", "shop.b": "failed"}, {A: "success"}, emits=False)
    assert isinstance(no_assets, TaskSuccessEvent)


def test_a_false_green_fails_the_audit_and_emits_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    async def no_rebuild(*args: Any, **kwargs: Any) -> None:
        return None  # the consumer did not rebuild its node itself

    monkeypatch.setattr(compat, "axcom_get", no_rebuild)
    event = compare("failed", {"shop.a": "success", "shop.b": "success"}, {A: "success", B: "error"})
    assert isinstance(event, TaskFailedEvent)


class Worker:
    """The audit resumed on a worker: Airflow's producer state, the producer's channel and XComs faked."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
        cfg = WatcherConfig(project_dir=str(JAFFLE_SHOP), artifacts_dir=str(tmp_path))
        runtime = GroupRuntime(cfg, "shop", "shop.dbt_producer", DbtProject(JAFFLE_SHOP, JAFFLE_SHOP), Selection())
        consumers = [
            ConsumerTask(
                f"shop.{uid.rsplit('.', 1)[-1]}",
                model(uid.rsplit(".", 1)[-1]),
                Watch(uid),
                f"fqn:{uid}",
                asset_uri=f"duckdb://db/main/{uid.rsplit('.', 1)[-1]}",
                ends_in_triggerer=True,
            )
            for uid in (A, B)
        ]
        self.audit = DbtAuditOperator(
            task_id="dbt_audit", runtime=runtime, consumers=consumers, alias=producer_alias("d", "shop")
        )
        self.producer_state = "failed"
        self.status = RunStatus(
            "gen1",
            1,
            FINISHED,
            {A: NodeResult(A, NodeStatus.SUCCESS, "model"), B: NodeResult(B, NodeStatus.ERROR, "model")},
            selection=SELECTED,
            selection_attempt=1,
        )
        self.xcoms: dict[tuple[str, str], Any] = {}
        self.store = TaskStateStoreFake()
        worker = self

        class Channel:
            def __init__(self, store: Any) -> None: ...

            def read_all(self) -> RunStatus:
                return worker.status

        monkeypatch.setattr(audit_module, "StatusChannel", Channel)
        monkeypatch.setattr(
            compat, "task_states", lambda *a, task_ids, map_index: {"shop.dbt_producer": self.producer_state}
        )
        monkeypatch.setattr(compat, "xcom_get", lambda d, r, task, m, *, key: self.xcoms.get((task, key)))
        monkeypatch.setattr(
            compat, "xcom_set", lambda d, r, task, m, *, key, value: self.xcoms.__setitem__((task, key), value)
        )

    def resume(self) -> list[str]:
        outlets = OutletsFake()
        ti = SimpleNamespace(dag_id="d", run_id="r1", task_id="shop.dbt_audit", map_index=-1, try_number=1)
        context = cast("Context", {"ti": ti, "task_state_store": self.store, "outlet_events": outlets})
        self.audit.execute(context, event={"emit": "gen1", "attempt": 1, "audit": {"false_green": 0}})
        return outlets.uris


def test_the_resumed_audit_emits_the_green_nodes_of_a_red_build_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    worker = Worker(monkeypatch, tmp_path)
    assert worker.resume() == ["duckdb://db/main/a"]  # b failed: no event
    assert worker.xcoms[("shop.dbt_audit", EMITTED)] == {"generation": "gen1", "nodes": [A]}
    # A clear of the audit: its Task State Store remembers; without one (below Airflow 3.3) the record
    # was the cleared try's own and the events come again (docs/installation.md).
    again = [] if airflow_lines.has_task_state_store() else ["duckdb://db/main/a"]
    assert worker.resume() == again


def test_what_the_producer_emitted_is_not_emitted_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    worker = Worker(monkeypatch, tmp_path)
    worker.xcoms[("shop.dbt_producer", EMITTED)] = {"generation": "gen1", "nodes": [A]}
    assert worker.resume() == []


def test_a_producer_that_moved_on_is_waited_for_again(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    worker = Worker(monkeypatch, tmp_path)
    worker.producer_state = "running"  # cleared since the trigger decided
    with pytest.raises(TaskDeferred):
        worker.resume()
    worker.producer_state = "success"  # it turned green: it emitted the events itself
    assert worker.resume() == []
