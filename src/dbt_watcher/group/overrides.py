"""Per-node operator arguments: group-wide, from dbt's ``meta``, and by dbt selection string.

They compose in this order, later winning:

1. ``operator_args`` of the group (every task);
2. ``meta: {airflow: {...}}`` of the node in the dbt project;
3. ``node_operator_args={"<dbt selection>": {...}}`` of the group, in the mapping's order.

Selection strings are resolved by dbt's own engine when the project is loaded (``tag:finance``,
``orders``, ``path:models/marts`` ... all work). Only arguments that are safe for a consumer are
accepted; anything else is a DAG import error that lists what is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.project.graph import DbtNode, ProjectGraph

SAFE_CONSUMER_ARGS = frozenset(
    {
        "retries",
        "retry_delay",
        "retry_exponential_backoff",
        "max_retry_delay",
        "pool",
        "pool_slots",
        "queue",
        "priority_weight",
        "weight_rule",
        "owner",
        "email",
        "email_on_failure",
        "email_on_retry",
        "on_success_callback",
        "on_failure_callback",
        "on_retry_callback",
        "on_skipped_callback",
        "execution_timeout",
        "depends_on_past",
        "max_active_tis_per_dag",
        "task_display_name",
        "doc",
        "doc_md",
        "doc_rst",
        "doc_json",
        "doc_yaml",
    }
)
_SECONDS = frozenset({"retry_delay", "max_retry_delay", "execution_timeout"})
_CALLBACKS = frozenset({"on_success_callback", "on_failure_callback", "on_retry_callback", "on_skipped_callback"})
_WHOLE = frozenset({"retries", "pool_slots", "priority_weight", "max_active_tis_per_dag"})
_TEXT = frozenset({"pool", "queue", "weight_rule", "owner", "task_display_name"}) | {
    key for key in SAFE_CONSUMER_ARGS if key.startswith("doc")
}
_FLAGS = frozenset({"retry_exponential_backoff", "email_on_failure", "email_on_retry", "depends_on_past"})


def _value_problem(key: str, value: Any) -> str | None:
    """Why ``value`` cannot be the operator argument ``key`` (None: it can)."""
    if key in _SECONDS:
        ok = isinstance(value, timedelta) or (
            isinstance(value, int | float) and not isinstance(value, bool) and 0 <= value < float("inf")
        )
        return None if ok else "a number of seconds or a timedelta"
    if key in _WHOLE:
        ok = isinstance(value, int) and not isinstance(value, bool) and (value >= 0 or key == "priority_weight")
        return None if ok else "a whole number (not negative)"
    if key in _TEXT:
        return None if isinstance(value, str) and value.strip() else "a non-empty string"
    if key in _FLAGS:
        return None if isinstance(value, bool) else "True or False"
    if key in _CALLBACKS:
        items = value if isinstance(value, list | tuple) else [value]
        return None if all(callable(v) for v in items) else "a function or a list of functions"
    if key == "email":
        return None if isinstance(value, str | list | tuple) else "an address or a list of addresses"
    return None


def validate(args: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Keep the arguments if every key is safe for a consumer and every value has the right type;
    durations may be given in seconds."""
    if not isinstance(args, Mapping):
        raise ConfigurationError(f"{where} is a {type(args).__name__}, not a dict.", f'Pass {where}={{"pool": "dbt"}}.')
    unknown = sorted(set(args) - SAFE_CONSUMER_ARGS)
    if unknown:
        raise ConfigurationError(
            f"{where} sets {', '.join(unknown)}, which dbt-watcher does not pass to a consumer task.",
            f"Use only: {', '.join(sorted(SAFE_CONSUMER_ARGS))}.",
        )
    for key, value in args.items():
        if (wanted := _value_problem(key, value)) is not None:
            raise ConfigurationError(f"{where}[{key!r}] is {value!r}.", f"Pass {wanted}.")
    return {
        key: timedelta(seconds=value) if key in _SECONDS and isinstance(value, int | float) else value
        for key, value in args.items()
    }


def validate_mapping(mapping: Mapping[str, Mapping[str, Any]] | None) -> dict[str, dict[str, Any]]:
    if not mapping:
        return {}
    if not isinstance(mapping, Mapping):
        raise ConfigurationError(
            "node_operator_args must be a dict keyed by dbt selection strings.",
            'Pass node_operator_args={"tag:finance": {"pool": "finance"}}.',
        )
    return {str(key): validate(args, f"node_operator_args[{key!r}]") for key, args in mapping.items()}


def node_args(node: DbtNode, graph: ProjectGraph, mapping: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The operator arguments of one node's consumer beyond the group's (see the module docstring)."""
    merged = validate(node.airflow_meta, f"meta.airflow of {node.unique_id}") if node.airflow_meta else {}
    for key, args in mapping.items():
        if node.unique_id in graph.matches.get(key, ()):
            merged.update(args)
    return merged


def unmatched_keys(graph: ProjectGraph, mapping: Mapping[str, Any]) -> list[str]:
    return [key for key in mapping if not graph.matches.get(key)]
