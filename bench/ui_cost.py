"""What the UI costs: ``docs=True`` on the benchmark project, and how fast the run page loads.

    python bench/ui_cost.py              # the 185-model fhir project, 8 threads, 2 runs of each
    python bench/ui_cost.py --scale 16   # about 3,000 models (page load at scale)

One real stack (bench/run.py's set-up: the project generated from the fhir shape on PostgreSQL, every
model sleeping ``--latency`` s in the warehouse) runs the same dbt-watcher group with ``docs=False`` and
``docs=True``, alternating, and reports per run the DAG wall time, the producer task's duration and the
time ``dbt docs generate`` took (from the producer's log). Then headless Chromium (devstack/browser.py)
opens the last run's page ``--loads`` times: seconds until the timeline and table are drawn, and the
plugin's ``/api/run`` answer time and size. Results: bench/results/ui-<timestamp>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import generate  # noqa: E402
import report  # noqa: E402
from devstack import services  # noqa: E402
from devstack.browser import Browser  # noqa: E402
from devstack.stack import AirflowStack  # noqa: E402

DAGS = '''"""airflow dag: the benchmark project with docs=False and docs=True."""
import pendulum
from airflow.sdk import dag
from dbt_watcher import dbt_watcher_group

for docs in (False, True):
    @dbt_watcher_group(project_dir={project!r}, target="t{threads}", threads={threads}, docs=docs)
    def fhir():
        ...

    @dag(dag_id=f"ui_docs_{{'on' if docs else 'off'}}", schedule=None, start_date=pendulum.datetime(2026, 1, 1),
         catchup=False, max_active_runs=1)
    def bench():
        fhir()

    bench()
'''
_DOCS_LINE = re.compile(r"dbt docs generate: ([\d.]+) s")


def seconds_between(start: str, end: str) -> float:
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def measure_run(stack: AirflowStack, dag_id: str) -> dict[str, Any]:
    run_id = stack.trigger(dag_id)
    state = stack.wait_for_run(dag_id, run_id, timeout=3600)
    quoted = urllib.parse.quote(run_id, safe="")
    dag_run = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}")
    producer = stack.api("GET", f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/fhir.dbt_producer")
    found = _DOCS_LINE.findall(stack.task_log(dag_id, run_id, "fhir.dbt_producer"))
    return {
        "dag_id": dag_id,
        "run_id": run_id,
        "state": state,
        "wall": round(seconds_between(dag_run["start_date"], dag_run["end_date"]), 2),
        "producer": round(float(producer["duration"]), 2),
        "docs_generate": float(found[-1]) if found else None,
    }


def page_loads(stack: AirflowStack, run: dict[str, Any], loads: int) -> dict[str, Any]:
    query = urllib.parse.urlencode({"dag_id": run["dag_id"], "run_id": run["run_id"]})
    api = f"http://127.0.0.1:{stack.port}/dbt-watcher/api/run?{query}"
    api_times, size = [], 0
    for _ in range(loads):
        started = time.monotonic()
        request = urllib.request.Request(api, headers={"Authorization": f"Bearer {stack.token()}"})
        with urllib.request.urlopen(request, timeout=120) as response:
            size = len(response.read())
        api_times.append(time.monotonic() - started)
    page_times, bars = [], 0
    with Browser() as browser:
        for _ in range(loads):
            browser.get("about:blank")
            started = time.monotonic()
            browser.get(f"http://127.0.0.1:{stack.port}/dbt-watcher/run?{query}")
            browser.wait_for("return document.body.dataset.ready === '1'", timeout=300)
            page_times.append(time.monotonic() - started)
            bars = browser.execute("return document.querySelectorAll('rect.bar').length")
    return {
        "bars": bars,
        "page_seconds": [round(t, 2) for t in page_times],
        "api_seconds": [round(t, 3) for t in api_times],
        "api_kb": round(size / 1024, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    runs = result["runs"]
    lines = [
        f"{result['models']} models, {result['threads']} threads, {result['latency']} s warehouse latency per model.",
        "",
        "| docs | DAG wall s | producer s | dbt docs generate s | state |",
        "| --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {r['dag_id'].rsplit('_', 1)[1]} | {r['wall']} | {r['producer']} | {r['docs_generate'] or '-'} "
        f"| {r['state']} |"
        for r in runs
    ]
    for docs in ("off", "on"):
        walls = [r["wall"] for r in runs if r["dag_id"].endswith(docs)]
        result[f"median_wall_{docs}"] = statistics.median(walls)
    cost = result["median_wall_on"] / result["median_wall_off"] - 1
    page = result["page"]
    lines += [
        "",
        f"docs=True costs {100 * cost:+.1f} % of the DAG wall time (medians).",
        f"Run page ({page['bars']} timeline bars): ready in {min(page['page_seconds'])} / "
        f"{statistics.median(page['page_seconds'])} s (min / median of {len(page['page_seconds'])}); "
        f"/api/run {min(page['api_seconds'])} / {statistics.median(page['api_seconds'])} s, {page['api_kb']} KB.",
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="replicas of the fhir shape (1: 185 models)")
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--reps", type=int, default=2)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dbt-watcher-ui-bench-"))
    db = f"bench_ui_{secrets.token_hex(4)}"
    env = {**os.environ, "BENCH_PG_DBNAME": db, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    services.ensure_postgres()
    services.create_database(db)
    stack = None
    try:
        shape = generate.load_shape()
        for statement in generate.setup_sql(shape).split(";"):
            if statement.strip():
                services.query(db, statement)
        project = work / "fhir"
        info = generate.write_project(project, shape, scale=args.scale, latency=args.latency)
        generate.parse(project, env)
        (work / "dags").mkdir()
        (work / "dags" / "ui_bench.py").write_text(DAGS.format(project=str(project), threads=args.threads))
        stack = AirflowStack.start(
            work / "dags",
            name="dbtw_ui_bench",
            home=work / "airflow-home",
            extra_env={"BENCH_PG_DBNAME": db, "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600"},
        )
        stack.keep_home = True
        stack.wait_for_dags(["ui_docs_off", "ui_docs_on"], timeout=900)
        runs = []
        for _ in range(args.reps):
            for dag_id in ("ui_docs_off", "ui_docs_on"):
                runs.append(measure_run(stack, dag_id))
                print(json.dumps(runs[-1]), flush=True)
        result: dict[str, Any] = {
            "kind": "ui",
            "models": info["models"],
            "threads": args.threads,
            "latency": args.latency,
            "runs": runs,
            "page": page_loads(stack, runs[-1], args.loads),
            "machine": report.machine(),
        }
        table = markdown(result)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"ui-{stamp}.json").write_text(json.dumps(result, indent=1))
        (args.out / f"ui-{stamp}.md").write_text(table)
        print(table)
        return 0
    finally:
        if stack is not None:
            stack.stop()
        services.drop_database(db)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
