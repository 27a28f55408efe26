"""The one way a task runs dbt for its DAG run: the producer's build, a consumer's rebuild of its node and
the ``after_all`` tests task all make their commands here, so a rebuild can never run with other
arguments than the build it repeats.

Every command of a task try gets the run's ``vars`` (the run's :class:`~dbt_watcher.channel.records.Invocation`,
decided once by the producer), the try's own target folder, and plain log lines; a command that builds or
tests gets the run's ``dbt_args`` too, and ``build`` its ``full_refresh`` (``dbt test`` has no such flag).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbt_watcher.channel.records import Invocation
from dbt_watcher.invocation.command import DbtCommand, DbtProject
from dbt_watcher.invocation.events import InvocationEvents, NodeResult
from dbt_watcher.invocation.runners import Outcome, Runner
from dbt_watcher.invocation.selection import TestFacts, is_test
from dbt_watcher.rules.gating import gating

log = logging.getLogger(__name__)

#: The dbt commands that take the run's ``dbt_args`` (flags of a build, such as ``--fail-fast``).
RUN_COMMANDS = frozenset({"build", "test"})


@dataclass(frozen=True)
class TaskDbt:
    """dbt for one task try: its project as the session set it up, the runner, the run's arguments."""

    project: DbtProject
    runner: Runner
    invocation: Invocation
    #: This try's own dbt target folder (logs under ``logs/``).
    target_path: Path
    #: A lock file every dbt invocation against the same single-writer warehouse holds while it runs
    #: (DuckDB: one process may write a database file; None for warehouses that take many writers).
    writer_lock: Path | None = None

    def command(
        self,
        name: str,
        *,
        select: Sequence[str] = (),
        exclude: Sequence[str] = (),
        selector: str | None = None,
        threads: int | None = None,
        extra_args: Sequence[str] = (),
        target_path: Path | None = None,
    ) -> DbtCommand:
        """A dbt command of this run (see the module docstring); ``target_path`` for another folder."""
        folder = target_path or self.target_path
        run_args = self.invocation.dbt_args if name in RUN_COMMANDS else ()
        return self.project.command(
            name,
            select=tuple(select),
            exclude=tuple(exclude),
            selector=selector,
            threads=threads,
            target_path=folder,
            log_path=folder / "logs",
            extra_args=("--no-use-colors", *extra_args, *run_args),
        ).with_(vars=dict(self.invocation.vars), full_refresh=name == "build" and self.invocation.full_refresh)

    @staticmethod
    def events(
        *,
        attempt: int,
        on_node: Callable[[NodeResult], None] | None = None,
        on_start: Callable[[], None] | None = None,
        on_selection: Callable[[frozenset[str]], None] | None = None,
    ) -> InvocationEvents:
        """A reader of one invocation's events: ``on_node`` gets each node's final result, marked with
        ``attempt`` (0 for a consumer's own rebuild); ``on_selection`` what dbt selected."""
        return InvocationEvents(
            on_node=(lambda result: on_node(result.with_attempt(attempt))) if on_node is not None else None,
            on_start=on_start,
            on_selection=on_selection,
        )

    def run(self, command: DbtCommand, events: InvocationEvents | None = None) -> Outcome:
        with one_writer(self.writer_lock):
            return self.runner.run(command, on_event=events)

    def run_collecting(
        self, command: DbtCommand, *, attempt: int
    ) -> tuple[Outcome, dict[str, NodeResult], InvocationEvents]:
        """Run ``command``; return every node's final result, marked with ``attempt``, and the events read
        (with what dbt selected)."""
        results: dict[str, NodeResult] = {}
        events = self.events(attempt=attempt, on_node=lambda r: results.__setitem__(r.unique_id, r))
        return self.run(command, events), results, events

    def gates(self, selected: Iterable[str], positions: Mapping[str, int]) -> dict[str, dict[str, str]]:
        """For each selected node with a consumer (``positions``: node -> place in dbt's order), the
        selected tests that gate it (test id -> selector), by :mod:`dbt_watcher.rules.gating`.

        Raises:
            LookupError: a selected test is missing from the invocation's manifest: nothing then says which
                consumer it gates, so no consumer may go green on this selection.
        """
        tests = sorted(uid for uid in selected if is_test(uid))
        return selection_gates(selected, self.runner.test_facts(self.target_path, tests), positions)


@contextlib.contextmanager
def one_writer(lock: Path | None) -> Iterator[None]:
    """Hold ``lock`` (an exclusive file lock on this machine) while dbt runs: two consumer retries that
    rebuild at once, or a rebuild beside the next run's build, would otherwise both open a DuckDB file for
    writing and the second would fail with a lock error that says nothing about the node."""
    if lock is None:
        yield
        return
    lock.parent.mkdir(parents=True, exist_ok=True)
    with open(lock, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("Waiting for %s: another dbt invocation is writing to this single-writer warehouse", lock)
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def selection_gates(
    selected: Iterable[str], facts: Mapping[str, TestFacts], positions: Mapping[str, int]
) -> dict[str, dict[str, str]]:
    """For each selected node with a consumer, the selected tests that gate it, from the tests' ``facts``.

    Raises:
        LookupError: a selected test has no facts: nothing then says which consumer it gates.
    """
    ids = set(selected)
    missing = sorted(uid for uid in ids if is_test(uid) and uid not in facts)
    if missing:
        raise LookupError(f"{len(missing)} selected tests are not in the invocation's manifest: {missing[:5]}")
    gates, _ungated = gating((facts[uid] for uid in sorted(ids) if is_test(uid)), positions)
    return {uid: gates.get(uid, {}) for uid in sorted(ids) if uid in positions}


def closing_selection(run_results: Mapping[str, Any] | None) -> frozenset[str] | None:
    """What an invocation selected, from its closing record (every node of its run_results.json), for a dbt
    that did not report its selection live; None without a closing record."""
    if run_results is None:
        return None
    ran = {str(r.get("unique_id")) for r in run_results.get("results") or [] if isinstance(r, Mapping)}
    return frozenset(uid for uid in ran if not uid.startswith("operation."))
