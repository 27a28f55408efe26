"""Every warehouse's asset URI through the installed providers' own URI checks and OpenLineage converters.

Airflow runs a provider's ``asset-uris`` handler inside ``Asset(...)`` whenever that provider is
installed; a URI it rejects is a DAG import error. The providers are installed without their
dependencies (their URI modules need none) next to the suite's Airflow, and a subprocess checks,
for each adapter's URI from tests/unit/test_asset_uris.py: the provider accepts it, leaves it as it
is (so an Asset another DAG declares for the same table with the provider's form is ours), and
names it in OpenLineage as dbt-watcher does.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.unit.test_asset_uris import CASES

pytestmark = pytest.mark.integration

UV = Path(sys.executable).parent / "uv"
#: The providers that declare asset URI checks for tables, at the versions whose rules assets.py cites.
PROVIDERS = (
    "apache-airflow-providers-postgres==7.1.1",
    "apache-airflow-providers-amazon==9.39.0",
    "apache-airflow-providers-snowflake==6.20.0",
    "apache-airflow-providers-google==22.8.0",
    "apache-airflow-providers-databricks==7.23.0",
    "apache-airflow-providers-trino==6.7.1",
    "apache-airflow-providers-microsoft-mssql==4.7.2",
    "apache-airflow-providers-mysql==6.7.1",
    "apache-airflow-providers-oracle==4.7.1",
    "apache-airflow-providers-teradata==3.7.1",
    "apache-airflow-providers-vertica==4.4.1",
)
CHECK = """
import json, sys
from airflow.providers_manager import ProvidersManager
from airflow.sdk import Asset
from dbt_watcher.rules.lineage import dataset_name

manager = ProvidersManager()
report = {}
for uri in json.loads(sys.argv[1]):
    scheme = uri.split(":", 1)[0]
    row = {"checked": scheme in manager.asset_uri_handlers}
    try:
        row["uri"] = Asset(uri=uri).uri
    except Exception as exc:
        row["error"] = repr(exc)
    converter = manager.asset_to_openlineage_converters.get(scheme)
    if converter is not None and "uri" in row:
        dataset = converter(Asset(uri=uri), None)
        row["provider_openlineage"] = [dataset.namespace, dataset.name]
        row["our_openlineage"] = list(dataset_name(uri))
    report[uri] = row
print(json.dumps(report))
"""


def test_every_uri_passes_its_providers_check_unchanged_with_the_same_openlineage_name(tmp_path: Path) -> None:
    target = tmp_path / "providers"
    subprocess.run([str(UV), "pip", "install", "-q", "--no-deps", "--target", str(target), *PROVIDERS], check=True)
    # The form dbt-watcher used to give BigQuery tables, which the Google provider rejects: proves the
    # checks are live in the subprocess.
    rejected = "bigquery://proj/proj/mart/orders"
    uris = [uri for _, _, uri in CASES] + [rejected]
    env = {**os.environ, "PYTHONPATH": str(target), "AIRFLOW_HOME": str(tmp_path / "airflow")}
    out = subprocess.run(
        [sys.executable, "-c", CHECK, json.dumps(uris)], env=env, capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])

    assert "error" in report.pop(rejected)
    problems = {uri: row for uri, row in report.items() if row.get("uri") != uri}
    assert problems == {}, "URIs a provider rejected or rewrote"
    checked = {uri.split(":")[0] for uri, row in report.items() if row["checked"]}
    assert checked == {"postgres", "redshift", "snowflake", "bigquery", "databricks", "trino", "mssql", "mysql",
                       "oracle", "teradata", "vertica"}  # fmt: skip
    named = {uri: row for uri, row in report.items() if "provider_openlineage" in row}
    assert {u: r["provider_openlineage"] for u, r in named.items()} == {
        u: r["our_openlineage"] for u, r in named.items()
    }
