"""Parse-time checks of every ``dbt_watcher_group`` parameter: a bad value is a DAG import error that
names the parameter, what is wrong and the fix — before anything runs or is marked green."""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

from dbt_watcher import airflow_lines
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.modes import ProducerRetry, TestBehavior

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


def check_config(params: Mapping[str, Any]) -> None:
    """Raise :class:`ConfigurationError` for the first parameter that is wrong (``params``: every
    parameter of :class:`~dbt_watcher.config.WatcherConfig` by name)."""
    for name in _BOOLS:
        if not isinstance(params[name], bool):
            raise problem(name, params[name], "is not True or False", f"Pass {name}=True or {name}=False.")
    for name in _MAPPINGS:
        value = params[name]
        if value is not None and not isinstance(value, Mapping):
            raise problem(name, value, f"is a {type(value).__name__}, not a dict", f"Pass {name}={{...}}.")
    for name in _OPTIONAL_STRINGS:
        value = params[name]
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise problem(name, value, "is not a non-empty string", f'Pass {name}="..." or leave it out.')
    for name in _PATHS:
        value = params[name]
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise problem(name, value, "is not a path", f"Pass {name}= a string or pathlib.Path.")
    _check_numbers(params)
    _check_selection(params)
    check_dbt_args(params["dbt_args"], "dbt_args")
    _check_choices(params)
    check_airflow_line(params)
    if params["vars"] is not None and not all(isinstance(k, str) for k in params["vars"]):
        raise problem("vars", params["vars"], "has keys that are not strings", 'Pass vars={"name": value}.')
    bad_env = [
        k
        for k, v in (params["env"] or {}).items()
        if not (isinstance(k, str) and _ENV_NAME.match(k) and isinstance(v, str))
    ]
    if bad_env:
        raise problem(
            "env",
            sorted(map(str, bad_env)),
            "holds names that are not environment variable names, or values that are not strings",
            'Pass env={"NAME": "value"}: letters, digits and underscores, not starting with a digit; string values.',
        )
    if params["profile_args"] and params["connection_id"] is None:
        raise problem(
            "profile_args",
            params["profile_args"],
            "is given without connection_id",
            "profile_args adjusts the profile rendered from connection_id=; with a profiles.yml, edit that file.",
        )
    if params["group_id"] is not None and not (isinstance(params["group_id"], str) and _KEY.match(params["group_id"])):
        raise problem(
            "group_id",
            params["group_id"],
            "is not a valid Airflow id",
            "Use letters, digits, dashes, dots and underscores.",
        )
    if (
        params["artifacts_dir"] is not None
        and not Path(os.path.expanduser(os.fspath(params["artifacts_dir"]))).is_absolute()
    ):
        raise problem(
            "artifacts_dir",
            params["artifacts_dir"],
            "is relative: every task would resolve it from its own working directory",
            'Pass an absolute folder, e.g. artifacts_dir="/data/dbt-artifacts" (or leave it out).',
        )
    if params["artifacts_url"] is not None and "://" not in params["artifacts_url"]:
        raise problem(
            "artifacts_url",
            params["artifacts_url"],
            "is not a URL",
            'Pass an object-storage URL such as "s3://aws_default@my-bucket/dbt-artifacts"; for a folder use '
            "artifacts_dir=.",
        )
    if params["translator"] is not None:
        from dbt_watcher.rules.translator import DbtWatcherTranslator

        if not isinstance(params["translator"], DbtWatcherTranslator):
            raise problem(
                "translator",
                params["translator"],
                "is not a DbtWatcherTranslator",
                "Pass an instance of a subclass of it.",
            )
    for name in ("callback",):
        if params[name] is not None and not callable(params[name]):
            raise problem(name, params[name], "is not a function", "Pass callback=my_function.")


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _seconds(value: Any) -> float | None:
    return value.total_seconds() if isinstance(value, timedelta) else _number(value)


def _check_numbers(params: Mapping[str, Any]) -> None:
    if params["threads"] is not None and (
        isinstance(params["threads"], bool) or not isinstance(params["threads"], int) or params["threads"] < 1
    ):
        raise problem(
            "threads", params["threads"], "is not a positive whole number", "Pass threads=4, say, or leave it out."
        )
    poke = _number(params["poke_interval"])
    if poke is None or not 0.1 <= poke <= 600:
        raise problem(
            "poke_interval",
            params["poke_interval"],
            "is not a number of seconds between 0.1 and 600",
            "Pass poke_interval=0.5 (the default) or another value in that range.",
        )
    timeout = _seconds(params["timeout"])
    if timeout is None or timeout < 1:
        raise problem(
            "timeout", params["timeout"], "is not at least one second", "Pass timeout=3600 or timedelta(hours=1)."
        )
    retention = _seconds(params["status_retention"])
    if retention is None or retention < 3600:
        raise problem(
            "status_retention",
            params["status_retention"],
            "is shorter than an hour",
            "Pass status_retention=timedelta(days=30) (the default) or longer than the runs you may retry.",
        )


def _strings(value: Any) -> bool:
    return isinstance(value, str) or (
        isinstance(value, (list, tuple)) and all(isinstance(v, str) and v.strip() for v in value)
    )


def _check_selection(params: Mapping[str, Any]) -> None:
    for name in ("select", "exclude"):
        value = params[name]
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


def _check_choices(params: Mapping[str, Any]) -> None:
    if params["producer_retry"] not in (ProducerRetry.SKIP, ProducerRetry.RESUME):
        raise problem(
            "producer_retry", params["producer_retry"], "is not a retry mode", 'Pass "skip" (the default) or "resume".'
        )
    if params["test_behavior"] not in tuple(TestBehavior):
        choices = ", ".join(TestBehavior)
        raise problem("test_behavior", params["test_behavior"], "is not a test behaviour", f"Pass one of: {choices}.")
    if params["consumer_retry_queue"] is not None and not params["deferrable"]:
        raise ConfigurationError(
            "consumer_retry_queue needs deferrable consumers: with deferrable=False every try of a "
            "consumer runs on a worker.",
            'Leave consumer_retry_queue out and pass operator_args={"queue": ...}, or keep deferrable=True.',
        )
    for name in ("full_refresh", "skip_unchanged"):
        if not isinstance(params[name], bool) and not (isinstance(params[name], str) and "{{" in params[name]):
            raise problem(
                name,
                params[name],
                "is neither True/False nor a template",
                f'Pass {name}=True, or a template such as {name}="{{{{ params.{name} }}}}".',
            )
    if params["source_freshness"] is not False and not (
        params["source_freshness"] is True or callable(params["source_freshness"])
    ):
        raise problem(
            "source_freshness",
            params["source_freshness"],
            "is neither True nor a function",
            "Pass source_freshness=True, or a function that takes the freshness results and returns "
            "{source_unique_id: reason} for the sources to treat as stale.",
        )


def check_airflow_line(params: Mapping[str, Any]) -> None:
    """Refuse what the installed Airflow line cannot do, naming why and the fix (docs/installation.md).

    A producer retry that skips what dbt built, or resumes it, reads the producer's ledger of earlier
    tries from its Task State Store (Airflow 3.3). Without one, a producer retry can only build again.
    """
    if airflow_lines.has_task_state_store():
        return
    line = f"Airflow {airflow_lines.airflow_version()} has no Task State Store (new in Airflow 3.3)"
    if params["producer_retry"] == ProducerRetry.RESUME:
        raise ConfigurationError(
            f'producer_retry="resume" needs the producer\'s record of its earlier tries, and {line}.',
            "Leave producer_retry out (consumers rebuild their own nodes on their retries), or upgrade to Airflow 3.3.",
        )
    retries = (params["setup_operator_args"] or {}).get("retries", 0)
    if params["producer_retry_skip"] and isinstance(retries, int) and retries > 0:
        raise ConfigurationError(
            f"setup_operator_args={{'retries': {retries}}}: a producer retry skips what an earlier try built "
            f"by reading the producer's record of its tries, and {line}.",
            "Leave the producer's retries at 0 (consumers rebuild their own nodes on their retries), pass "
            "producer_retry_skip=False to let a producer retry build the whole selection again, or upgrade "
            "to Airflow 3.3.",
        )
