"""The verdict oracle: every task's end state against dbt's own verdict for that run.

dbt is the judge. For a run of a group, read what dbt wrote for it — the run's unified
run_results.json (every producer attempt, the latest result per node; for an attempt killed before dbt
wrote it, the results dbt's own log reports), each consumer's own rebuild
(local/<task>/try-N/run_results.json), the latest attempt's run_results.json for dbt's exit, and the
manifest for which tests check which node — and assert:

* a consumer is green ⟺ dbt's final status of its node is success and every test written on that
  node (``attached_node``; a singular test gates its only parent) that this run's dbt invocation
  selected passed or warned, run by the producer attempt that built the node or a later one (a test of
  an earlier attempt checked what the later build replaced). What the invocation selected is what its
  closing record lists (dbt's run_results.json names every selected node, run or not); where an attempt
  left no closing record, every test written on the node counts;
* the producer is green ⟺ the run's dbt invocation exited 0 (no error, fail, skipped or partial
  success result, no failed hook: dbt's ``interpret_results``), or — for a producer attempt that built
  nothing — every consumer is green, or dbt reported no node and every consumer is skipped (a run
  whose nodes were all left out: ``skip_unchanged``, a narrowed selection);
* the audit task, when there is one, is green (it found no consumer green without dbt's success).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack.stack import AirflowStack

from .conftest import xcom
from .scenario import Outcome, explain

SUCCESS, TEST_OK = "success", frozenset({"pass", "warn", "success"})
NOT_CLEAN = frozenset({"error", "fail", "skipped", "partial success", "runtime error"})


@dataclass
class DbtVerdict:
    """What dbt wrote for one run of one group."""

    folder: Path | None
    status: dict[str, str] = field(default_factory=dict)  # unique id -> final status
    clean_exit: bool = False
    names: dict[str, str] = field(default_factory=dict)  # node name (with _v<version>) -> unique id
    gating: dict[str, list[str]] = field(default_factory=dict)  # node -> tests written on it
    rebuilt: dict[str, dict[str, str]] = field(default_factory=dict)  # task id -> its own rebuild's statuses
    #: An attempt left no closing record: what it selected is unknown, every test written on a node counts.
    selection_unknown: bool = False
    #: unique id -> the producer attempt whose result it is (the latest that reported it)
    attempt_of: dict[str, int] = field(default_factory=dict)

    def node_green(self, uid: str, task: str) -> bool:
        rebuilt = self.rebuilt.get(task, {})
        statuses = {**self.status, **rebuilt}
        tests = [t for t in self.gating.get(uid, []) if self.selection_unknown or t in statuses]

        def proves(test: str) -> bool:
            # A test run by an earlier producer attempt than the one that built the node checked what that
            # build replaced: it proves nothing about it (a consumer's own rebuild is the latest word).
            later = test in rebuilt or uid in rebuilt or self.attempt_of.get(test, 0) >= self.attempt_of.get(uid, 0)
            return statuses.get(test) in TEST_OK and later

        return statuses.get(uid) == SUCCESS and all(proves(t) for t in tests)


def run_folder(
    stack: AirflowStack, dag_id: str, run_id: str, group: str, producer: str = "dbt_producer"
) -> Path | None:
    """The run's artifacts folder, from the producer's invocation record (present once dbt started)."""
    try:
        record = xcom(stack, dag_id, run_id, f"{group}.{producer}", key="dbt_watcher.invocation")
    except Exception:
        return None
    where = record.get("artifacts") if isinstance(record, dict) else None
    return Path(where.removeprefix("file://")) if where else None


def _results(path: Path) -> list[dict[str, Any]]:
    return list(json.loads(path.read_text()).get("results", [])) if path.is_file() else []


def _manifest(folder: Path, attempts: list[Path]) -> dict[str, Any]:
    for candidate in (folder / "manifest.json", *(a / "manifest.json" for a in reversed(attempts))):
        if candidate.is_file():
            return dict(json.loads(candidate.read_text()))
    return {}


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# dbt's result line, e.g. "3 of 12 OK created sql table model main.orders .... [OK in 0.05s]",
# "7 of 12 FAIL 2 not_null_orders_id .... [FAIL 2 in 0.02s]" (dbt/task/printer.py, dbt/events/types.py)
_RESULT_LINE = re.compile(r"\d+ of \d+ (OK|PASS|WARN|FAIL|ERROR|SKIP)\b(?: \d+)?\s+(?:.*\s)?(\w[\w.-]*?)\s*\.*\s*\[")
_LOGGED_STATUS = {"OK": "success", "PASS": "pass", "WARN": "warn", "FAIL": "fail", "ERROR": "error", "SKIP": "skipped"}


def _logged_results(log_file: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """Final statuses of the nodes dbt's log says finished (for an attempt that left no run_results)."""
    by_name: dict[str, str] = {}
    for uid, node in (manifest.get("nodes") or {}).items():
        by_name.setdefault(node["name"], uid)
        if node.get("alias"):
            by_name.setdefault(node["alias"], uid)
    found: dict[str, str] = {}
    if not log_file.is_file():
        return found
    for line in _ANSI.sub("", log_file.read_text(errors="replace")).splitlines():
        match = _RESULT_LINE.search(line)
        if match:
            uid = by_name.get(match.group(2).rsplit(".", 1)[-1])
            if uid is not None:
                found[uid] = _LOGGED_STATUS[match.group(1)]
    return found


def dbt_verdict(stack: AirflowStack, outcome: Outcome, group: str, producer: str = "dbt_producer") -> DbtVerdict:
    folder = run_folder(stack, outcome.dag_id, outcome.run_id, group, producer)
    if folder is None:
        return DbtVerdict(None)
    attempts = sorted(folder.glob("attempt-*"), key=lambda p: int(p.name.split("-")[1]))
    manifest = _manifest(folder, attempts)
    # an attempt killed before dbt wrote run_results.json: dbt's own log has what finished
    killed: dict[str, str] = {}
    attempt_of: dict[str, int] = {}
    for attempt in attempts:
        if (attempt / "run_results.json").is_file():
            reported = {r["unique_id"]: r["status"] for r in _results(attempt / "run_results.json")}
        else:
            reported = _logged_results(attempt / "logs" / "dbt.log", manifest)
            killed.update(reported)
        attempt_of.update(dict.fromkeys(reported, int(attempt.name.split("-")[1])))
    unified = {r["unique_id"]: r["status"] for r in _results(folder / "run_results.json")}
    unrecorded = any(not (attempt / "run_results.json").is_file() for attempt in attempts)
    verdict = DbtVerdict(folder, {**killed, **unified}, selection_unknown=unrecorded, attempt_of=attempt_of)
    if attempts:
        latest = _results(attempts[-1] / "run_results.json")
        verdict.clean_exit = bool(latest) and not any(r["status"] in NOT_CLEAN for r in latest)
    for uid, node in (manifest.get("nodes") or {}).items():
        if node["resource_type"] in ("model", "seed", "snapshot"):
            version = node.get("version")
            verdict.names[node["name"] + (f"_v{version}" if version is not None else "")] = uid
        elif node["resource_type"] == "test":
            parents = [p for p in node["depends_on"]["nodes"] if p.split(".")[0] in ("model", "seed", "snapshot")]
            owner = node.get("attached_node") or (
                parents[0] if len(parents) == 1 and not node.get("test_metadata") else None
            )
            if owner:
                verdict.gating.setdefault(owner, []).append(uid)
    for task_dir in (folder / "local").glob("*") if (folder / "local").is_dir() else []:
        tries = sorted(task_dir.glob("try-*"), key=lambda p: int(p.name.split("-")[1]))
        if tries:
            verdict.rebuilt[task_dir.name] = {
                r["unique_id"]: r["status"] for r in _results(tries[-1] / "run_results.json")
            }
    return verdict


def assert_verdicts(
    stack: AirflowStack,
    outcome: Outcome,
    group: str = "shop",
    *,
    gating: bool = True,
    producer: str = "dbt_producer",
    task_nodes: Mapping[str, str] | None = None,
) -> DbtVerdict:
    """Every task of ``group`` agrees with dbt (see the module docstring); the message says who does not.

    ``gating=False``: the group's tests do not gate consumers (``test_behavior`` none/after_all/after_each).
    ``producer`` and ``task_nodes`` (consumer task id in the group -> node unique id, every other task being
    a test task) for a group that names its tasks otherwise (a translator).
    """
    verdict = dbt_verdict(stack, outcome, group, producer)
    if not gating:
        verdict.gating = {}
    prefix = f"{group}."
    wrong = []
    consumers = {t: s for t, s in outcome.states.items() if t.startswith(prefix)}
    all_green = True
    counted: set[str] = set()  # the consumers judged, by task id
    for task_id, state in sorted(consumers.items()):
        name = task_id[len(prefix) :]
        if name in (producer, "dbt_audit", "dbt_tests") or name.endswith("_tests"):
            continue
        if task_nodes is not None and name not in task_nodes:
            continue  # a test task of the translator's naming
        uid = (task_nodes if task_nodes is not None else verdict.names).get(name)
        counted.add(task_id)
        green = state == "success"
        all_green &= green
        dbt_green = uid is not None and verdict.node_green(uid, task_id)
        if green != dbt_green and not (state == "skipped" and verdict.status.get(uid or "") is None):
            wrong.append(f"{task_id}: {state}, dbt: {verdict.status.get(uid or '', 'no result')}")
    state = outcome.states.get(f"{prefix}{producer}")
    # dbt built nothing and reported no node: a run whose every node was left out (skip_unchanged, a
    # narrowed selection) ends green with every consumer skipped, each skip judged above.
    built_nothing = not verdict.status and all(s == "skipped" for t, s in consumers.items() if t in counted)
    if state == "success" and not (verdict.clean_exit or all_green or built_nothing):
        wrong.append(f"{prefix}{producer}: green, but dbt did not exit 0 and not every node is green")
    if state != "success" and verdict.clean_exit:
        wrong.append(f"{prefix}{producer}: {state}, although dbt exited 0")
    if f"{prefix}dbt_audit" in outcome.states and outcome.states[f"{prefix}dbt_audit"] != "success":
        wrong.append(f"{prefix}dbt_audit: {outcome.states[f'{prefix}dbt_audit']} (it found a disagreement)")
    if wrong:
        raise AssertionError(
            f"run {outcome.run_id} of {outcome.dag_id} disagrees with dbt:\n"
            + "\n".join(wrong)
            + "\n"
            + explain(stack, outcome)
        )
    return verdict
