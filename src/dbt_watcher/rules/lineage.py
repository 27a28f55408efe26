"""Per-model OpenLineage: each consumer reports its own node's inputs and outputs.

When apache-airflow-providers-openlineage is installed:

* a consumer that finishes on a worker reports its node through
  ``get_openlineage_facets_on_complete`` (the provider's listener calls it);
* a consumer that ends in the triggerer runs no listener, so the producer emits that consumer's
  COMPLETE event for it, under the consumer's own job name and run id.

Both carry the node's facets from the run's artifacts (SQL, schema, column lineage, its tests as
assertions: :mod:`dbt_watcher.rules.lineage_facets`).

Either way the lineage graph shows one job per model, reading its dbt parents and writing its table,
not one producer job touching everything. Dataset names follow the asset URIs (:func:`dataset_name`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from dbt_watcher.rules.lineage_facets import NodeFacets, RunArtifacts

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

#: The consumers' operator, as ``[openlineage] disabled_for_operators`` names it.
CONSUMER_CLASSPATH = "dbt_watcher.consumer.operator.DbtConsumerOperator"


@dataclass(frozen=True)
class NodeLineage:
    """The asset URIs a node reads and the one it writes, with the OpenLineage (namespace, name) of
    each URI (from the group's translator; the default rule when missing)."""

    inputs: tuple[str, ...] = ()
    output: str | None = None
    names: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def dataset(self, uri: str) -> tuple[str, str]:
        return self.names.get(uri) or dataset_name(uri)


def dataset_name(uri: str) -> tuple[str, str]:
    """OpenLineage (namespace, name) of one of our asset URIs (dbt_watcher.rules.assets), by the OpenLineage
    naming spec: namespace ``<scheme>://<authority>``, name the dotted parts — except BigQuery, whose
    namespace is ``bigquery`` and whose name starts with the project, and DuckDB, whose name starts
    with the database. tests/unit/test_asset_uris.py checks these against the OpenLineage client's
    ``openlineage.client.naming.dataset`` classes."""
    parts = urlsplit(uri)
    path = [unquote(p) for p in parts.path.split("/") if p]
    if parts.scheme == "bigquery":  # bigquery://<project>/<dataset>/<table>
        return "bigquery", ".".join([parts.netloc, *path])
    if parts.scheme == "duckdb":  # duckdb://<database>/<schema>/<table>
        return f"duckdb://{parts.netloc}", ".".join([parts.netloc, *path])
    return f"{parts.scheme}://{parts.netloc}", ".".join(path)


def _datasets(lineage: NodeLineage, uris: Iterable[str]) -> list[Any]:
    from openlineage.client.event_v2 import Dataset

    return [Dataset(namespace=namespace, name=name) for namespace, name in map(lineage.dataset, uris)]


def operator_lineage(lineage: NodeLineage, artifacts: RunArtifacts | None, unique_id: str) -> Any:
    """The provider's OperatorLineage for a node, or None when the provider is not installed; with the run's
    ``artifacts``, the node's facets too (:mod:`dbt_watcher.rules.lineage_facets`)."""
    try:
        from airflow.providers.openlineage.extractors import OperatorLineage
        from openlineage.client.event_v2 import Dataset, InputDataset
    except ImportError:
        return None
    inputs = _datasets(lineage, lineage.inputs)
    if not lineage.output:
        return OperatorLineage(inputs=inputs, outputs=[])
    namespace, name = lineage.dataset(lineage.output)
    facets = artifacts.facets(unique_id, namespace) if artifacts is not None else NodeFacets()
    if facets.tests:  # the node's tests read its table: an input, with what they asserted
        inputs.append(InputDataset(namespace=namespace, name=name, inputFacets=dict(facets.tests)))
    output = Dataset(namespace=namespace, name=name, facets=dict(facets.output))
    return OperatorLineage(inputs=inputs, outputs=[output], job_facets=dict(facets.job))


@dataclass(frozen=True)
class Completion:
    """A consumer that ended in the triggerer, whose COMPLETE event the producer sends."""

    task_id: str
    lineage: NodeLineage
    unique_id: str


def emit_completions(context: Context, completions: Sequence[Completion], run_folder: Path) -> int:
    """Send one COMPLETE event per consumer, as the consumer's first try would have, with its node's facets
    from the artifacts in ``run_folder``. Best effort."""
    if not completions:
        return 0
    try:
        from airflow.providers.openlineage import conf as ol_conf
        from airflow.providers.openlineage.plugins.listener import get_openlineage_listener
    except ImportError:
        return 0
    # The provider's switches, as its listener would apply them to the consumers' own events.
    if ol_conf.is_disabled() or CONSUMER_CLASSPATH in ol_conf.disabled_operators():
        return 0
    adapter = get_openlineage_listener().adapter
    artifacts = RunArtifacts.read(run_folder)
    dag_run = context["dag_run"]
    dag_id = dag_run.dag_id
    date: datetime = getattr(dag_run, "logical_date", None) or dag_run.run_after
    now = datetime.now(timezone.utc).isoformat()
    sent = 0
    for completion in completions:
        try:
            adapter.complete_task(
                run_id=adapter.build_task_instance_run_id(
                    dag_id=dag_id, task_id=completion.task_id, try_number=1, logical_date=date, map_index=-1
                ),
                job_name=f"{dag_id}.{completion.task_id}",
                end_time=now,
                task=operator_lineage(completion.lineage, artifacts, completion.unique_id),
                nominal_start_time=None,
                nominal_end_time=None,
                owners=None,
                tags=None,
                job_description=None,
            )
            sent += 1
        except Exception:
            log.warning("Could not send the OpenLineage event of %s", completion.task_id, exc_info=True)
    return sent
