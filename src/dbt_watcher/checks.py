"""Parse-time checks of every ``dbt_watcher_group`` parameter: a bad value is a DAG import error that
names the parameter, what is wrong and the fix — before anything runs or is marked green."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbt_watcher.errors import ConfigurationError

if TYPE_CHECKING:
    from dbt_watcher.config import WatcherConfig

TEST_BEHAVIORS = ("build", "none", "after_all", "after_each")
#: dbt flags whose job a group parameter does: passed twice they would fight (a rebuild of one node
#: given the group's --select as well would build extra nodes twice).
_OWNED_FLAGS = {
    "--select": "select=",
    "-s": "select=",
    "--models": "select=",
    "-m": "select=",
    "--exclude": "exclude=",
    "--selector": "selector=",
    "--target-path": "artifacts_dir=",
    "--log-path": "artifacts_dir=",
    "--project-dir": "project_dir=",
    "--profiles-dir": "profiles_dir=",
    "--profile": "profile=",
    "--target": "target=",
    "-t": "target=",
    "--threads": "threads=",
    "--vars": "vars=",
}
#: Airflow's rule for task and group ids (``KEY_REGEX`` in airflow/sdk/definitions/_internal/node.py).
_KEY = re.compile(r"^[\w.-]+$")
_BOOLS = (
    "deferrable",
    "producer_retry_skip",
    "emit_assets",
    "only_changed_sources",
    "install_deps",
    "audit",
    "docs",
)
_MAPPINGS = ("setup_operator_args", "operator_args", "vars", "node_operator_args", "profile_args", "env")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_OPTIONAL_STRINGS = ("profile", "target", "selector", "consumer_retry_queue", "connection_id", "artifacts_url")
_PATHS = ("project_dir", "profiles_dir", "dbt_executable", "cache_dir", "artifacts_dir")


def problem(parameter: str, value: Any, what: str, fix: str) -> ConfigurationError:
    return ConfigurationError(f"{parameter}={value!r} {what}.", fix)


def check_config(cfg: WatcherConfig) -> None:
    """Raise :class:`ConfigurationError` for the first parameter that is wrong."""
    for name in _BOOLS:
        if not isinstance(getattr(cfg, name), bool):
            raise problem(name, getattr(cfg, name), "is not True or False", f"Pass {name}=True or {name}=False.")
    for name in _MAPPINGS:
        value = getattr(cfg, name)
        if value is not None and not isinstance(value, Mapping):
            raise problem(name, value, f"is a {type(value).__name__}, not a dict", f"Pass {name}={{...}}.")
    for name in _OPTIONAL_STRINGS:
        value = getattr(cfg, name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise problem(name, value, "is not a non-empty string", f'Pass {name}="..." or leave it out.')
    for name in _PATHS:
        value = getattr(cfg, name)
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise problem(name, value, "is not a path", f"Pass {name}= a string or pathlib.Path.")
    _check_numbers(cfg)
    _check_selection(cfg)
    check_dbt_args(cfg.dbt_args, "dbt_args")
    _check_choices(cfg)
    if cfg.vars is not None and not all(isinstance(k, str) for k in cfg.vars):
        raise problem("vars", cfg.vars, "has keys that are not strings", 'Pass vars={"name": value}.')
    bad_env = [
        k for k, v in (cfg.env or {}).items() if not (isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str))
    ]
    if bad_env:
        raise problem(
            "env",
            sorted(map(str, bad_env)),
            "holds names that are not environment variable names, or values that are not strings",
            'Pass env={"NAME": "value"}: letters, digits and underscores, not starting with a digit; string values.',
        )
    if cfg.profile_args and cfg.connection_id is None:
        raise problem(
            "profile_args",
            cfg.profile_args,
            "is given without connection_id",
            "profile_args adjusts the profile rendered from connection_id=; with a profiles.yml, edit that file.",
        )
    if cfg.group_id is not None and not (isinstance(cfg.group_id, str) and _KEY.match(cfg.group_id)):
        raise problem(
            "group_id", cfg.group_id, "is not a valid Airflow id", "Use letters, digits, dashes, dots and underscores."
        )
    if cfg.artifacts_dir is not None and not Path(os.path.expanduser(os.fspath(cfg.artifacts_dir))).is_absolute():
        raise problem(
            "artifacts_dir",
            cfg.artifacts_dir,
            "is relative: every task would resolve it from its own working directory",
            'Pass an absolute folder, e.g. artifacts_dir="/data/dbt-artifacts" (or leave it out).',
        )
    if cfg.artifacts_url is not None and "://" not in cfg.artifacts_url:
        raise problem(
            "artifacts_url",
            cfg.artifacts_url,
            "is not a URL",
            'Pass an object-storage URL such as "s3://aws_default@my-bucket/dbt-artifacts"; for a folder use '
            "artifacts_dir=.",
        )
    if cfg.translator is not None:
        from dbt_watcher.translator import DbtWatcherTranslator

        if not isinstance(cfg.translator, DbtWatcherTranslator):
            raise problem(
                "translator", cfg.translator, "is not a DbtWatcherTranslator", "Pass an instance of a subclass of it."
            )
    for name in ("callback",):
        if getattr(cfg, name) is not None and not callable(getattr(cfg, name)):
            raise problem(name, getattr(cfg, name), "is not a function", "Pass callback=my_function.")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _seconds(value: Any) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else _number(value)


def _check_numbers(cfg: WatcherConfig) -> None:
    if cfg.threads is not None and (
        isinstance(cfg.threads, bool) or not isinstance(cfg.threads, int) or cfg.threads < 1
    ):
        raise problem("threads", cfg.threads, "is not a positive whole number", "Pass threads=4, say, or leave it out.")
    poke = _number(cfg.poke_interval)
    if poke is None or not 0.1 <= poke <= 600:
        raise problem(
            "poke_interval",
            cfg.poke_interval,
            "is not a number of seconds between 0.1 and 600",
            "Pass poke_interval=0.5 (the default) or another value in that range.",
        )
    timeout = _seconds(cfg.timeout)
    if timeout is None or timeout < 1:
        raise problem("timeout", cfg.timeout, "is not at least one second", "Pass timeout=3600 or timedelta(hours=1).")
    retention = _seconds(cfg.status_retention)
    if retention is None or retention < 3600:
        raise problem(
            "status_retention",
            cfg.status_retention,
            "is shorter than an hour",
            "Pass status_retention=timedelta(days=30) (the default) or longer than the runs you may retry.",
        )


def _strings(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, str) and v.strip() for v in value)
    )


def _check_selection(cfg: WatcherConfig) -> None:
    for name in ("select", "exclude"):
        value = getattr(cfg, name)
        if value is not None and not _strings(value):
            raise problem(
                name,
                value,
                "is neither a string nor a list of strings",
                f'Pass {name}="tag:daily" or {name}=["a", "b"].',
            )


def check_dbt_args(args: Any, where: str) -> tuple[str, ...]:
    """``args`` as a tuple of strings, refusing flags a group parameter owns."""
    if isinstance(args, str) or not isinstance(args, Sequence) or not all(isinstance(a, str) for a in args):
        raise problem(where, args, "is not a list of strings", f'Pass {where}=["--fail-fast"], say.')
    for arg in args:
        flag = arg.split("=", 1)[0]
        if flag in _OWNED_FLAGS:
            raise problem(
                where,
                list(args),
                f"sets {flag}, which the group's {_OWNED_FLAGS[flag]} parameter owns",
                f"Use {_OWNED_FLAGS[flag]} instead of {flag} in {where}.",
            )
    return tuple(args)


def _check_choices(cfg: WatcherConfig) -> None:
    if cfg.producer_retry not in ("skip", "resume"):
        raise problem(
            "producer_retry", cfg.producer_retry, "is not a retry mode", 'Pass "skip" (the default) or "resume".'
        )
    if cfg.test_behavior not in TEST_BEHAVIORS:
        raise problem(
            "test_behavior", cfg.test_behavior, "is not a test behaviour", f"Pass one of: {', '.join(TEST_BEHAVIORS)}."
        )
    if cfg.consumer_retry_queue is not None and not cfg.deferrable:
        raise ConfigurationError(
            "consumer_retry_queue needs deferrable consumers: with deferrable=False every try of a "
            "consumer runs on a worker.",
            'Leave consumer_retry_queue out and pass operator_args={"queue": ...}, or keep deferrable=True.',
        )
    if not isinstance(cfg.full_refresh, bool) and "{{" not in str(cfg.full_refresh):
        raise problem(
            "full_refresh",
            cfg.full_refresh,
            "is neither True/False nor a template",
            'Pass full_refresh=True, or a template such as full_refresh="{{ params.full_refresh }}".',
        )
    if cfg.source_freshness is not False and not (cfg.source_freshness is True or callable(cfg.source_freshness)):
        raise problem(
            "source_freshness",
            cfg.source_freshness,
            "is neither True nor a function",
            "Pass source_freshness=True, or a function that takes the freshness results and returns "
            "{source_unique_id: reason} for the sources to treat as stale.",
        )
