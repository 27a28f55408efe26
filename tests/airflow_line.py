"""What the tests need to know of the Airflow line they run on (the rows of devstack/rows.py)."""

from __future__ import annotations

import os

from dbt_watcher import airflow_lines

try:
    from airflow.sdk.exceptions import TaskDeferred
except ImportError:  # Airflow 3.0/3.1 keep it in airflow.exceptions
    from airflow.exceptions import TaskDeferred  # type: ignore[no-redef,attr-defined,unused-ignore]

try:
    from airflow.serialization.serialized_objects import DagSerialization
except ImportError:  # Airflow 3.0/3.1 call it SerializedDAG (same to_dict/from_dict)
    from airflow.serialization.serialized_objects import (  # type: ignore[attr-defined,no-redef,assignment,unused-ignore]
        SerializedDAG as DagSerialization,
    )

#: The row this suite runs in (devstack/rows.py sets it); empty on the main row.
ROW = os.environ.get("DBT_WATCHER_ROW", "")

__all__ = ["ROW", "DagSerialization", "TaskDeferred", "airflow_lines"]


def failure_reason(event: object) -> str | None:
    """Why a consumer's trigger ended it failed (None: it did not): a ``TaskFailedEvent`` where the
    triggerer retries it (Airflow 3.3), else an event that makes the worker raise."""
    from airflow.triggers.base import TaskFailedEvent, TriggerEvent

    if isinstance(event, TaskFailedEvent):
        return str((event.xcoms or {}).get("dbt_reason", ""))
    if type(event) is TriggerEvent and isinstance(event.payload, dict) and event.payload.get("action") == "fail":
        return str(event.payload.get("reason", ""))
    return None
