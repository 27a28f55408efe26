"""OpenLineage facets of one node, read from this run's own dbt artifacts.

openlineage-integration-common (installed with the OpenLineage provider) turns dbt's manifest,
run_results and catalog into facets for the one-job-per-node events of its own dbt integration.
dbt-watcher reports one job per consumer, so it asks the same library for one node's facets:

* the job: the compiled SQL (``sql``) this run executed;
* the node's table: its schema (``schema``: column types from the catalog of ``docs=True``, else the
  columns the project documents), ``documentation``, ``ownership`` and the other dataset facets the
  library builds, and column lineage parsed from the compiled SQL (``columnLineage``);
* the tests this run ran on it, as data-quality assertions (``dataQualityAssertions``, an input facet:
  a test reads the table).

Facets are best effort: without the library, or when an artifact is missing or unreadable, the event
keeps its datasets and goes without facets. Lineage degrades; a task's state never depends on it.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from dbt_watcher.rules.artifacts import read_json_object

log = logging.getLogger(__name__)

#: The files of one run folder (dbt_watcher.rules.artifacts) the facets come from.
MANIFEST, RUN_RESULTS, CATALOG = "manifest.json", "run_results.json", "docs/catalog.json"


@dataclass(frozen=True)
class NodeFacets:
    """What one node's OpenLineage event carries beside its datasets."""

    #: Job facets (``sql``).
    job: Mapping[str, Any] = field(default_factory=dict)
    #: Dataset facets of the node's table (``schema``, ``columnLineage``, ``documentation``, ...).
    output: Mapping[str, Any] = field(default_factory=dict)
    #: Input facets of the node's table as its tests read it (``dataQualityAssertions``).
    tests: Mapping[str, Any] = field(default_factory=dict)


class RunArtifacts:
    """One run's manifest, run_results and (optional) catalog, read once for every node reported from them."""

    def __init__(self, manifest: dict[str, Any], run_results: dict[str, Any], catalog: dict[str, Any] | None) -> None:
        self.manifest = manifest
        self.run_results = run_results
        self.catalog = catalog

    @classmethod
    def read(cls, folder: Path | None) -> RunArtifacts | None:
        """The artifacts of a run folder or a dbt target folder; None when it has no manifest or results, or
        they cannot be read (never raises: lineage must not end a task)."""
        try:
            if folder is None or not folder.is_dir():
                return None
            manifest, run_results = read_json_object(folder / MANIFEST), read_json_object(folder / RUN_RESULTS)
            if manifest is None or run_results is None:
                return None
            return cls(manifest, run_results, read_json_object(folder / CATALOG))
        except Exception:  # also JSON nested past Python's recursion limit
            log.warning("Could not read the dbt artifacts in %s for OpenLineage facets", folder, exc_info=True)
            return None

    @cached_property
    def _processor(self) -> Any:
        """The library's artifact processor, used for its per-node helpers (None without the library, or
        for artifacts it cannot read: decided once, not once per node)."""
        try:
            from openlineage.common.provider.dbt.processor import DbtArtifactProcessor
        except ImportError:
            return None
        try:
            processor = DbtArtifactProcessor(producer="dbt-watcher", job_namespace="", skip_errors=True, logger=log)
            # What the processor's own parse() sets before it reads nodes; its helpers depend on it.
            processor.manifest_version = processor.get_schema_version(self.manifest)
        except Exception:
            log.warning("This run's manifest gives no OpenLineage facets", exc_info=True)
            return None
        adapter = str(self.manifest.get("metadata", {}).get("adapter_type") or "")
        with contextlib.suppress(NotImplementedError, KeyError):  # the SQL dialect; unknown adapters have none
            processor.extract_adapter_type({"type": adapter})
        return processor

    @cached_property
    def _model_node_has_type(self) -> bool:
        """The node's kind became a field of ModelNode in openlineage-integration-common 1.4x (Airflow 3.0 pins
        1.37)."""
        from openlineage.common.provider.dbt.processor import ModelNode

        return "type" in inspect.signature(ModelNode).parameters

    @cached_property
    def _compiled(self) -> dict[str, str]:
        """The SQL each node of this run executed, from run_results (indexed once for every node)."""
        return {
            str(r["unique_id"]): r["compiled_code"]
            for r in self.run_results.get("results", [])
            if isinstance(r, dict) and "unique_id" in r and isinstance(r.get("compiled_code"), str)
        }

    @cached_property
    def _assertions(self) -> dict[str, list[Any]]:
        """The tests of this run, by the node they are attached to (dbt's ``attached_node``: a relationships
        test defined on ``orders`` checks ``orders``, whatever its parents' order)."""
        try:
            return self._tests_by_node()
        except Exception:  # the other facets do not depend on these
            log.warning("Could not read this run's tests as OpenLineage assertions", exc_info=True)
            return {}

    def _tests_by_node(self) -> dict[str, list[Any]]:
        from openlineage.common.provider.dbt.processor import DbtRunContext

        nodes = {uid: node for uid, node in self.manifest.get("nodes", {}).items() if uid.startswith("test.")}
        # A test dbt skipped asserted nothing (the library would report it as failed).
        results = [
            r
            for r in self.run_results.get("results", [])
            if str(r.get("unique_id", "")) in nodes and r.get("status") in ("pass", "warn", "fail", "error")
        ]
        # The library gives a test to its last model, seed or source parent; a parent map naming only the
        # attached node makes that rule dbt's.
        parents = dict(self.manifest.get("parent_map", {}))
        parents.update({uid: [node["attached_node"]] for uid, node in nodes.items() if node.get("attached_node")})
        manifest = {**self.manifest, "parent_map": parents}
        context = DbtRunContext(manifest, {**self.run_results, "results": results}, self.catalog)
        return dict(self._processor.parse_assertions(context, nodes))

    def facets(self, unique_id: str, namespace: str) -> NodeFacets:
        """The facets of one node; ``namespace`` is its table's OpenLineage namespace. Empty when unknown."""
        try:
            if self._processor is None:
                return NodeFacets()
            return self._facets(unique_id, namespace)
        except Exception:  # a library or artifact we do not understand must not break the event
            log.warning("Could not build the OpenLineage facets of %s", unique_id, exc_info=True)
            return NodeFacets()

    def _facets(self, unique_id: str, namespace: str) -> NodeFacets:
        from openlineage.client.facet_v2 import data_quality_assertions_dataset, sql_job
        from openlineage.common.provider.dbt.processor import ModelNode

        node = self.manifest.get("nodes", {}).get(unique_id)
        if not isinstance(node, dict):
            return NodeFacets()
        processor = self._processor
        processor.dataset_namespace = namespace  # the library's dataSource facet names it
        catalog_node = (self.catalog or {}).get("nodes", {}).get(unique_id)
        if isinstance(catalog_node, dict):  # the library refuses a column without a type: leave such columns out
            columns = catalog_node.get("columns") or {}
            typed = {name: c for name, c in columns.items() if isinstance(c, dict) and isinstance(c.get("type"), str)}
            catalog_node = {**catalog_node, "columns": typed}
        fields = {"metadata_node": node, "catalog_node": catalog_node}
        if self._model_node_has_type:
            fields["type"] = unique_id.split(".", 1)[0]
        _, _, output, _ = processor.extract_dataset_data(ModelNode(**fields), None, has_facets=True)
        job: dict[str, Any] = {}
        sql = node.get("compiled_code") or self._compiled.get(unique_id)
        if sql:
            job["sql"] = sql_job.SQLJobFacet(query=sql, dialect=processor.extract_dialect())
            column_lineage = _column_lineage(processor, namespace, sql)
            if column_lineage is not None:
                output["columnLineage"] = column_lineage
        assertions = self._assertions.get(unique_id)
        tests = (
            {"dataQualityAssertions": data_quality_assertions_dataset.DataQualityAssertionsDatasetFacet(assertions)}
            if assertions
            else {}
        )
        return NodeFacets(job=job, output=output, tests=tests)


def _column_lineage(processor: Any, namespace: str, sql: str) -> Any:
    """Column lineage of the compiled SQL, or None. OpenLineage's SQL parser is Rust: a panic in it reaches
    Python as a BaseException (pyo3's PanicException) that no ``except Exception`` stops."""
    try:
        return processor.get_column_lineage(namespace, sql)
    except Exception:
        log.warning("Could not parse column lineage", exc_info=True)
    except BaseException as error:
        if type(error).__name__ != "PanicException":
            raise  # a timeout or termination Airflow raises is Airflow's
        log.warning("OpenLineage's SQL parser panicked on this node's SQL: %s", error)
    return None
