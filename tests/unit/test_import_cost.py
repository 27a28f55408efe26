"""A DAG file whose project is cached must not pay for dbt's import (the dag-processor parses often)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..conftest import EXAMPLES

SNIPPET = """
import sys, time
sys.path.insert(0, {dags!r})
import airflow.sdk  # the dag-processor has Airflow imported before it parses a file
started = time.perf_counter()
import jaffle_shop_dag, jaffle_reports_dag
print(round(time.perf_counter() - started, 3), "dbt.cli.main" in sys.modules, "dbt" in sys.modules)
"""


def test_a_cached_project_parses_without_importing_dbt(cache_dir: Path) -> None:
    env = {**__import__("os").environ, "DBT_WATCHER_CACHE_DIR": str(cache_dir)}
    code = SNIPPET.format(dags=str(EXAMPLES / "dags"))
    cold = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    warm = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    seconds, dbt_cli, dbt_any = warm.stdout.strip().splitlines()[-1].split()
    assert cold.stdout.strip().splitlines()[-1].split()[1] == "True"  # the first parse ran dbt
    assert dbt_cli == "False" and dbt_any == "False", warm.stdout
    print(f"warm DAG-file import: {seconds}s")
