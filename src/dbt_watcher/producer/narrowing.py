"""Which of the group's nodes one DAG run builds, and why the others are left out.

Three features narrow a run, through this one mechanism:

* source freshness: nodes downstream of a stale source are left out;
* a templated ``select``: the run builds what the rendered selection matches;
* ``only_changed_sources``: a run triggered by asset events builds what is downstream of the
  sources whose assets changed.

A left-out node gets an ``excluded`` result in the status channel with the reason, so its
consumer ends *skipped* and says why — never green, never failed for something that did not run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from dbt_watcher.invocation.events import NodeResult, NodeStatus
from dbt_watcher.invocation.runners import SourceFreshness

#: Decides which sources are too stale to build from: source unique id -> reason.
FreshnessPolicy = Callable[[Sequence[SourceFreshness]], Mapping[str, str]]


def default_freshness_policy(results: Sequence[SourceFreshness]) -> dict[str, str]:
    """dbt's own verdict: a source whose freshness check errors (``error_after`` passed, or the
    check could not run) is stale; ``warn`` is logged, not acted on."""
    stale = {}
    for result in results:
        if result.status in (NodeStatus.ERROR, NodeStatus.RUNTIME_ERROR):
            age = f", last loaded {result.age_seconds:.0f} s ago" if result.age_seconds is not None else ""
            detail = f": {result.message}" if result.message and result.status == NodeStatus.RUNTIME_ERROR else ""
            stale[result.unique_id] = f"source {result.unique_id} is stale ({result.status}{age}){detail}"
    return stale


@dataclass(frozen=True)
class Narrowing:
    """What narrows one run's build; the producer's first attempt works it out from the context."""

    #: Check ``dbt source freshness`` first and leave out what reads a stale source.
    freshness: bool = False
    #: The rendered templated ``select`` (None: no templated select).
    select: str | None = None
    #: Selectors of the sources whose assets changed in the events that triggered the run (None: the
    #: run was not triggered by asset events, or ``only_changed_sources`` is off).
    changed_sources: tuple[str, ...] | None = None

    @property
    def active(self) -> bool:
        return self.freshness or bool(self.select) or self.changed_sources is not None


@dataclass
class RunScope:
    """The nodes of one run: everything in the plan, minus what was excluded (with a reason)."""

    plan: tuple[str, ...]
    excluded: dict[str, str] = field(default_factory=dict)

    def exclude(self, unique_ids: Iterable[str], reason: str | Callable[[str], str]) -> None:
        for uid in unique_ids:
            if uid in self.plan and uid not in self.excluded:
                self.excluded[uid] = reason(uid) if callable(reason) else reason

    def keep_only(self, unique_ids: Iterable[str], reason: str) -> None:
        kept = set(unique_ids)
        self.exclude((uid for uid in self.plan if uid not in kept), reason)

    @property
    def narrowed(self) -> bool:
        return bool(self.excluded)

    @property
    def built(self) -> list[str]:
        return [uid for uid in self.plan if uid not in self.excluded]

    def results(self) -> list[NodeResult]:
        return [NodeResult(uid, NodeStatus.EXCLUDED, message=reason) for uid, reason in sorted(self.excluded.items())]
