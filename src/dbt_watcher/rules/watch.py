"""What a consumer task watches, and what it owes once green: the one description of a consumer that the
producer, the consumer itself, the audit and the asset-event rules share."""

from __future__ import annotations

from dataclasses import dataclass, field

from dbt_watcher.project.graph import DbtNode
from dbt_watcher.rules.lineage import NodeLineage


@dataclass(frozen=True)
class Watch:
    """What one consumer watches: its node, whether the node's tests gate it, its upstream consumers.

    Which tests gate it is not fixed here: the run's own dbt invocation decides (the selection the
    producer publishes, :mod:`dbt_watcher.rules.gating`).
    """

    unique_id: str
    #: The tests the run selects for the node gate this consumer (test_behavior "build", a test watcher).
    gated: bool = True
    #: Full task ids (group prefix included) of the consumers of its dbt parents.
    upstream: tuple[str, ...] = ()
    producer_resumes: bool = False


@dataclass(frozen=True)
class ConsumerTask:
    """One rendered consumer task, as the producer, the consumer itself and the audit know it."""

    task_id: str
    #: The dbt node it watches (for a test watcher, the node whose tests it watches).
    node: DbtNode
    watch: Watch
    #: The dbt selector of the node (for a producer that resumes).
    selector: str
    asset_uri: str | None = None
    #: The consumer ends in the triggerer, where Airflow registers no asset event and runs no
    #: lineage listener: the producer emits both for it.
    ends_in_triggerer: bool = False
    lineage: NodeLineage = field(default_factory=NodeLineage)

    @property
    def producer_emits(self) -> bool:
        return self.ends_in_triggerer and self.asset_uri is not None
