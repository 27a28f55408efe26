"""dbt-watcher as a distribution: Airflow lists it as a provider, and discovering it imports nothing."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import airflow
import jsonschema  # type: ignore[import-untyped]  # Airflow validates provider info with it; no stubs pinned

from dbt_watcher.provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[2]


def test_the_provider_info_is_valid_for_airflow_and_names_this_distribution() -> None:
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    info = get_provider_info()
    jsonschema.validate(info, schema)
    assert info["package-name"] == metadata.metadata("dbt-watcher")["Name"]
    providers = metadata.entry_points(group="apache_airflow_provider")
    ours = [e.value for e in providers if e.value.startswith("dbt_watcher")]
    assert ours == ["dbt_watcher.provider_info:get_provider_info"]


def test_airflow_discovers_the_provider_without_importing_airflow_sdk_from_it() -> None:
    # Discovery runs while `import airflow` may still be under way: the entry point must not reach it.
    code = (
        "import sys; from dbt_watcher.provider_info import get_provider_info; get_provider_info(); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('airflow', 'dbt')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_the_package_carries_its_license_and_the_sdist_leaves_out_benchmark_results() -> None:
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert metadata.metadata("dbt-watcher")["License-Expression"] == "Apache-2.0"
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"/bench/results"' in pyproject.split("[tool.hatch.build.targets.sdist]")[1]
