"""The triggerer fast start, run through Airflow's own ``_create_workload`` and callback sink."""

from __future__ import annotations

import logging
import uuid
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest
from airflow.callbacks.callback_requests import TaskCallbackRequest
from airflow.callbacks.database_callback_sink import DatabaseCallbackSink
from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor
from airflow.utils.state import TaskInstanceState

from dbt_watcher import airflow_lines
from dbt_watcher.consumer import triggerer_start
from dbt_watcher.consumer.audit import AUDIT_CLASSPATH
from dbt_watcher.consumer.trigger import CLASSPATH

if TYPE_CHECKING:
    from airflow.models.dagbag import DBDagBag
    from airflow.models.trigger import Trigger
    from sqlalchemy.orm import Session


# What the fast start wraps exists from Airflow 3.3 (before it the triggerer ships no DAG, and install() does
# nothing: test_nothing_is_installed_where_the_triggerer_ships_no_dag).
pytestmark = pytest.mark.skipif(
    not airflow_lines.has_triggerer_workloads(), reason="the triggerer builds no workload before Airflow 3.3"
)


@pytest.fixture
def installed(monkeypatch: pytest.MonkeyPatch) -> None:
    # monkeypatch restores Airflow's classes after the test
    monkeypatch.setattr(TriggerRunnerSupervisor, "_create_workload", TriggerRunnerSupervisor._create_workload)
    monkeypatch.setattr(DatabaseCallbackSink, "send", DatabaseCallbackSink.send)
    assert triggerer_start.install() and triggerer_start.install()  # idempotent


def ti(task_id: str = "g.orders") -> SimpleNamespace:
    return SimpleNamespace(
        id=uuid.uuid4(),
        task_id=task_id,
        dag_id="d",
        run_id="r1",
        try_number=1,
        dag_version_id=uuid.uuid4(),
        map_index=-1,
        hostname=None,
        context_carrier=None,
        queue="default",
        pool_slots=1,
        priority_weight=1,
        trigger_timeout=None,
        get_dagrun=lambda session: SimpleNamespace(dag_run_data=None),
    )


class DagBag:
    """Stands in for Airflow's DBDagBag: the fast start must never ask it for the DAG."""

    def __init__(self) -> None:
        self.asked = 0

    def get_serialized_dag_model_for_run(self, *a: Any, **k: Any) -> None:
        self.asked += 1

    def get_serialized_dag_model(self, *a: Any, **k: Any) -> None:
        self.asked += 1


def supervisor() -> Any:
    return SimpleNamespace(job=SimpleNamespace(id=7), id=7, logger_cache={})


# Airflow's methods take database rows and a session; the tests hand them stand-ins, cast to those types.
NO_SESSION = cast("Session", None)  # the fast start never touches the database


def test_the_classpaths_kept_as_text_are_the_triggers() -> None:
    assert {CLASSPATH, AUDIT_CLASSPATH} == triggerer_start.OUR_TRIGGERS


def test_a_consumer_starts_without_its_dag_other_triggers_as_before(installed: None) -> None:
    bag = DagBag()
    ours = cast("Trigger", SimpleNamespace(id=1, classpath=CLASSPATH, encrypted_kwargs="{}", task_instance=ti()))
    workload = TriggerRunnerSupervisor._create_workload(
        supervisor(), ours, cast("DBDagBag", bag), lambda ti: "log", NO_SESSION
    )
    assert workload is not None and workload.dag_data is None and workload.ti.task_id == "g.orders"
    assert bag.asked == 0
    other = cast(
        "Trigger", SimpleNamespace(id=2, classpath="some.Trigger", encrypted_kwargs="{}", task_instance=ti("x"))
    )
    TriggerRunnerSupervisor._create_workload(supervisor(), other, cast("DBDagBag", bag), lambda ti: "log", NO_SESSION)
    assert bag.asked == 2  # Airflow's own path: it looked the DAG up (and found none here)


def test_success_callbacks_of_consumers_are_not_filed_failure_callbacks_are(installed: None) -> None:
    filed: list[Any] = []
    session = cast("Session", SimpleNamespace(add=filed.append))
    consumer = ti()
    TriggerRunnerSupervisor._create_workload(
        supervisor(),
        cast("Trigger", SimpleNamespace(id=1, classpath=CLASSPATH, encrypted_kwargs="{}", task_instance=consumer)),
        cast("DBDagBag", DagBag()),
        lambda ti: "log",
        NO_SESSION,
    )

    def request(state: TaskInstanceState, task: SimpleNamespace) -> TaskCallbackRequest:
        from airflow.executors.workloads.task import TaskInstanceDTO

        dto = TaskInstanceDTO.model_validate(task, from_attributes=True)
        return TaskCallbackRequest(
            filepath="f.py", bundle_name="b", bundle_version=None, ti=dto, task_callback_type=state
        )

    # Airflow's "Sending callback" line is left out only for the request that is then dropped
    lines = logging.getLogger(triggerer_start.CALLBACKS_LOGGER)
    (quiet,) = [f for f in lines.filters if isinstance(f, triggerer_start.DroppedCallbackLines)]

    def logged(request: TaskCallbackRequest) -> bool:
        record = lines.makeRecord(lines.name, logging.INFO, "trigger.py", 1, "Sending callback: %s", (request,), None)
        return bool(quiet.filter(record))

    assert not logged(request(TaskInstanceState.SUCCESS, consumer))
    assert logged(request(TaskInstanceState.FAILED, consumer)) and logged(request(TaskInstanceState.SUCCESS, ti("x")))
    DatabaseCallbackSink().send(request(TaskInstanceState.FAILED, consumer), session=session)
    assert len(filed) == 1  # a failure callback may run the user's on_failure_callback: kept
    DatabaseCallbackSink().send(request(TaskInstanceState.SUCCESS, consumer), session=session)
    assert len(filed) == 1  # the dag-processor would parse the DAG file only to discard it
    DatabaseCallbackSink().send(request(TaskInstanceState.SUCCESS, ti("other")), session=session)
    assert len(filed) == 2  # not one of ours: Airflow's behaviour


def test_it_stays_off_when_configured_so_or_on_an_untested_airflow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(TriggerRunnerSupervisor, "_create_workload", TriggerRunnerSupervisor._create_workload)
    monkeypatch.setattr(DatabaseCallbackSink, "send", DatabaseCallbackSink.send)
    monkeypatch.setenv("AIRFLOW__DBT_WATCHER__TRIGGERER_FAST_START", "False")
    assert not triggerer_start.install()
    monkeypatch.delenv("AIRFLOW__DBT_WATCHER__TRIGGERER_FAST_START")
    monkeypatch.setattr(triggerer_start, "airflow_version", lambda: (3, 9))
    assert not triggerer_start.install()
    assert not getattr(TriggerRunnerSupervisor._create_workload, "_dbt_watcher_fast_start", False)
