"""The parts of a dbt manifest that rendering a DAG needs, in a small form that caches well.

Nothing here imports dbt: a DAG file whose project is cached must parse without paying dbt's
import cost. ``project.py`` builds a :class:`ProjectGraph` from dbt's own manifest and selection
engine; everything downstream (plan, producer, consumers) reads only this.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dbt_watcher.invocation.selection import TestFacts
from dbt_watcher.invocation.target import Target

#: The dbt resource types that get an Airflow consumer task of their own.
WATCHED_TYPES = frozenset({"model", "seed", "snapshot"})

GRAPH_FORMAT = 7  # 7: the target facts name a DuckDB file (Cosmos-compatible asset URIs)


@dataclass(frozen=True)
class Relation:
    """Where dbt materialises a node in the warehouse."""

    database: str | None
    schema: str | None
    identifier: str


@dataclass(frozen=True)
class DbtNode:
    """One dbt node (model, seed, snapshot or test) as the plan sees it."""

    unique_id: str
    resource_type: str
    name: str
    package: str
    fqn: tuple[str, ...]
    depends_on: tuple[str, ...] = ()
    materialized: str | None = None
    relation: Relation | None = None
    tags: tuple[str, ...] = ()
    airflow_meta: Mapping[str, Any] = field(default_factory=dict)
    attached_node: str | None = None
    #: A test's YAML entry (``models.orders``, ``sources.raw``): what it is written under.
    file_key_name: str | None = None
    version: str | None = None
    original_file_path: str = ""
    severity: str | None = None
    enabled: bool = True
    #: dbt's description of the node, and (column, description) pairs, from the manifest.
    description: str = ""
    columns: tuple[tuple[str, str], ...] = ()

    @property
    def is_watched(self) -> bool:
        """True when the node is built (not ephemeral) and is a model, seed or snapshot."""
        return self.resource_type in WATCHED_TYPES and self.materialized != "ephemeral"

    @property
    def selector(self) -> str:
        """A dbt selection string that matches this node alone (used by local fallback runs)."""
        return f"fqn:{'.'.join(self.fqn)},resource_type:{self.resource_type}"

    def test_facts(self) -> TestFacts:
        """What this test checks, as the gating rule reads it (dbt_watcher.rules.gating)."""
        return TestFacts(self.unique_id, self.attached_node, self.file_key_name, self.depends_on, self.fqn)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "unique_id": self.unique_id,
            "resource_type": self.resource_type,
            "name": self.name,
            "package": self.package,
            "fqn": list(self.fqn),
            "depends_on": list(self.depends_on),
            "materialized": self.materialized,
            "tags": list(self.tags),
            "airflow_meta": dict(self.airflow_meta),
            "attached_node": self.attached_node,
            "file_key_name": self.file_key_name,
            "version": self.version,
            "original_file_path": self.original_file_path,
            "severity": self.severity,
            "enabled": self.enabled,
            "description": self.description,
            "columns": [list(c) for c in self.columns],
        }
        if self.relation is not None:
            data["relation"] = [self.relation.database, self.relation.schema, self.relation.identifier]
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DbtNode:
        rel = data.get("relation")
        return cls(
            unique_id=data["unique_id"],
            resource_type=data["resource_type"],
            name=data["name"],
            package=data["package"],
            fqn=tuple(data["fqn"]),
            depends_on=tuple(data["depends_on"]),
            materialized=data.get("materialized"),
            relation=Relation(rel[0], rel[1], rel[2]) if rel else None,
            tags=tuple(data.get("tags", ())),
            airflow_meta=data.get("airflow_meta") or {},
            attached_node=data.get("attached_node"),
            file_key_name=data.get("file_key_name"),
            version=data.get("version"),
            original_file_path=data.get("original_file_path", ""),
            severity=data.get("severity"),
            enabled=data.get("enabled", True),
            description=data.get("description", ""),
            columns=tuple((c[0], c[1]) for c in data.get("columns", ())),
        )


@dataclass(frozen=True)
class DbtSource:
    """A dbt source table: what models read, what freshness checks and source assets are about."""

    unique_id: str
    source_name: str
    name: str
    relation: Relation
    has_freshness: bool = False

    @property
    def selector(self) -> str:
        return f"source:{self.source_name}.{self.name}"

    def to_json(self) -> dict[str, Any]:
        rel = self.relation
        return {
            "unique_id": self.unique_id,
            "source_name": self.source_name,
            "name": self.name,
            "relation": [rel.database, rel.schema, rel.identifier],
            "has_freshness": self.has_freshness,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DbtSource:
        rel = data["relation"]
        return cls(
            unique_id=data["unique_id"],
            source_name=data["source_name"],
            name=data["name"],
            relation=Relation(rel[0], rel[1], rel[2]),
            has_freshness=bool(data.get("has_freshness")),
        )


@dataclass(frozen=True)
class ProjectGraph:
    """The node graph of a dbt project plus the result of one selection."""

    project_name: str
    nodes: Mapping[str, DbtNode]
    selected: frozenset[str]
    target: Target
    disabled: tuple[str, ...] = ()
    sources: Mapping[str, DbtSource] = field(default_factory=dict)
    #: For each extra selection string resolved at parse time (per-node overrides), what dbt matched.
    matches: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def walk_up(self, start: Iterable[str], *, through: Callable[[DbtNode], bool]) -> list[str]:
        """The unique ids reached upwards from ``start``, going on past the nodes ``through`` accepts.

        Each id is returned once; the ids the walk went through are not returned. Sources and ids
        outside the project end the walk where they are found.
        """
        reached: list[str] = []
        stack, seen = list(start), set()
        while stack:
            uid = stack.pop()
            if uid in seen:
                continue
            seen.add(uid)
            node = self.nodes.get(uid)
            if node is not None and through(node):
                stack.extend(node.depends_on)
            else:
                reached.append(uid)
        return reached

    def upstream_sources(self, unique_ids: Iterable[str]) -> list[DbtSource]:
        """The sources these nodes read, directly or through other nodes of the project."""
        reached = self.walk_up(unique_ids, through=lambda node: True)
        return sorted((self.sources[uid] for uid in reached if uid in self.sources), key=lambda s: s.unique_id)

    def selected_nodes(self, resource_types: Iterable[str] | None = None) -> list[DbtNode]:
        """Selected nodes in a stable order, optionally limited to some resource types."""
        wanted = set(resource_types) if resource_types is not None else None
        return [
            self.nodes[uid]
            for uid in sorted(self.selected)
            if uid in self.nodes and (wanted is None or self.nodes[uid].resource_type in wanted)
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "format": GRAPH_FORMAT,
            "project_name": self.project_name,
            "nodes": [node.to_json() for node in self.nodes.values()],
            "selected": sorted(self.selected),
            "target": self.target.to_json(),
            "disabled": list(self.disabled),
            "sources": [source.to_json() for source in self.sources.values()],
            "matches": {key: sorted(ids) for key, ids in self.matches.items()},
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProjectGraph:
        if data.get("format") != GRAPH_FORMAT:
            raise ValueError(f"unsupported graph format {data.get('format')!r}")
        nodes = {n["unique_id"]: DbtNode.from_json(n) for n in data["nodes"]}
        return cls(
            project_name=data["project_name"],
            nodes=nodes,
            selected=frozenset(data["selected"]),
            target=Target.from_json(data["target"]),
            disabled=tuple(data.get("disabled", ())),
            sources={s["unique_id"]: DbtSource.from_json(s) for s in data.get("sources", [])},
            matches={key: frozenset(ids) for key, ids in data.get("matches", {}).items()},
        )
