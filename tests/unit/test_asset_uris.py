"""Asset URIs per warehouse (dbt_watcher.rules.assets) and their OpenLineage names (dbt_watcher.rules.lineage).

The URIs are checked against the providers' own URI checks in tests/integration/test_asset_uris.py;
here each adapter's rule gives the documented URI, and each OpenLineage name equals what the
OpenLineage client's naming classes give for the same table.
"""

from __future__ import annotations

import pytest
from openlineage.client.naming import dataset as ol

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.invocation.target import Target
from dbt_watcher.project.graph import Relation
from dbt_watcher.rules.assets import URI_RULES, relation_uri
from dbt_watcher.rules.lineage import dataset_name
from dbt_watcher.rules.translator import DEFAULT_TRANSLATOR


def target(adapter: str, **facts: object) -> Target:
    return Target(adapter, "profile", "prod", **facts)  # type: ignore[arg-type]


#: (target, relation, URI): one table per adapter, as its profiles.yml and manifest describe it.
CASES = [
    (
        target("postgres", host="DB.example", port=None),
        Relation("wh", "mart", "orders"),
        "postgres://db.example:5432/wh/mart/orders",
    ),
    (
        target("redshift", host="c1.abc.eu-west-1.redshift.amazonaws.com"),
        Relation("dev", "mart", "orders"),
        "redshift://c1.abc.eu-west-1.redshift.amazonaws.com:5439/dev/mart/orders",
    ),
    (
        target("snowflake", account="MyOrg-MyAcct"),
        Relation("ANALYTICS", "MART", "ORDERS"),
        "snowflake://myorg-myacct/ANALYTICS/MART/ORDERS",
    ),
    (target("bigquery", database="proj-1"), Relation(None, "mart", "orders"), "bigquery://proj-1/mart/orders"),
    (
        target("databricks", host="adb-1.azuredatabricks.net"),
        Relation("Main", "Mart", "Orders"),
        "databricks://adb-1.azuredatabricks.net/main/mart/orders",
    ),
    (
        target("trino", host="trino.example", port=443),
        Relation("hive", "mart", "orders"),
        "trino://trino.example:443/hive/mart/orders",
    ),
    (
        target("sqlserver", host="sql.example"),
        Relation("wh", "dbo", "orders"),
        "mssql://sql.example:1433/wh/dbo/orders",
    ),
    (
        target("fabric", host="x.datawarehouse.fabric.microsoft.com"),
        Relation("wh", "dbo", "orders"),
        "fabric-warehouse://x.datawarehouse.fabric.microsoft.com/wh/dbo/orders",
    ),
    (target("mysql", host="my.example"), Relation(None, "shop", "orders"), "mysql://my.example:3306/shop/orders"),
    (
        target("oracle", host="ora.example"),
        Relation("ORCL", "MART", "ORDERS"),
        "oracle://ora.example:1521/ORCL/MART/ORDERS",
    ),
    (target("teradata", host="td.example"), Relation(None, "mart", "orders"), "teradata://td.example:1025/mart/orders"),
    (target("vertica", host="v.example"), Relation("wh", "mart", "orders"), "vertica://v.example:5433/wh/mart/orders"),
    (
        target("clickhouse", host="ch.example", port=8443),
        Relation(None, "mart", "orders"),
        "clickhouse://ch.example:8443/mart/orders",
    ),
    (target("spark", host="spark.example"), Relation(None, "mart", "orders"), "spark://spark.example:443/mart/orders"),
    (
        target("athena", region="eu-west-1", database="awsdatacatalog"),
        Relation(None, "mart", "orders"),
        "awsathena://athena.eu-west-1.amazonaws.com/awsdatacatalog/mart/orders",
    ),
    (target("duckdb", database="jaffle"), Relation("jaffle", "main", "orders"), "duckdb://jaffle/main/orders"),
]


@pytest.mark.parametrize(("tgt", "relation", "uri"), CASES, ids=[c[0].adapter_type for c in CASES])
def test_each_adapter_gets_the_uri_its_provider_uses(tgt: Target, relation: Relation, uri: str) -> None:
    assert relation_uri(tgt, relation) == uri


def test_every_rule_has_a_case() -> None:
    assert set(URI_RULES) - {"synapse", "mariadb"} == {c[0].adapter_type for c in CASES}


def test_an_ipv6_host_is_bracketed() -> None:
    assert relation_uri(target("postgres", host="::1"), Relation("d", "s", "t")) == "postgres://[::1]:5432/d/s/t"


#: The OpenLineage client's naming of the same tables (where it has a class for the warehouse).
OPENLINEAGE = {
    "postgres": ol.Postgres(host="db.example", port="5432", database="wh", schema="mart", table="orders"),
    "snowflake": ol.Snowflake(
        organization_name="myorg", account_name="myacct", database="ANALYTICS", schema="MART", table="ORDERS"
    ),
    "bigquery": ol.BigQuery(project_id="proj-1", dataset_name="mart", table_name="orders"),
    "trino": ol.Trino(host="trino.example", port="443", catalog="hive", schema="mart", table="orders"),
    "mysql": ol.MySQL(host="my.example", port="3306", database="shop", table="orders"),
    "oracle": ol.Oracle(host="ora.example", port="1521", service_name="ORCL", schema="MART", table="ORDERS"),
    "teradata": ol.Teradata(host="td.example", port="1025", database="mart", table="orders"),
    "athena": ol.Athena(region_name="eu-west-1", catalog="awsdatacatalog", database="mart", table="orders"),
}


@pytest.mark.parametrize("adapter", sorted(OPENLINEAGE))
def test_openlineage_names_match_the_openlineage_client(adapter: str) -> None:
    tgt, relation, _ = next(c for c in CASES if c[0].adapter_type == adapter)
    naming = OPENLINEAGE[adapter]
    assert dataset_name(relation_uri(tgt, relation)) == (naming.get_namespace(), naming.get_name())


def test_a_uri_that_cannot_be_built_is_a_configuration_error_that_says_what_to_do() -> None:
    no_host = target("postgres")
    with pytest.raises(
        ConfigurationError,
        match=r"(?s)postgres target 'prod' has no asset URI: .* names the target's host.*emit_assets=False",
    ):
        DEFAULT_TRANSLATOR.uri(no_host, Relation("wh", "mart", "orders"))
    no_account = target("snowflake", database="A")
    with pytest.raises(ConfigurationError, match=r"(?s)target's account, which is not set.*docs/assets\.md"):
        DEFAULT_TRANSLATOR.uri(no_account, Relation("A", "B", "C"))


def test_an_unknown_adapter_keeps_every_name_part_and_never_an_empty_one() -> None:
    assert relation_uri(target("materialize", database="db"), Relation(None, "s", "t")) == "materialize://db/db/s/t"
    assert relation_uri(target("exasol", host="x", port=8563), Relation(None, "s", "t")) == "exasol://x:8563/s/t"
