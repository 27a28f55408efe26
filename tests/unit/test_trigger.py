"""The consumers' trigger and the shared poll: decisions into trigger events, reads only when needed."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from airflow.triggers.base import TaskSkippedEvent, TaskSuccessEvent, TriggerEvent
from freezegun import freeze_time

from dbt_watcher import compat
from dbt_watcher.channel.channel import StatusChannel
from dbt_watcher.channel.records import RunStatus
from dbt_watcher.channel.store import RunAddress
from dbt_watcher.channel.wire import FINISHED, RUNNING, ProducerPhase
from dbt_watcher.consumer import trigger as trigger_module
from dbt_watcher.consumer.poller import DEMANDS, RunPoller, Snapshot
from dbt_watcher.consumer.shared_poll import stream_key
from dbt_watcher.consumer.trigger import ConsumerTrigger
from dbt_watcher.invocation.events import NodeResult
from dbt_watcher.rules.verdict import UNREADABLE_LIMIT, View
from tests.airflow_line import failure_reason
from tests.unit.fakes import MemoryStore

if TYPE_CHECKING:
    from pydantic import JsonValue

NODE = "model.shop.orders"
PRODUCER = "g.dbt_producer"


def make(try_number: int = 1, map_index: int = -1, **kw: Any) -> ConsumerTrigger:
    params: dict[str, Any] = dict(node=NODE, producer_task_id=PRODUCER, poke_interval=1.0, timeout=30.0, group_id="g")
    params.update(kw)
    t = ConsumerTrigger(**params)
    t.task_instance = SimpleNamespace(  # type: ignore[assignment]
        dag_id="d", run_id="r1", try_number=try_number, task_id="g.orders", map_index=map_index
    )
    return t


def snap(
    *results: NodeResult, state: ProducerPhase = RUNNING, at: float = 1000.0, control: int = 1, **kw: Any
) -> Snapshot:
    # the run's dbt invocation selected the node, with no test of it
    selection = kw.pop("selection", {NODE: {}})
    status = RunStatus("gen", 1, state, {r.unique_id: r for r in results}, selection=selection, selection_attempt=1)
    view = View(
        status, trusted=True, producer_state=kw.pop("producer_state", None), task_states=kw.pop("task_states", None)
    )
    return Snapshot(view, kw.pop("changed", None), control, at, **kw)


async def collect(t: ConsumerTrigger, snapshots: Iterable[Snapshot]) -> list[TriggerEvent]:
    async def stream() -> AsyncIterator[Snapshot]:
        for s in snapshots:
            yield s

    return [e async for e in t.follow(stream())]


def test_success_ends_the_task_in_the_triggerer_with_the_result_as_xcom() -> None:
    events = asyncio.run(collect(make(), [snap(), snap(NodeResult(NODE, "success", rows_affected=5), control=2)]))
    assert len(events) == 1 and isinstance(events[0], TaskSuccessEvent)
    assert (
        events[0].xcoms is not None
        and cast("dict[str, JsonValue]", events[0].xcoms["dbt_result"])["rows_affected"] == 5
    )


def test_failure_fails_the_task_and_logs_dbts_message(capsys: pytest.CaptureFixture[str]) -> None:
    failed = NodeResult(NODE, "error", message="Database Error: relation missing")
    events = asyncio.run(collect(make(), [snap(failed, state=FINISHED)]))
    assert "relation missing" in capsys.readouterr().out
    assert "relation missing" in str(failure_reason(events[0]))  # kept when the log drops it


def test_producer_that_never_ran_skips() -> None:
    view = View(None, producer_state="upstream_failed")
    events = asyncio.run(collect(make(), [Snapshot(view, None, 1, 1000.0)]))
    assert isinstance(events[0], TaskSkippedEvent)
    assert "upstream_failed" in str((events[0].xcoms or {})["dbt_reason"])


def test_success_that_needs_a_worker_resumes_there() -> None:
    events = asyncio.run(collect(make(finish_on_worker=True), [snap(NodeResult(NODE, "success"))]))
    assert type(events[0]) is TriggerEvent and events[0].payload["action"] == "succeed"


def test_a_snapshot_that_does_not_concern_the_node_is_not_decided_again() -> None:
    t = make()
    decided: list[Snapshot] = []
    original = t.react

    def react(snapshot: Snapshot) -> TriggerEvent | None:
        decided.append(snapshot)
        return original(snapshot)

    t.react = react  # type: ignore[method-assign]  # a spy on this one trigger's decisions
    other = NodeResult("model.shop.other", "success")
    mine = NodeResult(NODE, "success")
    snapshots = [
        snap(other),
        snap(other, changed=frozenset({"model.shop.other"})),
        snap(other, mine, changed=frozenset({NODE})),
    ]
    events = asyncio.run(collect(t, snapshots))
    assert isinstance(events[0], TaskSuccessEvent) and len(decided) == 2


def test_retry_asks_for_task_states_then_rebuilds_in_dbt_order() -> None:
    t = make(try_number=2, upstream=["g.stg"])
    skipped = NodeResult(NODE, "skipped")
    first = snap(skipped, state=FINISHED, producer_state="success")
    second = snap(skipped, state=FINISHED, producer_state="success", task_states={"g.stg": "success"}, control=2)
    events = asyncio.run(collect(t, [first, second]))
    demand = DEMANDS[t.run_key()]
    assert demand.wanted(1000.0) == {"g.stg", PRODUCER}
    assert type(events[0]) is TriggerEvent and events[0].payload["action"] == "run_locally"


def test_timeout_fails_with_a_message_and_leaves_the_producer_alone(capsys: pytest.CaptureFixture[str]) -> None:
    t = make(timeout=10.0)
    with freeze_time("2026-01-01 00:00:00"):
        events = asyncio.run(collect(t, [snap(at=1000.0), snap(at=1005.0), snap(at=1011.0)]))
    assert failure_reason(events[0]) is not None
    out = capsys.readouterr().out
    assert "Timed out after 10 s" in out and "producer keeps running" in out


def test_a_waiting_consumer_logs_once_at_start_then_once_per_period(capsys: pytest.CaptureFixture[str]) -> None:
    # Every consumer of a group sees the same change in the same tick; a line each would be a burst
    # through the triggerer's log socket. Changes show in the periodic line instead.
    running = [snap(at=1000.5 + i, control=i) for i in range(3)]
    late = [snap(at=1000.0 + trigger_module._PROGRESS_EVERY * 2 + i, control=9) for i in range(2)]
    assert asyncio.run(collect(make(timeout=600.0), [*running, *late])) == []
    out = capsys.readouterr().out
    assert out.count("Waiting for dbt node model.shop.orders") == 1
    assert out.count("Still waiting") == 1


def test_serialize_round_trips_and_the_run_comes_from_the_task_instance() -> None:
    t = make(map_index=3)
    assert t.run_key() == ("dbt-watcher", "d", "r1", 3, PRODUCER)  # one channel per map index
    classpath, kwargs = t.serialize()
    assert classpath == "dbt_watcher.consumer.trigger.ConsumerTrigger"
    again = ConsumerTrigger(**kwargs)
    assert again.serialize() == (classpath, kwargs) and kwargs["run_id"] == "r1" and kwargs["map_index"] == 3


# ---------------------------------------------------------------- the shared poll
class FakeAirflow:
    """The producer's XComs in a dict and the task states Airflow would give, with call counts."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.xcoms = MemoryStore()
        self.states: dict[str, str] = {PRODUCER: "queued"}
        self.state_calls: list[set[str]] = []
        self.fail_reads = False
        self._writers: dict[tuple[str, int], Any] = {}

        async def axcom_get(dag_id: str, run_id: str, task_id: str, map_index: int, *, key: str) -> Any:
            if self.fail_reads:
                raise ConnectionError("api-server down")
            return self.xcoms.get(key)

        async def atask_states(dag_id: str, run_id: str, **kw: Any) -> dict[str, str]:
            self.state_calls.append(set(kw["task_ids"]))
            return {t: s for t, s in self.states.items() if t in kw["task_ids"]}

        monkeypatch.setattr(compat, "axcom_get", axcom_get)
        monkeypatch.setattr(compat, "atask_states", atask_states)

    def publish(self, *results: NodeResult, state: str = RUNNING, attempt: int = 1, generation: str = "g1") -> None:
        key = (generation, attempt)
        if key not in self._writers:
            self._writers[key] = StatusChannel(self.xcoms).writer(
                generation=generation, attempt=attempt, heartbeat_interval=60.0
            )
            # the run's dbt invocation selected these nodes, no test of them
            self._writers[key].publish_selection({NODE: {}, "model.shop.b": {}})
        writer = self._writers[key]
        for r in results:
            writer.publish(r)
        writer._flush(state)


def poller() -> RunPoller:
    address = RunAddress("d", "r1", PRODUCER)
    return RunPoller(stream_key(address), address, poke_interval=0.5)


def tick(p: RunPoller) -> Snapshot:
    return asyncio.run(p.poll())


def test_before_the_producer_starts_only_its_state_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    airflow = FakeAirflow(monkeypatch)
    p = poller()
    first = tick(p)
    assert first.view.status is None and first.view.producer_state == "queued"
    gets = airflow.xcoms.gets
    tick(p)
    assert airflow.xcoms.gets == gets  # no read of an XCom that cannot exist yet


def test_a_running_producers_head_is_read_once_a_tick_and_states_only_when_needed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    airflow = FakeAirflow(monkeypatch)
    airflow.states[PRODUCER] = "running"
    airflow.publish(NodeResult(NODE, "success"))
    p = poller()
    first = tick(p)
    assert not first.view.trusted  # one read cannot tell a live writer from a head left by an earlier try
    airflow.publish(NodeResult(NODE, "success"), NodeResult("model.shop.b", "success"))
    second = tick(p)
    assert second.view.trusted and second.changed == frozenset({NODE, "model.shop.b"})
    calls = len(airflow.state_calls)
    airflow.publish(NodeResult(NODE, "success"), NodeResult("model.shop.b", "success"))
    tick(p)
    assert len(airflow.state_calls) == calls  # alive and trusted: no task-state read


def test_after_a_whole_run_clear_the_old_status_is_not_green(monkeypatch: pytest.MonkeyPatch) -> None:
    # kind 3: the cleared run's producer XComs stay until its next try starts; consumers of the new try wait
    airflow = FakeAirflow(monkeypatch)
    airflow.publish(NodeResult(NODE, "success"), state=FINISHED)
    airflow.states[PRODUCER] = "scheduled"
    t = make(try_number=2)
    p = poller()
    for _ in range(3):
        assert t.react(tick(p)) is None
    airflow.states[PRODUCER] = "success"  # only Airflow's word makes a never-changing head this try's
    assert isinstance(t.react(tick(p)), TaskSuccessEvent)


def test_an_outage_gives_no_verdict_and_unreadable_content_ends_after_a_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    airflow = FakeAirflow(monkeypatch)
    airflow.states[PRODUCER] = "running"
    airflow.publish()
    t, p = make(), poller()
    tick(p)
    airflow.fail_reads = True
    for _ in range(5):
        snapshot = tick(p)
        assert snapshot.read_error and t.react(snapshot) is None
    airflow.fail_reads = False
    airflow.xcoms.data["dbt_watcher.head"] = {"v": 2, "gen": "g1"}  # cannot be understood
    events = [t.react(tick(p)) for _ in range(UNREADABLE_LIMIT)]
    assert all(e is None for e in events[:-1]) and failure_reason(events[-1]) is not None
