"""dbt-watcher: run a dbt project once in Airflow 3 while every model keeps its own live task.

What users hold: :func:`dbt_watcher_group` (the decorator), the :class:`WatcherGroupFactory` it
returns, the :class:`DbtWatcherGroup` that calling it renders, :class:`WatcherConfig` (every
parameter, documented), :class:`DbtWatcherTranslator` with the :class:`DbtNode` it is given,
:class:`CosmosTranslator` (Cosmos' names, for a switch in one line), and the errors. Imports are
lazy so that the triggerer, which only needs the consumer's trigger, and a DAG file whose project
is cached never pay for dbt's import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

__all__ = [
    "ConfigurationError",
    "CosmosTranslator",
    "DbtInvocationError",
    "DbtNode",
    "DbtWatcherError",
    "DbtWatcherGroup",
    "DbtWatcherTranslator",
    "WatcherConfig",
    "WatcherGroupFactory",
    "dbt_watcher_group",
]

_EXPORTS = {
    "dbt_watcher_group": "dbt_watcher.group.decorator",
    "WatcherGroupFactory": "dbt_watcher.group.decorator",
    "DbtWatcherGroup": "dbt_watcher.group.task_group",
    "WatcherConfig": "dbt_watcher.config",
    "ConfigurationError": "dbt_watcher.errors",
    "DbtInvocationError": "dbt_watcher.errors",
    "DbtWatcherError": "dbt_watcher.errors",
    "DbtWatcherTranslator": "dbt_watcher.rules.translator",
    "CosmosTranslator": "dbt_watcher.rules.cosmos",
    "DbtNode": "dbt_watcher.project.graph",
}

if TYPE_CHECKING:
    from dbt_watcher.config import WatcherConfig
    from dbt_watcher.errors import ConfigurationError, DbtInvocationError, DbtWatcherError
    from dbt_watcher.group.decorator import WatcherGroupFactory, dbt_watcher_group
    from dbt_watcher.group.task_group import DbtWatcherGroup
    from dbt_watcher.project.graph import DbtNode
    from dbt_watcher.rules.cosmos import CosmosTranslator
    from dbt_watcher.rules.translator import DbtWatcherTranslator


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'dbt_watcher' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
