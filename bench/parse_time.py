"""How long a DAG file of one dbt-watcher group takes to import: cold, warm, and prepared without dbt.

For each size, a generated project (the fhir shape for 185 models, the 4-layer shape for 3,000) and a
DAG file are written to a temporary folder, then imported by Airflow's DagBag in a fresh process:

* **cold**: an empty graph cache, no prepared graph: dbt-watcher runs ``dbt parse`` and ``dbt ls``;
* **warm**: the graph cache filled by the cold import (the dag-processor's usual case);
* **prepared**: after ``dbt-watcher prepare``, an empty cache, no profiles.yml, and dbt's import
  refused: what a dag-processor without dbt pays.

No database is needed: parsing never connects. Usage: ``python bench/parse_time.py [--sizes 185,3000]``.
Prints one line per size and case, and a Markdown table; ``--out`` writes it to a file too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate  # bench/ is not a package: found through the path above

DAG = """import pendulum
from airflow.sdk import dag
from dbt_watcher import dbt_watcher_group


@dbt_watcher_group(project_dir={project!r}, threads=8)
def project():
    ...


@dag(dag_id="parse_time", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
def parse_time():
    project()


parse_time()
"""
IMPORT = """
import importlib.abc, json, sys, time
if sys.argv[2] == "no-dbt":
    class NoDbt(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in ("dbt", "dbt_common", "dbt_adapters"):
                raise ImportError(name + " is not installed here")
    sys.meta_path.insert(0, NoDbt())
import airflow.sdk  # the dag-processor has Airflow imported before it parses a file
from dbt_watcher.airflow_lines import dag_bag as DagBag
started = time.perf_counter()
bag = DagBag(dag_folder=sys.argv[1])
seconds = time.perf_counter() - started
print(json.dumps({"seconds": round(seconds, 2), "errors": len(bag.import_errors),
                  "tasks": sum(len(d.tasks) for d in bag.dags.values())}))
"""


def _import(dag_file: Path, env: dict[str, str], mode: str = "") -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, "-c", IMPORT, str(dag_file), mode], env=env, capture_output=True, text=True, check=True
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if result["errors"]:
        raise RuntimeError(f"{dag_file} did not import: {out.stdout[-2000:]}")
    return result


def measure(size: int, work: Path) -> list[dict[str, object]]:
    shape, scale = (generate.load_shape(), 1) if size <= 200 else (generate.layered_shape(size, 750), 1)
    project = work / f"project_{size}"
    info = generate.write_project(project, shape, scale=scale)
    dags = work / f"dags_{size}"
    dags.mkdir()
    dag_file = dags / "parse_time_dag.py"
    dag_file.write_text(DAG.format(project=str(project)))
    base = {**os.environ, "AIRFLOW_HOME": str(work / "airflow"), "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    cache = {**base, "DBT_WATCHER_CACHE_DIR": str(work / f"cache_{size}")}
    rows: list[dict[str, object]] = []
    for case, env, mode in (("cold", cache, ""), ("warm", cache, "")):
        rows.append({"models": info["models"], "case": case, **_import(dag_file, env, mode)})
    started = time.perf_counter()
    prepare = [str(Path(sys.executable).parent / "dbt-watcher"), "prepare", str(dag_file)]
    subprocess.run(prepare, env={**base, "DBT_WATCHER_CACHE_DIR": str(work / f"prep_{size}")}, check=True,
                   capture_output=True)  # fmt: skip
    prepare_seconds = round(time.perf_counter() - started, 2)
    (project / "profiles.yml").unlink()
    empty = {**base, "DBT_WATCHER_CACHE_DIR": str(work / f"empty_{size}")}
    rows.append({"models": info["models"], "case": "prepared, no dbt", **_import(dag_file, empty, "no-dbt")})
    rows.append({"models": info["models"], "case": "dbt-watcher prepare (once)", "seconds": prepare_seconds})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="185,3000", help="comma list of model counts")
    parser.add_argument("--out", type=Path, help="also write the Markdown table here")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dbt-watcher-parse-time-"))
    try:
        rows = [row for size in args.sizes.split(",") for row in measure(int(size), work)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = ["| models | case | seconds | tasks |", "| --- | --- | --- | --- |"]
    table += [f"| {r['models']} | {r['case']} | {r['seconds']} | {r.get('tasks', '')} |" for r in rows]
    print("\n".join(table))
    if args.out:
        args.out.write_text("\n".join(table) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
