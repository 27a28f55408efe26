"""What the producer learns from dbt after (or while) the invocation: the closing record, project-level
failures, why a node was skipped, and the one-line verdict of the build.

dbt's run_results.json is the invocation's final word. The live events agree with it except where dbt
changes its mind after a node finished (with ``--fail-fast`` it marks nodes that were cancelled, and
sometimes nodes that had already finished, ``skipped``) or never fires a node event at all (nodes
cancelled by ``--fail-fast``, nodes skipped because an ``on-run-start`` hook failed). The closing
record publishes every such difference, so the channel ends up holding dbt's final status of every
node (dbt-core 1.10-1.11, ``dbt/task/runnable.py`` ``execute_nodes`` and ``interpret_results``).
"""

from __future__ import annotations

import json
import logging
from collections import Counter, deque
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from dbt_watcher.invocation.events import NodeResult, NodeStatus, node_result_from_run_results

log = logging.getLogger(__name__)

#: Flags that make dbt stop at the first failure (dbt's ``--fail-fast``).
FAIL_FAST_ARGS = frozenset({"--fail-fast", "-x"})


def closing_record(
    run_results: Mapping[str, Any] | None, streamed: Mapping[str, NodeResult], *, everything: bool
) -> list[NodeResult]:
    """Results of run_results.json that the live stream did not carry, or carried differently.

    ``everything``: return every node's result (consumers wait for the closing record to decide).
    """
    found = []
    for entry in (run_results or {}).get("results") or []:
        uid = str(entry.get("unique_id", ""))
        if not uid or uid.startswith("operation."):
            continue
        final = node_result_from_run_results(entry)
        live = streamed.get(uid)
        if everything or live is None or live.status != final.status:
            if live is not None and live.status != final.status:
                log.warning(
                    "dbt's run_results.json says %s for %s; its live event said %s", final.status, uid, live.status
                )
            found.append(final)
    return found


def recover_attempt(target: Path, attempt: int) -> tuple[dict[str, NodeResult], int, str | None] | None:
    """An attempt's results, exit code and problem from its run_results.json (None: dbt wrote none).

    The exit code follows dbt's ``interpret_results``: 1 when any node, test or hook did not succeed.
    """
    from dbt_watcher.rules.artifacts import read_run_results

    document = read_run_results(target)
    if document is None:
        return None
    results = {r.unique_id: r.with_attempt(attempt) for r in closing_record(document, {}, everything=True)}
    hooks = hook_problems(document)
    bad = [r for r in results.values() if r.problem or r.skipped]
    exit_code = 1 if bad or hooks else 0
    return results, exit_code, verdict(results.values(), exit_code, hooks, None) if exit_code else None


def hook_problems(run_results: Mapping[str, Any] | None) -> list[str]:
    """Project hooks (``on-run-start``/``on-run-end``) that did not succeed, with dbt's message."""
    problems = []
    for entry in (run_results or {}).get("results") or []:
        uid = str(entry.get("unique_id", ""))
        if uid.startswith("operation.") and entry.get("status") not in (NodeStatus.SUCCESS, None):
            problems.append(f"{uid} {entry.get('status')}: {entry.get('message') or 'no message'}")
    return problems


def verdict(results: Iterable[NodeResult], exit_code: int | None, hooks: list[str], error: str | None) -> str:
    """One line saying why a dbt invocation did not exit 0 (what the producer task fails with)."""
    failed = [r for r in results if r.problem or r.skipped]
    counts = Counter(r.status for r in failed)
    parts = [f"dbt exited with code {exit_code}" if exit_code is not None else "dbt did not finish"]
    if counts:
        names = ", ".join(f"{r.unique_id} ({r.status})" for r in failed if not r.skipped)[:1500]
        parts.append(
            ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + (f": {names}" if names else "")
        )
    if hooks:
        parts.append("project hooks failed: " + "; ".join(hooks)[:1500])
    if error:
        parts.append(error[:1500])
    return "; ".join(parts)


class SkipExplainer:
    """Names the nodes and tests whose failure made dbt skip a node, from the attempt's manifest.json.

    dbt writes manifest.json before it runs the first node; the maps are read once, the first time a
    node is skipped (dbt itself only says "skipped").
    """

    def __init__(self, target: Path) -> None:
        self.target = target
        self._parents: Mapping[str, list[str]] | None = None
        self._children: Mapping[str, list[str]] = {}

    def _load(self) -> Mapping[str, list[str]]:
        if self._parents is None:
            try:
                with open(self.target / "manifest.json") as fh:
                    document = json.load(fh)
                self._parents = document.get("parent_map") or {}
                self._children = document.get("child_map") or {}
            except (OSError, ValueError) as exc:
                log.info("Cannot name why nodes were skipped: %s", exc)
                self._parents = {}
        return self._parents

    def explain(self, unique_id: str, failed: Mapping[str, str]) -> str | None:
        """The nearest upstream nodes or tests of ``unique_id`` in ``failed`` (uid -> dbt status)."""
        parents = self._load()
        causes: list[str] = []
        seen = {unique_id}
        queue = deque(parents.get(unique_id, ()))
        while queue and not causes:
            for _ in range(len(queue)):  # one generation of ancestors at a time: the nearest first
                uid = queue.popleft()
                if uid in seen:
                    continue
                seen.add(uid)
                if uid in failed:
                    causes.append(f"{uid} ({failed[uid]})")
                causes.extend(
                    f"{test} ({failed[test]})"
                    for test in self._children.get(uid, ())
                    if test in failed and test.split(".", 1)[0] in ("test", "unit_test")
                )
                queue.extend(parents.get(uid, ()))
        if not causes:
            return None
        return "dbt skipped it because " + ", ".join(sorted(set(causes))) + " upstream of it did not succeed"
