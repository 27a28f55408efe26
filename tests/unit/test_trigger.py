"""The consumers' trigger: decisions into trigger events, one shared poll per group and run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.triggers.base import TaskFailedEvent, TaskSkippedEvent, TaskSuccessEvent, TriggerEvent
from freezegun import freeze_time

from dbt_watcher import airflow_io, trigger
from dbt_watcher.events import NodeResult
from dbt_watcher.status import FINISHED, RUNNING, RunStatus, StatusWriter
from dbt_watcher.trigger import ConsumerTrigger, GroupPoller, Snapshot

from .test_status import MemoryStore

NODE = "model.shop.orders"


def make(try_number: int = 1, **kw: Any) -> ConsumerTrigger:
    params: dict[str, Any] = dict(
        node=NODE,
        status_asset="status",
        producer_task_id="g.dbt_producer",
        poke_interval=1.0,
        timeout=30.0,
        group_id="g",
    )
    params.update(kw)
    t = ConsumerTrigger(**params)
    t.task_instance = SimpleNamespace(dag_id="d", run_id="r1", try_number=try_number, task_id="g.orders")  # type: ignore[assignment]
    return t


def snap(*results: NodeResult, state: str = RUNNING, at: float = 1000.0, **kw: Any) -> Snapshot:
    status = RunStatus(1, state, at, {r.unique_id: r for r in results})
    return Snapshot(status, kw.pop("producer_state", None), at, **kw)


async def collect(t: ConsumerTrigger, snapshots: list[Snapshot]) -> list[TriggerEvent]:
    async def stream() -> AsyncIterator[Snapshot]:
        for s in snapshots:
            yield s

    return [e async for e in t.filter_shared_stream(stream())]


def test_success_ends_the_task_in_the_triggerer_with_the_result_as_xcom() -> None:
    events = asyncio.run(collect(make(), [snap(), snap(NodeResult(NODE, "success", rows_affected=5))]))
    assert len(events) == 1 and isinstance(events[0], TaskSuccessEvent)
    assert events[0].xcoms is not None and events[0].xcoms["dbt_result"]["rows_affected"] == 5


def test_failure_fails_the_task_and_logs_dbts_message(capsys: pytest.CaptureFixture[str]) -> None:
    failed = NodeResult(NODE, "error", message="Database Error: relation missing")
    events = asyncio.run(collect(make(), [snap(failed, state=FINISHED)]))
    assert isinstance(events[0], TaskFailedEvent)
    assert "relation missing" in capsys.readouterr().out


def test_producer_that_never_ran_skips() -> None:
    events = asyncio.run(collect(make(), [Snapshot(None, "upstream_failed", 1000.0)]))
    assert isinstance(events[0], TaskSkippedEvent)


def test_success_that_needs_a_worker_resumes_there() -> None:
    events = asyncio.run(collect(make(finish_on_worker=True), [snap(NodeResult(NODE, "success"))]))
    assert type(events[0]) is TriggerEvent and events[0].payload["action"] == "succeed"


def test_retry_asks_for_task_states_then_rebuilds_in_dbt_order() -> None:
    t = make(try_number=2, upstream=["g.stg"])
    skipped = NodeResult(NODE, "skipped")
    first = snap(skipped, state=FINISHED)
    second = snap(skipped, state=FINISHED, task_states={"g.stg": "success"})
    events = asyncio.run(collect(t, [first, second]))
    assert trigger._TASK_STATE_DEMAND[t.shared_stream_key()] > 1000.0
    assert type(events[0]) is TriggerEvent and events[0].payload["action"] == "run_locally"


def test_timeout_fails_with_a_message_and_leaves_the_producer_alone(capsys: pytest.CaptureFixture[str]) -> None:
    t = make(timeout=10.0)
    with freeze_time("2026-01-01 00:00:00"):
        events = asyncio.run(collect(t, [snap(at=1000.0), snap(at=1005.0), snap(at=1011.0)]))
    assert isinstance(events[0], TaskFailedEvent)
    out = capsys.readouterr().out
    assert "Timed out after 10 s" in out and "producer keeps running" in out


def test_a_waiting_consumer_logs_once_at_start_then_once_per_period(capsys: pytest.CaptureFixture[str]) -> None:
    # Every consumer of a group sees the same reason change in the same tick; a line each would be a
    # burst through the triggerer's log socket. Changes show in the periodic line instead.
    queued = Snapshot(None, None, 1000.0)
    running = [snap(at=1000.5 + i) for i in range(3)]
    late = [snap(at=1000.0 + trigger._PROGRESS_EVERY * 2 + i) for i in range(2)]
    assert asyncio.run(collect(make(timeout=600.0), [queued, *running, *late])) == []
    out = capsys.readouterr().out
    assert out.count("Waiting for dbt node model.shop.orders") == 1
    assert out.count("Still waiting") == 1


def test_serialize_round_trips_and_the_run_comes_from_the_task_instance() -> None:
    t = make()
    assert t.shared_stream_key() == ("dbt-watcher", "status", "r1")
    classpath, kwargs = t.serialize()
    assert classpath == "dbt_watcher.trigger.ConsumerTrigger"
    again = ConsumerTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs) and kwargs["run_id"] == "r1"


class FakeChannel(MemoryStore):
    def __init__(self, asset_name: str) -> None:
        super().__init__()
        self.asset_name = asset_name


def test_poller_reads_one_head_per_tick_and_task_states_only_when_needed(monkeypatch: pytest.MonkeyPatch) -> None:
    store = FakeChannel("status")
    state_reads: list[str] = []

    async def states(dag_id: str, run_id: str, group_id: str) -> dict[str, str]:
        state_reads.append(group_id)
        return {"g.dbt_producer": "running"}

    monkeypatch.setattr(airflow_io, "AssetStateChannelStore", lambda name: store)
    monkeypatch.setattr(airflow_io, "agroup_task_states", states)
    poller = GroupPoller(
        key=("k",),
        status_asset="status",
        dag_id="d",
        run_id="r1",
        group_id="g",
        producer_task_id="g.dbt_producer",
        poke_interval=1.0,
    )
    first = asyncio.run(poller.poll())  # nothing published yet: ask whether the producer runs
    assert first.status is None and first.producer_state == "running" and state_reads == ["g"]
    writer = StatusWriter(store, "r1", attempt=1)
    writer.publish(NodeResult(NODE, "success"))
    writer._flush(RUNNING)
    gets = store.gets
    second = asyncio.run(poller.poll())
    assert second.status is not None and NODE in second.status.results
    assert store.gets - gets == 1 and state_reads == ["g"]


def test_letting_go_of_the_dag_never_breaks_the_consumer() -> None:
    class Frozen:
        task = object()

        def __setattr__(self, name: str, value: Any) -> None:
            raise TypeError("frozen")

    context = {"dag": object()}
    trigger.release_dag(Frozen(), context)  # no exception: only memory is at stake
    assert context == {}
