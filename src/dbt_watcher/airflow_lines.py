"""What the installed Airflow line can do, detected by feature, never by version number.

dbt-watcher serves every Airflow 3 line (3.0 to 3.3). Some mechanisms it uses exist only on the newer
lines; where one is missing, a feature degrades (docs/installation.md has the table) and the verdict
does not: a consumer is green only on this run's own dbt evidence on every line. Each probe here says
what it looks for and what dbt-watcher does without it. Every probe is cached: the answer cannot
change inside a process.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
from typing import Any

# The exceptions a task raises: the Task SDK exports them from 3.2 on; 3.0 and 3.1 keep some of them
# in airflow.exceptions only (the same classes the task runner catches there).
try:
    from airflow.sdk.exceptions import AirflowException, AirflowFailException, AirflowSkipException
except ImportError:  # pragma: no cover - Airflow 3.0/3.1
    from airflow.exceptions import (  # type: ignore[no-redef,assignment,attr-defined,unused-ignore]
        AirflowException,
        AirflowFailException,
        AirflowSkipException,
    )


def airflow_version() -> str:
    """The installed Airflow's version, for messages only (decisions go by feature)."""
    try:
        from importlib.metadata import version

        return version("apache-airflow")
    except Exception:
        return "unknown"


def _has(module: str, name: str | None = None) -> bool:
    try:
        found = importlib.import_module(module)
    except ImportError:
        return False
    return name is None or hasattr(found, name)


@functools.cache
def has_task_state_store() -> bool:
    """The Task State Store (a task's private key-value store kept across its tries; Airflow 3.3+).

    Without it, the producer keeps its private mirror in XComs of its own try, which Airflow clears
    when the task is retried, so the producer's retry-skip and resume are off there (its retries
    default to 0) and a consumer retry is still decided from the published channel.
    """
    return _has("airflow.sdk.execution_time.context", "TaskStateStoreAccessor")


@functools.cache
def triggerer_retries_failed_tasks() -> bool:
    """Whether a trigger's ``TaskFailedEvent`` leads to a retry when the task has retries left.

    Airflow 3.3 routes it through the task's retry eligibility (``handle_event_submit`` in
    ``airflow/models/trigger.py``); earlier lines mark the task failed for good. Without it a red
    consumer resumes on a worker and fails there, where Airflow's retries apply. Read in the
    triggerer's own source (airflow-core); not known means no: the worker path is right everywhere.
    """
    try:
        from airflow.models import trigger
    except ImportError:
        return False
    try:
        source = inspect.getsource(trigger)
    except (OSError, TypeError):
        return False
    return "is_eligible_to_retry" in source


@functools.cache
def has_external_views() -> bool:
    """Plugin pages inside Airflow's UI with the browser's session (``external_views``; Airflow 3.1+).

    Without it the UI plugin stays off: its pages could not authorise a browser's request.
    """
    try:
        from airflow.plugins_manager import AirflowPlugin
    except ImportError:
        return False
    return hasattr(AirflowPlugin, "external_views")


@functools.cache
def has_triggerer_workloads() -> bool:
    """The triggerer builds a workload with the whole serialized DAG per trigger it starts
    (``TriggerRunnerSupervisor._create_workload``), which the triggerer fast start wraps. Lines
    without it ship no DAG to the triggerer, so the fast start has nothing to do there."""
    if importlib.util.find_spec("airflow.jobs") is None:
        return False
    return hasattr(_attr("airflow.jobs.triggerer_job_runner", "TriggerRunnerSupervisor"), "_create_workload")


def _attr(module: str, name: str) -> Any:
    try:
        return getattr(importlib.import_module(module), name, None)
    except ImportError:
        return None


def dag_bag(**kwargs: Any) -> Any:
    """Airflow's ``DagBag`` (``airflow.dag_processing.dagbag`` from 3.2, ``airflow.models.dagbag`` before),
    without Airflow's example DAGs where the line still loads them by default (before 3.3)."""
    cls = _attr("airflow.dag_processing.dagbag", "DagBag") or _attr("airflow.models.dagbag", "DagBag")
    if cls is None:
        raise ImportError("this Airflow has no DagBag in airflow.dag_processing.dagbag or airflow.models.dagbag")
    if "include_examples" in inspect.signature(cls).parameters:
        kwargs.setdefault("include_examples", False)
    return cls(**kwargs)


__all__ = [
    "AirflowException",
    "AirflowFailException",
    "AirflowSkipException",
    "airflow_version",
    "dag_bag",
    "has_external_views",
    "has_task_state_store",
    "has_triggerer_workloads",
    "triggerer_retries_failed_tasks",
]
