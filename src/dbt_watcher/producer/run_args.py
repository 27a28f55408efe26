"""The run-time hook: the decorated function's body, called by the producer before ``dbt build``.

The group's static ``vars``/``full_refresh``/``dbt_args`` are merged with what the function returns
(it receives the Airflow context, so it can derive ``vars`` from the logical date or ``params``). The
result is the run's :class:`~dbt_watcher.channel.channel.Invocation`, which the producer publishes
so that a consumer rebuilding its node later runs dbt with exactly the same arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from dbt_watcher.channel.records import Invocation
from dbt_watcher.checks import check_dbt_args
from dbt_watcher.errors import ConfigurationError

HOOK_KEYS = frozenset({"vars", "full_refresh", "dbt_args"})


def merge_returned(invocation: Invocation, returned: Mapping[str, Any] | None) -> Invocation:
    """Apply what the group function returned; unknown keys or wrong types are errors naming them."""
    if not returned:
        return invocation
    if not isinstance(returned, Mapping):
        raise ConfigurationError(
            f"the dbt_watcher_group function returned {type(returned).__name__}, not a dict.",
            "Return None, or a dict with any of: vars, full_refresh, dbt_args.",
        )
    unknown = set(returned) - HOOK_KEYS
    if unknown:
        raise ConfigurationError(
            f"the dbt_watcher_group function returned unknown key(s): {', '.join(sorted(unknown))}.",
            "Return a dict with any of: vars (dict), full_refresh (bool), dbt_args (list of str).",
        )
    extra_args = returned.get("dbt_args") or ()
    if isinstance(extra_args, str) or not isinstance(extra_args, Sequence):
        raise ConfigurationError(
            "dbt_args returned by the group function must be a list.", 'Return {"dbt_args": ["--fail-fast"]}.'
        )
    returned_vars = returned.get("vars") or {}
    if not isinstance(returned_vars, Mapping):
        raise ConfigurationError(
            f"vars returned by the group function must be a dict, not {type(returned_vars).__name__}.",
            'Return {"vars": {"run_date": ds}}.',
        )
    return replace(
        invocation,
        vars={**invocation.vars, **returned_vars},
        full_refresh=bool(returned.get("full_refresh", invocation.full_refresh)),
        dbt_args=(*invocation.dbt_args, *check_dbt_args(extra_args, "the group function's dbt_args")),
    )


def call_hook(hook: Callable[..., Any], context: Mapping[str, Any], call_kwargs: Mapping[str, Any]) -> Any:
    """Call the decorated function like a TaskFlow task: parameters named after context keys
    (``ds``, ``params``, ``logical_date``, ...) receive them; ``**kwargs`` receives everything."""
    signature = inspect.signature(hook)
    available = {**dict(context), **dict(call_kwargs)}
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return hook(**available)
    kwargs = {name: available[name] for name in signature.parameters if name in available}
    missing = [
        name
        for name, p in signature.parameters.items()
        if name not in kwargs
        and p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
    ]
    if missing:
        raise ConfigurationError(
            f"the dbt_watcher_group function needs {', '.join(missing)}, which is neither a context key "
            "nor an argument given when the group was called.",
            "Name parameters after Airflow context keys (ds, params, logical_date, ...) or pass them "
            "when calling the group, e.g. jaffle_shop(region='eu').",
        )
    return hook(**kwargs)
