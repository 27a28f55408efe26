"""The package as a user gets it: built, installed from the wheel into a clean virtualenv with its
``[duckdb]`` extra and no constraints file (only the test machine's one override below), listed by Airflow as a
provider, and parsing the example DAG."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
UV = Path(sys.executable).parent / "uv"

PARSE = """
import json
from dbt_watcher.airflow_lines import dag_bag as DagBag
from airflow.providers_manager import ProvidersManager
import dbt_watcher
bag = DagBag(dag_folder={dag!r})
print(json.dumps({{
    "errors": bag.import_errors,
    "tasks": {{d: len(bag.dags[d].tasks) for d in bag.dags}},
    "provider": ProvidersManager().providers["dbt-watcher"].version,
    "version": dbt_watcher.__version__,
}}))
"""


def test_the_wheel_installs_into_a_clean_virtualenv_and_parses_the_example_dag(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([str(UV), "build", "-q", "--out-dir", str(dist), str(ROOT)], check=True)
    (sdist,) = dist.glob("*.tar.gz")
    (wheel,) = dist.glob("*.whl")
    with tarfile.open(sdist) as archive:
        names = [n.split("/", 1)[1] for n in archive.getnames() if "/" in n]
    assert "LICENSE" in names and "src/dbt_watcher/py.typed" in names
    assert not [n for n in names if n.startswith(("bench/results", ".venv", "site/"))]

    venv = tmp_path / "venv"
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    subprocess.run([str(UV), "venv", "-q", "--python", python, str(venv)], check=True)
    # The newest dbt-core (1.12) needs dbt-core-experimental-parser, whose releases are sdists that download a
    # binary from GitHub while they build; the test machines reach only the package index, so the resolution takes
    # the one release with a wheel (docs/installation.md). Users with normal network access install plainly.
    override = ROOT / "requirements/rows/dbt-1.12.overrides.txt"
    install = [str(UV), "pip", "install", "-q", "--python", str(venv / "bin/python"), "--override", str(override)]
    install.append(f"{wheel}[duckdb]")
    subprocess.run(install, check=True)

    examples = tmp_path / "examples"
    shutil.copytree(ROOT / "examples", examples, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "AIRFLOW_HOME": str(tmp_path / "airflow"),
        "DBT_WATCHER_CACHE_DIR": str(tmp_path / "cache"),
    }
    code = PARSE.format(dag=str(examples / "dags" / "jaffle_shop_dag.py"))
    out = subprocess.run([str(venv / "bin/python"), "-c", code], env=env, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report["errors"] == {}
    assert report["tasks"] == {"jaffle_shop_daily": 22}
    assert report["provider"] == report["version"]
