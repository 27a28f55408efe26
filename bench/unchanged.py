"""skip_unchanged's benchmark: an unchanged re-run and a one-model change, as ratios to a bare `dbt build`.

    python bench/unchanged.py                      # make bench-unchanged: 185 models, then ~1,100
    python bench/unchanged.py --scales 1 --latency 0.5

For each workload (bench/generate.py's fhir shape at ``--scales``, PostgreSQL, every model sleeping
``--latency`` s in the warehouse), in one Airflow stack:

1. a bare `dbt build` (the floor all ratios divide by);
2. the dbt-watcher DAG with ``skip_unchanged=True``, first run: builds everything, records the state;
3. the same DAG again with nothing changed: U1 = its wall time ÷ bare (the issue's target: ≤ 0.1);
4. one model's SQL edited (a model with a small subtree): U2 = the DAG run ÷ bare, and U3 = the DAG run ÷ a
   bare `dbt build --select <model>+` of that subtree, timed right after.

Results: bench/results/unchanged-<timestamp>.json and .md.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import generate  # noqa: E402
from devstack import services  # noqa: E402
from devstack.stack import AirflowStack  # noqa: E402
from scale import bare_build, bench_stack  # noqa: E402

DAG = '''"""airflow dag: dbt-watcher with skip_unchanged on {name} ({models} models)."""
import pendulum
from airflow.sdk import dag
from dbt_watcher import dbt_watcher_group


@dbt_watcher_group(project_dir={project!r}, target="t{threads}", threads={threads}, skip_unchanged=True)
def fhir():
    ...


@dag(dag_id="unchanged_{name}", schedule=None, start_date=pendulum.datetime(2026, 1, 1), catchup=False,
     max_active_runs=1)
def unchanged_{name}():
    fhir()


unchanged_{name}()
'''


class Session:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(tempfile.mkdtemp(prefix="dbt-watcher-unchanged-"))
        self.db = f"bench_unchanged_{secrets.token_hex(4)}"
        self.env = {**os.environ, "BENCH_PG_DBNAME": self.db, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        self.dbt = str(Path(sys.executable).parent / "dbt")
        self.projects: dict[str, tuple[Path, int]] = {}

    def prepare(self) -> None:
        services.ensure_postgres()
        services.create_database(self.db)
        shape = generate.load_shape()
        for statement in generate.setup_sql(shape).split(";"):
            if statement.strip():
                services.query(self.db, statement)
        for scale in self.args.scales:
            name = f"x{scale}"
            project = self.work / name
            info = generate.write_project(project, shape, scale=scale, latency=self.args.latency)
            text = (project / "profiles.yml").read_text().replace("schema: bench", f"schema: {name}")
            (project / "profiles.yml").write_text(text)
            generate.parse(project, self.env)
            self.projects[name] = (project, info["models"])
            print(f"{name}: {info['models']} models in {project}", flush=True)

    def start_stack(self) -> AirflowStack:
        dags = self.work / "dags"
        dags.mkdir()
        for name, (project, models) in self.projects.items():
            text = DAG.format(name=name, project=str(project), threads=self.args.threads, models=models)
            (dags / f"unchanged_{name}.py").write_text(text)
        return bench_stack(dags, "dbtw_unchanged", self.work, self.db)

    def bare(self, project: Path, select: str | None = None) -> float:
        return bare_build(self.dbt, project, self.args.threads, self.env, select)

    def dag_run(self, stack: AirflowStack, dag_id: str) -> tuple[float, dict[str, int]]:
        run_id = stack.trigger(dag_id)
        state = stack.wait_for_run(dag_id, run_id, timeout=3600)
        start, end = stack.sql(
            "select start_date, end_date from dag_run where dag_id=%s and run_id=%s", (dag_id, run_id)
        )[0]
        counts: dict[str, int] = {}
        for task_state in stack.task_states(dag_id, run_id).values():
            counts[str(task_state)] = counts.get(str(task_state), 0) + 1
        print(f"  {dag_id} {run_id}: {state} in {(end - start).total_seconds():.1f}s, tasks {counts}", flush=True)
        return (end - start).total_seconds(), counts

    def measure(self, stack: AirflowStack, name: str) -> dict[str, Any]:
        project, models = self.projects[name]
        dag_id = f"unchanged_{name}"
        bare = self.bare(project)
        first, _ = self.dag_run(stack, dag_id)
        unchanged, unchanged_tasks = self.dag_run(stack, dag_id)
        model = self.small_subtree_model(project)
        path = next((project / "models").rglob(f"{model}.sql"))  # not its compiled copies under target/
        path.write_text(path.read_text().replace("select", "select -- changed\n", 1))
        changed, changed_tasks = self.dag_run(stack, dag_id)
        subtree = self.bare(project, f"{model}+")
        return {
            "workload": name,
            "models": models,
            "bare": round(bare, 1),
            "first_run": round(first, 1),
            "unchanged_run": round(unchanged, 1),
            "u1_unchanged_over_bare": round(unchanged / bare, 3),
            "unchanged_tasks": unchanged_tasks,
            "changed_model": model,
            "changed_run": round(changed, 1),
            "u2_changed_over_bare": round(changed / bare, 3),
            "bare_subtree": round(subtree, 1),
            "u3_changed_over_subtree": round(changed / subtree, 3),
            "changed_tasks": changed_tasks,
        }

    @staticmethod
    def small_subtree_model(project: Path) -> str:
        """A model with two to five models downstream of it (a one-model change of a realistic size)."""
        manifest = json.loads((project / "target" / "manifest.json").read_text())
        children = manifest["child_map"]

        def below(uid: str) -> int:
            seen, todo = set(), [uid]
            while todo:
                for child in children.get(todo.pop(), []):
                    if child.startswith("model.") and child not in seen:
                        seen.add(child)
                        todo.append(child)
            return len(seen)

        models = sorted(uid for uid in manifest["nodes"] if uid.startswith("model."))
        chosen = next((uid for uid in models if 2 <= below(uid) <= 5), models[0])
        return str(manifest["nodes"][chosen]["name"])

    def close(self) -> None:
        services.drop_database(self.db)
        if not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)


def markdown(cells: list[dict[str, Any]], args: argparse.Namespace) -> str:
    lines = [
        f"# skip_unchanged benchmark ({datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC)",
        "",
        f"{args.threads} threads, {args.latency} s per model in the warehouse, PostgreSQL; DAG-run wall times.",
        "",
        "| models | bare s | first run s | unchanged run s | U1 unchanged ÷ bare | changed model | changed run s "
        "| U2 ÷ bare | bare subtree s | U3 ÷ subtree |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {c['models']} | {c['bare']} | {c['first_run']} | {c['unchanged_run']} | {c['u1_unchanged_over_bare']} "
        f"| {c['changed_model']} | {c['changed_run']} | {c['u2_changed_over_bare']} | {c['bare_subtree']} "
        f"| {c['u3_changed_over_subtree']} |"
        for c in cells
    ]
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", type=lambda t: [int(x) for x in t.split(",")], default=[1, 6])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--keep", action="store_true", help="keep the work folder and its logs")
    args = parser.parse_args()
    session = Session(args)
    cells = []
    try:
        session.prepare()
        stack = session.start_stack()
        try:
            stack.wait_for_dags([f"unchanged_{name}" for name in session.projects], timeout=1800)
            for name in session.projects:
                cells.append(session.measure(stack, name))
        finally:
            stack.stop()
    finally:
        session.close()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"unchanged-{stamp}.json").write_text(json.dumps(cells, indent=1))
    text = markdown(cells, args)
    (args.out / f"unchanged-{stamp}.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
