"""From a selected dbt graph to the tasks of one group: task ids, lineage edges and attached tests.

Rules (documented in docs/concepts.md):

* every selected model, seed and snapshot that dbt builds gets one consumer task; ephemeral models
  get none, but lineage passes through them, so ``a -> ephemeral -> b`` renders as ``a >> b``;
* a consumer's upstream tasks are the consumers of its selected dbt parents;
* each selected test gates at most one consumer, the node it checks: the node it was written on
  (dbt's ``attached_node``; a relationships test is written on the model that holds the foreign key).
  A test written on a node that has no task (a source, an ephemeral model) gates nothing; a test
  with no ``attached_node`` (a singular test) gates the parent dbt builds last. A test that gates
  nothing still runs in the build; ``dbt-watcher render`` lists each with the reason;
* task ids are the node name, with ``_v<version>`` for versioned models; characters Airflow does
  not accept become ``_``; names that still collide are prefixed with the package name.
"""

from __future__ import annotations

import functools
import graphlib
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.lineage import NodeLineage
from dbt_watcher.project.graph import DbtNode, ProjectGraph

PRODUCER_TASK_ID = "dbt_producer"
#: The audit task and the ``after_all`` test task: ids no consumer may take.
AUDIT_TASK_ID, TESTS_TASK_ID = "dbt_audit", "dbt_tests"
_INVALID_TASK_ID_CHARS = re.compile(r"[^A-Za-z0-9_-]")
_MAX_TASK_ID = 200  # leaves room for group prefixes inside Airflow's 250-character limit


@dataclass(frozen=True)
class ConsumerSpec:
    """One consumer task: the dbt node it watches, its upstream consumers and its tests."""

    task_id: str
    node: DbtNode
    upstream: tuple[str, ...]
    tests: tuple[str, ...]


@dataclass(frozen=True)
class Watch:
    """What one consumer watches: its node, the tests that gate it and its upstream consumers."""

    unique_id: str
    tests: tuple[str, ...] = ()
    #: Full task ids (group prefix included) of the consumers of its dbt parents.
    upstream: tuple[str, ...] = ()
    producer_resumes: bool = False


@dataclass(frozen=True)
class ConsumerTask:
    """One rendered consumer task, as the producer, the consumer itself and the audit know it."""

    task_id: str
    spec: ConsumerSpec
    watch: Watch
    #: dbt selectors of the node and of each gating test (for a producer that resumes).
    selector: str
    test_selectors: Mapping[str, str]
    asset_uri: str | None = None
    #: The consumer ends in the triggerer, where Airflow registers no asset event and runs no
    #: lineage listener: the producer emits both for it.
    ends_in_triggerer: bool = False
    lineage: NodeLineage = field(default_factory=NodeLineage)

    @property
    def producer_emits(self) -> bool:
        return self.ends_in_triggerer and self.asset_uri is not None


@dataclass(frozen=True)
class GroupPlan:
    """Every task of one dbt-watcher group, in dbt's dependency order."""

    consumers: tuple[ConsumerSpec, ...]
    left_out: tuple[tuple[str, str], ...]
    #: Selected tests that gate no consumer, each with the reason.
    unattached_tests: tuple[tuple[str, str], ...]

    def by_unique_id(self) -> dict[str, ConsumerSpec]:
        return {spec.node.unique_id: spec for spec in self.consumers}

    @functools.cached_property
    def _by_name(self) -> dict[str, ConsumerSpec]:
        # Rendering looks up every edge's parent: a scan per lookup made 3,000 models O(models²).
        index: dict[str, ConsumerSpec] = {}
        for spec in self.consumers:  # the first consumer a name matches wins, as in dbt's order
            for name in (spec.task_id, spec.node.name, spec.node.unique_id):
                index.setdefault(name, spec)
        return index

    def find(self, name: str) -> ConsumerSpec:
        """Look a consumer up by task id, node name or unique id."""
        spec = self._by_name.get(name)
        if spec is not None:
            return spec
        known = ", ".join(sorted(spec.node.name for spec in self.consumers)[:20])
        raise KeyError(f"no dbt node {name!r} in this group (known: {known}, ...)")


def build_plan(
    graph: ProjectGraph,
    *,
    selection_text: str = "the selection",
    task_name: Callable[[DbtNode], str] | None = None,
) -> GroupPlan:
    """The group's tasks; ``task_name`` names a node's task before Airflow's rule (the translator's)."""
    watched = [n for n in graph.selected_nodes() if n.is_watched]
    if not watched:
        raise ConfigurationError(
            f"{selection_text} matches no dbt model, seed or snapshot of project {graph.project_name!r}.",
            "Check select=/exclude=/selector=: `dbt ls --select ...` in the project folder lists what "
            "they match. Names are dbt node names, tags are written tag:<name>.",
        )
    watched_ids = {n.unique_id for n in watched}
    task_ids = assign_task_ids(watched, reserved={PRODUCER_TASK_ID, AUDIT_TASK_ID, TESTS_TASK_ID}, name=task_name)
    upstream = {n.unique_id: _watched_parents(graph, n, watched_ids) for n in watched}
    order = _topological(upstream)
    tests, unattached = _attach_tests(graph, watched_ids, order)
    consumers = tuple(
        ConsumerSpec(
            task_id=task_ids[uid],
            node=graph.nodes[uid],
            upstream=tuple(sorted(task_ids[p] for p in upstream[uid])),
            tests=tuple(sorted(tests.get(uid, ()))),
        )
        for uid in order
    )
    left_out = tuple(
        (n.unique_id, "ephemeral models are compiled into their children and have no task")
        for n in graph.selected_nodes()
        if n.resource_type == "model" and n.materialized == "ephemeral"
    )
    return GroupPlan(consumers=consumers, left_out=left_out, unattached_tests=tuple(unattached))


def assign_task_ids(
    nodes: Iterable[DbtNode], *, reserved: Iterable[str] = (), name: Callable[[DbtNode], str] | None = None
) -> dict[str, str]:
    """Unique, valid Airflow task ids for dbt nodes (see the module docstring for the rule)."""
    nodes = list(nodes)
    taken = set(reserved)
    naming = name or (lambda n: n.name + (f"_v{n.version}" if n.version else ""))
    base = {n.unique_id: _clean(naming(n)) for n in nodes}
    counts: dict[str, int] = {}
    for cleaned in base.values():
        counts[cleaned] = counts.get(cleaned, 0) + 1
    result: dict[str, str] = {}
    for node in sorted(nodes, key=lambda n: n.unique_id):
        candidate = base[node.unique_id]
        if counts[candidate] > 1 or candidate in taken:
            candidate = _clean(f"{node.package}__{candidate}")
        if candidate in taken:
            candidate = _clean(f"{node.resource_type}__{candidate}")
        if candidate in taken:
            raise ConfigurationError(
                f"dbt nodes give the same Airflow task id {candidate!r} ({node.unique_id}).",
                "Rename one of the dbt nodes, or split them into two groups with select=/exclude=.",
            )
        taken.add(candidate)
        result[node.unique_id] = candidate
    return result


def _clean(name: str) -> str:
    cleaned = _INVALID_TASK_ID_CHARS.sub("_", name).strip("_") or "node"
    if len(cleaned) > _MAX_TASK_ID:
        suffix = hashlib.sha1(cleaned.encode()).hexdigest()[:8]
        cleaned = f"{cleaned[: _MAX_TASK_ID - 9]}_{suffix}"
    return cleaned


def _watched_parents(graph: ProjectGraph, node: DbtNode, watched: set[str]) -> set[str]:
    """The watched ancestors reached through ephemeral models only."""
    reached = graph.walk_up(
        node.depends_on, through=lambda n: n.unique_id not in watched and n.materialized == "ephemeral"
    )
    return {uid for uid in reached if uid in watched}


def _topological(upstream: Mapping[str, set[str]]) -> list[str]:
    """Nodes ordered by depth in the graph (parents first); ties broken by unique id so renders are
    stable. Iterative (graphlib), so a dependency chain thousands of nodes deep is fine."""
    depth: dict[str, int] = {}
    try:
        for uid in graphlib.TopologicalSorter(upstream).static_order():
            depth[uid] = 1 + max((depth[p] for p in upstream.get(uid, ())), default=-1)
    except graphlib.CycleError as exc:  # dbt forbids cycles; say so rather than loop
        raise ConfigurationError(
            f"the dbt graph has a cycle: {' -> '.join(exc.args[1])}.",
            "Run `dbt parse` in the project folder: dbt reports the cycle and where it comes from.",
        ) from exc
    return sorted(upstream, key=lambda uid: (depth[uid], uid))


def _attach_tests(
    graph: ProjectGraph, watched: set[str], order: list[str]
) -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    position = {uid: i for i, uid in enumerate(order)}
    attached: dict[str, list[str]] = {}
    unattached: list[tuple[str, str]] = []
    for test in graph.selected_nodes(["test"]):
        if test.attached_node is not None:
            if test.attached_node in watched:
                attached.setdefault(test.attached_node, []).append(test.unique_id)
            else:
                unattached.append((test.unique_id, f"it checks {test.attached_node}, which has no task"))
            continue
        parents = [p for p in test.depends_on if p in watched]
        if parents:
            attached.setdefault(max(parents, key=position.__getitem__), []).append(test.unique_id)
        else:
            unattached.append((test.unique_id, "none of the nodes it reads has a task (sources, ephemeral models)"))
    return attached, unattached
