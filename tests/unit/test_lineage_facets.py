"""OpenLineage facets of a node from the run's artifacts (dbt_watcher.rules.lineage_facets), through
openlineage-integration-common, on artifacts shaped as dbt writes them (the real-stack proof is
tests/integration/test_breadth.py::test_each_consumer_reports_its_own_lineage)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from openlineage.client.serde import Serde

from dbt_watcher.rules.lineage import NodeLineage, operator_lineage
from dbt_watcher.rules.lineage_facets import RunArtifacts

ORDERS = "model.shop.orders"
SQL = (
    'select o.id, c.name as customer from "shop"."main"."stg_orders" o '
    'join "shop"."main"."stg_customers" c on o.cid = c.id'
)


def _test(name: str, column: str) -> dict[str, Any]:
    return {
        "name": f"{name}_orders_{column}",
        "test_metadata": {"name": name, "kwargs": {"column_name": column}},
        "config": {"severity": "ERROR"},
        "column_name": column,
    }


def _artifacts(folder: Path, *, catalog: bool = False) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    manifest = {
        "metadata": {
            "adapter_type": "duckdb",
            "dbt_schema_version": "https://schemas.getdbt.com/dbt/manifest/v12.json",
        },
        "nodes": {
            ORDERS: {
                "unique_id": ORDERS,
                "name": "orders",
                "alias": "orders",
                "database": "shop",
                "schema": "main",
                "description": "One row per order",
                "compiled_code": SQL,
                "columns": {
                    "id": {"name": "id", "description": "the order", "data_type": None},
                    "customer": {"name": "customer", "description": "who ordered", "data_type": None},
                },
                "config": {"materialized": "table"},
                "meta": {"owner": "sales"},
                "tags": [],
            },
            "test.shop.not_null_orders_id": _test("not_null", "id"),
            "test.shop.unique_orders_id": _test("unique", "id"),
            "test.shop.not_null_orders_customer": _test("not_null", "customer"),
        },
        "sources": {},
        "parent_map": {
            ORDERS: [],
            "test.shop.not_null_orders_id": [ORDERS],
            "test.shop.unique_orders_id": [ORDERS],
            "test.shop.not_null_orders_customer": [ORDERS],
        },
    }
    results = [
        {"unique_id": ORDERS, "status": "success", "failures": None},
        {"unique_id": "test.shop.not_null_orders_id", "status": "pass", "failures": 0},
        {"unique_id": "test.shop.unique_orders_id", "status": "fail", "failures": 2},
        {"unique_id": "test.shop.not_null_orders_customer", "status": "skipped", "failures": None},
    ]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "run_results.json").write_text(json.dumps({"results": results, "args": {"which": "build"}}))
    if catalog:
        columns = {"id": {"name": "id", "type": "INTEGER"}, "customer": {"name": "customer", "type": "VARCHAR"}}
        (folder / "docs").mkdir()
        (folder / "docs" / "catalog.json").write_text(json.dumps({"nodes": {ORDERS: {"columns": columns}}}))
    return folder


LINEAGE = NodeLineage(
    inputs=("duckdb://shop/main/stg_orders", "duckdb://shop/main/stg_customers"),
    output="duckdb://shop/main/orders",
)


def test_the_event_carries_sql_schema_column_lineage_and_the_tests_as_assertions(tmp_path: Path) -> None:
    artifacts = RunArtifacts.read(_artifacts(tmp_path / "run"))
    lineage = operator_lineage(LINEAGE, artifacts, ORDERS)

    assert lineage.job_facets["sql"].query == SQL
    assert lineage.job_facets["sql"].dialect == "duckdb"
    (output,) = lineage.outputs
    assert (output.namespace, output.name) == ("duckdb://shop", "shop.main.orders")
    schema = output.facets["schema"]
    assert [(f.name, f.description) for f in schema.fields] == [("id", "the order"), ("customer", "who ordered")]
    assert output.facets["documentation"].description == "One row per order"
    columns = output.facets["columnLineage"].fields
    assert {(f.name, f.field) for f in columns["customer"].inputFields} == {("shop.main.stg_customers", "name")}
    assert {(f.name, f.field) for f in columns["id"].inputFields} == {("shop.main.stg_orders", "id")}
    # The tests read the table: it is an input too, with what they asserted; a test dbt skipped asserted nothing.
    tested = [i for i in lineage.inputs if i.name == "shop.main.orders"]
    assertions = tested[0].inputFacets["dataQualityAssertions"].assertions
    # Before openlineage-integration-common 1.4x (Airflow 3.0-3.2's pins), an assertion is the test's name.
    assert sorted((a.assertion.split("_orders")[0], a.success) for a in assertions) == [
        ("not_null", True),
        ("unique", False),
    ]
    assert {a.column for a in assertions} <= {"id", None}
    assert {i.name for i in lineage.inputs} == {"shop.main.stg_orders", "shop.main.stg_customers", "shop.main.orders"}
    # What the provider's transport writes: each facet with its schema URL.
    event = json.loads(Serde.to_json(output))
    assert event["facets"]["schema"]["_schemaURL"].endswith("SchemaDatasetFacet.json#/$defs/SchemaDatasetFacet")


def test_column_types_come_from_the_catalog_when_docs_were_generated(tmp_path: Path) -> None:
    artifacts = RunArtifacts.read(_artifacts(tmp_path / "run", catalog=True))
    (output,) = operator_lineage(LINEAGE, artifacts, ORDERS).outputs
    assert [(f.name, f.type) for f in output.facets["schema"].fields] == [("id", "INTEGER"), ("customer", "VARCHAR")]


def test_without_readable_artifacts_the_event_keeps_its_datasets_and_has_no_facets(tmp_path: Path) -> None:
    assert RunArtifacts.read(tmp_path / "missing") is None
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "manifest.json").write_text("{not json")
    (broken / "run_results.json").write_text("{}")
    assert RunArtifacts.read(broken) is None
    lineage = operator_lineage(LINEAGE, None, ORDERS)
    assert lineage.job_facets == {}
    assert [(o.name, o.facets) for o in lineage.outputs] == [("shop.main.orders", {})]
    assert {i.name for i in lineage.inputs} == {"shop.main.stg_orders", "shop.main.stg_customers"}
    # A node the manifest does not hold: no facets, no error.
    artifacts = RunArtifacts.read(_artifacts(tmp_path / "run"))
    assert operator_lineage(LINEAGE, artifacts, "model.shop.elsewhere").job_facets == {}


def test_a_test_counts_for_the_node_it_is_attached_to_not_its_last_parent(tmp_path: Path) -> None:
    folder = _artifacts(tmp_path / "run")
    manifest = json.loads((folder / "manifest.json").read_text())
    # A relationships test defined on orders, whose other parent sorts after it.
    manifest["nodes"]["test.shop.unique_orders_id"]["attached_node"] = ORDERS
    manifest["parent_map"]["test.shop.unique_orders_id"] = [ORDERS, "model.shop.zz_customers"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    lineage = operator_lineage(LINEAGE, RunArtifacts.read(folder), ORDERS)
    tested = next(i for i in lineage.inputs if i.name == "shop.main.orders")
    assert len(tested.inputFacets["dataQualityAssertions"].assertions) == 2


def test_odd_artifacts_lose_facets_never_raise(tmp_path: Path) -> None:
    folder = _artifacts(tmp_path / "run", catalog=True)
    catalog = json.loads((folder / "docs" / "catalog.json").read_text())
    catalog["nodes"][ORDERS]["columns"]["customer"]["type"] = None  # the library asserts a type
    (folder / "docs" / "catalog.json").write_text(json.dumps(catalog))
    lineage = operator_lineage(LINEAGE, RunArtifacts.read(folder), ORDERS)
    assert [f.name for f in lineage.outputs[0].facets["schema"].fields] == ["id"]
    assert "sql" in lineage.job_facets  # the other facets stay
    # A manifest the library cannot read (no metadata), and JSON nested past Python's recursion limit.
    manifest = json.loads((folder / "manifest.json").read_text())
    del manifest["metadata"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    assert operator_lineage(LINEAGE, RunArtifacts.read(folder), ORDERS).job_facets == {}
    (folder / "manifest.json").write_text("[" * 100_000 + "]" * 100_000)
    assert RunArtifacts.read(folder) is None


def test_the_consumer_class_path_the_docs_give_to_turn_events_off_is_the_operators() -> None:
    from dbt_watcher.consumer.operator import DbtConsumerOperator
    from dbt_watcher.rules.lineage import CONSUMER_CLASSPATH

    assert f"{DbtConsumerOperator.__module__}.{DbtConsumerOperator.__qualname__}" == CONSUMER_CLASSPATH
