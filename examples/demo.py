"""`make demo`: run the example DAG in a real Airflow 3 stack on DuckDB and print what happened.

Starts api-server, scheduler, dag-processor and triggerer (LocalExecutor, PostgreSQL metadata
database), triggers `jaffle_shop_daily`, waits for it, prints one line per dbt model, seed and
snapshot, then times a bare `dbt build` of the same project for comparison and stops the stack.
Pass --keep to leave the stack running and explore the UI.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from datetime import datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from devstack.stack import AirflowStack  # noqa: E402

DAG_ID = "jaffle_shop_daily"
GROUP = "jaffle_shop"


def _ts(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="leave the Airflow stack running at the end")
    args = parser.parse_args()

    workspace = Path(tempfile.mkdtemp(prefix="dbt-watcher-demo-"))
    shutil.copytree(
        REPO / "examples",
        workspace,
        dirs_exist_ok=True,
        ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*", "__pycache__", "demo.py"),
    )
    print(f"Starting Airflow (api-server, scheduler, dag-processor, triggerer) for {workspace / 'dags'} ...")
    started = time.monotonic()
    stack = AirflowStack.start(workspace / "dags", name="dbtw_demo")
    try:
        print(f"Airflow is up after {time.monotonic() - started:.0f}s: http://127.0.0.1:{stack.port}")
        stack.wait_for_dags([DAG_ID])
        run_id = stack.trigger(DAG_ID)
        print(f"Triggered {DAG_ID} ({run_id}); waiting ...")
        state = stack.wait_for_run(DAG_ID, run_id, timeout=600)
        report(stack, run_id, state, workspace)
        if not args.keep:
            print("The stack stops now; `make demo DEMO_ARGS=--keep` keeps it running to open that page.")
        if args.keep:
            stack.keep_home = True
            print(f"\nThe stack keeps running at http://127.0.0.1:{stack.port} . Press Ctrl-C to stop it.")
            while True:
                time.sleep(3600)
        return 0 if state == "success" else 1
    except KeyboardInterrupt:
        return 0
    finally:
        stack.stop()
        shutil.rmtree(workspace, ignore_errors=True)


def report(stack: AirflowStack, run_id: str, state: str, workspace: Path) -> None:
    tis = {ti["task_id"]: ti for ti in stack.task_instances(DAG_ID, run_id)}
    quoted = urllib.parse.quote(run_id, safe="")
    entry = stack.api(
        "GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}/taskInstances/{GROUP}.dbt_producer/xcomEntries/return_value"
    )
    artifacts = Path(str(entry["value"]).strip('"'))
    results = json.loads((artifacts / "run_results.json").read_text())
    # One row per model, seed and snapshot: tests gate their model's task, hooks have no task.
    watched = [r for r in results["results"] if r["unique_id"].split(".")[0] in ("model", "seed", "snapshot")]
    by_name = {r["unique_id"].split(".")[2]: r for r in watched}
    rows, delays = [], []
    for name, result in sorted(
        by_name.items(), key=lambda kv: kv[1]["timing"][-1]["completed_at"] if kv[1]["timing"] else ""
    ):
        ti = tis.get(f"{GROUP}.{name}")
        finished = _ts(result["timing"][-1]["completed_at"]) if result["timing"] else None
        ended = _ts(ti["end_date"]) if ti else None
        delay = (ended - finished).total_seconds() if ended and finished else None
        if delay is not None:
            delays.append(delay)
        rows.append((name, result["status"], ti["state"] if ti else "-", finished, ended, delay))
    print(f"\nDAG run {run_id}: {state}\n")
    header = f"{'model':<26} {'dbt status':<10} {'task':<8} {'dbt finished at':<15} {'task ended at':<15} delay"
    print(header)
    print("-" * len(header))
    for name, status, task_state, finished, ended, delay in rows:
        print(
            f"{name:<26} {status:<10} {task_state:<8} {finished:%H:%M:%S.%f}"[:-3]
            + f"  {ended:%H:%M:%S.%f}"[:-3]
            + f"   {delay:5.2f}s"
            if finished and ended
            else f"{name:<26} {status}"
        )
    dag_run = stack.api("GET", f"/api/v2/dags/{DAG_ID}/dagRuns/{quoted}")
    wall = (_ts(dag_run["end_date"]) - _ts(dag_run["start_date"])).total_seconds()  # type: ignore[operator]
    producer = tis[f"{GROUP}.dbt_producer"]
    print(
        f"\n{len(tis)} tasks in the run; DAG run wall time {wall:.1f}s; producer task {producer['duration']:.1f}s; "
        f"dbt's own elapsed time {results['elapsed_time']:.1f}s"
    )
    print(f"node finished -> task ended: max {max(delays):.2f}s, mean {sum(delays) / len(delays):.2f}s")
    bare = bare_dbt_build(workspace / "jaffle_shop")
    print(f"bare `dbt build` of the same project on this machine: {bare:.1f}s wall")
    timeline = f"http://127.0.0.1:{stack.port}/dags/{DAG_ID}/runs/{quoted}/plugin/dbt-build"
    page = stack.api("GET", f"/dbt-watcher/api/run?{urllib.parse.urlencode({'dag_id': DAG_ID, 'run_id': run_id})}")
    shown = sum(len(g["nodes"]) for g in page["groups"])
    print(f"\nThe run's timeline and node table ({shown} dbt nodes) in the Airflow UI: {timeline}")


def bare_dbt_build(project: Path) -> float:
    dbt = Path(sys.executable).parent / "dbt"
    started = time.monotonic()
    subprocess.run(
        [str(dbt), "build", "--project-dir", str(project), "--profiles-dir", str(project), "--quiet"],
        cwd=project,
        check=True,
    )
    return time.monotonic() - started


if __name__ == "__main__":
    sys.exit(main())
