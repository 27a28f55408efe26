"""What changes on an Airflow line without a feature: a feature degrades, the verdict does not.

The probes are forced off here, so the main row proves the fallbacks too; each row of
devstack/rows.py runs this file on a line where they are really off.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from airflow.sdk import PokeReturnValue
from airflow.triggers.base import TaskFailedEvent, TaskSuccessEvent, TriggerEvent

from dbt_watcher import airflow_lines, compat
from dbt_watcher.channel.store import AttemptStore, RunAddress, TaskStateStore, private_store
from dbt_watcher.config import WatcherConfig
from dbt_watcher.consumer import shared_poll
from dbt_watcher.consumer.poller import Snapshot
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.group.render import producer_args
from dbt_watcher.invocation.events import NodeResult
from dbt_watcher.rules.verdict import View
from tests.airflow_line import TaskDeferred, failure_reason

from ..conftest import JAFFLE_SHOP
from .test_trigger import NODE, collect, make, snap


@pytest.fixture
def without_task_state_store(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(airflow_lines, "has_task_state_store", lambda: False)
    yield


def test_the_probes_answer_on_this_line() -> None:
    # Each is a plain yes or no, whatever the line; DagBag is found on every line.
    for probe in (
        airflow_lines.has_task_state_store,
        airflow_lines.triggerer_retries_failed_tasks,
        airflow_lines.has_external_views,
        airflow_lines.has_triggerer_workloads,
    ):
        assert probe() in (True, False)
    assert airflow_lines.dag_bag(dag_folder="/nonexistent").dags == {}


def test_without_trigger_retries_a_red_consumer_fails_on_a_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(airflow_lines, "triggerer_retries_failed_tasks", lambda: False)
    failed = NodeResult(NODE, "error", message="Database Error: relation missing")
    from dbt_watcher.channel.wire import FINISHED

    (event,) = asyncio.run(collect(make(), [snap(failed, state=FINISHED)]))
    assert type(event) is TriggerEvent and event.payload["action"] == "fail"
    assert "relation missing" in str(failure_reason(event))
    monkeypatch.setattr(airflow_lines, "triggerer_retries_failed_tasks", lambda: True)
    (event,) = asyncio.run(collect(make(), [snap(failed, state=FINISHED)]))
    assert isinstance(event, TaskFailedEvent) and "relation missing" in str(failure_reason(event))


def test_the_worker_raises_on_a_fail_event_and_keeps_the_reason() -> None:
    from dbt_watcher.airflow_lines import AirflowException
    from dbt_watcher.consumer.operator import DbtConsumerOperator

    pushed: dict[str, Any] = {}

    class Ti:
        def xcom_push(self, key: str, value: Any) -> None:
            pushed[key] = value

    operator = DbtConsumerOperator.__new__(DbtConsumerOperator)
    object.__setattr__(operator, "consumer", type("C", (), {"watch": type("W", (), {"unique_id": NODE})()})())
    context: Any = {"ti": Ti()}
    with pytest.raises(AirflowException, match="relation missing"):
        operator.resume(context, {"action": "fail", "reason": "relation missing"})
    assert pushed == {"dbt_reason": "relation missing"}


def test_without_a_task_state_store_the_private_store_lasts_one_try(without_task_state_store: None) -> None:
    store = private_store({"task_state_store": object()}, retention=None)
    assert isinstance(store, AttemptStore)
    store.set("k", 1)
    assert store.get("k") == 1 and private_store({}, retention=None).get("k") is None  # a new try starts empty


def test_with_a_task_state_store_the_private_store_is_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(airflow_lines, "has_task_state_store", lambda: True)
    assert isinstance(private_store({"task_state_store": object()}, retention=None), TaskStateStore)


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"producer_retry": "resume"}, 'producer_retry="resume"'),
        ({"setup_operator_args": {"retries": 2}}, "setup_operator_args"),
    ],
)
def test_without_a_task_state_store_producer_retries_that_need_it_are_refused(
    without_task_state_store: None, params: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named) as raised:
        WatcherConfig(project_dir=str(JAFFLE_SHOP), **params)
    assert "Task State Store" in str(raised.value) and "How to fix" in str(raised.value)


def test_without_a_task_state_store_a_rebuilding_producer_retry_is_allowed(without_task_state_store: None) -> None:
    WatcherConfig(project_dir=str(JAFFLE_SHOP), producer_retry_skip=False, setup_operator_args={"retries": 2})
    # the group-wide retries are the consumers': the producer keeps none of them there
    assert producer_args({"retries": 3, "pool": "p"}, None) == {"pool": "p"}
    assert producer_args({"retries": 3}, {"retries": 1}) == {"retries": 1}


def _snapshot(at: float) -> Snapshot:
    return Snapshot(View(None, trusted=False), None, 1, at)


def test_one_poll_per_run_whatever_the_number_of_triggers() -> None:
    started: list[str] = []
    stopped: list[str] = []

    async def poll(name: str) -> AsyncIterator[Snapshot]:
        started.append(name)
        try:
            tick = 0
            while True:
                tick += 1
                yield _snapshot(tick)
                await asyncio.sleep(0.001)
        finally:
            stopped.append(name)

    async def take(key: str, n: int) -> list[float]:
        seen = []
        stream = shared_poll.follow(key, lambda: poll(key))
        async for snapshot in stream:
            seen.append(snapshot.at)
            if len(seen) == n:
                break
        await stream.aclose()
        return seen

    async def main() -> tuple[list[float], ...]:
        results = await asyncio.gather(take("run-1", 3), take("run-1", 5), take("run-2", 2))
        await asyncio.sleep(0.01)  # the last one to leave stops the poll
        return results

    first, second, other = asyncio.run(main())
    assert started.count("run-1") == 1 and started.count("run-2") == 1
    assert first == second[:3] and len(other) == 2  # the same ticks, in order, for each follower
    assert sorted(stopped) == ["run-1", "run-2"] and shared_poll.polls() == 0


def test_a_poll_that_fails_fails_its_followers() -> None:
    async def broken() -> AsyncIterator[Snapshot]:
        yield _snapshot(1)
        raise ValueError("the channel went away")

    async def main() -> list[float]:
        seen: list[float] = []
        async for snapshot in shared_poll.follow("run-x", broken):
            seen.append(snapshot.at)
        return seen

    with pytest.raises(RuntimeError, match="the channel went away"):
        asyncio.run(main())
    assert shared_poll.polls() == 0


def test_the_key_names_the_run_and_map_index() -> None:
    address = RunAddress("d", "r", "g.dbt_producer", 2)
    assert shared_poll.stream_key(address) == ("dbt-watcher", "d", "r", 2, "g.dbt_producer")


def test_without_external_views_the_ui_plugin_is_off(monkeypatch: pytest.MonkeyPatch) -> None:
    from dbt_watcher import plugin

    monkeypatch.setattr(airflow_lines, "has_external_views", lambda: False)
    plugin._fastapi_apps.cache_clear()
    try:
        assert plugin._fastapi_apps() == []
    finally:
        plugin._fastapi_apps.cache_clear()


def test_a_run_id_whose_plus_arrived_as_a_space_is_found() -> None:
    from dbt_watcher.ui.app import as_run_id

    assert as_run_id("manual__2026-12-04T21:34:36.396779 00:00") == "manual__2026-12-04T21:34:36.396779+00:00"
    assert as_run_id("scheduled__2026-12-04T00:00:00+00:00") == "scheduled__2026-12-04T00:00:00+00:00"


def test_nothing_is_installed_where_the_triggerer_ships_no_dag(monkeypatch: pytest.MonkeyPatch) -> None:
    from dbt_watcher.consumer import triggerer_start

    monkeypatch.setattr(airflow_lines, "has_triggerer_workloads", lambda: False)
    assert not triggerer_start.install()


def test_a_resume_soon_after_a_workers_deferral_is_held(monkeypatch: pytest.MonkeyPatch) -> None:
    """Airflow can fail a task that resumes on a worker right after it deferred (apache/airflow#72716):
    such resumes wait out RESUME_HOLD_SECONDS; what ends in the triggerer never waits."""
    from dbt_watcher.channel.wire import FINISHED
    from dbt_watcher.consumer.trigger import RESUME_HOLD_SECONDS

    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", sleep)  # the modules the trigger module uses
    monkeypatch.setattr(time, "time", lambda: 1000.0)
    skipped = NodeResult(NODE, "skipped")
    rebuild = [snap(skipped, state=FINISHED, producer_state="failed", task_states={})]
    (event,) = asyncio.run(collect(make(try_number=2, deferred_at=998.0), rebuild))
    assert event.payload["action"] == "run_locally" and slept == [pytest.approx(RESUME_HOLD_SECONDS - 2.0)]
    slept.clear()
    (event,) = asyncio.run(collect(make(try_number=2), rebuild))  # started in the triggerer: nothing to wait for
    assert event.payload["action"] == "run_locally" and slept == []
    (event,) = asyncio.run(collect(make(deferred_at=998.0), [snap(NodeResult(NODE, "success"))]))
    assert isinstance(event, TaskSuccessEvent) and slept == []  # ends in the triggerer


def test_a_consumer_on_a_worker_decides_before_it_defers(monkeypatch: pytest.MonkeyPatch) -> None:
    """A consumer that starts on a worker (Airflow 3.1/3.2, retries) and already has its answer ends
    there; only one that must wait defers."""
    from dbt_watcher.consumer.operator import DbtConsumerOperator

    operator = DbtConsumerOperator.__new__(DbtConsumerOperator)
    object.__setattr__(operator, "deferrable", True)
    object.__setattr__(operator, "runtime", SimpleNamespace(timeout_seconds=60.0))
    deferred: list[Any] = []

    def defer(self: DbtConsumerOperator, **kw: Any) -> None:
        deferred.append(kw)
        raise TaskDeferred(trigger=kw["trigger"], method_name=kw["method_name"])

    monkeypatch.setattr(compat, "runs_inline", lambda context: False)
    monkeypatch.setattr(DbtConsumerOperator, "defer", defer)
    monkeypatch.setattr(DbtConsumerOperator, "_trigger_kwargs", lambda self, **kw: {"node": NODE, **kw})
    monkeypatch.setattr(DbtConsumerOperator, "_address", lambda self, c: RunAddress("d", "r1", "g.dbt_producer"))
    monkeypatch.setattr("dbt_watcher.consumer.operator.ConsumerTrigger", lambda **kw: kw)
    context: Any = {"ti": SimpleNamespace(try_number=1)}

    monkeypatch.setattr(DbtConsumerOperator, "poke", lambda self, c: PokeReturnValue(True, {"status": "success"}))
    execute = inspect.unwrap(DbtConsumerOperator.execute)  # without Airflow's guard, which wants a real task
    assert execute(operator, context) == {"status": "success"} and deferred == []
    monkeypatch.setattr(DbtConsumerOperator, "poke", lambda self, c: False)
    monkeypatch.setattr(time, "time", lambda: 1234.0)
    with pytest.raises(TaskDeferred):
        execute(operator, context)
    assert deferred[0]["trigger"]["deferred_at"] == 1234.0
