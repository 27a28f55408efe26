"""dbt profiles from Airflow Connections (``connection_id=``), rendered when dbt runs.

The rendered ``profiles.yml`` lives in a private temporary folder for one invocation and holds no
secret: each secret reaches dbt through an environment variable named ``DBT_ENV_SECRET_...``, which
dbt scrubs from its logs (Airflow masks connection passwords in task logs as well). Which fields of
which connection types become which dbt settings: :mod:`dbt_watcher.invocation.connection_profiles`.
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
from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.invocation.connection_profiles import parse_placeholders, profile_outputs

TARGET = "airflow"


def get_connection(connection_id: str) -> Any:
    from airflow.sdk import Connection

    try:
        return Connection.get(connection_id)
    except Exception as exc:
        raise ConfigurationError(
            f"Airflow connection {connection_id!r} could not be read: {exc}",
            "Create the connection (UI, CLI, or an AIRFLOW_CONN_<ID> variable) or fix connection_id=.",
        ) from exc


@contextlib.contextmanager
def connection_profile(
    project: DbtProject,
    connection_id: str,
    *,
    threads: int | None,
    profile_args: Mapping[str, Any] | None = None,
    with_secrets: bool = True,
) -> Iterator[tuple[DbtProject, Mapping[str, str]]]:
    """The project pointed at a profiles.yml rendered from the connection, plus the secret env.

    ``with_secrets=False`` (DAG parsing) gives dbt empty secrets: parsing never connects.
    """
    conn = get_connection(connection_id)
    with rendered_profile(project, conn, threads=threads, profile_args=profile_args, with_secrets=with_secrets) as done:
        yield done


@contextlib.contextmanager
def rendered_profile(
    project: DbtProject,
    conn: Any,
    *,
    threads: int | None,
    profile_args: Mapping[str, Any] | None = None,
    with_secrets: bool = True,
) -> Iterator[tuple[DbtProject, Mapping[str, str]]]:
    """:func:`connection_profile` for a connection object already read (an ``airflow.sdk.Connection``)."""
    output, secrets = profile_outputs(conn, threads, profile_args)
    if not with_secrets:
        secrets = parse_placeholders(secrets)
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
