"""One producer attempt that runs dbt: decide what this run builds, build it once, publish everything.

Kept apart from the operator so the order of events reads top to bottom: narrow the run (source
freshness, a templated ``select``, changed sources), announce left-out nodes, run the one dbt
invocation while results stream into the channel, then fold the artifacts.
"""

from __future__ import annotations

import logging
import os
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbt_watcher.artifacts import attempt_dir, partial_parse_cache, publish_attempt, save_partial_parse
from dbt_watcher.config import heartbeat_interval
from dbt_watcher.errors import DbtInvocationError
from dbt_watcher.events import NodeResult
from dbt_watcher.runners import Runner, read_freshness
from dbt_watcher.scope import RunScope
from dbt_watcher.status import FAILED, FINISHED, RunStatus, StatusWriter

if TYPE_CHECKING:
    from dbt_watcher.airflow_io import AssetStateChannelStore
    from dbt_watcher.invocation import DbtCommand
    from dbt_watcher.project import DbtProject
    from dbt_watcher.run_args import RunArguments
    from dbt_watcher.runtime import GroupRuntime

log = logging.getLogger(__name__)


@dataclass
class Attempt:
    """Everything one producer attempt needs to run dbt."""

    rt: GroupRuntime
    project: DbtProject
    runner: Runner
    store: AssetStateChannelStore
    run_id: str
    number: int
    run_path: Path
    args: RunArguments
    previous: RunStatus | None

    @property
    def target_path(self) -> Path:
        return attempt_dir(self.run_path, self.number)

    def command(self, name: str, **options: Any) -> DbtCommand:
        """A dbt command of this attempt: the run's vars, this attempt's target folder."""
        options.setdefault("target_path", self.target_path)
        options.setdefault("log_path", self.target_path / "logs")
        return self.project.command(name, **options).with_(vars={**self.project.vars, **self.args.vars})

    def run(
        self, plan: Sequence[str], *, select: tuple[str, ...] = (), narrowing: Mapping[str, Any] | None = None
    ) -> dict[str, NodeResult]:
        """Build ``select`` (explicit node selectors), or the group's selection narrowed by ``narrowing``."""
        scope = RunScope(tuple(plan))
        if narrowing:
            self._prepare()
            self._narrow(scope, narrowing)
            if scope.narrowed:
                select = tuple(narrowing["selectors"][uid] for uid in scope.built)
        writer = StatusWriter(
            self.store, self.run_id, self.number, heartbeat_interval=heartbeat_interval(self.rt.poke_interval)
        )
        results: dict[str, NodeResult] = dict(self.previous.results) if self.previous is not None else {}
        if self.previous is not None:
            writer.carry_over(self.previous)
        writer.start()
        for left_out in scope.results():
            results[left_out.unique_id] = left_out.with_attempt(self.number)
            writer.publish(left_out)
            log.info("Left out of this run: %s (%s)", left_out.unique_id, left_out.message)
        if scope.narrowed and not scope.built:
            writer.finish(FINISHED)
            log.info("Nothing to build in this run.")
            return results
        return self._build(writer, results, select)

    def _prepare(self) -> None:
        outcome = self.runner.prepare(self.command("parse"))
        if not outcome.ran:
            raise DbtInvocationError(f"dbt could not parse the project: {outcome.error}")

    def _narrow(self, scope: RunScope, narrowing: Mapping[str, Any]) -> None:
        rt = self.rt
        if narrowing.get("freshness"):
            self._check_freshness(scope)
        if narrowing.get("select"):
            selected = narrowing["select"].split()
            ids = self.runner.list_ids(self.command("ls", select=tuple(selected), exclude=rt.selection.exclude))
            scope.keep_only(ids, f"not selected in this run (select={narrowing['select']!r})")
        if narrowing.get("changed_sources") is not None:
            changed = narrowing["changed_sources"]
            ids = self.runner.list_ids(self.command("ls", select=tuple(f"{s}+" for s in changed))) if changed else []
            scope.keep_only(ids, "none of the sources it reads changed in the asset events that triggered this run")

    def _check_freshness(self, scope: RunScope) -> None:
        rt = self.rt
        sources = dict(rt.freshness_sources_by_id)
        command = self.command("source freshness", select=tuple(sources.values()))
        self.runner.run(command)
        results = read_freshness(self.target_path)
        if not results:
            log.warning("dbt source freshness reported no results; nothing is left out")
            return
        assert rt.freshness_policy is not None
        stale = rt.freshness_policy(results)
        for source_id, reason in stale.items():
            if source_id not in sources:
                continue
            log.warning("%s; leaving out the nodes that read it", reason)
            scope.exclude(self.runner.list_ids(self.command("ls", select=(f"{sources[source_id]}+",))), reason)

    def _build(
        self, writer: StatusWriter, results: dict[str, NodeResult], select: tuple[str, ...]
    ) -> dict[str, NodeResult]:
        rt = self.rt
        cached_parse = partial_parse_cache(rt.cache_dir, rt.project_key)
        extra = ["--no-use-colors", *rt.exclude_tests, *self.args.dbt_args]
        # Each attempt gets a fresh target folder; parse from the last run's state (or the project's
        # own target/), so the build starts as fast as `dbt build` in the project folder would.
        for parse_state in (cached_parse, self.project.project_dir / "target" / "partial_parse.msgpack"):
            if parse_state.is_file():
                extra += ["--partial-parse-file-path", str(parse_state)]
                break
        selection = rt.selection
        command = self.command(
            "build",
            select=select or selection.select,
            exclude=selection.exclude,
            selector=None if select else selection.selector,
            threads=rt.threads,
            extra_args=tuple(extra),
        ).with_(full_refresh=self.args.full_refresh)

        def on_node(result: NodeResult) -> None:
            results[result.unique_id] = result.with_attempt(self.number)
            writer.publish(result)

        log.info("dbt build of attempt %d runs in process %d", self.number, os.getpid())
        started = time.monotonic()
        try:
            outcome = self.runner.run(command, on_node=on_node)
        except BaseException as exc:
            # Killed or crashed mid-build: tell consumers now rather than after a stale heartbeat.
            finish_quietly(writer, f"the producer stopped: {type(exc).__name__}: {exc}")
            raise
        if not outcome.ran:
            finish_quietly(writer, outcome.error or "dbt could not run")
            raise DbtInvocationError(f"dbt build could not run: {outcome.error}")
        writer.finish(FINISHED)
        publish_attempt(self.run_path, self.target_path)
        save_partial_parse(self.target_path, cached_parse)
        log_summary(results, time.monotonic() - started, self.run_path)
        return results


def log_summary(results: Mapping[str, NodeResult], seconds: float, run_path: Path | None) -> None:
    counts = Counter(r.status for r in results.values())
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no node results"
    log.info("dbt build: %s in %.1f s%s", text, seconds, f"; artifacts in {run_path}" if run_path else "")
    for result in results.values():
        if not (result.succeeded or result.skipped or result.excluded):
            log.error("%s %s: %s", result.unique_id, result.status, result.message)


def finish_quietly(writer: StatusWriter, error: str) -> None:
    try:
        writer.finish(FAILED, error)
    except Exception:
        log.exception("Could not mark the run failed in the status channel")
