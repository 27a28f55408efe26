"""The non-public Airflow calls in dbt_watcher.compat, with Airflow's own message types and a fake channel."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
from airflow.sdk.execution_time.comms import GetTaskStates, TaskStatesResult

from dbt_watcher import compat


class Comms:
    """The supervisor channel: answers every task-state request with 'success' for the ids asked."""

    def __init__(self) -> None:
        self.requests: list[GetTaskStates] = []

    def send(self, message: GetTaskStates) -> TaskStatesResult:
        self.requests.append(message)
        return TaskStatesResult(task_states={"r1": dict.fromkeys(message.task_ids or [], "success")})

    async def asend(self, message: GetTaskStates) -> TaskStatesResult:
        return self.send(message)


def test_thousands_of_task_ids_are_asked_in_requests_that_fit_a_url(monkeypatch: pytest.MonkeyPatch) -> None:
    # 3,000 consumers once made every audit tick fail: "URL component 'query' too long" (httpx)
    comms = Comms()
    monkeypatch.setattr(compat, "_comms", lambda: comms)
    ids = [f"a_rather_long_group_name.a_model_with_a_long_name_{i:05d}" for i in range(3000)]
    states: dict[str, Any] = compat.task_states("d", "r1", task_ids=ids)
    assert states == dict.fromkeys(ids, "success")
    assert len(comms.requests) > 1
    for request in comms.requests:
        assert len(urlencode({"task_ids": request.task_ids}, doseq=True)) < 16_000  # the api-server's limit
    assert asyncio.run(compat.atask_states("d", "r1", task_ids=ids)) == states


def test_a_few_task_ids_are_one_request(monkeypatch: pytest.MonkeyPatch) -> None:
    comms = Comms()
    monkeypatch.setattr(compat, "_comms", lambda: comms)
    assert compat.task_states("d", "r1", task_ids=["g.a", "g.b"]) == {"g.a": "success", "g.b": "success"}
    assert len(comms.requests) == 1


def test_threads_never_send_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Task SDK of Airflow 3.0/3.1 does not lock its channel: two requests in flight at once hung a
    producer (its status writer and a dbt thread). A channel that notices overlap, as that one could not."""
    import threading
    import time

    class UnlockedComms:
        def __init__(self) -> None:
            self.in_flight, self.overlaps, self.sent = 0, 0, 0

        def send(self, message: object) -> None:
            self.in_flight += 1
            self.overlaps += self.in_flight > 1
            time.sleep(0.001)  # the request's round trip: another thread gets the GIL meanwhile
            self.in_flight -= 1
            self.sent += 1

    comms = UnlockedComms()
    monkeypatch.setattr(compat, "_comms", lambda: comms)

    def writer(n: int) -> None:
        for i in range(20):
            compat.xcom_set("d", "r", "t", -1, key=f"k{n}.{i}", value=i)
            compat.task_states("d", "r", task_ids=["g.a"])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert comms.sent == 4 * 20 * 2 and comms.overlaps == 0


def test_runs_inline_reads_dag_tests_signal_and_is_false_outside_a_task() -> None:
    # dag.test() names its runs' triggering user; outside a task's run the Task SDK has no channel at
    # all, which is no reason to fail (the producer asks after every build).
    assert compat.runs_inline({"dag_run": SimpleNamespace(triggering_user_name="dag_test")})
    assert not compat.runs_inline({"dag_run": SimpleNamespace(triggering_user_name="alice")})
    assert not compat.runs_inline({})
