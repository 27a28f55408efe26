"""dbt-watcher: run a dbt project once in Airflow 3 while every model keeps its own live task.

Imports are lazy so that the triggerer, which only needs :mod:`dbt_watcher.trigger`, and a DAG
file whose project is cached never pay for dbt's import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

__all__ = [
    "ConfigurationError",
    "DbtConsumerOperator",
    "DbtProducerOperator",
    "DbtWatcherGroup",
    "WatcherConfig",
    "dbt_watcher_group",
]

_EXPORTS = {
    "dbt_watcher_group": "dbt_watcher.decorator",
    "DbtWatcherGroup": "dbt_watcher.decorator",
    "WatcherConfig": "dbt_watcher.config",
    "ConfigurationError": "dbt_watcher.errors",
    "DbtConsumerOperator": "dbt_watcher.consumer",
    "DbtProducerOperator": "dbt_watcher.producer",
}

if TYPE_CHECKING:
    from dbt_watcher.config import WatcherConfig
    from dbt_watcher.consumer import DbtConsumerOperator
    from dbt_watcher.decorator import DbtWatcherGroup, dbt_watcher_group
    from dbt_watcher.errors import ConfigurationError
    from dbt_watcher.producer import DbtProducerOperator


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dbt_watcher' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
