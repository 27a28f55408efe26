"""Secrets of a dbt profile, kept out of every message dbt-watcher shows.

dbt quotes a profile value it cannot validate in its error (``'s3cr3t' is not valid under any of the
given schemas``), and the jsonschema error it chains holds the whole target, password included
(dbt-core 1.10-1.11, ``dbt/config/profile.py``). A DAG import error is visible to every UI user, so
any message built from a dbt error while loading the project is scrubbed of the profile's values
and is raised without its chained cause.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from dbt_watcher.errors import ConfigurationError

#: Profile keys whose values identify where data lives, not who may read it: shown as they are.
_NOT_SECRET = frozenset(
    {
        "type",
        "threads",
        "host",
        "port",
        "user",
        "username",
        "dbname",
        "database",
        "schema",
        "path",
        "target",
        "outputs",
        "role",
        "search_path",
        "sslmode",
        "method",
        "account",
        "warehouse",
        "project",
        "dataset",
        "location",
        "catalog",
        "http_path",
        "server",
        "driver",
        "connect_timeout",
        "keepalives_idle",
        "retries",
    }
)
#: dbt's env_var('NAME') (and env_var("NAME", default)) in project files and profiles.yml.
ENV_VAR = re.compile(r"env_var\(\s*['\"]([^'\"]+)['\"]")
_MIN_LENGTH = 4
#: Used only when Airflow's own rule cannot be imported (see is_secret_name).
_SENSITIVE_WORDS = ("password", "passwd", "passphrase", "secret", "token", "private_key", "api_key", "apikey")


def is_secret_name(name: str) -> bool:
    """Whether a setting or variable of this name holds a secret: dbt's ``DBT_ENV_SECRET_`` prefix, or a
    name Airflow masks (``password``, ``token``, ``secret``, ``private_key``, ``passphrase``, ...,
    plus ``[core] sensitive_var_conn_names``)."""
    if name.upper().startswith("DBT_ENV_SECRET_"):
        return True
    from dbt_watcher.compat import sensitive_name

    airflow_rule = sensitive_name(name)
    if airflow_rule is None:
        return any(word in name.lower() for word in _SENSITIVE_WORDS)
    return airflow_rule


def profile_secrets(profiles_dir: Path | None) -> set[str]:
    """Values of a profiles.yml that may be secret: literal values under other keys, the values of
    the environment variables it reads, and every ``DBT_ENV_SECRET_*`` variable."""
    found = {v for k, v in os.environ.items() if k.startswith("DBT_ENV_SECRET_") and len(v) >= _MIN_LENGTH}
    path = (profiles_dir / "profiles.yml") if profiles_dir is not None else None
    if path is None or not path.is_file():
        return found
    text = path.read_text(errors="replace")
    found |= {os.environ[name] for name in ENV_VAR.findall(text) if len(os.environ.get(name, "")) >= _MIN_LENGTH}
    with contextlib.suppress(yaml.YAMLError):
        _walk(yaml.safe_load(text), None, found)
    return found


def _walk(value: Any, key: str | None, found: set[str]) -> None:
    if isinstance(value, Mapping):
        for k, v in value.items():
            _walk(v, str(k), found)
    elif isinstance(value, list):
        for v in value:
            _walk(v, key, found)
    elif value is not None and key not in _NOT_SECRET:
        text = str(value)
        if len(text) >= _MIN_LENGTH and "{{" not in text:
            found.add(text)


def scrub(text: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


@contextlib.contextmanager
def scrubbed_errors(profiles_dir: Path | None) -> Iterator[None]:
    """Re-raise any error of the block as a :class:`ConfigurationError` without the profile's secrets."""
    try:
        yield
    except ConfigurationError as exc:
        secrets = profile_secrets(profiles_dir)
        raise ConfigurationError(scrub(exc.problem, secrets), scrub(exc.fix, secrets)) from None
    except Exception as exc:
        secrets = profile_secrets(profiles_dir)
        raise ConfigurationError(
            scrub(f"loading the dbt project failed: {type(exc).__name__}: {exc}", secrets),
            "Run `dbt parse` in the project folder with the same profile and target, and fix what it reports.",
        ) from None
