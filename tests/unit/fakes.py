"""Fakes of the channel's store and of what Airflow hands a task in its context, shared by the unit tests."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class MemoryStore:
    """A channel store in a dict (the producer's XComs or Task State Store, in unit tests)."""

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
