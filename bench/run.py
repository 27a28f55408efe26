"""The benchmark: bare `dbt build`, dbt-watcher and Cosmos on the same project, in one session.

    python bench/run.py --quick      # 8 threads, 1 repetition, no Cosmos LOCAL  (make bench-quick)
    python bench/run.py              # threads 1,2,4,8,16, 3 repetitions, every contender (make bench)

All Airflow contenders run in one real stack (api-server, scheduler, dag-processor, triggerer,
LocalExecutor, PostgreSQL metadata DB) started once; the dbt project is generated from the fhir
shape (bench/generate.py) on its own PostgreSQL database. Results: bench/results/<timestamp>.json,
.md (table) and .png (timeline of one run). See bench/README.md for what each metric means.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import generate  # noqa: E402
import report  # noqa: E402
from devstack import services  # noqa: E402
from devstack.stack import AirflowStack  # noqa: E402

ALL_CONTENDERS = ("watcher_deferrable", "watcher_sync", "cosmos_watcher", "cosmos_local")
QUICK_CONTENDERS = ("watcher_deferrable", "watcher_sync", "cosmos_watcher")
PRODUCER_TASK = {
    "watcher_deferrable": "fhir.dbt_producer",
    "watcher_sync": "fhir.dbt_producer",
    "cosmos_watcher": "dbt_producer_watcher",
}
SETTINGS_RECORDED = [
    ("core", "parallelism"),
    ("core", "max_active_tasks_per_dag"),
    ("scheduler", "scheduler_idle_sleep_time"),
    ("scheduler", "max_tis_per_query"),
    ("triggerer", "capacity"),
    ("triggerer", "max_trigger_to_select_per_loop"),
    ("dag_processor", "min_file_process_interval"),
    ("api", "workers"),
]
WARMUP_DAG = '''"""airflow dag: one trivial task per LocalExecutor worker, so no contender meets a cold worker."""
import pendulum
from airflow.sdk import dag, task


@dag(dag_id="bench_warmup", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False)
def bench_warmup():
    @task
    def warm(i: int) -> int:
        return i

    warm.expand(i=list(range(32)))


bench_warmup()
'''


@dataclass
class Cell:
    """One DAG run of one contender."""

    contender: str
    threads: int
    rep: int
    dag_id: str
    run_id: str
    state: str
    tasks: int
    wall: float
    bare: float
    p1: float
    p2: dict[str, float] = field(default_factory=dict)
    p3_trigger_requests: int = 0
    p3_worker_requests: int = 0
    p5_worker_seconds: float = 0.0
    p5_worker_cpu: float = 0.0
    p6: float | None = None
    #: CPU seconds of the triggerer (supervisor and runner) during the run: where deferrable waiting costs.
    triggerer_cpu: float = 0.0
    #: The triggerer's largest resident memory (supervisor and runner, MB) during the run.
    triggerer_peak_mb: float = 0.0
    #: What the run left in Airflow's metadata database for the status channel (KB): dbt-watcher's
    #: XComs and the producer's Task State Store rows (both deleted with the DAG run).
    channel_kb: float = 0.0
    nodes: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def p3(self) -> int:
        return self.p3_trigger_requests + self.p3_worker_requests

    def line(self) -> str:
        return (
            f"[t={self.threads} rep={self.rep}] {self.contender}: {self.state} wall {self.wall}s P1 {self.p1} "
            f"P2 {self.p2} P3 {self.p3} P5 {self.p5_worker_seconds}s P6 {self.p6} "
            f"triggerer CPU {self.triggerer_cpu}s, peak {self.triggerer_peak_mb:.0f} MB"
        )


class TriggererPeak(threading.Thread):
    """Samples the triggerer's memory twice a second while a run is measured: the sum of the resident
    sets of its processes (supervisor, trigger runner, log server), shared pages counted in each."""

    def __init__(self, stack: AirflowStack) -> None:
        super().__init__(daemon=True)
        self.stack, self.mb, self.done = stack, 0.0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.5):
            try:
                self.mb = max(self.mb, self.stack.usage("triggerer")[1])
            except (OSError, KeyError, ValueError) as exc:  # a missed sample, never a lost run
                print(f"triggerer memory sample failed: {exc}", flush=True)

    def __enter__(self) -> TriggererPeak:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.join()


def channel_kb(stack: AirflowStack, dag_id: str, run_id: str) -> float:
    """KB of dbt-watcher state a run left in the metadata database (XComs and Task State Store rows)."""
    total = 0
    for table in ("xcom", "task_state_store"):
        rows = stack.sql(
            f"select coalesce(sum(length(value::text)), 0) from {table} "
            "where dag_id = %s and run_id = %s and key like 'dbt_watcher.%%'",
            (dag_id, run_id),
        )
        total += int(rows[0][0])
    return round(total / 1000, 1)


def parse_settings(settings: list[str]) -> list[tuple[str, str, str]]:
    """`section.key=value` strings as (section, key, value), lower-cased names; a malformed one stops the run."""
    parsed = []
    for setting in settings:
        name, sep, value = setting.partition("=")
        section, dot, key = name.lower().partition(".")
        if not (sep and dot and section and key):
            raise SystemExit(f"--airflow-setting {setting!r}: write section.key=value, e.g. triggerer.capacity=500")
        parsed.append((section, key, value))
    return parsed


def setting_env(settings: list[str]) -> dict[str, str]:
    """AIRFLOW__SECTION__KEY for each setting: one stack, so every contender runs with the same settings."""
    return {f"AIRFLOW__{section.upper()}__{key.upper()}": value for section, key, value in parse_settings(settings)}


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def pick(q: float) -> float:
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    return {"p50": round(pick(0.5), 3), "p95": round(pick(0.95), 3), "max": round(ordered[-1], 3), "n": len(ordered)}


def node_times(db: str, start: float, end: float) -> dict[str, dict[str, float]]:
    """When each node started and finished in the warehouse (epoch seconds), as the models logged it."""
    rows = services.query(
        db,
        "select node, kind, at from bench_meta.node_log where at between to_timestamp(%s) and to_timestamp(%s)",
        (start, end),
    )
    nodes: dict[str, dict[str, float]] = {}
    for node, kind, at in rows:
        entry = nodes.setdefault(str(node), {})
        entry[str(kind)] = max(entry.get(str(kind), 0.0), at.timestamp())
    return nodes


def consumer_node(contender: str, task_id: str) -> str | None:
    """The dbt node a contender's task watches (None for producers and other tasks)."""
    if contender.startswith("watcher"):
        producer = PRODUCER_TASK[contender]
        return task_id.split(".", 1)[1] if task_id.startswith("fhir.") and task_id != producer else None
    for suffix in ("_run", "_seed"):
        if task_id.endswith(suffix):
            return task_id[: -len(suffix)]
    return None


class Session:
    """One benchmark session: a bench database, the generated project, one Airflow stack."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.threads = [int(t) for t in (args.threads or ("8" if args.quick else "1,2,4,8,16")).split(",")]
        self.reps = args.reps or (1 if args.quick else 3)
        default = QUICK_CONTENDERS if args.quick else ALL_CONTENDERS
        self.contenders = args.contenders.split(",") if args.contenders else list(default)
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="dbt-watcher-bench-"))
        self.db = f"bench_{secrets.token_hex(4)}"
        self.shape = generate.load_shape()
        self.project = self.work / "fhir_bench"
        self.instrument = self.work / "instrument"
        self.env = {**os.environ, "BENCH_PG_DBNAME": self.db, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        self.dbt = str(Path(sys.executable).parent / "dbt")
        self.workload: dict[str, Any] = {}

    # ------------------------------------------------------------------ set-up
    def prepare(self) -> None:
        services.ensure_postgres()
        services.create_database(self.db)
        for statement in generate.setup_sql(self.shape).split(";"):
            if statement.strip():
                services.query(self.db, statement)
        self.workload = generate.write_project(
            self.project, self.shape, scale=self.args.scale, latency=self.args.latency
        )
        generate.parse(self.project, self.env)

    def start_stack(self) -> AirflowStack:
        dags = self.work / "dags"
        dags.mkdir()
        for contender in self.contenders:
            shutil.copy(HERE / "bench_dags.py", dags / f"bench_{contender}.py")
        (dags / "bench_warmup.py").write_text(WARMUP_DAG)
        pythonpath = os.pathsep.join(filter(None, [str(HERE / "instrument"), os.environ.get("PYTHONPATH")]))
        stack = AirflowStack.start(
            dags,
            name="dbtw_bench",
            home=self.work / "airflow-home",
            extra_env={
                "PYTHONPATH": pythonpath,
                "BENCH_INSTRUMENT_DIR": str(self.instrument),
                "BENCH_PG_DBNAME": self.db,
                "BENCH_PROJECT_DIR": str(self.project),
                "BENCH_THREADS": ",".join(map(str, self.threads)),
                "AIRFLOW__CORE__DAGBAG_IMPORT_TIMEOUT": "600",
                "AIRFLOW__DAG_PROCESSOR__DAG_FILE_PROCESSOR_TIMEOUT": "900",
                **setting_env(self.args.airflow_setting),
            },
        )
        stack.keep_home = True  # it lives in the work folder, which close() deletes unless --keep
        return stack

    def dag_id(self, contender: str, threads: int) -> str:
        return "bench_cosmos_local_t8" if contender == "cosmos_local" else f"bench_{contender}_t{threads}"

    # ------------------------------------------------------------------ measuring
    def bare(self, threads: int) -> float:
        started = time.monotonic()
        subprocess.run(
            [
                self.dbt,
                "build",
                "--project-dir",
                str(self.project),
                "--profiles-dir",
                str(self.project),
                "--target",
                f"t{threads}",
                "--quiet",
            ],
            cwd=self.project,
            env=self.env,
            check=True,
        )
        return time.monotonic() - started

    def records(self) -> list[dict[str, Any]]:
        found = []
        for path in self.instrument.glob("*.jsonl"):
            found.extend(json.loads(line) for line in path.read_text().splitlines() if line.strip())
        return found

    def measure(self, stack: AirflowStack, contender: str, threads: int, rep: int, bare: float) -> Cell:
        dag_id = self.dag_id(contender, threads)
        cpu_before = stack.usage("triggerer")[0]
        with TriggererPeak(stack) as peak:
            run_id = stack.trigger(dag_id)
            state = stack.wait_for_run(dag_id, run_id, timeout=3600)
            time.sleep(2)  # let the instrumentation flush
        triggerer_cpu = stack.usage("triggerer")[0] - cpu_before
        start, end = (
            t.timestamp()
            for t in stack.sql(
                "select start_date, end_date from dag_run where dag_id=%s and run_id=%s", (dag_id, run_id)
            )[0]
        )
        tis = stack.task_instances(dag_id, run_id)
        nodes = node_times(self.db, start, end + 5)
        delays = []
        for ti in tis:
            node = consumer_node(contender, ti["task_id"])
            if node and "finish" in nodes.get(node, {}) and ti["end_date"]:
                ended = datetime.fromisoformat(ti["end_date"].replace("Z", "+00:00")).timestamp()
                nodes[node]["task_end"] = ended
                delays.append(ended - nodes[node]["finish"])
        records = self.records()
        tasks = [r for r in records if r["kind"] == "task" and r.get("dag_id") == dag_id and r.get("run_id") == run_id]
        producer = [r for r in tasks if r["task_id"] == PRODUCER_TASK.get(contender)]
        consumers = [r for r in tasks if r["task_id"] != PRODUCER_TASK.get(contender)]
        triggers = [r for r in records if r["kind"] == "trigger_request" and start <= r["t"] <= end + 2]
        wall = end - start
        return Cell(
            contender=contender,
            threads=threads,
            rep=rep,
            dag_id=dag_id,
            run_id=run_id,
            state=state,
            tasks=len(tis),
            wall=round(wall, 2),
            bare=round(bare, 2),
            p1=round(wall / bare, 3),
            p2=percentiles(delays),
            p3_trigger_requests=len(triggers),
            p3_worker_requests=sum(int(r["requests"]) for r in consumers),
            p5_worker_seconds=round(sum(r["end"] - r["start"] for r in consumers), 1),
            p5_worker_cpu=round(sum(float(r["cpu"]) for r in consumers), 1),
            p6=round(sum(r["end"] - r["start"] for r in producer) / bare, 3) if producer else None,
            triggerer_cpu=round(triggerer_cpu, 1),
            triggerer_peak_mb=round(peak.mb),
            channel_kb=channel_kb(stack, dag_id, run_id),
            nodes={k: {kk: round(vv - start, 3) for kk, vv in v.items()} for k, v in nodes.items()},
        )

    def run_cells(self, stack: AirflowStack) -> tuple[list[Cell], list[dict[str, Any]], dict[str, str]]:
        recorded = [
            *SETTINGS_RECORDED,
            *((section, key) for section, key, _ in parse_settings(self.args.airflow_setting)),
        ]
        settings = {f"{s}.{k}": stack.run_cli("config", "get-value", s, k).strip() for s, k in dict.fromkeys(recorded)}
        dag_ids = {self.dag_id(c, t) for t in self.threads for c in self.contenders}
        stack.wait_for_dags([*sorted(dag_ids), "bench_warmup"], timeout=900)
        # Long-lived workers are warm in production: start every LocalExecutor worker once.
        stack.wait_for_run("bench_warmup", stack.trigger("bench_warmup"), timeout=600)
        cells: list[Cell] = []
        bares: list[dict[str, Any]] = []
        for threads in self.threads:
            for rep in range(self.reps):
                bare = self.bare(threads)
                bares.append({"threads": threads, "rep": rep, "wall": round(bare, 2)})
                print(f"[t={threads} rep={rep}] bare dbt build {bare:.1f}s", flush=True)
                for contender in self.contenders:
                    if contender == "cosmos_local" and threads != self.threads[-1]:
                        continue  # one dbt process per model: threads do not apply; measured once per rep
                    cells.append(self.measure(stack, contender, threads, rep, bare))
                    print(cells[-1].line(), flush=True)
        return cells, bares, settings

    def import_times(self) -> dict[str, float]:
        """P4: warm-cache import time of a DAG file with one group, at 185 and ~2,000 models."""
        projects = {self.workload["models"]: self.project}
        if self.args.scale_import != self.args.scale:
            scaled = self.work / "fhir_bench_x"
            scaled_workload = generate.write_project(
                scaled, self.shape, scale=self.args.scale_import, latency=self.args.latency
            )
            generate.parse(scaled, self.env)
            projects[scaled_workload["models"]] = scaled
        times = {}
        kinds = ["watcher"] + (["cosmos"] if any(c.startswith("cosmos") for c in self.contenders) else [])
        for kind in kinds:
            for models, project in sorted(projects.items()):
                times[f"{kind}_{models}"] = self.import_time(project, kind)
        return times

    def import_time(self, project: Path, kind: str, runs: int = 3) -> float:
        dag_file = self.work / f"import_{kind}_{project.name}.py"
        header = "import pendulum\nfrom airflow.sdk import DAG\nSTART = pendulum.datetime(2026, 1, 1)\n"
        if kind == "watcher":
            body = (
                f"from dbt_watcher import dbt_watcher_group\n\n"
                f"@dbt_watcher_group(project_dir={str(project)!r}, target='t8')\ndef fhir(): ...\n\n"
                f"with DAG('p4', schedule=None, start_date=START):\n    fhir()\n"
            )
        else:
            body = (
                f"from cosmos import DbtDag, ExecutionConfig, ProfileConfig, ProjectConfig, RenderConfig\n"
                f"from cosmos.constants import ExecutionMode, LoadMode\n"
                f"P = {str(project)!r}\n"
                f"DbtDag(dag_id='p4', schedule=None, start_date=START,\n"
                f"    project_config=ProjectConfig(dbt_project_path=P, manifest_path=P + '/target/manifest.json'),\n"
                f"    profile_config=ProfileConfig(profile_name='bench', target_name='t8',\n"
                f"                                 profiles_yml_filepath=P + '/profiles.yml'),\n"
                f"    execution_config=ExecutionConfig(execution_mode=ExecutionMode.WATCHER),\n"
                f"    render_config=RenderConfig(load_method=LoadMode.DBT_MANIFEST))\n"
            )
        dag_file.write_text(header + body)
        code = (
            "import time, runpy, airflow.sdk\nstarted = time.perf_counter()\n"
            f"runpy.run_path({str(dag_file)!r})\nprint(time.perf_counter() - started)"
        )
        env = {**self.env, "DBT_WATCHER_CACHE_DIR": str(self.work / "import-cache")}
        timings = []
        for _ in range(runs + 1):  # the first run fills the cache
            out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
            timings.append(float(out.stdout.strip().splitlines()[-1]))
        return round(min(timings[1:]), 3)

    def close(self) -> None:
        services.drop_database(self.db)
        if self.args.keep:
            print(f"Kept the work folder (generated project, stack home with every task and trigger log): {self.work}")
        else:
            shutil.rmtree(self.work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="8 threads, 1 repetition, no Cosmos LOCAL")
    parser.add_argument("--threads", default=None, help="comma list, e.g. 1,2,4,8,16")
    parser.add_argument("--reps", type=int, default=None)
    parser.add_argument("--contenders", default=None, help=f"comma list of {', '.join(ALL_CONTENDERS)}")
    parser.add_argument("--latency", type=float, default=1.0, help="seconds each model sleeps in the warehouse")
    parser.add_argument("--scale", type=int, default=1, help="replicas of the shape in the measured project")
    parser.add_argument("--scale-import", type=int, default=11, help="replicas for the ~2,000-model import test")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument(
        "--airflow-setting",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="an Airflow setting for the stack (all contenders alike; recorded in the results); repeatable",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work folder and its logs for inspection")
    args = parser.parse_args()
    parse_settings(args.airflow_setting)  # a malformed setting stops here, before any set-up
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the stack and drop the database on kill
    session = Session(args)
    started = time.time()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    try:
        session.prepare()
        stack = session.start_stack()
        try:
            cells, bares, settings = session.run_cells(stack)
        finally:
            stack.stop()
        result = {
            "timestamp": stamp,
            "mode": "quick" if args.quick else "full",
            "threads": session.threads,
            "reps": session.reps,
            "contenders": session.contenders,
            "workload": session.workload,
            "machine": report.machine(),
            "airflow_settings": settings,
            "contender_settings": {
                "dbt-watcher": "defaults (poke_interval=0.5; deferrable as named)",
                "cosmos": "astronomer-cosmos defaults except poke_interval=1 (its default is 10), "
                "LoadMode.DBT_MANIFEST, InvocationMode.DBT_RUNNER",
            },
            "bare": bares,
            "cells": [{**asdict(c), "p3": c.p3} for c in cells],
            "p4_import_seconds": session.import_times(),
        }
        result["elapsed_seconds"] = round(time.time() - started, 1)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{stamp}.json").write_text(json.dumps(result, indent=1))
        table = report.markdown(result)
        (args.out / f"{stamp}.md").write_text(table)
        report.timeline(result, args.out / f"{stamp}.png")
        print(table)
        print(f"Results: {args.out / stamp}.json (+ .md, .png); {result['elapsed_seconds']:.0f}s in all")
        return 0
    finally:
        session.close()


if __name__ == "__main__":
    sys.exit(main())
