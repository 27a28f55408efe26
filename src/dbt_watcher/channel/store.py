"""Where the channel's keys live: the producer task's XComs, and the producer's private mirror.

Everything goes through Airflow's execution API, so the same code works in a task process on a
worker and in a trigger, and Airflow authorises every call (see :mod:`dbt_watcher.compat`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from dbt_watcher import compat


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


class Mirrored:
    """Writes go to both stores (the published channel and its mirror); reads come from the first."""

    def __init__(self, published: Any, mirror: Any) -> None:
        self.published, self.mirror = published, mirror

    def get(self, key: str) -> Any:
        return self.published.get(key)

    def set(self, key: str, value: Any) -> None:
        self.mirror.set(key, value)  # the mirror first: what was published can always be restored
        self.published.set(key, value)


class MemoryStore:
    """A store in a dict (unit tests, and a consumer's own local rebuild)."""

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self.data: dict[str, Any] = dict(data or {})
        self.gets = self.sets = 0

    def get(self, key: str) -> Any:
        self.gets += 1
        return self.data.get(key)

    async def aget(self, key: str) -> Any:
        return self.get(key)

    def set(self, key: str, value: Any) -> None:
        self.sets += 1
        self.data[key] = value
