"""The ``dbt-watcher`` command.

* ``render``: preview the tasks and edges a group would create, before deploying it. The preview
  renders the group for real, inside a throwaway DAG, with the same code the dag-processor runs, so
  what it prints is what Airflow will show: no second implementation of the plan to drift away from
  the first.
* ``prepare``: import DAG files the way the dag-processor does, with dbt at hand, and write each
  group's graph into its project folder (:mod:`dbt_watcher.project.prepared`), so that the
  dag-processor later parses them without dbt.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dbt_watcher import __version__, airflow_lines
from dbt_watcher.errors import DbtWatcherError
from dbt_watcher.modes import TestBehavior

_LEVEL_NAMES = {logging.INFO: "note", logging.WARNING: "warning"}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "prepare":
        return prepare(args.paths)
    if args.command != "render":
        parser.print_help()
        return 2
    try:
        print(render_preview(args))
    except DbtWatcherError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def prepare(paths: Sequence[Path]) -> int:
    """Import the DAG files under ``paths`` as Airflow's DagBag does, writing every group's prepared
    graph; print what was written. Exit status 1 when a file fails to import (with its error)."""
    from airflow.utils.file import list_py_file_paths

    from dbt_watcher.project import prepared

    logging.getLogger("dbt_watcher").setLevel(logging.INFO)
    failed = 0
    prepared.writing.append(True)
    try:
        for path in paths:
            # Airflow puts the DAGs folder on sys.path, so DAG files import each other by module name.
            folder = path.resolve() if path.is_dir() else path.resolve().parent
            if str(folder) not in sys.path:
                sys.path.insert(0, str(folder))
            # One DagBag per file, as the dag-processor parses each file on its own (a DAG file
            # imported by another is not a duplicate there).
            files = [Path(f) for f in list_py_file_paths(folder)] if path.is_dir() else [path.resolve()]
            for file in sorted(files):  # a folder's files as the dag-processor lists them (.airflowignore)
                bag = airflow_lines.dag_bag(dag_folder=str(file))
                for name, error in sorted(bag.import_errors.items()):
                    print(f"error: {name}: {error}", file=sys.stderr)
                    failed += 1
                for dag_id in sorted(bag.dags):
                    print(f"{file.name}: DAG {dag_id} ({len(bag.dags[dag_id].tasks)} tasks)")
    finally:
        prepared.writing.pop()
    return 1 if failed else 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dbt-watcher", description="Tools for dbt-watcher groups.")
    parser.add_argument("--version", action="version", version=f"dbt-watcher {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    render = commands.add_parser(
        "render",
        help="print the tasks and edges @dbt_watcher_group would create for a dbt project",
        description="Render a dbt project the way @dbt_watcher_group does and print its tasks, edges "
        "(as text and as a Mermaid flowchart) and the warnings to read before deploying.",
    )
    render.add_argument("project_dir", type=Path, help="folder holding dbt_project.yml")
    prep = commands.add_parser(
        "prepare",
        help="write each group's graph into its project folder, so DAG parsing needs no dbt",
        description="Import DAG files as Airflow's dag-processor does, with dbt installed, and write every "
        "dbt-watcher group's graph and selection to <project_dir>/.dbt_watcher/prepared/. Ship that folder "
        "with the project: a dag-processor then parses the DAG files without dbt, a profile or a connection.",
    )
    prep.add_argument("paths", type=Path, nargs="+", help="DAG files or folders of DAG files")
    render.add_argument("--profiles-dir", type=Path, help="folder holding profiles.yml")
    render.add_argument("--profile", help="dbt profile name")
    render.add_argument("--target", help="dbt target name")
    render.add_argument("--select", nargs="+", help="dbt --select")
    render.add_argument("--exclude", nargs="+", help="dbt --exclude")
    render.add_argument("--selector", help="a YAML selector of the project")
    render.add_argument("--threads", type=int, help="threads of the producer's dbt build")
    render.add_argument(
        "--connection-id", help="an Airflow connection to render the profile from (AIRFLOW_CONN_<ID> works)"
    )
    render.add_argument(
        "--test-behavior", default="build", choices=[str(b) for b in TestBehavior], help="test_behavior="
    )
    render.add_argument("--group-id", default="dbt", help="TaskGroup id used in the preview (default: dbt)")
    render.add_argument("--non-deferrable", action="store_true", help="preview deferrable=False")
    render.add_argument(
        "--format", default="both", choices=("text", "mermaid", "both"), help="what to print (default: both)"
    )
    render.add_argument(
        "--unchanged-in",
        metavar="DAG_ID",
        help="skip_unchanged: say which nodes a run of this DAG's group (--group-id) would build now, from its "
        "build state (runs dbt ls and dbt source freshness)",
    )
    render.add_argument("--artifacts-dir", type=Path, help="the group's artifacts_dir= (with --unchanged-in)")
    render.add_argument(
        "--vars", type=json.loads, default={}, help="vars the run's hook adds, as JSON (with --unchanged-in)"
    )
    return parser


def render_preview(args: argparse.Namespace) -> str:
    from airflow.sdk import DAG

    from dbt_watcher.group.decorator import dbt_watcher_group
    from dbt_watcher.group.notes import plan_notes

    # Airflow's logging setup sends INFO lines to stdout; the preview's notes are printed below instead.
    logging.getLogger("dbt_watcher").setLevel(logging.ERROR)

    params: dict[str, Any] = {
        "project_dir": args.project_dir.resolve(),
        "profiles_dir": args.profiles_dir.resolve() if args.profiles_dir else None,
        "profile": args.profile,
        "target": args.target,
        "select": args.select,
        "exclude": args.exclude,
        "selector": args.selector,
        "threads": args.threads,
        "connection_id": args.connection_id,
        "test_behavior": args.test_behavior,
        "deferrable": not args.non_deferrable,
        "group_id": args.group_id,
    }

    def preview() -> None:
        """Stands in for the decorated function of a DAG file."""

    factory = dbt_watcher_group(**{k: v for k, v in params.items() if v is not None})(preview)
    with DAG("dbt_watcher_render_preview", schedule=None) as dag:
        group = factory()
    assert group.graph is not None and group.plan is not None
    assert group.producer is not None
    producer = group.producer.task_id
    tasks = sorted(dag.tasks, key=lambda t: (t.task_id != producer, t.task_id))
    edges = sorted((t.task_id, down) for t in tasks for down in t.downstream_task_ids)
    notes = plan_notes(group.graph, group.plan, factory.config)
    expected = {spec.node.unique_id: spec.tests for spec in group.plan.consumers}
    parts: list[str] = []
    if args.format in ("text", "both"):
        parts.append(_as_text(group.graph.project_name, tasks, edges, notes, expected))
    if args.format in ("mermaid", "both"):
        parts.append(_as_mermaid(tasks, edges))
    if args.unchanged_in:
        parts.append(_would_build(group.producer, args))
    return "\n\n".join(parts)


def _would_build(producer: Any, args: argparse.Namespace) -> str:
    """What a run of the DAG's group would build now under skip_unchanged (the producer's own decision)."""
    import tempfile

    from dbt_watcher.channel.records import Invocation
    from dbt_watcher.producer.unchanged import BuildStateKeeper
    from dbt_watcher.rules import build_state
    from dbt_watcher.runtime.task_dbt import TaskDbt

    rt = producer.runtime
    root = args.artifacts_dir.resolve() if args.artifacts_dir else rt.config.artifacts_root()
    folder = build_state.state_dir(root, args.unchanged_in, rt.group_id, -1, rt.project_key)  # as the producer
    watches = tuple(c.watch for c in producer.consumers)
    keeper = BuildStateKeeper(folder, "preview", watches, rt.target_identity)
    logging.getLogger("dbt_watcher.producer.unchanged").setLevel(logging.INFO)
    with rt.session() as (project, runner), tempfile.TemporaryDirectory() as scratch:
        base = rt.base_invocation  # the group's vars and dbt_args, with what the run's hook would add
        invocation = Invocation({**base.vars, **args.vars}, False, base.dbt_args)
        dbt = TaskDbt(project, runner, invocation, Path(scratch), rt.writer_lock)
        runner.prepare(dbt.command("parse"))
        unchanged = keeper.find_unchanged(dbt, keeper.plan)
    todo = [uid for uid in keeper.plan if uid not in unchanged]
    lines = [f"skip_unchanged, with the build state in {folder}: a run now builds {len(todo)} of {len(watches)} nodes"]
    lines += [f"  build      {uid}" for uid in todo]
    lines += [f"  unchanged  {uid}: {build.reason}" for uid, build in sorted(unchanged.items())]
    return "\n".join(lines)


def _as_text(
    project: str,
    tasks: list[Any],
    edges: list[tuple[str, str]],
    notes: list[tuple[int, str]],
    expected: Mapping[str, Sequence[str]],
) -> str:
    width = max(len(t.task_id) for t in tasks)
    lines = [f"dbt project {project}: {len(tasks)} tasks, {len(edges)} edges", ""]
    for task in tasks:
        consumer = getattr(task, "consumer", None)
        what = type(task).__name__ + (f"({consumer.watch.unique_id})" if consumer is not None else "")
        upstream = ", ".join(sorted(task.upstream_task_ids)) or "-"
        lines.append(f"  {task.task_id:<{width}}  {what}  <- {upstream}")
        if consumer is not None and consumer.asset_uri:
            lines.append(f"  {'':<{width}}    asset: {consumer.asset_uri}")
        tests = expected.get(consumer.watch.unique_id, ()) if consumer is not None and consumer.watch.gated else ()
        if tests:
            # The attachment rule made visible: the tests that gate this task's green when the run selects
            # them as the DAG file does (the run's own dbt selection decides; docs/reliability.md).
            lines.append(f"  {'':<{width}}    gated by: {', '.join(sorted(tests))}")
    if notes:
        lines.append("")
        lines.extend(f"{_LEVEL_NAMES.get(level, 'note')}: {message}" for level, message in notes)
    return "\n".join(lines)


def _as_mermaid(tasks: list[Any], edges: list[tuple[str, str]]) -> str:
    ids = {t.task_id: f"t{i}" for i, t in enumerate(tasks)}
    lines = ["flowchart LR"]
    lines.extend(f'  {ids[t.task_id]}["{t.task_id}"]' for t in tasks)
    lines.extend(f"  {ids[up]} --> {ids[down]}" for up, down in edges)
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
