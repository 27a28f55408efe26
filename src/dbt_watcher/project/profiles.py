"""dbt profiles from Airflow Connections (``connection_id=``), rendered when dbt runs.

The rendered ``profiles.yml`` lives in a private temporary folder for one invocation and holds no
secret: the password reaches dbt through an environment variable named ``DBT_ENV_SECRET_...``,
which dbt scrubs from its logs (Airflow masks connection passwords in task logs as well).

Supported connection types:

* ``postgres``: host, port, login, password; the connection's *schema* field is the database;
  extra ``{"dbt_schema": "analytics"}`` sets dbt's schema (default ``public``); the extras dbt-postgres
  has a setting for pass through unchanged: TLS (``sslmode``, ``sslrootcert``, ``sslcert``,
  ``sslkey``), ``role``, ``search_path``, ``keepalives_idle``, ``connect_timeout``,
  ``application_name``, ``retries``;
* ``duckdb``: the database file in *host* or extra ``{"path": ...}``; extra ``schema`` (default ``main``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.project.project import DbtProject

TARGET = "airflow"
PASSWORD_ENV = "DBT_ENV_SECRET_DBT_WATCHER_PASSWORD"
#: Connection extras that are settings of dbt-postgres's credentials (``PostgresCredentials`` in
#: dbt/adapters/postgres/connections.py, dbt-postgres 1.10-1.11): passed to the profile as they are.
POSTGRES_EXTRAS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "role",
    "search_path",
    "keepalives_idle",
    "connect_timeout",
    "application_name",
    "retries",
)


def get_connection(connection_id: str) -> Any:
    from airflow.sdk import Connection

    try:
        return Connection.get(connection_id)
    except Exception as exc:
        raise ConfigurationError(
            f"Airflow connection {connection_id!r} could not be read: {exc}",
            "Create the connection (UI, CLI, or an AIRFLOW_CONN_<ID> variable) or fix connection_id=.",
        ) from exc


def profile_outputs(conn: Any, threads: int | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The dbt output for a connection, and the secret environment it needs."""
    extra = conn.extra_dejson if isinstance(getattr(conn, "extra_dejson", None), dict) else {}
    kind = str(conn.conn_type or "").lower()
    output: dict[str, Any]
    secrets: dict[str, str] = {}
    if kind in ("postgres", "postgresql"):
        output = {
            "type": "postgres",
            "host": conn.host or "localhost",
            "port": int(conn.port or 5432),
            "user": conn.login or "",
            "password": f"{{{{ env_var('{PASSWORD_ENV}') }}}}",
            "dbname": conn.schema or extra.get("database") or "postgres",
            "schema": extra.get("dbt_schema", "public"),
            **{key: extra[key] for key in POSTGRES_EXTRAS if extra.get(key) is not None},
        }
        secrets[PASSWORD_ENV] = conn.password or ""
    elif kind == "duckdb":
        path = extra.get("path") or conn.host
        if not path:
            raise ConfigurationError(
                f"DuckDB connection {conn.conn_id!r} names no database file.",
                'Put the file path in the connection host, or extra {"path": "/data/warehouse.duckdb"}.',
            )
        output = {"type": "duckdb", "path": path, "schema": extra.get("schema", "main")}
    else:
        raise ConfigurationError(
            f"connection {conn.conn_id!r} has type {conn.conn_type!r}; dbt-watcher renders profiles for "
            "postgres and duckdb connections.",
            "Use a postgres or duckdb connection, or a profiles.yml (profiles_dir=).",
        )
    if threads:
        output["threads"] = threads
    return output, secrets


@contextlib.contextmanager
def connection_profile(
    project: DbtProject, connection_id: str, *, threads: int | None, with_secrets: bool = True
) -> Iterator[tuple[DbtProject, Mapping[str, str]]]:
    """The project pointed at a profiles.yml rendered from the connection, plus the secret env.

    ``with_secrets=False`` (DAG parsing) gives dbt an empty password: parsing never connects.
    """
    conn = get_connection(connection_id)
    output, secrets = profile_outputs(conn, threads)
    if not with_secrets:
        secrets = dict.fromkeys(secrets, "")
    profile_name = str(project.profile or project.project_yml().get("profile") or "default")
    folder = Path(tempfile.mkdtemp(prefix="dbt-watcher-profile-"))
    try:
        os.chmod(folder, 0o700)
        document = {profile_name: {"target": TARGET, "outputs": {TARGET: output}}}
        (folder / "profiles.yml").write_text(yaml.safe_dump(document, sort_keys=False))
        yield replace(project, profiles_dir=folder, profile=profile_name, target=TARGET), secrets
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """Set environment variables for an in-process dbt invocation, and restore them afterwards."""
    previous = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
