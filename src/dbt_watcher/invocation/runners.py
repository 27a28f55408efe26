"""Two ways to run dbt, one contract: in this process (dbtRunner), or as a subprocess of another
virtualenv (``dbt_executable=``) whose structured JSON logs carry the same ``NodeFinished`` events.

Both feed :func:`dbt_watcher.invocation.events.node_result_from_event`, so the producer, the consumers' own
rebuilds and the status channel cannot tell which one ran.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbt_watcher.invocation.command import DbtCommand, describe_failure, exit_code, run_dbt
from dbt_watcher.invocation.events import TRACKED_EVENTS, UNMATCHED_SELECTION_EVENT, EventCallback
from dbt_watcher.invocation.selection import TestFacts, facts_from_file, facts_from_manifest

#: Runs dbt in another virtualenv's Python and reports the selection (dbt_watcher/invocation/driver.py).
DRIVER = Path(__file__).with_name("driver.py")

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

    def parsed_env_vars(self) -> dict[str, str] | None:
        """The environment variables dbt read while parsing, with their values (dbt's own record, the one
        its partial parsing checks); None before :meth:`prepare`. Secret ones (``DBT_ENV_SECRET_*``) dbt
        does not record."""
        if self._manifest is None:
            return None
        return {str(k): str(v) for k, v in (getattr(self._manifest, "env_vars", None) or {}).items()}

    def run(self, command: DbtCommand, on_event: EventCallback | None = None) -> Outcome:
        result = run_dbt(command, on_event=on_event, manifest=self._manifest)
        code = exit_code(result)
        # Commands that run nodes return their results even when some failed; others (deps) none.
        if result.result is None and not result.success:
            return Outcome(ran=False, error=describe_failure(result), exit_code=code)
        return Outcome(ran=True, exit_code=code)

    def test_facts(self, target_path: Path, test_ids: Iterable[str]) -> dict[str, TestFacts]:
        """What the selected tests check: from the parsed manifest in memory, else the build's manifest.json."""
        if self._manifest is not None:
            return facts_from_manifest(self._manifest, test_ids)
        return facts_from_file(target_path, test_ids)

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
        #: The virtualenv's Python, which runs dbt through the driver (it reports the selection).
        self.python = venv_python(self.executable)

    def prepare(self, command: DbtCommand) -> Outcome:
        return Outcome(ran=True)  # each subprocess parses for itself (with partial parsing)

    def parsed_env_vars(self) -> dict[str, str] | None:
        """Unknown: dbt's record of the environment it read stays in the other virtualenv's process."""
        return None

    def test_facts(self, target_path: Path, test_ids: Iterable[str]) -> dict[str, TestFacts]:
        """What the selected tests check, from the manifest.json the build wrote before its first node."""
        return facts_from_file(target_path, test_ids)

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

    def list_ids(self, command: DbtCommand, on_unmatched: Callable[[str], None] | None = None) -> list[str]:
        """The unique ids `dbt ls` lists; ``on_unmatched`` gets each selection criterion dbt says
        matches no enabled node."""
        found: list[str] = []

        def on_event(event: Mapping[str, Any]) -> None:
            # `dbt ls` prints one JSON object per node (a PrintEvent in structured logs).
            data = event.get("data") or {}
            message = str(data.get("msg", ""))
            name = (event.get("info") or {}).get("name")
            if name in ("ListCmdOut", "PrintEvent") and message.startswith("{"):
                found.append(json.loads(message)["unique_id"])
            elif name == UNMATCHED_SELECTION_EVENT and on_unmatched is not None:
                on_unmatched(str(data.get("spec_raw", "")))

        ls = command.with_(
            command="ls", extra_args=(*command.extra_args, "--output", "json", "--output-keys", "unique_id")
        )
        if self._stream(ls, on_event) != 0:
            raise RuntimeError("dbt ls failed; see the dbt log lines above")
        return found

    def _stream(self, command: DbtCommand, on_event: Callable[[Mapping[str, Any]], None]) -> int:
        # NodeFinished is a debug-level event: ask for debug events, print only the rest.
        start = [self.python, "-c", DRIVER.read_text()] if self.python is not None else [self.executable]
        args = [*start, *command.args(), "--log-format", "json", "--log-level", "debug"]
        log.info("Running %s", " ".join([self.executable, *args[len(start) :]]))
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


def venv_python(executable: str) -> str | None:
    """The Python interpreter of a dbt console script (its ``#!`` line, or ``python`` beside it); None for
    a dbt that is not a Python script, which then runs as it is and reports no selection."""
    path = Path(executable)
    try:
        with open(path, "rb") as fh:
            first = fh.readline(512).decode(errors="replace").strip()
    except OSError:
        return None
    if first.startswith("#!") and "python" in first.rsplit("/", 1)[-1]:
        interpreter = first[2:].split()[0]
        if os.access(interpreter, os.X_OK):
            return interpreter
    beside = path.parent / "python"
    return str(beside) if first.startswith("#!") and os.access(beside, os.X_OK) else None


Runner = InProcessDbt | SubprocessDbt
