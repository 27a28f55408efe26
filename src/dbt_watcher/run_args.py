"""The arguments one DAG run gives dbt, decided once by the producer and reused by local retries.

The group's static ``vars``/``full_refresh``/``dbt_args`` are merged with what the decorated
function returns at run time (it receives the Airflow context, so it can derive ``vars`` from the
logical date or ``params``). The producer stores the result in the status channel, so a consumer
that later rebuilds its node on a retry runs dbt with exactly the same arguments.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dbt_watcher.errors import ConfigurationError

HOOK_KEYS = frozenset({"vars", "full_refresh", "dbt_args"})


@dataclass(frozen=True)
class RunArguments:
    vars: Mapping[str, Any] = field(default_factory=dict)
    full_refresh: bool = False
    dbt_args: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"vars": dict(self.vars), "full_refresh": self.full_refresh, "dbt_args": list(self.dbt_args)}

    @classmethod
    def from_json(cls, data: Any) -> RunArguments | None:
        if not isinstance(data, Mapping):
            return None
        return cls(
            vars=dict(data.get("vars") or {}),
            full_refresh=bool(data.get("full_refresh")),
            dbt_args=tuple(data.get("dbt_args") or ()),
        )

    def merged_with(self, returned: Mapping[str, Any] | None) -> RunArguments:
        """Apply what the group function returned; unknown keys are an error naming them."""
        if not returned:
            return self
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
                "dbt_args returned by the group function must be a list.",
                'Return {"dbt_args": ["--fail-fast"]}.',
            )
        return RunArguments(
            vars={**self.vars, **(returned.get("vars") or {})},
            full_refresh=bool(returned.get("full_refresh", self.full_refresh)),
            dbt_args=(*self.dbt_args, *(str(a) for a in extra_args)),
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
