"""Helpers for the fault scenarios: run a DAG, read what each task and each dbt node did."""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.parse
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TypeVar

from devstack.stack import AirflowStack

T = TypeVar("T")

_START = re.compile(r"\d+ of \d+ START (?:sql|python|seed|snapshot)[\w ]*? (?:model|file|snapshot) ([\w.-]+)")


@dataclass
class Outcome:
    dag_id: str
    run_id: str
    state: str
    states: dict[str, str | None]

    def group(self, prefix: str = "shop.") -> dict[str, str | None]:
        return {k[len(prefix) :]: v for k, v in self.states.items() if k.startswith(prefix)}


def assert_all_green(stack: AirflowStack, outcome: Outcome) -> None:
    """The run and every task succeeded; if not, the message says which task ended how, and why."""
    if outcome.state == "success" and all(s == "success" for s in outcome.states.values()):
        return
    raise AssertionError(f"run {outcome.run_id} of {outcome.dag_id} ended {outcome.state}:\n{explain(stack, outcome)}")


def explain(stack: AirflowStack, outcome: Outcome, lines: int = 25) -> str:
    """Each task that did not succeed, with the end of its latest try's log: a CI failure says why."""
    parts = []
    for task_id, state in sorted(outcome.states.items()):
        if state == "success":
            continue
        try_number = max((t[0] for t in tries(stack, outcome.dag_id, outcome.run_id, task_id)), default=1)
        try:
            tail = stack.task_log(outcome.dag_id, outcome.run_id, task_id, try_number).splitlines()[-lines:]
        except Exception as exc:  # a diagnostic must never hide the failure it explains
            tail = [f"(no log: {exc})"]
        parts.append(f"--- {task_id}: {state} (try {try_number})\n" + "\n".join(tail))
    return "\n".join(parts) or "every task succeeded"


def trigger(stack: AirflowStack, dag_id: str, conf: Mapping[str, object] | None = None) -> str:
    stack.wait_for_dags([dag_id])
    return stack.trigger(dag_id, conf=conf or {})


def finish(stack: AirflowStack, dag_id: str, run_id: str, timeout: float = 300) -> Outcome:
    state = stack.wait_for_run(dag_id, run_id, timeout=timeout)
    return Outcome(dag_id, run_id, state, stack.task_states(dag_id, run_id))


def run(stack: AirflowStack, dag_id: str, conf: Mapping[str, object] | None = None, timeout: float = 300) -> Outcome:
    return finish(stack, dag_id, trigger(stack, dag_id, conf), timeout)


def artifacts(stack: AirflowStack, outcome: Outcome, group: str = "shop") -> Path:
    """The run's artifacts folder (from the producer's invocation record: present even when it failed)."""
    from .oracle import run_folder

    folder = run_folder(stack, outcome.dag_id, outcome.run_id, group)
    assert folder is not None, f"no dbt invocation record for run {outcome.run_id}"
    return folder


def builds(folder: Path) -> Counter[str]:
    """How many times dbt started each relation in this run (producer attempts and consumer rebuilds),
    read from dbt's own logs, which exist even for an attempt killed before run_results.json."""
    counts: Counter[str] = Counter()
    for log_file in folder.rglob("dbt.log"):
        for match in _START.finditer(log_file.read_text(errors="replace")):
            counts[match.group(1).rsplit(".", 1)[-1]] += 1
    return counts


def wait_until(predicate: Callable[[], T | None], timeout: float = 120, every: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError("condition not met in time")


def tries(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> list[tuple[int, str, datetime | None]]:
    """(try number, state, end date) of every finished try of a task, oldest first."""
    rows = stack.sql(
        "select try_number, state, end_date from task_instance_history where dag_id=%s and run_id=%s and task_id=%s "
        "union all select try_number, state, end_date from task_instance where dag_id=%s and run_id=%s and task_id=%s "
        "order by 1",
        (dag_id, run_id, task_id, dag_id, run_id, task_id),
    )
    return [(int(r[0]), str(r[1]), r[2]) for r in rows]


def _reason(stack: AirflowStack, dag_id: str, run_id: str, task_id: str) -> str:
    quoted = urllib.parse.quote(run_id, safe="")
    path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/xcomEntries/dbt_reason"
    try:
        entry = stack.api("GET", path)
    except urllib.error.HTTPError:
        return ""
    return str(entry.get("value", ""))


def log_with(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, text: str, *, timeout: float = 30) -> str:
    """What the task tells a user about how it ended, once that holds ``text`` (else as it is after ``timeout``):
    its ``dbt_reason`` XCom, then its log.

    The XCom is written with the task's end state. A line its trigger logged reaches the log a moment after
    the task ended, and Airflow's triggerer can drop a trigger's last lines under load (apache/airflow#66158),
    which is why a consumer also keeps its reason in the XCom.
    """
    deadline = time.monotonic() + timeout
    while True:
        told = f"{_reason(stack, dag_id, run_id, task_id)}\n{stack.task_log(dag_id, run_id, task_id)}"
        if text in told or time.monotonic() > deadline:
            return told
        time.sleep(1)


def assert_logged(stack: AirflowStack, dag_id: str, run_id: str, task_id: str, text: str) -> str:
    """Assert that the task tells ``text`` (its reason XCom or its log, see log_with)."""
    told = log_with(stack, dag_id, run_id, task_id, text)
    assert text in told, f"{task_id} does not tell {text!r}; its reason and the end of its log:\n{told[-3000:]}"
    return told
