"""From a selected dbt graph to the tasks of one group: task ids, lineage edges and attached tests.

Rules (documented in docs/concepts.md):

* every selected model, seed and snapshot that dbt builds gets one consumer task; ephemeral models
  get none, but lineage passes through them, so ``a -> ephemeral -> b`` renders as ``a >> b``;
* a consumer's upstream tasks are the consumers of its selected dbt parents;
* each selected test gates at most one consumer, by the rule of :mod:`dbt_watcher.rules.gating`
  (the node it is written under; nothing for a test on a source); at run time the same rule is
  applied to the tests the run's own dbt invocation selected, so this is what ``render`` expects;
* task ids are the node name, with ``_v<version>`` for versioned models (or the translator's rule);
  characters Airflow does not accept become ``_`` (a ``.`` is kept: Airflow accepts it); names that
  still collide are prefixed with the package name.
"""

from __future__ import annotations

import functools
import graphlib
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.project.graph import DbtNode, ProjectGraph
from dbt_watcher.rules.gating import gating
from dbt_watcher.rules.translator import DEFAULT_TRANSLATOR, DbtWatcherTranslator

_INVALID_TASK_ID_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_MAX_TASK_ID = 200  # leaves room for group prefixes inside Airflow's 250-character limit


@dataclass(frozen=True)
class ConsumerSpec:
    """One consumer task: the dbt node it watches, its upstream consumers and its tests."""

    task_id: str
    node: DbtNode
    upstream: tuple[str, ...]
    tests: tuple[str, ...]


@dataclass(frozen=True)
class GroupPlan:
    """Every task of one dbt-watcher group, in dbt's dependency order."""

    consumers: tuple[ConsumerSpec, ...]
    left_out: tuple[tuple[str, str], ...]
    #: Selected tests that gate no consumer, each with the reason.
    unattached_tests: tuple[tuple[str, str], ...]

    @functools.cached_property
    def _by_name(self) -> dict[str, ConsumerSpec]:
        # Rendering looks up every edge's parent: a scan per lookup made 3,000 models O(models²).
        # A task id wins over a node name that happens to equal it (model `a` is task `a_run` under Cosmos'
        # names, and a model may be named `a_run`), then the first consumer a name matches, in dbt's order.
        index: dict[str, ConsumerSpec] = {spec.task_id: spec for spec in self.consumers}
        for spec in self.consumers:
            for name in (spec.node.name, spec.node.unique_id):
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
    naming: DbtWatcherTranslator = DEFAULT_TRANSLATOR,
    project_folder: str = "",
) -> GroupPlan:
    """The group's tasks; ``naming`` names a node's task before Airflow's rule (the translator's), and the
    ids it gives the group's other tasks (``project_folder``: the name of the project's folder) are kept
    from consumers."""
    watched = [n for n in graph.selected_nodes() if n.is_watched]
    if not watched:
        raise ConfigurationError(
            f"{selection_text} matches no dbt model, seed or snapshot of project {graph.project_name!r}.",
            "Check select=/exclude=/selector=: `dbt ls --select ...` in the project folder lists what "
            "they match. Names are dbt node names, tags are written tag:<name>.",
        )
    watched_ids = {n.unique_id for n in watched}
    tested = {parent for node in graph.selected_nodes() if node.resource_type == "test" for parent in node.depends_on}
    task_ids = assign_task_ids(
        watched,
        reserved=naming.fixed_task_ids(project_folder),
        name=lambda node: naming.consumer_task_id(node, node.unique_id in tested),
    )
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
    naming = name or DEFAULT_TRANSLATOR.task_id
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
    cleaned = _INVALID_TASK_ID_CHARS.sub("_", name).strip("_.") or "node"
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
    """The rule of dbt_watcher.rules.gating, applied to the tests the group's parse-time selection holds
    (what ``render`` shows; the run applies it to the tests its own invocation selected)."""
    position = {uid: i for i, uid in enumerate(order) if uid in watched}
    gates, ungated = gating((t.test_facts() for t in graph.selected_nodes(["test"])), position)
    return {node: list(tests) for node, tests in gates.items()}, list(ungated.items())
