"""The few calls dbt-watcher makes to Airflow's execution API, in one place.

They go through the Task SDK's supervisor channel, so the same code works in a task process (on a
worker) and in a trigger (in the triggerer), and Airflow authorises every call.
"""

from __future__ import annotations

from typing import Any

from dbt_watcher.status import RunStatus, StatusReader


class AssetStateChannelStore:
    """The status channel's key/value store: the Asset State Store of the group's status asset."""

    def __init__(self, asset_name: str) -> None:
        from airflow.sdk.execution_time.context import AssetStateStoreAccessor

        self.asset_name = asset_name
        self._accessor = AssetStateStoreAccessor(name=asset_name)

    def get(self, key: str) -> Any:
        return self._accessor.get(key, default=None)

    def set(self, key: str, value: Any) -> None:
        self._accessor.set(key, value)

    def delete(self, key: str) -> None:
        self._accessor.delete(key)

    async def aget(self, key: str) -> Any:
        return await self._accessor.aget(key, default=None)


def _group_states_message(dag_id: str, run_id: str, group_id: str) -> Any:
    from airflow.sdk.execution_time.comms import GetTaskStates

    return GetTaskStates(dag_id=dag_id, task_group_id=group_id, run_ids=[run_id])


def _states_of_run(response: Any, run_id: str) -> dict[str, str]:
    states = (getattr(response, "task_states", None) or {}).get(run_id) or {}
    return {task_id: str(state) for task_id, state in states.items() if state is not None}


def group_task_states(dag_id: str, run_id: str, group_id: str) -> dict[str, str]:
    """States of every task of a group in one run (tasks without a state are left out)."""
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    return _states_of_run(SUPERVISOR_COMMS.send(_group_states_message(dag_id, run_id, group_id)), run_id)


async def agroup_task_states(dag_id: str, run_id: str, group_id: str) -> dict[str, str]:
    from airflow.sdk.execution_time.task_runner import SUPERVISOR_COMMS

    return _states_of_run(await SUPERVISOR_COMMS.asend(_group_states_message(dag_id, run_id, group_id)), run_id)


def read_status(asset_name: str, run_id: str) -> RunStatus | None:
    """One full read of a run's status (for the producer's retries and the consumers' fallbacks)."""
    return StatusReader(run_id).read(AssetStateChannelStore(asset_name))
