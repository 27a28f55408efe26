"""How dbt nodes become Airflow objects: one class to subclass when a rule should be different.

Pass an instance as ``translator=``; every method you do not override keeps dbt-watcher's rule:

.. code-block:: python

    class OurTranslator(DbtWatcherTranslator):
        def task_id(self, node):
            return f"{node.package}__{node.name}"  # always prefixed with the dbt package

    @dbt_watcher_group(project_dir="dbt/shop", translator=OurTranslator())
    def shop(): ...

All of it runs while the DAG file is parsed: a method may not depend on a run.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.invocation.target import Target
from dbt_watcher.modes import TestBehavior
from dbt_watcher.project.graph import DbtNode, DbtSource, Relation
from dbt_watcher.rules.assets import relation_uri
from dbt_watcher.rules.lineage import dataset_name

if TYPE_CHECKING:
    from airflow.sdk import Asset

#: A task id Airflow accepts (its key rule), short enough for group prefixes.
_TASK_ID = re.compile(r"[\w.-]{1,200}")


class DbtWatcherTranslator:
    """The naming and per-node rules of a group (docs/overrides.md, "Translator")."""

    def task_id(self, node: DbtNode) -> str:
        """A consumer's task id, before Airflow's character rule and clash handling are applied.

        Default: the node's name, ``_v<version>`` added for a versioned model (a ``.`` in the version
        becomes ``_``).
        """
        return node.name + (f"_v{node.version.replace('.', '_')}" if node.version else "")

    def consumer_task_id(self, node: DbtNode, tested: bool) -> str:
        """The id the plan gives a node's consumer; ``tested``: some dbt test depends on the node.
        Default: :meth:`task_id` (a layout may name tested nodes otherwise: :class:`CosmosTranslator`)."""
        return self.task_id(node)

    def tests_task_id(self, node: DbtNode, consumer_task_id: str) -> str:
        """The task of a node's tests under ``test_behavior="after_each"``. Default: ``<consumer>_tests``."""
        return f"{consumer_task_id}_tests"

    def producer_task_id(self) -> str:
        """The producer's task id (in the group). Default: ``dbt_producer``."""
        return "dbt_producer"

    def audit_task_id(self) -> str:
        """The audit's task id (in the group). Default: ``dbt_audit``."""
        return "dbt_audit"

    def after_all_tests_task_id(self, project_folder: str) -> str:
        """The ``dbt test`` task under ``test_behavior="after_all"``; ``project_folder``: the name of the
        folder holding dbt_project.yml. Default: ``dbt_tests``."""
        return "dbt_tests"

    def for_group(self, test_behavior: TestBehavior) -> DbtWatcherTranslator:
        """This translator as a group with ``test_behavior`` uses it. Default: itself; a translator whose
        names depend on the layout (:class:`CosmosTranslator`) takes the group's or refuses a mismatch."""
        return self

    # ---- built on the rules above (not meant to be overridden)
    def fixed_task_ids(self, project_folder: str) -> frozenset[str]:
        """The task ids no consumer may take (producer, audit, ``after_all`` tests)."""
        ids = (self.producer_task_id(), self.audit_task_id(), self.after_all_tests_task_id(project_folder))
        for task_id in ids:
            if not isinstance(task_id, str) or not _TASK_ID.fullmatch(task_id):
                raise ConfigurationError(
                    f"The translator {type(self).__name__} gives the task id {task_id!r}, which Airflow refuses.",
                    "Return a non-empty task id of letters, digits, '_', '-' and '.' (at most 200 characters).",
                )
        return frozenset(ids)

    def asset_uri(self, target: Target, relation: Relation) -> str:
        """The Asset URI of a relation (a node's or a source's). Default: docs/assets.md."""
        return relation_uri(target, relation)

    def lineage_dataset(self, uri: str) -> tuple[str, str]:
        """The OpenLineage (namespace, name) of a relation, given its Asset URI."""
        return dataset_name(uri)

    def doc_md(self, node: DbtNode) -> str:
        """The consumer task's documentation (Markdown, shown on the task's Details page): the node's
        id and file, dbt's description of it and of its columns (from the manifest, at no dbt cost)."""
        lines = [f"dbt {node.resource_type} `{node.unique_id}` ({node.original_file_path})"]
        if node.description:
            lines += ["", node.description]
        if node.columns:
            lines += ["", "| column | description |", "| --- | --- |"]
            lines += [f"| `{name}` | {_cell(text)} |" for name, text in node.columns]
        return "\n".join(lines)

    def uri(self, target: Target, relation: Relation) -> str:
        """:meth:`asset_uri`, with a URI that cannot be built reported as a configuration error.

        Raises:
            ConfigurationError: the rule needs a fact the target lacks (its host, say).
        """
        try:
            return self.asset_uri(target, relation)
        except ValueError as exc:
            raise _uri_error(target, relation, exc) from exc

    def node_asset(self, target: Target, node: DbtNode) -> Asset:
        if node.relation is None:
            raise ValueError(f"dbt node {node.unique_id} has no relation, so it has no asset")
        return self._asset(target, node.relation)

    def source_asset(self, target: Target, source: DbtSource) -> Asset:
        return self._asset(target, source.relation)

    def _asset(self, target: Target, relation: Relation) -> Asset:
        from airflow.sdk import Asset

        uri = self.uri(target, relation)
        try:  # the installed provider of the URI's scheme checks it here (its `asset-uris` handler)
            return Asset(uri=uri)
        except ValueError as exc:
            raise _uri_error(target, relation, exc, uri) from exc

    def operator_args(self, node: DbtNode) -> dict[str, Any]:
        """Operator arguments of the node's consumer, applied after every other source of them
        (``operator_args``, ``meta.airflow``, ``node_operator_args``); checked like those. Default: none."""
        return {}


def _cell(text: str) -> str:
    """Text that stays in one Markdown table cell."""
    return " ".join(text.split()).replace("|", "\\|")


def _uri_error(target: Target, relation: Relation, exc: ValueError, uri: str | None = None) -> ConfigurationError:
    what = f"the asset URI {uri!r}" if uri else "no asset URI"
    return ConfigurationError(
        f"dbt relation {relation.database}.{relation.schema}.{relation.identifier} of the {target.adapter_type} "
        f"target {target.target_name!r} has {what}: {exc}",
        "Complete the target in profiles.yml (docs/assets.md lists what each warehouse's URI needs), give "
        "translator= an asset_uri method, or pass emit_assets=False.",
    )


DEFAULT_TRANSLATOR = DbtWatcherTranslator()
