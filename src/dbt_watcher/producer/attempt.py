"""One producer attempt that runs dbt: narrow the run, build it once, publish everything, close it.

Kept apart from the operator so the order of events reads top to bottom: narrow the run (source
freshness, a templated ``select``, changed sources), announce left-out nodes, run the one dbt
invocation while results stream into the channel, publish dbt's closing record, fold the artifacts.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbt_watcher.channel.channel import StatusChannel
from dbt_watcher.channel.records import RunStatus
from dbt_watcher.channel.wire import FAILED, FINISHED
from dbt_watcher.channel.writer import ChannelWriter
from dbt_watcher.errors import DbtInvocationError
from dbt_watcher.invocation.events import NodeResult
from dbt_watcher.invocation.runners import read_freshness
from dbt_watcher.producer.closing import FAIL_FAST_ARGS, SkipExplainer, closing_record, hook_problems, verdict
from dbt_watcher.producer.ledger import AttemptRecord, Ledger, LedgerBook
from dbt_watcher.producer.narrowing import Narrowing, RunScope
from dbt_watcher.producer.selection import SelectionPublisher
from dbt_watcher.producer.unchanged import BuildStateKeeper
from dbt_watcher.rules.artifacts import (
    partial_parse_cache,
    publish_attempt,
    read_run_results,
    save_partial_parse,
)

if TYPE_CHECKING:
    from dbt_watcher.invocation.command import DbtCommand
    from dbt_watcher.runtime.group_runtime import GroupRuntime
    from dbt_watcher.runtime.task_dbt import TaskDbt

log = logging.getLogger(__name__)

#: Up to this many left-out nodes are logged one per line; more are summed up by reason.
LEFT_OUT_LINES = 30


@dataclass(frozen=True)
class AttemptOutcome:
    """What one attempt leaves behind."""

    results: Mapping[str, NodeResult]
    ledger: Ledger
    record: AttemptRecord


@dataclass
class Attempt:
    """Everything one producer attempt needs to run dbt."""

    rt: GroupRuntime
    #: dbt for this attempt: the session's project and runner, the run's arguments, the attempt's folder.
    dbt: TaskDbt
    channel: StatusChannel
    book: LedgerBook
    ledger: Ledger
    number: int
    run_path: Path
    previous: RunStatus | None
    #: This try's writer, started by the producer (it already carries ``previous``).
    writer: ChannelWriter
    _started: threading.Lock = field(default_factory=threading.Lock)

    @property
    def target_path(self) -> Path:
        return self.dbt.target_path

    def command(self, name: str, **options: Any) -> DbtCommand:
        """A dbt command of this attempt (:meth:`dbt_watcher.runtime.task_dbt.TaskDbt.command`)."""
        return self.dbt.command(name, **options)

    def run(
        self,
        plan: Sequence[str],
        *,
        select: tuple[str, ...] = (),
        narrowing: Narrowing | None = None,
        selectors: Mapping[str, str] | None = None,
        unchanged: BuildStateKeeper | None = None,
    ) -> AttemptOutcome:
        """Build ``select`` (explicit node selectors), or the group's selection narrowed by ``narrowing``
        and, with ``unchanged`` (``skip_unchanged``), less what needs no build."""
        scope = RunScope(tuple(plan))
        # A node an earlier attempt announced as left out stays out: its consumer may have ended on it.
        for earlier in self.previous.results.values() if self.previous is not None else ():
            if earlier.excluded:
                scope.exclude((earlier.unique_id,), earlier.message or "left out of this run")
        if (narrowing is not None and narrowing.active) or unchanged is not None:
            self._prepare()
        if narrowing is not None and narrowing.active:
            self._narrow(scope, narrowing)
        skipped = unchanged.plan_run(self.dbt, scope.built) if unchanged is not None else {}
        for uid, build in skipped.items():
            scope.exclude((uid,), build.reason)
        if scope.narrowed and not select:  # a retry that resumes keeps its own selection
            select = tuple((selectors or {})[uid] for uid in scope.built)
        self.ledger = self.book.save(self.ledger.record(AttemptRecord(self.number)))
        writer = self.writer
        writer.set_head(final_only=self.fail_fast)
        results: dict[str, NodeResult] = dict(self.previous.results) if self.previous is not None else {}
        left = scope.results()
        for left_out in left:
            results[left_out.unique_id] = left_out.with_attempt(self.number)
            writer.publish(left_out)
            if len(left) <= LEFT_OUT_LINES:
                log.info("Left out of this run: %s (%s)", left_out.unique_id, left_out.message)
        if len(left) > LEFT_OUT_LINES:
            reasons = Counter(r.message for r in left)
            log.info(
                "Left out of this run: %d nodes; %s",
                len(left),
                "; ".join(f"{n}: {m}" for m, n in reasons.most_common(5)),
            )
        if scope.narrowed and not scope.built:
            log.info("Nothing to build in this run.")
            save_partial_parse(self.target_path, self._parse_cache)
            return self._close(writer, results, exit_code=0, problem=None, dbt_ran=False)
        outcome = self._build(writer, results, select)
        if self.rt.config.docs:
            self.generate_docs()
        return outcome

    @property
    def fail_fast(self) -> bool:
        """dbt stops at the first failure: its closing record, not the live events, is final."""
        flags = self.dbt.project.project_yml().get("flags") or {}
        return (
            bool(FAIL_FAST_ARGS & set(self.dbt.invocation.dbt_args))
            or os.environ.get("DBT_FAIL_FAST", "").lower() in ("1", "true", "yes")
            or (isinstance(flags, Mapping) and flags.get("fail_fast") is True)
        )

    def _prepare(self) -> None:
        """Parse once for the narrowing steps and the build, from the last run's parse state (as the build does)."""
        outcome = self.dbt.runner.prepare(self.command("parse", extra_args=self._parse_state()))
        if not outcome.ran:
            raise DbtInvocationError(f"dbt could not parse the project: {outcome.error}")

    @property
    def _parse_cache(self) -> Path:
        """The project's partial-parse state kept between runs."""
        return partial_parse_cache(self.rt.cache_dir, self.rt.project_key)

    def _parse_state(self) -> list[str]:
        """Each attempt gets a fresh target folder: dbt parses from the last run's state (or the project's own
        target/), so it starts as fast as `dbt build` in the project folder would."""
        return _parse_from(self._parse_cache, self.dbt.project.project_dir / "target" / "partial_parse.msgpack")

    def _narrow(self, scope: RunScope, narrowing: Narrowing) -> None:
        rt = self.rt
        if narrowing.freshness:
            self._check_freshness(scope)
        if narrowing.select:
            ids = self.dbt.runner.list_ids(
                self.command("ls", select=tuple(narrowing.select.split()), exclude=rt.selection.exclude)
            )
            scope.keep_only(ids, f"not selected in this run (select={narrowing.select!r})")
        if narrowing.changed_sources is not None:
            changed = narrowing.changed_sources
            ids = self.dbt.runner.list_ids(self.command("ls", select=[f"{s}+" for s in changed])) if changed else []
            scope.keep_only(ids, "none of the sources it reads changed in the asset events that triggered this run")

    def _check_freshness(self, scope: RunScope) -> None:
        rt = self.rt
        sources = dict(rt.freshness_sources_by_id)
        self.dbt.run(self.command("source freshness", select=tuple(sources.values())))  # it connects: the lock
        results = read_freshness(self.target_path)
        if not results:
            log.warning("dbt source freshness reported no results; nothing is left out")
            return
        assert rt.freshness_policy is not None
        for source_id, reason in rt.freshness_policy(results).items():
            if source_id in sources:
                log.warning("%s; leaving out the nodes that read it", reason)
                scope.exclude(self.dbt.runner.list_ids(self.command("ls", select=(f"{sources[source_id]}+",))), reason)

    def _on_dbt_start(self, writer: ChannelWriter) -> None:
        """dbt starts its first node: from now on this attempt may have changed the warehouse."""
        with self._started:
            try:
                self.channel.write_invocation(self.dbt.invocation)
                self.ledger = self.book.save(self.ledger.record(AttemptRecord(self.number, dbt_started=True)))
                writer.set_head(built=True)
            except Exception:
                # The ledger keeps an older record: a retry then treats this attempt as one that
                # built nothing and builds everything, never less.
                log.exception("Could not record that dbt started; a retry will build the whole selection")

    def _build(
        self,
        writer: ChannelWriter,
        results: dict[str, NodeResult],
        select: tuple[str, ...],
    ) -> AttemptOutcome:
        rt = self.rt
        extra = [*rt.exclude_tests, *self._parse_state()]
        selection = rt.selection
        command = self.command(
            "build",
            select=select or selection.select,
            exclude=selection.exclude,
            selector=None if select else selection.selector,
            threads=rt.config.threads,
            extra_args=extra,
        )
        skips = SkipExplainer(self.target_path)

        def on_node(result: NodeResult) -> None:
            if result.skipped and not result.message:
                result = replace(result, message=skips.explain(result.unique_id, events.failed))
            results[result.unique_id] = result
            writer.publish(result)

        selected = SelectionPublisher(self.dbt, writer, rt.consumer_positions)
        events = self.dbt.events(
            attempt=self.number,
            on_node=on_node,
            on_start=lambda: self._on_dbt_start(writer),
            on_selection=selected.on_selection,
        )
        log.info("dbt build of attempt %d runs in process %d", self.number, os.getpid())
        started = time.monotonic()
        try:
            outcome = self.dbt.run(command, events)
        except BaseException as exc:
            # Killed or crashed mid-build: tell consumers now rather than after a silent head. dbt may
            # have written its closing record before the end (an interrupted dbt writes it, then raises).
            try:
                self._publish_closing_record(writer, results)
            except Exception:
                log.exception("Could not read dbt's run_results.json after the producer stopped")
            finish_quietly(writer, f"the producer stopped: {type(exc).__name__}: {exc}")
            raise
        run_results = self._publish_closing_record(writer, results, selected)
        if not outcome.ran:
            error = outcome.error or "dbt could not run"
            what = "stopped after it started building" if events.started else "could not run"
            self._record(outcome.exit_code, f"dbt {what}: {error}", events.started)
            finish_quietly(writer, error, outcome.exit_code)
            raise DbtInvocationError(f"dbt build {what}: {error}")
        hooks = hook_problems(run_results)
        problem = None
        if outcome.exit_code:
            problem = verdict(results.values(), outcome.exit_code, hooks, None)
        publish_attempt(self.run_path, self.target_path)
        save_partial_parse(self.target_path, self._parse_cache)
        log_summary(results, time.monotonic() - started, self.run_path)
        return self._close(
            writer, results, exit_code=outcome.exit_code, problem=problem, dbt_ran=events.started, hooks=hooks
        )

    def _publish_closing_record(
        self, writer: ChannelWriter, results: dict[str, NodeResult], selected: SelectionPublisher | None = None
    ) -> Mapping[str, Any] | None:
        """Publish what dbt's run_results.json says differently from its live events (with ``--fail-fast``:
        every node's final status, which consumers wait for); ``selected`` takes the selection from it.

        dbt writes none when it raises instead of returning (dbt-duckdb 1.11 can, while ``--fail-fast``
        cancels the other threads' queries: ``Connection already closed!``) or is killed first. Then the
        live events are the last word this invocation gave on each node, so consumers stop waiting for a
        closing record and judge them; the tests it never ran still have no result, so they gate. A file
        that exists but cannot be read is not an absent one: consumers go on waiting for the closing
        record, and no node is green on its live events alone.
        """
        run_results = read_run_results(self.target_path)
        if selected is not None:
            selected.finish(run_results)
        if run_results is None:
            if (self.target_path / "run_results.json").exists():
                log.error("dbt's run_results.json of attempt %d cannot be read", self.number)
                return None
            if self.fail_fast:
                log.warning("dbt wrote no run_results.json: its live events are its last word on each node")
            writer.set_head(final_only=False)
            return None
        for final in closing_record(run_results, results, everything=self.fail_fast):
            results[final.unique_id] = final.with_attempt(self.number)
            writer.publish(final)
        return run_results

    def generate_docs(self) -> None:  # after _close: consumers never wait for the docs
        """``dbt docs generate --static`` for the group's selection into ``<run>/docs`` (``docs=True``):
        dbt's single-file site, ``static_index.html``, which the UI serves. A failure is logged, never
        raised (a task timeout still ends the producer: the docs count toward its execution_timeout)."""
        docs = self.run_path / "docs"
        started = time.monotonic()
        try:
            docs.mkdir(parents=True, exist_ok=True)
            # the build's parse: docs generate compiles without parsing again
            extra = ["--static", *_parse_from(self.target_path / "partial_parse.msgpack")]
            selection = self.rt.selection
            command = self.command(
                "docs generate",
                target_path=docs,
                select=selection.select,
                exclude=selection.exclude,
                selector=selection.selector,
                threads=self.rt.config.threads,
                extra_args=extra,
            )
            outcome = self.dbt.run(command)
        except Exception:
            log.exception("dbt docs generate failed; this run has no dbt docs")
            return
        took = time.monotonic() - started
        if not outcome.ran or outcome.exit_code:
            log.warning(
                "dbt docs generate failed after %.1f s (exit code %s): %s; this run has no dbt docs",
                took,
                outcome.exit_code,
                outcome.error,
            )
            return
        log.info("dbt docs generate: %.1f s, into %s", took, docs)

    def _close(
        self,
        writer: ChannelWriter,
        results: Mapping[str, NodeResult],
        *,
        exit_code: int | None,
        problem: str | None,
        dbt_ran: bool,
        hooks: list[str] | None = None,
    ) -> AttemptOutcome:
        record = self._record(exit_code, problem, dbt_ran)
        if dbt_ran:  # written again: the run's record survives anybody having emptied the channel
            self.channel.write_invocation(self.dbt.invocation)
        writer.finish(FINISHED, "; ".join(hooks) if hooks else None, exit_code)
        return AttemptOutcome(results, self.ledger, record)

    def _record(self, exit_code: int | None, problem: str | None, dbt_ran: bool) -> AttemptRecord:
        record = AttemptRecord(self.number, dbt_started=dbt_ran, exit_code=exit_code, problem=problem)
        self.ledger = self.book.save(self.ledger.record(record))
        return record


def log_summary(results: Mapping[str, NodeResult], seconds: float, run_path: Path | None) -> None:
    counts = Counter(r.status for r in results.values())
    text = ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) or "no node results"
    log.info("dbt build: %s in %.1f s%s", text, seconds, f"; artifacts in {run_path}" if run_path else "")
    for result in results.values():
        if result.problem:
            log.error("%s %s: %s", result.unique_id, result.status, result.message)


def finish_quietly(writer: ChannelWriter, error: str, exit_code: int | None = None) -> None:
    try:
        writer.finish(FAILED, error, exit_code)
    except Exception:
        log.exception("Could not mark the run failed in the status channel")


def _parse_from(*states: Path) -> list[str]:
    """dbt's argument to start from the first partial-parse state that exists (none: a full parse)."""
    found = next((state for state in states if state.is_file()), None)
    return ["--partial-parse-file-path", str(found)] if found is not None else []
