"""Typed per-node results, derived from dbt's own events, and the tracker that reads one invocation.

dbt fires ``NodeStart`` and ``NodeFinished`` around every node it runs, on the thread that runs it.
The in-process runner hands us protobuf messages; dbt's structured JSON logs (``dbt_executable=``)
carry the same messages as dicts. Both go through :class:`InvocationEvents`, so every way of running
dbt yields the same results. What the tracker knows that a single event does not (dbt-core 1.10-1.11,
``dbt/task/runnable.py`` ``call_runner``, ``dbt/task/run.py``):

* a microbatch model runs each batch through the same start/finish pair, *nested inside* the model's
  own pair: only the ``NodeFinished`` that closes the outermost ``NodeStart`` is the node's final
  result (its status may be ``partial success``); per-batch results are never published;
* the first ``NodeStart`` is the moment dbt starts changing the warehouse (the producer records it);
* ``MarkSkippedChildren`` names each node or test whose failure made dbt skip what depends on it;
* project hooks (``on-run-start``/``on-run-end``) have no node events, only ``LogHookEndLine``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from dbt_watcher.invocation.selection import SELECTION_EVENT
from dbt_watcher.strenum import StrEnum


class NodeStatus(StrEnum):
    """A node's status in one dbt invocation: dbt's values, plus :attr:`EXCLUDED` of our own.

    The values are dbt's ``RunStatus``, ``TestStatus`` and ``FreshnessStatus``
    (``dbt/artifacts/schemas/results.py``). They are repeated here because the triggerer, which reads
    them, must not import dbt (seconds of import and hundreds of MB per process). A status this enum
    does not know is kept as the string dbt sent, and is neither success nor skipped.
    """

    SUCCESS = "success"
    ERROR = "error"
    SKIPPED = "skipped"
    PARTIAL_SUCCESS = "partial success"
    NO_OP = "no-op"
    PASS = "pass"
    FAIL = "fail"
    WARN = "warn"
    RUNTIME_ERROR = "runtime error"
    #: Ours: a node deliberately left out of this run (stale source, narrowed selection).
    EXCLUDED = "excluded"


#: "This node did what it should". ``warn`` is a test that passed with a warning-severity failure;
#: it never fails a task (it is logged instead).
SUCCESS_STATUSES = frozenset({NodeStatus.SUCCESS, NodeStatus.PASS, NodeStatus.WARN})
#: "dbt did not run this node" (an upstream node or test failed, or fail-fast).
SKIPPED_STATUSES = frozenset({NodeStatus.SKIPPED})
#: Statuses after which dbt skips everything downstream (``MARK_DEPENDENT_ERRORS_STATUSES``).
FAILURE_STATUSES = frozenset({NodeStatus.ERROR, NodeStatus.FAIL, NodeStatus.PARTIAL_SUCCESS, NodeStatus.RUNTIME_ERROR})
#: dbt's warning that a selection criterion matches no enabled node (a typo in select= or exclude=).
UNMATCHED_SELECTION_EVENT = "NoNodesForSelectionCriteria"
#: The dbt events the tracker and the parse's selection read; the in-process runner converts only these
#: from protobuf. The selection event is the runners' own (:mod:`dbt_watcher.invocation.selection`).
TRACKED_EVENTS = frozenset(
    {"NodeStart", "NodeFinished", "MarkSkippedChildren", "LogHookEndLine", SELECTION_EVENT, UNMATCHED_SELECTION_EVENT}
)

MESSAGE_LIMIT = 4000


@dataclass(frozen=True)
class NodeResult:
    """What happened to one dbt node in one dbt invocation."""

    unique_id: str
    status: str
    resource_type: str = ""
    message: str | None = None
    started_at: str | None = None
    completed_at: str | None = None
    execution_time: float | None = None
    rows_affected: int | None = None
    adapter_code: str | None = None
    failures: int | None = None
    relation_name: str | None = None
    attempt: int = 1
    #: True when the result was read from dbt's run_results.json at the end of the invocation (the
    #: closing record) rather than from the live event stream.
    closing: bool = False

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS_STATUSES

    @property
    def skipped(self) -> bool:
        return self.status in SKIPPED_STATUSES

    @property
    def excluded(self) -> bool:
        return self.status == NodeStatus.EXCLUDED

    @property
    def failed(self) -> bool:
        return self.status in FAILURE_STATUSES

    @property
    def problem(self) -> bool:
        """dbt did not do what this node needs: anything but success, skipped, left out or no-op."""
        return not (self.succeeded or self.skipped or self.excluded or self.status == NodeStatus.NO_OP)

    def to_dict(self) -> dict[str, Any]:
        """The result as a plain dict with readable keys (the consumer's ``dbt_result`` XCom)."""
        return {k: v for k, v in self.__dict__.items() if v is not None and v is not False}

    def with_attempt(self, attempt: int) -> NodeResult:
        return replace(self, attempt=attempt)

    def asset_extra(self) -> dict[str, Any]:
        """The ``extra`` of the Asset event emitted for this node."""
        extra: dict[str, Any] = {
            "dbt_unique_id": self.unique_id,
            "status": self.status,
            "execution_time": self.execution_time,
            "completed_at": self.completed_at,
        }
        if self.rows_affected is not None:
            extra["rows_affected"] = self.rows_affected
        if self.adapter_code:
            extra["adapter_response"] = self.adapter_code
        return extra


def _utc_iso(value: str | None) -> str | None:
    """dbt mixes naive-UTC and ``Z``-suffixed timestamps; normalise both to aware ISO strings."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc).isoformat()


def _as_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(float(value))
    except (TypeError, ValueError):
        return None


def truncate(message: str | None) -> str | None:
    if message and len(message) > MESSAGE_LIMIT:
        return message[:MESSAGE_LIMIT] + " …(truncated)"
    return message or None


def node_result_from_event(data: Mapping[str, Any], *, now: datetime | None = None) -> NodeResult:
    """Build a result from the ``data`` of a ``NodeFinished`` event (protobuf field names)."""
    info: Mapping[str, Any] = data.get("node_info") or {}
    run: Mapping[str, Any] = data.get("run_result") or {}
    timing = run.get("timing_info") or []
    started = _utc_iso(timing[0].get("started_at")) if timing else _utc_iso(info.get("node_started_at"))
    completed = _utc_iso(timing[-1].get("completed_at")) if timing else None
    completed = completed or _utc_iso(info.get("node_finished_at"))
    if completed is None:
        completed = (now or datetime.now(timezone.utc)).isoformat()
    adapter: Mapping[str, Any] = run.get("adapter_response") or {}
    relation = info.get("node_relation") or {}
    execution_time = run.get("execution_time")
    return NodeResult(
        unique_id=str(info.get("unique_id", "")),
        status=str(run.get("status") or info.get("node_status") or "unknown"),
        resource_type=str(info.get("resource_type", "")),
        message=truncate(run.get("message")),
        started_at=started,
        completed_at=completed,
        execution_time=round(float(execution_time), 4) if execution_time is not None else None,
        rows_affected=_as_int(adapter.get("rows_affected")),
        adapter_code=str(adapter.get("code") or adapter.get("_message") or "") or None,
        failures=_as_int(run.get("failures")),
        relation_name=relation.get("relation_name") or None,
    )


def node_result_from_run_results(entry: Mapping[str, Any]) -> NodeResult:
    """A result from one entry of dbt's run_results.json (the closing record of an invocation)."""
    timing = entry.get("timing") or []
    adapter: Mapping[str, Any] = entry.get("adapter_response") or {}
    execution_time = entry.get("execution_time")
    return NodeResult(
        unique_id=str(entry.get("unique_id", "")),
        status=str(entry.get("status") or "unknown"),
        resource_type=str(entry.get("unique_id", "")).split(".", 1)[0],
        message=truncate(entry.get("message")),
        started_at=_utc_iso(timing[0].get("started_at")) if timing else None,
        completed_at=_utc_iso(timing[-1].get("completed_at")) if timing else None,
        execution_time=round(float(execution_time), 4) if execution_time is not None else None,
        rows_affected=_as_int(adapter.get("rows_affected")),
        adapter_code=str(adapter.get("code") or adapter.get("_message") or "") or None,
        failures=_as_int(entry.get("failures")),
        relation_name=entry.get("relation_name") or None,
        closing=True,
    )


EventCallback = Callable[[str, Mapping[str, Any]], None]


class InvocationEvents:
    """Reads the events of one dbt invocation; thread-safe (dbt calls it from its worker threads).

    ``on_node`` receives each node's *final* result; ``on_start`` is called once, when dbt starts
    its first node; ``on_selection`` once with the unique ids dbt selected, before any node runs. After
    the invocation, :attr:`hooks` holds each project hook's status, :attr:`failed` the nodes and tests
    whose failure made dbt skip their dependents, and :attr:`selected` the selection (None: not reported).
    """

    def __init__(
        self,
        on_node: Callable[[NodeResult], None] | None = None,
        on_start: Callable[[], None] | None = None,
        on_selection: Callable[[frozenset[str]], None] | None = None,
    ) -> None:
        self._on_node = on_node
        self._on_start = on_start
        self._on_selection = on_selection
        self.selected: frozenset[str] | None = None
        self._depth: dict[str, int] = {}
        self._lock = threading.Lock()
        self.started = False
        self.batches = 0
        self.hooks: dict[str, str] = {}
        self.failed: dict[str, str] = {}

    def __call__(self, name: str, data: Mapping[str, Any]) -> None:
        if name == "NodeStart":
            self._node_start(str((data.get("node_info") or {}).get("unique_id", "")))
        elif name == "NodeFinished":
            self._node_finished(data)
        elif name == "MarkSkippedChildren":
            if str(data.get("status")) in FAILURE_STATUSES:
                with self._lock:
                    self.failed[str(data.get("unique_id"))] = str(data.get("status"))
        elif name == SELECTION_EVENT:
            self.selected = frozenset(str(uid) for uid in data.get("unique_ids") or ())
            if self._on_selection is not None:
                self._on_selection(self.selected)
        elif name == "LogHookEndLine":
            uid = str((data.get("node_info") or {}).get("unique_id") or data.get("statement") or "hook")
            with self._lock:
                self.hooks[uid] = str(data.get("status") or "unknown")

    def _node_start(self, unique_id: str) -> None:
        with self._lock:
            self._depth[unique_id] = self._depth.get(unique_id, 0) + 1
            first, self.started = not self.started, True
        if first and self._on_start is not None:
            self._on_start()

    def _node_finished(self, data: Mapping[str, Any]) -> None:
        result = node_result_from_event(data)
        with self._lock:
            depth = self._depth.get(result.unique_id, 0) - 1
            self._depth[result.unique_id] = max(depth, 0)
            if depth > 0:  # a batch of a microbatch model: the model's own result comes last
                self.batches += 1
                return
            if result.failed:
                self.failed.setdefault(result.unique_id, result.status)
        if self._on_node is not None:
            self._on_node(result)

    @property
    def failed_hooks(self) -> list[str]:
        return sorted(uid for uid, status in self.hooks.items() if status not in ("success", "OK", "ok"))
