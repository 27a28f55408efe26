"""Two ways to run dbt, one contract: in this process (dbtRunner), or as a subprocess of another
virtualenv (``dbt_executable=``) whose structured JSON logs carry the same ``NodeFinished`` events.

Both feed :func:`dbt_watcher.events.node_result_from_event`, so the producer, the consumers' own
rebuilds and the status channel cannot tell which one ran.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Protocol

from dbt_watcher.invocation.command import DbtCommand, describe_failure, exit_code, run_dbt
from dbt_watcher.invocation.events import TRACKED_EVENTS, EventCallback
from dbt_watcher.project.profiles import connection_profile, environment
from dbt_watcher.project.project import DbtProject

log = logging.getLogger(__name__)

_LIST_FLAGS = ("--output", "json", "--output-keys", "unique_id", "--quiet")


@dataclass(frozen=True)
class Outcome:
    """How a dbt invocation ended."""

    ran: bool  # dbt ran its nodes (some may have failed); False: it could not run at all
    error: str | None = None
    #: dbt's exit code (0 success, 1 some node, test or hook failed, 2 dbt could not run).
    exit_code: int | None = None


@dataclass(frozen=True)
class SourceFreshness:
    """One source's row of dbt's sources.json."""

    unique_id: str
    status: str
    max_loaded_at: str | None = None
    age_seconds: float | None = None
    message: str | None = None


class DbtRunner(Protocol):
    """What the producer and the consumers' rebuilds need from a way of running dbt."""

    def prepare(self, command: DbtCommand) -> Outcome: ...

    def run(self, command: DbtCommand, on_event: EventCallback | None = None) -> Outcome: ...

    def list_ids(self, command: DbtCommand) -> list[str]: ...


def read_freshness(target_path: Path) -> list[SourceFreshness]:
    """The results of ``dbt source freshness`` from the sources.json it wrote."""
    path = target_path / "sources.json"
    if not path.is_file():
        return []
    with open(path) as fh:
        document = json.load(fh)
    return [
        SourceFreshness(
            unique_id=str(r.get("unique_id")),
            status=str(r.get("status")),
            max_loaded_at=r.get("max_loaded_at"),
            age_seconds=r.get("max_loaded_at_time_ago_in_s"),
            message=r.get("error") or r.get("message"),
        )
        for r in document.get("results", [])
    ]


class InProcessDbt:
    """dbt in this interpreter through dbtRunner; parses once and reuses the manifest if asked."""

    def __init__(self) -> None:
        self._manifest: Any = None

    def prepare(self, command: DbtCommand) -> Outcome:
        """Parse the project once, for several invocations in a row (selection, freshness, build)."""
        result = run_dbt(command.with_(command="parse"))
        if not result.success or result.result is None:
            return Outcome(ran=False, error=describe_failure(result))
        self._manifest = result.result
        return Outcome(ran=True)

    def run(self, command: DbtCommand, on_event: EventCallback | None = None) -> Outcome:
        result = run_dbt(command, on_event=on_event, manifest=self._manifest)
        code = exit_code(result)
        # Commands that run nodes return their results even when some failed; others (deps) none.
        if result.result is None and not result.success:
            return Outcome(ran=False, error=describe_failure(result), exit_code=code)
        return Outcome(ran=True, exit_code=code)

    def list_ids(self, command: DbtCommand) -> list[str]:
        result = run_dbt(
            command.with_(command="ls", extra_args=(*command.extra_args, *_LIST_FLAGS)), manifest=self._manifest
        )
        if not result.success:
            raise RuntimeError(f"dbt ls failed: {describe_failure(result)}")
        return [json.loads(line)["unique_id"] for line in (result.result or [])]  # type: ignore[union-attr]


class SubprocessDbt:
    """dbt from another virtualenv: ``--log-format json`` on stdout, one event per line."""

    def __init__(self, executable: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> None:
        self.executable = str(executable)
        self.env = dict(env) if env is not None else None

    def prepare(self, command: DbtCommand) -> Outcome:
        return Outcome(ran=True)  # each subprocess parses for itself (with partial parsing)

    def run(self, command: DbtCommand, on_event: EventCallback | None = None) -> Outcome:
        errors: list[str] = []

        def on_line(event: Mapping[str, Any]) -> None:
            info = event.get("info") or {}
            message = str(info.get("msg", ""))
            if message and info.get("level") != "debug":
                print(message, flush=True)  # dbt's own log lines, into the task log
            if info.get("level") == "error" and message:
                errors.append(message)
            name = str(info.get("name", ""))
            if on_event is not None and name in TRACKED_EVENTS:
                on_event(name, event.get("data") or {})

        code = self._stream(command, on_line)
        if code in (0, 1):  # 1: dbt ran and some nodes, tests or hooks failed
            return Outcome(ran=True, exit_code=code)
        return Outcome(ran=False, error="\n".join(errors[-5:]) or f"dbt exited with code {code}", exit_code=code)

    def list_ids(self, command: DbtCommand) -> list[str]:
        found: list[str] = []

        def on_event(event: Mapping[str, Any]) -> None:
            # `dbt ls` prints one JSON object per node (a PrintEvent in structured logs).
            message = str((event.get("data") or {}).get("msg", ""))
            if (event.get("info") or {}).get("name") in ("ListCmdOut", "PrintEvent") and message.startswith("{"):
                found.append(json.loads(message)["unique_id"])

        ls = command.with_(
            command="ls", extra_args=(*command.extra_args, "--output", "json", "--output-keys", "unique_id")
        )
        if self._stream(ls, on_event) != 0:
            raise RuntimeError("dbt ls failed; see the dbt log lines above")
        return found

    def _stream(self, command: DbtCommand, on_event: Callable[[Mapping[str, Any]], None]) -> int:
        # NodeFinished is a debug-level event: ask for debug events, print only the rest.
        args = [self.executable, *command.args(), "--log-format", "json", "--log-level", "debug"]
        log.info("Running %s", " ".join(args))
        with subprocess.Popen(
            args, cwd=command.project_dir, env=self.env, stdout=subprocess.PIPE, stderr=sys.stderr, text=True
        ) as process:
            try:
                assert process.stdout is not None
                for line in process.stdout:
                    try:
                        event = json.loads(line)
                    except ValueError:
                        print(line, end="", flush=True)
                        continue
                    if isinstance(event, dict):
                        on_event(event)
            except BaseException:
                # Killed or timed out: take dbt down with us rather than leave it building.
                process.send_signal(signal.SIGTERM)
                raise
            return process.wait()


Runner = InProcessDbt | SubprocessDbt
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
    with_secrets: bool = True,
) -> Iterator[tuple[DbtProject, Runner]]:
    """The project and the runner for this task's dbt invocations.

    With ``connection_id`` the project points at a profile rendered from the Airflow connection,
    whose secrets dbt reads from the environment for the duration of the session (DAG parsing
    passes ``with_secrets=False``: parsing never connects). ``env`` (the group's ``env=``) is set for
    the session too, in this process and in a dbt subprocess's environment.
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
            project = _writable(project)
            if needs_deps(project):  # a copy made by an earlier session has its packages already
                outcome = runner.run(project.command("deps"))
                if not outcome.ran:
                    raise RuntimeError(f"dbt deps failed: {outcome.error}")
        yield project, runner


def _mask_env_secrets(env: Mapping[str, str]) -> None:
    """Airflow masks the values of ``env=`` (and of a connection's rendered secrets) whose names are
    secret (:func:`dbt_watcher.project.secrets.is_secret_name`), a JSON value's fields too."""
    from airflow.sdk.log import mask_secret

    from dbt_watcher.project.connection_profiles import JSON_PREFIX
    from dbt_watcher.project.secrets import is_secret_name

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

    from dbt_watcher.project.secrets import profile_secrets

    for secret in profile_secrets(project.profiles_dir):
        mask_secret(secret)


def _writable(project: DbtProject) -> DbtProject:
    """The project itself when dbt may write into it, else a copy it may (a read-only DAG bundle:
    ``dbt deps`` writes dbt_packages/ into the project). The copy lives in the graph cache's folder
    under a name derived from the project's path, so later sessions reuse its installed packages."""
    if os.access(project.project_dir, os.W_OK):
        return project
    import hashlib
    import shutil

    from dbt_watcher.project.project import default_cache_dir

    name = hashlib.sha256(str(project.project_dir).encode()).hexdigest()[:16]
    copy = default_cache_dir() / "projects" / f"{project.project_dir.name}-{name}"
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
