"""Every non-public Airflow API dbt-watcher uses, in one place, each with why and what would replace it.

Airflow 3.3's Task SDK gives tasks and triggers a request channel to the execution API
(``SUPERVISOR_COMMS``) with typed messages; its public wrappers (``XCom.get_one``, ``ti.xcom_pull``)
go through the configured XCom backend and offer no task-state query. dbt-watcher sends the messages
itself for three reasons, each noted where it applies: the status channel must stay in the metadata
database whatever XCom backend a deployment configures (an object-storage backend would turn every
head write into an upload), consumers need other tasks' states, and a trigger needs the async form.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote

#: Every blocking request dbt-watcher sends takes this lock. The Task SDK of Airflow 3.0 and 3.1 has no
#: lock in ``CommsDecoder.send``: two threads sending at once (the producer's status writer and a dbt
#: thread publishing the invocation) each read the other's response frame, and both wait forever
#: (seen in the real stack on 3.1: a producer that hangs with dbt idle). Airflow 3.2 locks inside
#: ``send`` as well; the two locks are always taken in this order, so they cannot deadlock.
_SEND_LOCK = threading.Lock()


def _comms() -> Any:
    # Public replacement: none in Task SDK 1.3 (airflow.sdk.execution_time.task_runner is internal).
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    return SUPERVISOR_COMMS


def _send(message: Any, comms: Any = None) -> Any:
    """One blocking request to the supervisor, never two at once from this process's threads."""
    with _SEND_LOCK:
        return (comms if comms is not None else _comms()).send(message)


def _xcom_get_message(dag_id: str, run_id: str, task_id: str, map_index: int, key: str) -> Any:
    # Public replacement: XCom.get_one, once it can bypass the XCom backend (see the module docstring).
    from airflow.sdk.execution_time.comms import GetXCom

    return GetXCom(key=key, dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index)


def _xcom_value(response: Any) -> Any:
    return getattr(response, "value", None)


def xcom_get(dag_id: str, run_id: str, task_id: str, map_index: int, *, key: str) -> Any:
    """The raw JSON value of one XCom (None when it does not exist)."""
    return _xcom_value(_send(_xcom_get_message(dag_id, run_id, task_id, map_index, key)))


async def axcom_get(dag_id: str, run_id: str, task_id: str, map_index: int, *, key: str) -> Any:
    comms = _comms()
    message = _xcom_get_message(dag_id, run_id, task_id, map_index, key)
    if not hasattr(comms, "asend"):  # dag.test() runs triggers inline with a synchronous channel
        return _xcom_value(_send(message, comms))
    return _xcom_value(await comms.asend(message))


def xcom_set(dag_id: str, run_id: str, task_id: str, map_index: int, *, key: str, value: Any) -> None:
    """Write one XCom of the running task as raw JSON (never through an XCom backend)."""
    # Public replacement: ti.xcom_push, once it can bypass the XCom backend.
    from airflow.sdk.execution_time.comms import SetXCom

    _send(SetXCom(key=key, value=value, dag_id=dag_id, run_id=run_id, task_id=task_id, map_index=map_index))


#: Characters of task ids per task-state request. The ids travel in the URL's query string, which
#: httpx caps at 64 KiB and the api-server's HTTP parser (h11) at 16 KiB per request head: a group of
#: thousands of consumers is asked in several requests.
_QUERY_BUDGET = 8_000


def _task_states_messages(
    dag_id: str, run_id: str, task_ids: Iterable[str] | None, group_id: str | None, map_index: int | None
) -> list[Any]:
    # Public replacement: none (the Task SDK has no task-state query for other tasks).
    from airflow.sdk.execution_time.comms import GetTaskStates

    def message(ids: list[str] | None) -> Any:
        return GetTaskStates(
            dag_id=dag_id,
            run_ids=[run_id],
            task_ids=ids,
            task_group_id=group_id,
            map_index=map_index if map_index is not None and map_index >= 0 else None,
        )

    if task_ids is None:
        return [message(None)]
    batches: list[list[str]] = [[]]
    size = 0
    for task_id in sorted(task_ids):
        cost = len(quote(task_id, safe="")) + len("&task_ids=")
        if batches[-1] and size + cost > _QUERY_BUDGET:
            batches.append([])
            size = 0
        batches[-1].append(task_id)
        size += cost
    return [message(batch) for batch in batches]


def _states_of_run(response: Any, run_id: str, map_index: int | None) -> dict[str, str]:
    states: Mapping[str, Any] = (getattr(response, "task_states", None) or {}).get(run_id) or {}
    # Mapped task instances come back as "<task_id>_<map_index>" (execution API get_task_instance_states).
    suffix = f"_{map_index}" if map_index is not None and map_index >= 0 else ""
    return {
        task_id.removesuffix(suffix) if suffix else task_id: str(state)
        for task_id, state in states.items()
        if state is not None
    }


def task_states(
    dag_id: str,
    run_id: str,
    *,
    task_ids: Iterable[str] | None = None,
    group_id: str | None = None,
    map_index: int | None = None,
) -> dict[str, str]:
    """States of some tasks of one DAG run; tasks without a state are left out.

    Ask by ``task_ids`` whenever the ids are known: asking by ``group_id`` makes Airflow load the
    whole serialized DAG to find the group's tasks (``_get_group_tasks`` in the execution API).
    """
    comms = _comms()
    states: dict[str, str] = {}
    for message in _task_states_messages(dag_id, run_id, task_ids, group_id, map_index):
        states.update(_states_of_run(_send(message, comms), run_id, map_index))
    return states


async def atask_states(
    dag_id: str,
    run_id: str,
    *,
    task_ids: Iterable[str] | None = None,
    group_id: str | None = None,
    map_index: int | None = None,
) -> dict[str, str]:
    comms = _comms()
    states: dict[str, str] = {}
    for message in _task_states_messages(dag_id, run_id, task_ids, group_id, map_index):
        # dag.test() runs triggers inline with a synchronous channel
        response = await comms.asend(message) if hasattr(comms, "asend") else _send(message, comms)
        states.update(_states_of_run(response, run_id, map_index))
    return states


def triggerer_internals() -> tuple[Any, Any]:
    """The two classes the triggerer fast start wraps (:mod:`dbt_watcher.consumer.triggerer_start`).

    Public replacement: none; the upstream change that would make the wrap unnecessary is described
    there (and in docs/deployment.md).
    """
    from airflow.callbacks.database_callback_sink import DatabaseCallbackSink
    from airflow.jobs.triggerer_job_runner import TriggerRunnerSupervisor

    return TriggerRunnerSupervisor, DatabaseCallbackSink


def runs_inline(context: Mapping[str, Any]) -> bool:
    """True when the task runs under ``dag.test()``: tasks run one at a time in one process.

    Public signal: dag.test() creates its run with ``triggering_user_name="dag_test"``
    (``airflow/sdk/definitions/dag.py``); the in-process supervisor channel is the internal one.
    """
    dag_run = context.get("dag_run")
    if getattr(dag_run, "triggering_user_name", None) == "dag_test":
        return True
    try:
        comms = _comms()
    except ImportError:  # the Task SDK sets its channel only inside a task's run: not one here
        return False
    return type(comms).__name__ == "InProcessSupervisorComms"


def dbt_selected_resources() -> list[str]:
    """The unique ids dbt selected for the invocation running in this process (read when dbt fires
    ``ConcurrencyLine``: its graph queue exists, no node has run).

    Public replacement: none. This is the module global behind dbt's documented ``selected_resources``
    Jinja variable (``dbt/selected_resources.py``, set by ``NodeSelector.get_graph_queue``); dbt fires no
    event that lists the selection. A dbt without it yields no selection, and the producer then takes the
    selection from dbt's closing record (:mod:`dbt_watcher.invocation.selection`).
    """
    from dbt.selected_resources import SELECTED_RESOURCES

    return [str(uid) for uid in SELECTED_RESOURCES]


def sensitive_name(name: str) -> bool | None:
    """Airflow's rule for names whose values it masks (``password``, ``token``, ``secret``, ``private_key``,
    ``passphrase``, ..., and ``[core] sensitive_var_conn_names``); None when the rule cannot be imported."""
    try:
        # Public replacement: none in Task SDK 1.3: airflow.sdk.log.mask_secret masks whatever it is
        # given, but the rule that decides which names are sensitive is internal.
        from airflow.sdk._shared.secrets_masker.secrets_masker import should_hide_value_for_key
    except ImportError:
        return None
    return bool(should_hide_value_for_key(name))


def dag_read_access() -> Any:
    """A FastAPI dependency that lets a request through only if Airflow's auth manager lets its user
    read the XComs of the DAG named by the route's ``dag_id`` (401 without a user, 403 without access).

    Public replacement: none; Airflow does not authenticate a plugin's FastAPI app, and leaves it to
    the plugin (apache/airflow#72655). This is the exact dependency Airflow's own XCom endpoint uses,
    so the plugin's pages grant what Airflow's REST API grants, under any auth manager.
    """
    from airflow.api_fastapi.auth.managers.models.resource_details import DagAccessEntity
    from airflow.api_fastapi.core_api.security import requires_access_dag

    return requires_access_dag(method="GET", access_entity=DagAccessEntity.XCOM)


def run_xcoms(dag_id: str, run_id: str, key_prefix: str) -> list[tuple[str, int, str, Any]]:
    """Every XCom of one DAG run whose key starts with ``key_prefix``: (task_id, map_index, key, value),
    read in the api-server from the metadata database (one query, however many producers and chunks).

    Public replacement: the REST API's ``xcomEntries`` (one request per key); the plugin runs inside
    the api-server, which reads its own database.
    """
    import contextlib
    import json

    from airflow.models.dagrun import DagRun
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    rows: list[tuple[str, int, str, Any]] = []
    with create_session() as session:
        # By the DAG run's id: the XCom table's primary key starts with it (dag_id and run_id are not).
        dag_run_id = session.scalar(select(DagRun.id).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id))
        if dag_run_id is None:
            return rows
        query = select(XComModel.task_id, XComModel.map_index, XComModel.key, XComModel.value).where(
            XComModel.dag_run_id == dag_run_id, XComModel.key.startswith(key_prefix, autoescape=True)
        )
        for task_id, map_index, key, stored in session.execute(query):
            value = stored
            if isinstance(stored, str):  # a value written through an XCom backend is a JSON string
                with contextlib.suppress(ValueError):
                    value = json.loads(stored)
            rows.append((str(task_id), int(str(map_index)), str(key), value))
    return rows


def drop_log_events(rule: Any) -> bool:
    """Put ``rule`` (a structlog processor raising ``structlog.DropEvent``) first in this process's log
    pipeline, for the loggers already in use and for every pipeline configured later; False if the
    pipeline is not a list.

    Why not public: ``structlog.configure`` reaches only loggers not cached yet, and Airflow caches its
    loggers on first use (``airflow/_shared/logging/structlog.py``), so the list ``get_config`` returns
    (the one every logger holds) is changed in place. And the triggerer's supervisor configures logging
    again once its job has started (``TriggerRunnerSupervisor`` calls ``airflow.sdk.log.configure_logging``
    on Airflow 3.1 to 3.3), with a new list: ``structlog.configure`` is wrapped to put the rule first in
    that one too. Public replacement: a log filter setting of Airflow's, which has none for its structlog
    components.
    """
    import structlog

    processors = structlog.get_config()["processors"]
    if not isinstance(processors, list):
        return False
    if rule not in processors:
        processors.insert(0, rule)
    configure = structlog.configure
    rules: list[Any] = getattr(configure, "_dbt_watcher_rules", [])
    if not rules:

        def configure_with_rules(*args: Any, **kwargs: Any) -> None:
            configured = kwargs.get("processors")
            if isinstance(configured, list | tuple):
                kwargs["processors"] = [*(r for r in rules if r not in configured), *configured]
            configure(*args, **kwargs)

        configure_with_rules._dbt_watcher_rules = rules  # type: ignore[attr-defined]
        structlog.configure = configure_with_rules
    if rule not in rules:
        rules.append(rule)
    return True
