"""CosmosTranslator gives the task ids and asset URIs Cosmos 1.15.1 gives the same project.

The expected names are Cosmos' own: tests/unit/data/cosmos_names/generate.py rendered the example
project with astronomer-cosmos 1.15.1 (ExecutionMode.WATCHER, a DbtTaskGroup ``jaffle_shop``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from airflow.sdk import DAG

from dbt_watcher import CosmosTranslator, dbt_watcher_group
from dbt_watcher.invocation.target import Target
from dbt_watcher.project.graph import Relation

from ..conftest import JAFFLE_SHOP

DATA = Path(__file__).parent / "data" / "cosmos_names"
START = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
#: Tasks one side has and the other has not: Cosmos' marker after its producer; dbt-watcher's audit.
COSMOS_ONLY = {"jaffle_shop.dbt_producer_watcher_done"}
OURS_ONLY = {"jaffle_shop.dbt_audit"}


def cosmos(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((DATA / name).read_text())
    return data


def rendered_task_ids(test_behavior: str) -> set[str]:
    @dbt_watcher_group(
        project_dir=str(JAFFLE_SHOP),
        test_behavior=test_behavior,  # type: ignore[arg-type]
        translator=CosmosTranslator(),  # follows the group's test_behavior
    )
    def jaffle_shop() -> None: ...

    with DAG(f"cosmos_{test_behavior}", schedule=None, start_date=START) as dag:
        jaffle_shop()
    return set(dag.task_dict)


@pytest.mark.parametrize("test_behavior", ["after_each", "after_all", "none"])
def test_task_ids_are_cosmos_own(test_behavior: str, cache_dir: Path) -> None:
    expected = set(cosmos(f"duckdb_{test_behavior}.json")["task_group"]["tasks"]) - COSMOS_ONLY
    assert rendered_task_ids(test_behavior) - OURS_ONLY == expected


def test_asset_uris_are_cosmos_own_on_duckdb_and_postgres(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    uris = cosmos("asset_uris.json")
    for target in ("duckdb", "postgres"):
        monkeypatch.setenv("JAFFLE_TARGET", target)

        @dbt_watcher_group(project_dir=str(JAFFLE_SHOP), translator=CosmosTranslator())
        def shop() -> None: ...

        _graph, plan = shop.load()
        ours = {spec.node.unique_id: [shop.asset(spec.node.name).uri] for spec in plan.consumers}
        # Cosmos reads the example's postgres port through plain Jinja, which lacks dbt's as_number, and
        # then emits nothing; with the same profile written plainly it emits these (airflow_normalized).
        assert ours == uris[target]["airflow_normalized"], target


@pytest.mark.parametrize(
    ("sample", "target"),
    [
        ("bigquery", Target("bigquery", "p", "t", database="DB")),
        ("databricks", Target("databricks", "p", "t", host="dbc-1234.cloud.databricks.com")),
        ("duckdb_absolute_path", Target("duckdb", "p", "t", path="/data/jaffle_shop.duckdb")),
        ("postgres_no_port", Target("postgres", "p", "t", host="db.example.com")),
        ("redshift", Target("redshift", "p", "t", host="cluster.abc.eu-west-1.redshift.amazonaws.com")),
        ("snowflake", Target("snowflake", "p", "t", account="xy12345.us-east-1")),
        ("snowflake_org_account", Target("snowflake", "p", "t", account="myorg-myaccount")),
    ],
)
def test_other_warehouses_get_cosmos_uris(sample: str, target: Target) -> None:
    expected = cosmos("asset_uris.json")["other_adapters"][sample]["DB.Schema.my_table"]
    assert CosmosTranslator().asset_uri(target, Relation("DB", "Schema", "my_table")) == expected


def test_a_warehouse_cosmos_emits_nothing_for_keeps_dbt_watchers_uri() -> None:
    target = Target("oracle", "p", "t", host="ora.example.com", database="ORCL")
    relation = Relation("ORCL", "sales", "orders")
    assert CosmosTranslator().asset_uri(target, relation) == "oracle://ora.example.com:1521/ORCL/sales/orders"


def test_a_versioned_model_is_named_as_cosmos_names_it() -> None:
    from dbt_watcher.project.graph import DbtNode

    node = DbtNode("model.edge.dim_things.v1", "model", "dim_things", "edge", ("edge", "dim_things"), version="1")
    translator = CosmosTranslator()
    assert translator.consumer_task_id(node, tested=False) == "dim_things_v1_run"
    assert translator.consumer_task_id(node, tested=True) == "dim_things_v1.run"
    assert translator.tests_task_id(node, "dim_things_v1.run") == "dim_things_v1.test"
    assert CosmosTranslator("after_all").consumer_task_id(node, tested=True) == "dim_things_v1_run"


def test_the_layout_follows_the_group_and_a_mismatch_or_a_bad_value_is_refused() -> None:
    import enum

    from dbt_watcher import ConfigurationError, WatcherConfig
    from dbt_watcher.modes import TestBehavior

    class CosmosTestBehavior(enum.Enum):  # as Cosmos' own enum spells it
        AFTER_EACH = "after_each"

    cfg = WatcherConfig(project_dir="p", test_behavior=TestBehavior.AFTER_ALL, translator=CosmosTranslator())
    naming = cfg.naming
    assert isinstance(naming, CosmosTranslator) and naming.test_behavior is TestBehavior.AFTER_ALL
    assert CosmosTranslator(CosmosTestBehavior.AFTER_EACH).test_behavior is TestBehavior.AFTER_EACH
    assert CosmosTranslator("AFTER_EACH").test_behavior is TestBehavior.AFTER_EACH
    with pytest.raises(ConfigurationError, match="another layout"):
        WatcherConfig(project_dir="p", test_behavior=TestBehavior.BUILD, translator=CosmosTranslator("after_each"))
    with pytest.raises(ConfigurationError, match="is not a test behaviour"):
        CosmosTranslator("afterwards")


def test_lineage_names_are_the_pair_cosmos_built_the_uri_from() -> None:
    translator = CosmosTranslator()
    assert translator.lineage_dataset("bigquery/DB/Schema/my_table") == ("bigquery", "DB.Schema.my_table")
    assert translator.lineage_dataset("duckdb:///data/x.duckdb/db/main/orders") == (
        "duckdb:///data/x.duckdb",
        "db.main.orders",
    )
    assert translator.lineage_dataset("postgres://h:5432/db/s/t") == ("postgres://h:5432", "db.s.t")


def test_a_task_id_equal_to_another_nodes_name_finds_its_own_consumer() -> None:
    from dbt_watcher.group.plan import build_plan

    from .graphs import graph, model

    # model `a` is task `a_run`; a model named `a_run` is task `a_run_run`: `report` depends on `a`
    g = graph(model("a_run"), model("a"), model("report", "model.shop.a"))
    plan = build_plan(g, naming=CosmosTranslator())
    (report,) = [spec for spec in plan.consumers if spec.node.name == "report"]
    assert report.upstream == ("a_run",)
    assert plan.find("a_run").node.unique_id == "model.shop.a"


def test_the_migration_example_keeps_every_cosmos_task_id(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # docs/migration.md's before/after pair, rendered by Cosmos itself where it is installed (the bench extra).
    pytest.importorskip("cosmos", reason="astronomer-cosmos is installed with the bench extra (make bench-quick)")
    from dbt_watcher.airflow_lines import dag_bag as DagBag

    monkeypatch.setenv("AIRFLOW__COSMOS__ENABLE_CACHE", "False")  # Cosmos' cache lives in Airflow's database
    examples = JAFFLE_SHOP.parent
    bags = [
        DagBag(dag_folder=str(examples / "migration" / "cosmos_dag.py"), safe_mode=False),
        DagBag(dag_folder=str(examples / "snippets" / "from_cosmos.py"), safe_mode=False),
    ]
    assert all(bag.import_errors == {} for bag in bags), [bag.import_errors for bag in bags]
    before, after = (set(bag.dags["jaffle_shop_from_cosmos"].task_dict) for bag in bags)
    assert before - COSMOS_ONLY == after - OURS_ONLY and len(after) == 26
