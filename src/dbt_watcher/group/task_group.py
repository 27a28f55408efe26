"""The TaskGroup users hold: the producer, one consumer per node, and lookups by node name."""

from __future__ import annotations

from typing import TYPE_CHECKING

import attrs
from airflow.sdk import TaskGroup

from dbt_watcher.rules.translator import DEFAULT_TRANSLATOR, DbtWatcherTranslator

if TYPE_CHECKING:
    from airflow.sdk import Asset

    from dbt_watcher.consumer.operator import DbtConsumerOperator
    from dbt_watcher.group.plan import GroupPlan
    from dbt_watcher.producer.operator import DbtProducerOperator
    from dbt_watcher.project.graph import ProjectGraph


@attrs.define(repr=False)
class DbtWatcherGroup(TaskGroup):
    """The TaskGroup of one dbt project: a producer and one consumer per model, seed and snapshot."""

    producer: DbtProducerOperator | None = attrs.field(default=None, init=False)
    consumers: dict[str, DbtConsumerOperator] = attrs.field(factory=dict, init=False)
    plan: GroupPlan | None = attrs.field(default=None, init=False)
    graph: ProjectGraph | None = attrs.field(default=None, init=False)
    translator: DbtWatcherTranslator = attrs.field(factory=lambda: DEFAULT_TRANSLATOR, init=False)

    def full_id(self, task_id: str) -> str:
        """The id a child task gets in the DAG (the group id prefixed, as Airflow does)."""
        return str(self.child_id(task_id))  # type: ignore[no-untyped-call]

    def consumer(self, name: str) -> DbtConsumerOperator:
        """The consumer task of a node, by node name, task id or unique id."""
        assert self.plan is not None
        return self.consumers[self.plan.find(name).node.unique_id]

    def asset(self, name: str) -> Asset:
        """The Asset of a model, seed or snapshot of this group (to schedule other DAGs on it)."""
        assert self.plan is not None and self.graph is not None
        return self.translator.node_asset(self.graph.target, self.plan.find(name).node)

    def source_assets(self) -> list[Asset]:
        """The Assets of the dbt sources this group reads (to schedule the DAG on upstream data)."""
        assert self.plan is not None and self.graph is not None
        return source_assets(self.graph, self.plan, self.translator)


def source_assets(graph: ProjectGraph, plan: GroupPlan, translator: DbtWatcherTranslator) -> list[Asset]:
    reached = graph.upstream_sources(c.node.unique_id for c in plan.consumers)
    return [translator.source_asset(graph.target, s) for s in reached]
