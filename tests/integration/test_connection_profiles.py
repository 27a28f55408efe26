"""Every connection-profile rule against the real adapter: dbt loads each rendered profile with the
adapter's own credentials class, and ``dbt parse`` accepts it — no warehouse needed, nothing mocked.

The adapters live in a virtualenv of their own (built here with uv; they are not dependencies of the
suite). Each case is an Airflow Connection as a user would create it for that warehouse's provider; the
profile is rendered by dbt-watcher in this interpreter, then checked twice in the adapters' one: with
the secrets (a run) and with the parse-time stand-ins (DAG parsing), and no secret may be in the file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from airflow.sdk import Connection

from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.invocation.profiles import rendered_profile

pytestmark = pytest.mark.integration

UV = Path(sys.executable).parent / "uv"
ADAPTERS = (
    "dbt-core==1.11.16",
    "dbt-postgres==1.11.0",
    "dbt-redshift==1.11.2",
    "dbt-snowflake==1.12.4",
    "dbt-bigquery==1.12.1",
    "dbt-databricks==1.12.7",
    "dbt-trino==1.11.0",
    "dbt-sqlserver==1.11.3",
    "dbt-clickhouse==1.10.3",
    "dbt-spark[PyHive]==1.10.3",
    "dbt-athena==1.11.1",
    "dbt-duckdb==1.11.1",
)
KEY_JSON = {"type": "service_account", "project_id": "proj-1", "private_key": "-----BEGIN PRIVATE KEY-----\nabc"}


def conn(conn_type: str, **fields: Any) -> Connection:
    extra = fields.pop("extra", {})
    return Connection(conn_id=f"{conn_type}_case", conn_type=conn_type, extra=json.dumps(extra), **fields)


#: (case, connection, adapter type, settings the loaded credentials must have)
CASES: list[tuple[str, Connection, str, dict[str, Any]]] = [
    ("postgres-tls", conn("postgres", host="pg", port=5433, login="u", password="pg-s3cret-1", schema="wh",
                          extra={"dbt_schema": "mart", "sslmode": "verify-full", "sslrootcert": "/ca.pem",
                                 "role": "transformer", "search_path": "mart", "keepalives_idle": 30}),
     "postgres", {"host": "pg", "port": 5433, "database": "wh", "schema": "mart", "sslmode": "verify-full",
                  "role": "transformer", "keepalives_idle": 30}),
    ("redshift-password", conn("redshift", host="c1.abc.eu-west-1.redshift.amazonaws.com", login="u",
                               password="rs-s3cret-1", schema="dev"),
     "redshift", {"host": "c1.abc.eu-west-1.redshift.amazonaws.com", "port": 5439, "database": "dev"}),
    ("redshift-iam", conn("redshift", host="c1.abc.eu-west-1.redshift.amazonaws.com", login="u", schema="dev",
                          extra={"iam": True, "cluster_identifier": "c1", "region": "eu-west-1", "profile": "etl"}),
     "redshift", {"method": "iam", "cluster_id": "c1", "iam_profile": "etl"}),
    ("snowflake-password", conn("snowflake", login="u", password="sf-s3cret-1", schema="MART",
                                extra={"account": "myorg-myacct", "warehouse": "WH", "database": "ANALYTICS",
                                       "role": "R"}),
     "snowflake", {"account": "myorg-myacct", "database": "ANALYTICS", "schema": "MART", "warehouse": "WH"}),
    ("snowflake-keypair", conn("snowflake", login="u", password="kp-passphrase-1", schema="MART",
                               extra={"account": "myorg-myacct", "database": "ANALYTICS",
                                      "private_key_content": "-----BEGIN ENCRYPTED PRIVATE KEY-----\nxyz"}),
     "snowflake", {"account": "myorg-myacct"}),
    ("snowflake-keyfile", conn("snowflake", login="u", schema="MART",
                               extra={"account": "myorg-myacct", "database": "ANALYTICS",
                                      "private_key_file": "/keys/rsa_key.p8"}),
     "snowflake", {"private_key_path": "/keys/rsa_key.p8"}),
    ("snowflake-oauth", conn("snowflake", login="u", schema="MART",
                             extra={"account": "myorg-myacct", "database": "ANALYTICS", "authenticator": "oauth",
                                    "token": "sf-oauth-token-1"}),
     "snowflake", {"authenticator": "oauth"}),
    # The Airflow Snowflake hook's refresh-token layout: client id in login, client secret in password.
    ("snowflake-oauth-refresh", conn("snowflake", login="client-1", password="sf-client-s3cret-1", schema="MART",
                                     extra={"account": "myorg-myacct", "database": "ANALYTICS",
                                            "authenticator": "oauth", "refresh_token": "sf-refresh-1"}),
     "snowflake", {"authenticator": "oauth", "oauth_client_id": "client-1"}),
    ("postgres-no-login", conn("postgres", host="pg", schema="wh"), "postgres", {"user": ""}),
    ("bigquery-keyfile", conn("google_cloud_platform", schema="mart",
                              extra={"project": "proj-1", "key_path": "/keys/sa.json", "location": "EU"}),
     "bigquery", {"database": "proj-1", "schema": "mart", "keyfile": "/keys/sa.json"}),
    ("bigquery-json", conn("google_cloud_platform", schema="mart",
                           extra={"project": "proj-1", "keyfile_dict": json.dumps(KEY_JSON)}),
     "bigquery", {"database": "proj-1", "method": "service-account-json"}),
    ("bigquery-adc", conn("google_cloud_platform", schema="mart", extra={"project": "proj-1"}),
     "bigquery", {"method": "oauth"}),
    ("databricks-token", conn("databricks", host="https://adb-1.azuredatabricks.net", password="dapi-s3cret-1",
                              schema="mart", extra={"http_path": "/sql/1.0/warehouses/abc", "catalog": "main"}),
     "databricks", {"host": "adb-1.azuredatabricks.net", "database": "main", "schema": "mart"}),
    ("trino-ldap", conn("trino", host="trino", port=443, login="u", password="tr-s3cret-1", schema="mart",
                        extra={"catalog": "hive"}),
     "trino", {"host": "trino", "port": 443, "database": "hive", "schema": "mart"}),
    ("trino-none", conn("trino", host="trino", login="u", schema="mart", extra={"catalog": "hive"}),
     "trino", {"port": 8080}),
    ("sqlserver", conn("mssql", host="sql", login="u", password="ms-s3cret-1", schema="wh",
                       extra={"dbt_schema": "dbo"}),
     "sqlserver", {"host": "sql", "port": 1433, "database": "wh", "schema": "dbo"}),
    ("clickhouse", conn("clickhouse", host="ch", port=8443, login="u", password="ch-s3cret-1", schema="mart",
                        extra={"secure": True}),
     "clickhouse", {"host": "ch", "port": 8443, "schema": "mart"}),
    ("spark-thrift", conn("spark", host="spark", login="u", schema="mart"), "spark", {"port": 10001}),
    ("spark-http", conn("spark", host="spark.cloud", password="sp-token-1", schema="mart",
                        extra={"method": "http", "cluster": "c-1"}),
     "spark", {"port": 443, "cluster": "c-1"}),
    ("athena", conn("aws", login="AKIAEXAMPLE", password="aws-s3cret-1", schema="mart",
                    extra={"region_name": "eu-west-1", "s3_staging_dir": "s3://bucket/tmp/"}),
     "athena", {"region_name": "eu-west-1", "schema": "mart"}),
    ("duckdb", conn("duckdb", host="/data/w.duckdb"), "duckdb", {"path": "/data/w.duckdb"}),
    ("motherduck", conn("duckdb", host="md:analytics", password="md-token-s3cret-1"), "duckdb",
     {"path": "md:analytics"}),
]  # fmt: skip

LOAD = """
import json, os, sys
from argparse import Namespace
from dbt.config.runtime import load_profile
from dbt.flags import set_from_args
from dbt_common.context import set_invocation_context

cases = json.loads(sys.argv[1])
report = {}
for name, case in cases.items():
    os.chdir(case["project_dir"])
    set_from_args(Namespace(project_dir=case["project_dir"], profiles_dir=case["profiles_dir"]), None)
    for mode in ("run", "parse"):
        set_invocation_context({**os.environ, **case[mode]})
        try:
            creds = load_profile(case["project_dir"], {}, None, None, None).credentials
            report[f"{name}/{mode}"] = {"type": creds.type, **{k: getattr(creds, k, None) for k in case["expect"]}}
        except Exception as exc:
            report[f"{name}/{mode}"] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(report, default=str))
"""


@pytest.fixture(scope="module")
def adapters(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("adapters") / "venv"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(UV), "venv", "-q", "--python", python, str(venv)], check=True)
    subprocess.run([str(UV), "pip", "install", "-q", "--python", str(venv / "bin/python"), *ADAPTERS], check=True)
    return venv


@pytest.fixture
def tiny_project(tmp_path: Path) -> DbtProject:
    root = tmp_path / "wh_project"
    (root / "models").mkdir(parents=True)
    (root / "dbt_project.yml").write_text("name: wh_project\nversion: '1.0'\nprofile: wh\nconfig-version: 2\n")
    (root / "models" / "orders.sql").write_text("select 1 as id\n")
    return DbtProject(project_dir=root, profiles_dir=root, profile="wh")


def _rendered(project: DbtProject) -> Iterator[tuple[str, DbtProject, dict[str, str], dict[str, str], str]]:
    for name, connection, _adapter, _expect in CASES:
        with (
            rendered_profile(project, connection, threads=4) as (run, secrets),
            rendered_profile(project, connection, threads=4, with_secrets=False) as (_parse, placeholders),
        ):
            text = (run.profiles_dir / "profiles.yml").read_text()
            copy = project.project_dir.parent / f"profiles-{name}"
            copy.mkdir()
            (copy / "profiles.yml").write_text(text)
            yield name, run, dict(secrets), dict(placeholders), str(copy)


def test_each_rule_gives_credentials_the_adapter_accepts_without_a_secret_in_the_file(
    adapters: Path, tiny_project: DbtProject
) -> None:
    cases: dict[str, Any] = {}
    for name, _run, secrets, placeholders, profiles_dir in _rendered(tiny_project):
        text = (Path(profiles_dir) / "profiles.yml").read_text()
        leaked = [value for value in secrets.values() if value and value in text]
        assert leaked == [], f"{name}: a secret is in the rendered profile"
        # dbt scrubs DBT_ENV_SECRET_* from its logs; a JSON key cannot be one (connection_profiles.Rendered.secret)
        assert all(key.startswith(("DBT_ENV_SECRET_", "DBT_WATCHER_SECRET_")) for key in secrets), name
        expect = next(e for n, _, _, e in CASES if n == name)
        cases[name] = {
            "project_dir": str(tiny_project.project_dir),
            "profiles_dir": profiles_dir,
            "run": secrets,
            "parse": placeholders,
            "expect": sorted(expect),
        }
    out = subprocess.run(
        [str(adapters / "bin/python"), "-c", LOAD, json.dumps(cases)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    wrong = {}
    for name, _connection, adapter, expect in CASES:
        for mode in ("run", "parse"):
            got = report[f"{name}/{mode}"]
            if got != {"type": adapter, **expect}:
                wrong[f"{name}/{mode}"] = got
    assert wrong == {}, json.dumps(wrong, indent=1)


@pytest.mark.parametrize("case", ["snowflake-keypair", "bigquery-json", "databricks-token", "postgres-tls"])
def test_dbt_parse_accepts_the_rendered_profile_and_logs_no_secret(
    adapters: Path, tiny_project: DbtProject, case: str
) -> None:
    connection = next(c for n, c, _, _ in CASES if n == case)
    with rendered_profile(tiny_project, connection, threads=4) as (project, secrets):
        env = {**os.environ, **secrets, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        args = ["parse", "--project-dir", str(project.project_dir), "--profiles-dir", str(project.profiles_dir)]
        out = subprocess.run(
            [str(adapters / "bin/dbt"), *args, "--target", "airflow"],
            cwd=project.project_dir,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
    assert out.returncode == 0, out.stdout[-3000:]
    logged = out.stdout + (project.project_dir / "logs" / "dbt.log").read_text()
    assert not [v for v in secrets.values() if len(v) > 6 and v in logged]
    assert yaml.safe_load((project.project_dir / "dbt_project.yml").read_text())["profile"] == "wh"
