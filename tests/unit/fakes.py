"""Fakes of what Airflow hands a task in its context, shared by the unit tests of the producer and the audit."""

from __future__ import annotations

from typing import Any

from dbt_watcher.channel.store import MemoryStore


class OutletsFake:
    """``context["outlet_events"]``: records the events added to any alias."""

    def __init__(self) -> None:
        self.uris: list[str] = []

    def __getitem__(self, alias: Any) -> OutletsFake:
        return self

    def add(self, asset: Any, extra: Any = None) -> None:
        self.uris.append(asset.uri)


class TaskStateStoreFake(MemoryStore):
    """``context["task_state_store"]``: Airflow's accessor signatures, kept in memory."""

    def get(self, key: str, default: Any = None) -> Any:
        value = super().get(key)
        return default if value is None else value

    def set(self, key: str, value: Any, retention: Any = None) -> None:
        super().set(key, value)
