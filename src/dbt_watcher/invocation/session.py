"""A task's dbt session: the project as this task runs it (a connection's profile rendered, the group's
``env=`` set, packages installed) and the runner, with every secret masked in Airflow's logs."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.invocation.connection_profiles import JSON_PREFIX
from dbt_watcher.invocation.profiles import connection_profile, environment
from dbt_watcher.invocation.runners import InProcessDbt, Runner, SubprocessDbt
from dbt_watcher.invocation.secrets import is_secret_name, profile_secrets

log = logging.getLogger(__name__)

#: What :func:`dbt_session` returns: a context manager giving the project and a runner.
DbtSession = contextlib.AbstractContextManager[tuple[DbtProject, Runner]]


@contextlib.contextmanager
def dbt_session(
    project: DbtProject,
    *,
    dbt_executable: str | None = None,
    connection_id: str | None = None,
    profile_args: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    threads: int | None = None,
    install_deps: bool = False,
    cache_dir: Path | None = None,
    with_secrets: bool = True,
) -> Iterator[tuple[DbtProject, Runner]]:
    """The project and the runner for this task's dbt invocations.

    With ``connection_id`` the project points at a profile rendered from the Airflow connection,
    whose secrets dbt reads from the environment for the duration of the session (DAG parsing
    passes ``with_secrets=False``: parsing never connects). ``env`` (the group's ``env=``) is set for
    the session too, in this process and in a dbt subprocess's environment. ``cache_dir``: where a
    copy of a read-only project is made for ``install_deps`` (required then).
    """
    if project.missing_profiles is not None:
        raise project.missing_profiles
    env = dict(env or {})
    if with_secrets:
        _mask_profile_secrets(project)
        _mask_env_secrets(env)
    with contextlib.ExitStack() as stack:
        stack.enter_context(environment(env))
        secrets: Mapping[str, str] = {}
        if connection_id:
            project, secrets = stack.enter_context(
                connection_profile(
                    project, connection_id, threads=threads, profile_args=profile_args, with_secrets=with_secrets
                )
            )
        if with_secrets:
            _mask_env_secrets(secrets)
        # In this process's environment for the session, so every dbt subprocess inherits it too
        # (the parse-time ones of dbt_executable= included).
        stack.enter_context(environment(secrets))
        runner: Runner = SubprocessDbt(dbt_executable) if dbt_executable else InProcessDbt()
        if install_deps and needs_deps(project):
            project = _writable(project, cache_dir)
            if needs_deps(project):  # a copy made by an earlier session has its packages already
                outcome = runner.run(project.command("deps"))
                if not outcome.ran:
                    raise RuntimeError(f"dbt deps failed: {outcome.error}")
        yield project, runner


def _mask_env_secrets(env: Mapping[str, str]) -> None:
    """Airflow masks the values of ``env=`` (and of a connection's rendered secrets) whose names are
    secret (:func:`dbt_watcher.invocation.secrets.is_secret_name`), a JSON value's fields too."""
    from airflow.sdk.log import mask_secret

    for name, value in env.items():
        if is_secret_name(name) or name.startswith(JSON_PREFIX):
            mask_secret(value, name)
            with contextlib.suppress(ValueError):
                parsed = json.loads(value)
                if isinstance(parsed, dict):
                    mask_secret(parsed)


def _mask_profile_secrets(project: DbtProject) -> None:
    """Airflow masks the profile's secrets in every task log line from here on (dbt's errors included)."""
    from airflow.sdk.log import mask_secret

    for secret in profile_secrets(project.profiles_dir):
        mask_secret(secret)


def _writable(project: DbtProject, cache_dir: Path | None) -> DbtProject:
    """The project itself when dbt may write into it, else a copy it may (a read-only DAG bundle:
    ``dbt deps`` writes dbt_packages/ into the project). The copy lives in the graph cache's folder
    under a name derived from the project's path, so later sessions reuse its installed packages."""
    if os.access(project.project_dir, os.W_OK):
        return project
    if cache_dir is None:
        raise RuntimeError(f"{project.project_dir} is read-only and no cache folder was given for a copy")
    name = hashlib.sha256(str(project.project_dir).encode()).hexdigest()[:16]
    copy = cache_dir / "projects" / f"{project.project_dir.name}-{name}"
    shutil.copytree(
        project.project_dir, copy, dirs_exist_ok=True, ignore=shutil.ignore_patterns("target", "logs", ".dbt_watcher")
    )
    log.info("%s is read-only: dbt deps and dbt run in a copy, %s", project.project_dir, copy)
    profiles_dir = copy if project.profiles_dir == project.project_dir else project.profiles_dir
    return replace(project, project_dir=copy, profiles_dir=profiles_dir)


def needs_deps(project: DbtProject) -> bool:
    """The project declares packages (packages.yml or dependencies.yml) that are not installed."""
    declared = any((project.project_dir / name).is_file() for name in ("packages.yml", "dependencies.yml"))
    installed = project.project_dir / str(project.project_yml().get("packages-install-path", "dbt_packages"))
    return declared and not (installed.is_dir() and any(installed.iterdir()))
