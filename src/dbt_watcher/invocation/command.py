"""Running dbt: the project a command runs in, one command description, and dbt in this process.

dbt runs with the project directory as its working directory, exactly as a person runs it by
hand, so relative paths in ``profiles.yml`` (a DuckDB file, say) mean the same thing in Airflow.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from dbt_watcher import compat
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.invocation.events import TRACKED_EVENTS, EventCallback
from dbt_watcher.invocation.selection import SELECTION_EVENT

if TYPE_CHECKING:
    from dbt.cli.main import dbtRunnerResult

log = logging.getLogger(__name__)

_CWD_LOCK = threading.Lock()


@dataclass(frozen=True)
class DbtProject:
    """Where a dbt project lives and which profile, target and vars run it: the values every dbt
    command of the project starts from (:mod:`dbt_watcher.project.locate` finds and checks them)."""

    project_dir: Path
    profiles_dir: Path
    profile: str | None = None
    target: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    #: Why no profiles.yml was found, when a prepared graph let DAG parsing go on without one
    #: (dbt_watcher.project.prepared); running dbt with this project raises it.
    missing_profiles: ConfigurationError | None = None

    def command(self, name: str, **options: Any) -> DbtCommand:
        """A dbt command for this project with its profile, target and vars."""
        return DbtCommand(
            command=name,
            project_dir=self.project_dir,
            profiles_dir=self.profiles_dir,
            profile=self.profile,
            target=self.target,
            vars=self.vars,
            **options,
        )

    def project_yml(self) -> dict[str, Any]:
        with open(self.project_dir / "dbt_project.yml") as fh:
            data = yaml.safe_load(fh) or {}
        return data if isinstance(data, dict) else {}


@dataclass(frozen=True)
class DbtCommand:
    """One dbt command line, built from the group's parameters."""

    command: str  # "build", "ls", "source freshness", ...
    project_dir: Path
    profiles_dir: Path | None = None
    profile: str | None = None
    target: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    threads: int | None = None
    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    selector: str | None = None
    full_refresh: bool = False
    target_path: Path | None = None
    log_path: Path | None = None
    extra_args: tuple[str, ...] = ()

    def with_(self, **changes: Any) -> DbtCommand:
        return replace(self, **changes)

    def args(self) -> list[str]:
        """The argument list for ``dbtRunner.invoke`` (or the dbt executable)."""
        args = [*self.command.split(), "--project-dir", str(self.project_dir)]
        if self.profiles_dir is not None:
            args += ["--profiles-dir", str(self.profiles_dir)]
        if self.profile:
            args += ["--profile", self.profile]
        if self.target:
            args += ["--target", self.target]
        if self.vars:
            args += ["--vars", json.dumps(dict(self.vars), sort_keys=True, default=str)]
        if self.threads is not None:
            args += ["--threads", str(self.threads)]
        if self.selector:
            args += ["--selector", self.selector]
        if self.select:
            args += ["--select", *self.select]
        if self.exclude:
            args += ["--exclude", *self.exclude]
        if self.full_refresh:
            args.append("--full-refresh")
        if self.target_path is not None:
            args += ["--target-path", str(self.target_path)]
        if self.log_path is not None:
            args += ["--log-path", str(self.log_path)]
        return args + list(self.extra_args)


@contextlib.contextmanager
def working_directory(path: Path) -> Iterator[None]:
    """Run dbt from the project directory; restore the previous one afterwards."""
    with _CWD_LOCK:
        previous = os.getcwd()
        os.chdir(path)
        try:
            yield
        finally:
            os.chdir(previous)


def _event_callback(on_event: EventCallback) -> Callable[[Any], None]:
    from google.protobuf.json_format import MessageToDict

    def callback(event: Any) -> None:
        # Called on dbt's worker threads for every event dbt fires: convert only the few we read. An
        # exception raised here would abort dbt's build, so none leaves.
        name = event.info.name
        try:
            if name == "ConcurrencyLine":  # dbt selected this invocation's nodes (invocation/selection.py)
                on_event(SELECTION_EVENT, {"unique_ids": compat.dbt_selected_resources()})
            elif name in TRACKED_EVENTS:
                on_event(name, MessageToDict(event.data, preserving_proto_field_name=True))
        except Exception:
            log.exception("dbt-watcher could not read dbt's %s event; the node's consumer will not go green", name)

    return callback


def run_dbt(command: DbtCommand, *, on_event: EventCallback | None = None, manifest: Any = None) -> dbtRunnerResult:
    """Invoke dbt in this process through ``dbtRunner`` and return its result object."""
    from dbt.cli.main import dbtRunner

    callbacks = [_event_callback(on_event)] if on_event is not None else []
    runner = dbtRunner(manifest=manifest, callbacks=callbacks)
    args = command.args()
    log.info("Running dbt %s", " ".join(args))
    with working_directory(command.project_dir):
        result = runner.invoke(args)
    # dbtRunner catches BaseException: a timeout or a termination Airflow raised in this process while dbt
    # ran (the DAG import timeout, a task's execution_timeout) is Airflow's to report, not a dbt failure.
    if result.exception is not None and not isinstance(result.exception, Exception):
        raise result.exception
    return result


def exit_code(result: dbtRunnerResult) -> int:
    """The exit code the dbt CLI gives for this result (``dbt/cli/main.py``: 0, 1 node failures, 2 error)."""
    if result.success:
        return 0
    return 1 if result.exception is None and result.result is not None else 2


def describe_failure(result: dbtRunnerResult) -> str:
    """A one-paragraph explanation of why a dbt invocation failed as a whole."""
    if result.exception is not None:
        return f"{type(result.exception).__name__}: {result.exception}"
    return "dbt reported a failure without an exception; see the dbt log lines above."
