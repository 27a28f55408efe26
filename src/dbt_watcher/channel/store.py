"""Where the channel's keys live: the producer task's XComs, and the producer's private mirror.

Everything goes through Airflow's execution API, so the same code works in a task process on a
worker and in a trigger, and Airflow authorises every call (see :mod:`dbt_watcher.compat`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dbt_watcher import airflow_lines, compat


@dataclass(frozen=True)
class RunAddress:
    """The producer task instance of one DAG run (and map index): where a run's channel lives."""

    dag_id: str
    run_id: str
    producer_task_id: str
    map_index: int = -1

    @classmethod
    def of(cls, ti: Any, producer_task_id: str) -> RunAddress:
        """The channel of the run (and map index) a task instance or trigger's task instance belongs to."""
        map_index = getattr(ti, "map_index", None)
        return cls(ti.dag_id, ti.run_id, producer_task_id, int(map_index) if map_index is not None else -1)


class ProducerXComs:
    """The channel's keys as XComs of the producer task instance (readable by every task and trigger)."""

    def __init__(self, address: RunAddress) -> None:
        self.address = address

    def get(self, key: str) -> Any:
        a = self.address
        return compat.xcom_get(a.dag_id, a.run_id, a.producer_task_id, a.map_index, key=key)

    async def aget(self, key: str) -> Any:
        a = self.address
        return await compat.axcom_get(a.dag_id, a.run_id, a.producer_task_id, a.map_index, key=key)

    def set(self, key: str, value: Any) -> None:
        a = self.address
        compat.xcom_set(a.dag_id, a.run_id, a.producer_task_id, a.map_index, key=key, value=value)


class TaskStateStore:
    """The producer's Task State Store (``context["task_state_store"]``): private to it, kept across
    its tries, deleted with the DAG run; entries expire after ``retention``."""

    def __init__(self, accessor: Any, retention: timedelta | float | None = None) -> None:
        self._accessor = accessor
        self._retention = timedelta(seconds=retention) if isinstance(retention, int | float) else retention

    def get(self, key: str) -> Any:
        return self._accessor.get(key, default=None)

    def set(self, key: str, value: Any) -> None:
        if self._retention is None:
            self._accessor.set(key, value)
        else:
            self._accessor.set(key, value, retention=self._retention)


class AttemptStore:
    """Where there is no Task State Store (before Airflow 3.3): the same keys, kept for this try only.

    What it loses is what the Task State Store exists for: a later try of the task starts empty, so it
    knows nothing of what earlier tries did. That is why, there, the producer's retries default to 0
    and a retry that builds again is the only kind allowed (docs/installation.md). Nothing is ever read
    from another try, so nothing from another try can count as evidence.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        return self._values.get(key)

    def set(self, key: str, value: Any) -> None:
        self._values[key] = value


def private_store(context: Any, retention: timedelta | float | None) -> TaskStateStore | AttemptStore:
    """The task's private store: its Task State Store where Airflow has one, else one for this try."""
    accessor = context.get("task_state_store") if airflow_lines.has_task_state_store() else None
    return TaskStateStore(accessor, retention) if accessor is not None else AttemptStore()


class Mirrored:
    """Writes go to both stores (the published channel and its mirror); reads come from the first."""

    def __init__(self, published: Any, mirror: Any) -> None:
        self.published, self.mirror = published, mirror

    def get(self, key: str) -> Any:
        return self.published.get(key)

    def set(self, key: str, value: Any) -> None:
        self.mirror.set(key, value)  # the mirror first: what was published can always be restored
        self.published.set(key, value)
