"""``skip_unchanged``: which nodes a run need not build, and the group's build state it leaves behind.

A node is skipped only on positive evidence (docs/skip-unchanged.md): the group's build state
(:mod:`dbt_watcher.rules.build_state`) lists its last build as a success, and

* dbt's own ``state:modified``, comparing this run's project with the state's manifest, selects neither
  it nor anything upstream of it (SQL, config, macros, relation, contract, a seed's file);
* the run's context is the state's (:mod:`dbt_watcher.producer.build_context`);
* no test that gates it is new or changed;
* nothing upstream of it may hold new data: every source it reads has a ``max_loaded_at`` from this
  run's ``dbt source freshness`` that is not newer than at the last run (a source without a freshness
  check, or whose check fails, counts as changed: absent evidence is no evidence), no asset event that
  triggered the run names one of those sources, and it reads no node this group does not build;
* nothing upstream of it is built in this run, is a seed dbt compares by path alone, or is marked
  ``meta: {dbt_watcher: {skip_unchanged: false}}``; no dbt function changed.

Everything else builds. Missing, unreadable or foreign state builds everything.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbt_watcher.invocation.runners import read_freshness
from dbt_watcher.producer.build_context import build_context
from dbt_watcher.rules import build_state
from dbt_watcher.rules.artifacts import read_json_object
from dbt_watcher.rules.build_state import BuildState, NodeBuild
from dbt_watcher.rules.verdict import Action, final_decision

if TYPE_CHECKING:
    from dbt_watcher.channel.records import RunStatus
    from dbt_watcher.channel.store import RunAddress
    from dbt_watcher.producer.ledger import Ledger
    from dbt_watcher.rules.watch import ConsumerTask, Watch
    from dbt_watcher.runtime.group_runtime import GroupRuntime
    from dbt_watcher.runtime.task_dbt import TaskDbt

log = logging.getLogger(__name__)

#: Materializations that hold no data of their own: a change upstream reaches readers through dbt's graph.
_NO_DATA = frozenset({"ephemeral"})
_DATA_TYPES = frozenset({"model", "seed", "snapshot"})


def keeper_for(
    rt: GroupRuntime,
    address: RunAddress,
    consumers: Sequence[ConsumerTask],
    context: Mapping[str, Any],
    *,
    skip: bool,
    ledger: Ledger,
    builds: bool,
) -> BuildStateKeeper | None:
    """The group's build state for a run's first build; None when the group keeps none
    (``skip_unchanged=False``) and for a later attempt of a run in which dbt already built; such an attempt
    that ``builds`` (a retry that resumes or builds again) first forgets every node on record, since it may
    now fail what an earlier attempt built. ``skip``: the run's rendered ``skip_unchanged``; the asset events
    that triggered the run (in the task's ``context``) name sources with new data."""
    folder = rt.build_state_folder(address.dag_id, address.map_index)
    if rt.config.skip_unchanged is False:
        build_state.clear(folder)  # builds it would not see happen from now on
        return None
    watches = tuple(c.watch for c in consumers)
    if ledger.built:
        if builds:
            build_state.forget(folder, [w.unique_id for w in watches])
        return None
    if not skip:
        log.info("skip_unchanged is off for this run: every node builds (and is recorded for the next run)")
    return BuildStateKeeper(
        folder,
        address.run_id,
        watches,
        rt.target_identity,
        changed_by_events=frozenset(rt.sources_in_events(context) or ()),
        active=skip,
        test_behavior=str(rt.config.test_behavior),
    )


@dataclass
class BuildStateKeeper:
    """One producer attempt's use of the group's build state: decide, mark what it builds, record the end."""

    folder: Path
    run_id: str
    #: What each consumer watches (the group's plan).
    watches: tuple[Watch, ...]
    #: Fingerprint of the target's connection facts (never credentials), from the group's rendering.
    target: str
    #: Sources of the group's nodes whose assets changed in the events that triggered the run.
    changed_by_events: frozenset[str] = frozenset()
    #: Skip what is unchanged in this run (False: build everything, and still record the builds).
    active: bool = True
    #: The group's test_behavior: which tests gated a recorded build is part of its context.
    test_behavior: str = "build"
    _context: dict[str, str] | None = field(default=None, init=False)
    _token: str | None = field(default=None, init=False)
    #: The attempt's dbt target folder (its manifest.json is recorded).
    _target_path: Path | None = field(default=None, init=False)
    #: Each source's max_loaded_at, read before the build (recorded with it).
    _loaded: dict[str, str] = field(default_factory=dict, init=False)

    # ------------------------------------------------------------------ before the build
    def plan_run(self, dbt: TaskDbt, candidates: Collection[str]) -> dict[str, NodeBuild]:
        """What this run leaves unchanged (:meth:`find_unchanged`), with the state marked for the build
        (:meth:`_mark_building`). Never raises: a feature that fails builds everything and records nothing."""
        try:
            # One lock around the decision and the mark: another run of the group on this machine cannot
            # record (or replace the manifest dbt compares with) in between.
            with build_state.locked(self.folder):
                unchanged = self.find_unchanged(dbt, candidates)
                self._mark_building(unchanged)
        except Exception:
            log.exception("skip_unchanged could not decide what to skip: every node builds, and none is recorded")
            self._context = None
            build_state.clear(self.folder)  # it may still list nodes this run is about to build (never raises)
            return {}
        return unchanged

    def find_unchanged(self, dbt: TaskDbt, candidates: Collection[str]) -> dict[str, NodeBuild]:
        """The ``candidates`` (nodes this run would build) that need no build, with their last build.
        Call after dbt parsed the project into ``dbt.target_path``."""
        self._target_path = dbt.target_path
        manifest = read_json_object(dbt.target_path / "manifest.json")
        self._context, why_not = build_context(dbt, manifest, {"target": self.target, "tests": self.test_behavior})
        if self._context is None or manifest is None:
            log.info("skip_unchanged: every node builds, and none is recorded: %s", why_not)
            return {}
        graph = _Graph(manifest)
        # Read before the build whatever is decided (the record of this run keeps it): data loaded while
        # dbt builds is then newer than the record, and the next run builds its readers.
        sources = graph.sources_upstream(candidates)
        loaded = self._loaded = self._freshness(dbt, sources) if sources else {}
        if not self.active:
            return {}
        if dbt.invocation.full_refresh:
            log.info("skip_unchanged: a full refresh builds every node (and is recorded for the next run)")
            return {}
        state, reason = build_state.load(self.folder)
        if state is None:
            log.info("skip_unchanged: every node builds: %s", reason)
            return {}
        changed = sorted(k for k in self._context if state.context.get(k) != self._context[k])
        if changed:
            log.info("skip_unchanged: every node builds: the run's %s changed since the last build", ", ".join(changed))
            return {}
        known = [uid for uid in candidates if uid in state.nodes]
        if not known:
            log.info("skip_unchanged: no node of this run has a successful build on record; every node builds")
            return {}
        try:
            # Tests only when they changed themselves, not as the tests of a changed model (dbt's eager
            # indirect selection): a relationships test would otherwise pull in its other parent.
            state_args = ("--state", str(state.folder), "--indirect-selection", "empty")
            listing = dbt.command("ls", select=("state:modified",), extra_args=state_args)
            modified = set(dbt.runner.list_ids(listing))
        except RuntimeError as exc:
            log.warning(
                "skip_unchanged: dbt could not compare the project with its build state; every node builds: %s", exc
            )
            return {}
        roots = {
            # A new or changed test gates a node that must then be built for it (a test that is only
            # downstream of a change is not changed itself: its parents are reached through dbt's graph).
            *graph.parents_of(uid for uid in modified if graph.is_test(uid)),
            *self._sources_with_new_data(state, sources, loaded),
            *(uid for uid in self.plan if uid not in state.nodes),
            *graph.data_nodes_outside(set(self.plan), upstream_of=known),
            # dbt compares a seed over 1 MiB by its path alone: its contents are no evidence.
            *graph.seeds_compared_by_path(),
            # What the project says must always build (a model reading current_date, say).
            *graph.always_built(),
        }
        rebuild = graph.descendants(modified | roots)  # dbt's `+`, on this run's graph
        functions = sorted(uid for uid in rebuild if uid.startswith("function."))
        if functions:
            # A narrowed build selects the consumers' nodes: a dbt function has none, and would not be built.
            log.info("skip_unchanged: every node builds: dbt functions changed (%s)", ", ".join(functions))
            return {}
        unchanged = {uid: state.nodes[uid] for uid in known if uid not in rebuild}
        log.info(
            "skip_unchanged: %d of %d nodes unchanged since their last successful build; %d build "
            "(%d changed in dbt's state comparison, %d reached by new data or unrecorded builds upstream)",
            len(unchanged),
            len(candidates),
            len(candidates) - len(unchanged),
            len(modified & set(candidates)),
            len((rebuild - modified) & set(candidates)),
        )
        return unchanged

    def _sources_with_new_data(
        self, state: BuildState, sources: Collection[str], loaded: Mapping[str, str]
    ) -> set[str]:
        """The sources that may hold new data since the last run (a source proves it has none only with a
        ``max_loaded_at`` from this run's freshness check that is not newer than the recorded one)."""
        stale = set(self.changed_by_events & set(sources))
        for uid in sources:
            now, before = _when(loaded.get(uid)), _when(state.sources.get(uid))
            if now is None or before is None or now > before:
                stale.add(uid)
        if stale:
            log.info("skip_unchanged: sources that may hold new data: %s", ", ".join(sorted(stale)))
        return stale

    @staticmethod
    def _freshness(dbt: TaskDbt, sources: Collection[str]) -> dict[str, str]:
        """Each source's ``max_loaded_at`` in this run (dbt source freshness, once per attempt)."""
        if not (dbt.target_path / "sources.json").is_file():
            selectors = tuple(f"source:{uid.split('.', 2)[2]}" for uid in sorted(sources))
            dbt.run(dbt.command("source freshness", select=selectors))  # it connects: the warehouse's lock
        return {r.unique_id: r.max_loaded_at for r in read_freshness(dbt.target_path) if r.max_loaded_at}

    def _mark_building(self, unchanged: Mapping[str, NodeBuild]) -> None:
        """Before dbt starts: the state keeps only the nodes this run leaves unchanged, so a run that dies
        mid-build leaves no record of a success for what it was rebuilding. The write's token tells
        :meth:`record` whether anything else wrote the state in between (call with the lock held)."""
        state, _ = build_state.load(self.folder)
        context = state.context if state is not None else {}
        sources = state.sources if state is not None else {}
        self._token = build_state.save(self.folder, context=context, nodes=dict(unchanged), sources=sources)

    # ------------------------------------------------------------------ after the build
    @property
    def plan(self) -> dict[str, list[Watch]]:
        """Each node with a consumer, and what its consumers watch (under after_each, two of them)."""
        consumers: dict[str, list[Watch]] = {}
        for watch in self.watches:
            consumers.setdefault(watch.unique_id, []).append(watch)
        return consumers

    def record(self, status: RunStatus) -> None:
        """The state after this attempt: its green nodes built now, the unchanged ones as they were."""
        if self._context is None or self._target_path is None:
            return
        try:
            self._record(status, self._target_path)
        except Exception:
            # The state was marked before the build: it lists no node this run built, so it stays safe.
            log.exception("skip_unchanged could not record this run's builds; the next run builds them again")

    def _record(self, status: RunStatus, target_path: Path) -> None:
        assert self._context is not None
        manifest = target_path / "manifest.json"
        if not manifest.is_file():
            return
        now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
        with build_state.locked(self.folder):
            state, _ = build_state.load(self.folder)
            if state is None or state.token != self._token:
                # Another run's builds may have happened between this run's and its record: none is trusted.
                log.warning(
                    "skip_unchanged: another run of this group wrote the build state while this one built; "
                    "no build is recorded, and the next run builds everything"
                )
                build_state.save(self.folder, context={}, nodes={})
                return
            before = state.nodes
            nodes: dict[str, NodeBuild] = {}
            for uid, watches in self.plan.items():
                result = status.results.get(uid)
                if result is not None and result.excluded and uid in before and result.message == before[uid].reason:
                    nodes[uid] = before[uid]  # left unchanged by this run: its build is still the last one
                elif all(final_decision(w, status).action is Action.SUCCEED for w in watches):
                    # Every consumer of the node green (its own, and under after_each its tests' task).
                    nodes[uid] = NodeBuild(self.run_id, now)
            build_state.save(self.folder, context=self._context, nodes=nodes, sources=self._loaded, manifest=manifest)
        log.info("skip_unchanged: recorded %d nodes whose last build succeeded in %s", len(nodes), self.folder)


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


class _Graph:
    """dbt's graph as this run's manifest.json gives it (its parent and child maps)."""

    def __init__(self, manifest: Mapping[str, Any]) -> None:
        self.nodes: Mapping[str, Any] = manifest.get("nodes") or {}
        self.sources: Mapping[str, Any] = manifest.get("sources") or {}
        self.parents: Mapping[str, list[str]] = manifest.get("parent_map") or {}
        self.children: Mapping[str, list[str]] = manifest.get("child_map") or {}

    def is_test(self, uid: str) -> bool:
        return uid.startswith(("test.", "unit_test."))

    def parents_of(self, unique_ids: Iterable[str]) -> set[str]:
        return {p for uid in unique_ids for p in self.parents.get(uid, ())}

    def ancestors(self, unique_ids: Iterable[str]) -> set[str]:
        return _reach(self.parents, unique_ids) - set(unique_ids)

    def descendants(self, unique_ids: Iterable[str]) -> set[str]:
        """The nodes and everything downstream of them: dbt's ``+`` on this run's graph."""
        return _reach(self.children, unique_ids)

    def sources_upstream(self, unique_ids: Iterable[str]) -> set[str]:
        return {uid for uid in self.ancestors(unique_ids) if uid in self.sources}

    def always_built(self) -> set[str]:
        """Nodes whose ``meta`` (or ``config.meta``) says ``dbt_watcher: {skip_unchanged: false}``."""
        found = set()
        for uid, node in self.nodes.items():
            for meta in (node.get("meta"), (node.get("config") or {}).get("meta")):
                settings = meta.get("dbt_watcher") if isinstance(meta, Mapping) else None
                if isinstance(settings, Mapping) and settings.get("skip_unchanged") is False:
                    found.add(uid)
        return found

    def seeds_compared_by_path(self) -> set[str]:
        return {
            uid
            for uid, node in self.nodes.items()
            if node.get("resource_type") == "seed" and (node.get("checksum") or {}).get("name") == "path"
        }

    def data_nodes_outside(self, plan: set[str], *, upstream_of: Iterable[str]) -> set[str]:
        """Nodes upstream of these that hold data this group does not build (another DAG may refresh them)."""
        return {
            uid
            for uid in self.ancestors(upstream_of)
            if uid not in plan
            and (node := self.nodes.get(uid)) is not None
            and node.get("resource_type") in _DATA_TYPES
            and (node.get("config") or {}).get("materialized") not in _NO_DATA
        }


def _reach(edges: Mapping[str, list[str]], start: Iterable[str]) -> set[str]:
    """``start`` and every node reached from it along ``edges``."""
    seen = set(start)
    todo = list(seen)
    while todo:
        for following in edges.get(todo.pop(), ()):
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen
