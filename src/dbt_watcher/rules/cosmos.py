"""Task ids and asset URIs as astronomer-cosmos 1.15 names them, for a switch from Cosmos in one line.

A Cosmos ``ExecutionMode.WATCHER`` deployment is named on by other things: ``xcom_pull`` calls, external
task sensors, alert rules, and DAGs scheduled on its models' assets. ``translator=CosmosTranslator()``
keeps those names, so only the DAG file changes (docs/migration.md):

* consumers ``<name>_run`` for a model, ``<name>_seed``, ``<name>_snapshot``, where ``<name>`` is the node's
  unique id after its package with ``.`` turned into ``_`` (a versioned model: ``dim_v2``);
* with Cosmos' default ``TestBehavior.AFTER_EACH`` (the group's ``test_behavior="after_each"``), a node
  some test depends on is ``<name>.run`` and its tests ``<name>.test`` (Cosmos nests them in a task group
  ``<name>``: the ids are the same);
* the producer ``dbt_producer_watcher``; ``after_all``'s test task ``<project folder>_test``;
* asset URIs as Cosmos emits them on Airflow 3 (``<namespace>/<database>/<schema>/<table>``, the
  namespace OpenLineage's: ``postgres://host:5432``, ``duckdb://<path as in profiles.yml>``, ``bigquery``,
  ...); warehouses Cosmos emits no asset for keep dbt-watcher's URIs.

Checked against Cosmos 1.15.1 rendering the example project (tests/unit/data/cosmos_names, generated
by the script there). What dbt-watcher adds keeps its own name: the audit (``dbt_audit``). Cosmos' own
extras have no counterpart here: the ``dbt_producer_watcher_done`` task of a task group, tasks for
sources, and ``TestBehavior.BUILD``, which Cosmos 1.15 refuses in watcher mode.
"""

from __future__ import annotations

from pathlib import PurePath
from urllib.parse import quote, unquote

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.invocation.target import Target
from dbt_watcher.modes import TestBehavior
from dbt_watcher.project.graph import DbtNode, Relation
from dbt_watcher.rules.translator import DbtWatcherTranslator

#: The task suffix Cosmos gives each resource type (a model's is the command it ran).
_SUFFIX = {"model": "run", "seed": "seed", "snapshot": "snapshot"}
#: How Cosmos names the server of each warehouse it emits assets for by its host (the OpenLineage
#: namespace): the scheme, and the port written when the profile sets none (None: no port).
_NAMESPACES: dict[str, tuple[str, int | None]] = {
    "postgres": ("postgres", 5432),
    "redshift": ("redshift", 5439),
    "trino": ("trino", 8080),
    "clickhouse": ("clickhouse", 8123),
    "sqlserver": ("mssql", 1433),
    "databricks": ("databricks", None),
}


class CosmosTranslator(DbtWatcherTranslator):
    """Cosmos 1.15's names for the same project (see the module docstring).

    The layout follows the group's ``test_behavior=``: give the group the ``RenderConfig.test_behavior``
    of the Cosmos DAG being replaced (Cosmos' default is ``"after_each"``). ``test_behavior`` here, when
    given (a string, dbt-watcher's ``TestBehavior`` or Cosmos' own enum), must be the group's.
    """

    def __init__(self, test_behavior: object = None) -> None:
        self.test_behavior = None if test_behavior is None else _behavior(test_behavior)

    def for_group(self, test_behavior: TestBehavior) -> CosmosTranslator:
        if self.test_behavior is None:
            return CosmosTranslator(test_behavior)
        if self.test_behavior is not test_behavior:
            raise ConfigurationError(
                f"CosmosTranslator({self.test_behavior.value!r}) names tasks for another layout than the "
                f"group's test_behavior={test_behavior.value!r}.",
                "Pass the group the test_behavior of the Cosmos DAG it replaces, and CosmosTranslator() "
                "without one (it follows the group).",
            )
        return self

    @property
    def _layout(self) -> TestBehavior:
        return self.test_behavior or TestBehavior.AFTER_EACH  # unbound: Cosmos' default

    def task_id(self, node: DbtNode) -> str:
        return "_".join(_name_and_suffix(node))

    def consumer_task_id(self, node: DbtNode, tested: bool) -> str:
        if tested and self._layout is TestBehavior.AFTER_EACH:
            return ".".join(_name_and_suffix(node))  # the node's task group, then its task
        return self.task_id(node)

    def tests_task_id(self, node: DbtNode, consumer_task_id: str) -> str:
        return f"{consumer_task_id.rpartition('.')[0] or consumer_task_id}.test"

    def producer_task_id(self) -> str:
        return "dbt_producer_watcher"

    def after_all_tests_task_id(self, project_folder: str) -> str:
        return f"{PurePath(project_folder).stem}_test"  # Cosmos names it after the folder's stem

    def lineage_dataset(self, uri: str) -> tuple[str, str]:
        """OpenLineage's (namespace, name), the pair Cosmos built the URI from: every Cosmos URI ends in
        ``/<database>/<schema>/<table>`` after the namespace."""
        head, _, tail = uri.rpartition("/")
        head, _, schema = head.rpartition("/")
        namespace, _, database = head.rpartition("/")
        if not namespace or (namespace != "bigquery" and "://" not in namespace):
            return super().lineage_dataset(uri)  # one of dbt-watcher's own URIs (a warehouse Cosmos skips)
        return namespace, ".".join(unquote(part) for part in (database, schema, tail))

    def asset_uri(self, target: Target, relation: Relation) -> str:
        authority = _cosmos_authority(target)
        if authority is None:
            return super().asset_uri(target, relation)
        database = relation.database or target.database
        schema = relation.schema or target.schema
        # Cosmos quotes the dotted name as one string, then turns its dots into path separators.
        return authority + "/" + quote(f"{database}.{schema}.{relation.identifier}").replace(".", "/")


def _name_and_suffix(node: DbtNode) -> tuple[str, str]:
    """Cosmos' node name (its unique id after the package, dots as ``_``) and its task suffix."""
    return node.unique_id.split(".", 2)[-1].replace(".", "_"), _SUFFIX.get(node.resource_type, node.resource_type)


def _behavior(value: object) -> TestBehavior:
    """A test behaviour given as text, as dbt-watcher's enum, or as Cosmos' ``TestBehavior``."""
    text = str(getattr(value, "value", value)).lower()
    try:
        return TestBehavior(text)
    except ValueError:
        raise ConfigurationError(
            f"CosmosTranslator(test_behavior={value!r}) is not a test behaviour.",
            f"Pass one of {', '.join(repr(b.value) for b in TestBehavior)}, or nothing to follow the group's.",
        ) from None


def _cosmos_authority(target: Target) -> str | None:
    """The OpenLineage namespace Cosmos writes before a relation's path (``postgres://host:5432``,
    ``bigquery``); None where Cosmos emits no asset (a warehouse it does not name, a fact missing)."""
    kind = target.adapter_type
    if kind in _NAMESPACES:
        scheme, default_port = _NAMESPACES[kind]
        host = target.host or ("localhost" if default_port else None)
        if host is None:
            return None
        port = target.port or default_port
        return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"
    if kind == "snowflake" and target.account:
        return f"snowflake://{_snowflake_account(target.account)}"
    if kind == "bigquery":
        return "bigquery"  # the project is the relation's database, the first part of the path
    if kind == "athena":
        return f"awsathena://athena.{target.region or 'us-east-1'}.amazonaws.com"
    if kind == "duckdb" and target.path:
        return f"duckdb://{target.path}"
    return None


def _snowflake_account(account: str) -> str:
    """The account as OpenLineage names it (region and cloud completed), as Cosmos does when the
    OpenLineage integration is installed; as written otherwise."""
    try:
        from openlineage.common.provider.snowflake import fix_account_name
    except ImportError:
        return account
    return str(fix_account_name(account))
