"""Typed per-node results, derived from dbt's own ``NodeFinished`` event.

dbt fires ``NodeFinished`` once per node, on the thread that ran it, whether the node succeeded,
failed or was skipped. The in-process runner hands us the protobuf message; dbt's structured JSON
logs carry the same message as a dict. Both go through :func:`node_result_from_event`, so every
way of running dbt yields the same results.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

#: dbt statuses that mean "this node did what it should". ``warn`` is a test that passed with a
#: warning-severity failure; it never fails a task (it is logged instead).
SUCCESS_STATUSES = frozenset({"success", "pass", "warn"})
#: dbt statuses that mean "dbt did not run this node" (an upstream node or test failed).
SKIPPED_STATUSES = frozenset({"skipped"})
#: Our own status for a node deliberately left out of this run (stale source, narrowed selection).
EXCLUDED = "excluded"

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

    @property
    def succeeded(self) -> bool:
        return self.status in SUCCESS_STATUSES

    @property
    def skipped(self) -> bool:
        return self.status in SKIPPED_STATUSES

    @property
    def excluded(self) -> bool:
        return self.status == EXCLUDED

    def to_dict(self) -> dict[str, Any]:
        """The result as a plain dict with readable keys (the consumer's ``dbt_result`` XCom)."""
        return {k: v for k, v in self.__dict__.items() if v is not None}

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
    message = run.get("message") or None
    if message and len(message) > MESSAGE_LIMIT:
        message = message[:MESSAGE_LIMIT] + " …(truncated)"
    relation = info.get("node_relation") or {}
    execution_time = run.get("execution_time")
    return NodeResult(
        unique_id=str(info.get("unique_id", "")),
        status=str(run.get("status") or info.get("node_status") or "unknown"),
        resource_type=str(info.get("resource_type", "")),
        message=message,
        started_at=started,
        completed_at=completed,
        execution_time=round(float(execution_time), 4) if execution_time is not None else None,
        rows_affected=_as_int(adapter.get("rows_affected")),
        adapter_code=str(adapter.get("code") or adapter.get("_message") or "") or None,
        failures=_as_int(run.get("failures")),
        relation_name=relation.get("relation_name") or None,
    )
