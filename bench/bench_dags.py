"""The benchmark's DAGs: the same generated dbt project run by one contender, one DAG per thread count.

bench/run.py copies this file once per contender as bench_<contender>.py (so each contender's DAGs
live in a file of their own and re-parsing one never costs another) and sets BENCH_PROJECT_DIR and
BENCH_THREADS ("8" or "1,2,4,8,16") for the stack.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import dag

PROJECT = os.environ["BENCH_PROJECT_DIR"]
THREADS = [int(t) for t in os.environ.get("BENCH_THREADS", "8").split(",")]
CONTENDERS = {Path(__file__).stem.removeprefix("bench_")}
START = pendulum.datetime(2026, 1, 1, tz="UTC")
DAG_ARGS = {"schedule": None, "start_date": START, "catchup": False, "max_active_runs": 1}


def watcher_dag(threads: int, deferrable: bool) -> None:
    from dbt_watcher import dbt_watcher_group

    kind = "deferrable" if deferrable else "sync"

    @dbt_watcher_group(project_dir=PROJECT, target=f"t{threads}", threads=threads, deferrable=deferrable)
    def fhir() -> None: ...

    @dag(dag_id=f"bench_watcher_{kind}_t{threads}", **DAG_ARGS)
    def bench() -> None:
        fhir()

    bench()


def cosmos_dag(threads: int, mode: str) -> None:
    from cosmos import DbtDag, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig
    from cosmos.constants import ExecutionMode, InvocationMode, LoadMode

    dag_id = f"bench_cosmos_{mode}_t{threads}"
    # A DAG object is found by the DagBag through the module's globals.
    globals()[dag_id] = DbtDag(
        dag_id=dag_id,
        project_config=ProjectConfig(dbt_project_path=PROJECT, manifest_path=f"{PROJECT}/target/manifest.json"),
        profile_config=ProfileConfig(
            profile_name="bench", target_name=f"t{threads}", profiles_yml_filepath=f"{PROJECT}/profiles.yml"
        ),
        execution_config=ExecutionConfig(
            execution_mode=ExecutionMode.WATCHER if mode == "watcher" else ExecutionMode.LOCAL,
            invocation_mode=InvocationMode.DBT_RUNNER,
        ),
        render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST),
        # Cosmos' consumers poll every 10 s by default (an int); 1 s is the closest to our 0.5 s.
        operator_args={"poke_interval": 1} if mode == "watcher" else {},
        **DAG_ARGS,
    )


for t in THREADS:
    if "watcher_deferrable" in CONTENDERS:
        watcher_dag(t, deferrable=True)
    if "watcher_sync" in CONTENDERS:
        watcher_dag(t, deferrable=False)
    if "cosmos_watcher" in CONTENDERS:
        cosmos_dag(t, "watcher")
if "cosmos_local" in CONTENDERS:
    cosmos_dag(8, "local")  # one dbt process per model: the thread count does not apply
