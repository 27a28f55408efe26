"""Airflow task states as dbt-watcher groups them, on Airflow's own enum.

States arrive as plain strings (the Task SDK's ``get_task_states`` answers, the REST API);
``TaskInstanceState`` is a ``str`` enum, so its members compare equal to them. A task instance
without a state yet (Airflow stores NULL) is read as :data:`NO_STATE`.
"""

from __future__ import annotations

try:
    from airflow.sdk import TaskInstanceState as TaskState
except ImportError:  # pragma: no cover - Airflow 3.0's Task SDK does not export it; the same enum
    from airflow.utils.state import TaskInstanceState as TaskState  # type: ignore[no-redef,assignment,unused-ignore]

__all__ = ["ENDED", "NOT_STARTED", "NO_STATE", "WAITING", "TaskState"]

#: A task instance that has no state yet.
NO_STATE = "none"
#: Not started: its try has not begun (no state, scheduled or queued).
NOT_STARTED = frozenset({NO_STATE, TaskState.SCHEDULED, TaskState.QUEUED})
#: A try that can still end by itself: not started, or waiting in the triggerer or for a reschedule.
WAITING = frozenset({*NOT_STARTED, TaskState.DEFERRED, TaskState.UP_FOR_RESCHEDULE})
#: Ended in this DAG run, until someone clears it.
ENDED = frozenset(
    {TaskState.SUCCESS, TaskState.FAILED, TaskState.SKIPPED, TaskState.UPSTREAM_FAILED, TaskState.REMOVED}
)
