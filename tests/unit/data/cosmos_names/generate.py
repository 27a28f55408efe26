"""Write the names astronomer-cosmos 1.15.1 gives in ExecutionMode.WATCHER, as test data for CosmosTranslator.

Cosmos renders them itself here; nothing is copied from its code. Run by hand only, never from the tests, in a
venv of its own (Cosmos registers a plugin, a policy and listeners: keep it out of the project's .venv):

    .venv/bin/uv venv /tmp/cosmos-venv --python 3.11
    .venv/bin/uv pip install --python /tmp/cosmos-venv/bin/python -c requirements/constraints.txt \
        -e ".[bench,duckdb,postgres]" apache-airflow-providers-postgres
    /tmp/cosmos-venv/bin/python tests/unit/data/cosmos_names/generate.py

It copies examples/jaffle_shop to a temporary directory also named jaffle_shop (Cosmos names the AFTER_ALL test
task after the project *directory*), lists it with LoadMode.DBT_LS and writes, next to this file:

- ``<target>_<test_behavior>.json`` for targets duckdb and postgres and behaviors after_each (Cosmos' default),
  after_all, none and build: the layout Cosmos builds as a DbtTaskGroup "jaffle_shop" in DAG "cosmos_names_tg"
  (key ``task_group``) and as a DbtDag "cosmos_names_dag" (key ``dag``), or the error Cosmos raises;
- ``duckdb_after_each_sources_all.json``: the same with SourceRenderingBehavior.ALL;
- ``edge_after_each_sources_all.json``: a small project made here with versioned models and a tested source;
- ``asset_uris.json``: the asset URIs a consumer emits at run time, from Cosmos' own functions.

A layout holds ``dag_id``, ``group_id`` (task group only), ``groups`` (every TaskGroup id), ``tasks`` (by full task
id: operator class, TaskGroup, ``node`` the dbt node in the task's context - a test task names the tested node -,
upstream ids, trigger rule, outlets at parse time, producer task id, and the AssetAlias a consumer emits through),
``nodes`` (by unique_id: whether Cosmos rendered it as a task or a group, and its task ids) and ``tests_per_model``.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
EXAMPLE = HERE.parents[3] / "examples" / "jaffle_shop"
DBT = str(Path(sys.executable).parent / "dbt")
BEHAVIORS = ("after_each", "after_all", "none", "build")
CONSUMERS = ("DbtRunWatcherOperator", "DbtSeedWatcherOperator", "DbtSnapshotWatcherOperator")

# A plain profiles.yml holding what dbt renders from the example's templated one.
RENDERED_PROFILES = """jaffle_shop:
  target: duckdb
  outputs:
    duckdb: {type: duckdb, path: jaffle_shop.duckdb, threads: 4}
    postgres: {type: postgres, host: 127.0.0.1, port: 5432, user: postgres, password: "",
               dbname: jaffle_shop, schema: analytics, threads: 4}
"""
EDGE_FILES = {
    "dbt_project.yml": "name: edge\nversion: '1.0.0'\nconfig-version: 2\nprofile: edge\n",
    "profiles.yml": "edge:\n  target: duckdb\n  outputs:\n    duckdb: {type: duckdb, path: edge.duckdb}\n",
    "models/_sources.yml": """version: 2
sources:
  - name: raw
    schema: main
    tables:
      - name: things
        columns: [{name: id, data_tests: [not_null]}]
      - name: events
        loaded_at_field: loaded_at
        freshness: {warn_after: {count: 1, period: day}}
      - name: untouched
""",
    "models/stg_things.sql": "select * from {{ source('raw', 'things') }} , {{ source('raw', 'events') }}",
    "models/marts/_marts.yml": """version: 2
models:
  - name: dim_things
    latest_version: 2
    columns: [{name: id, data_tests: [unique]}]
    versions: [{v: 1}, {v: 2}]
""",
    "models/marts/dim_things_v1.sql": "select id from {{ ref('stg_things') }}",
    "models/marts/dim_things_v2.sql": "select id, 1 as two from {{ ref('stg_things') }}",
    "models/marts/uses_v1.sql": "select * from {{ ref('dim_things', v=1) }}",
}


def _setup_env(home: Path) -> None:
    os.environ.update(
        AIRFLOW_HOME=str(home / "airflow"),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__COSMOS__ENABLE_CACHE="False",  # the dbt ls cache lives in Airflow Variables: no database here
        AIRFLOW__COSMOS__ENABLE_TELEMETRY="False",
        DO_NOT_TRACK="1",
        PATH=f"{Path(DBT).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # Cosmos lists with the dbt on PATH
    )
    importlib.import_module("airflow")  # before cosmos: Airflow's start-up loads Cosmos' policy plugin


def _task_record(task: Any, dataset: Any) -> dict[str, Any]:
    group = task.task_group.group_id if task.task_group else None
    operator = type(task).__name__
    extra = getattr(task, "extra_context", None) or {}
    return {
        "operator": operator,
        "group": group,
        "node": extra.get("dbt_node_config", {}).get("unique_id"),
        "upstream": sorted(task.upstream_task_ids),
        "trigger_rule": getattr(task.trigger_rule, "value", task.trigger_rule),
        "parse_time_outlets": [getattr(o, "uri", None) or repr(o) for o in task.outlets],
        "producer_task_id": getattr(task, "producer_task_id", None),
        # The AssetAlias a consumer appends to its outlets at run time and sends its asset events through.
        "runtime_asset_alias": dataset.get_dataset_alias_name(task.dag, task.task_group, task.task_id)
        if operator in CONSUMERS
        else None,
    }


def _describe(dag: Any, converter: Any, dataset: Any) -> dict[str, Any]:
    nodes = {}
    for uid, node in sorted(converter.dbt_graph.filtered_nodes.items()):
        rendered = converter.tasks_map.get(uid)
        children = getattr(rendered, "children", None)
        nodes[uid] = {
            "resource_type": node.resource_type.value,
            "rendered_as": None if rendered is None else ("group" if children is not None else "task"),
            "group_id": rendered.group_id if children is not None else None,
            "task_ids": sorted(children) if children is not None else ([rendered.task_id] if rendered else []),
        }
    groups = sorted(g for g in dag.task_group.get_task_group_dict() if g)
    return {
        "dag_id": dag.dag_id,
        "groups": groups,
        "tasks": {t.task_id: _task_record(t, dataset) for t in sorted(dag.tasks, key=lambda t: t.task_id)},
        "nodes": nodes,
        "tests_per_model": converter.dbt_graph.tests_per_model,
    }


def _render(project: Path, target: str, behavior: str, sources: str = "none", as_dag: bool = False) -> Any:
    cosmos = importlib.import_module("cosmos")
    const = importlib.import_module("cosmos.constants")
    dataset = importlib.import_module("cosmos.dataset")
    sdk = importlib.import_module("airflow.sdk")
    kwargs = {
        "project_config": cosmos.ProjectConfig(project),
        "profile_config": cosmos.ProfileConfig(
            profile_name=project.name,  # the profile is named as the project directory here
            target_name=target,
            profiles_yml_filepath=project / "profiles.yml",
        ),
        "execution_config": cosmos.ExecutionConfig(execution_mode=const.ExecutionMode.WATCHER, dbt_executable_path=DBT),
        "render_config": cosmos.RenderConfig(
            load_method=const.LoadMode.DBT_LS,
            test_behavior=const.TestBehavior(behavior),
            source_rendering_behavior=const.SourceRenderingBehavior(sources),
        ),
    }
    try:
        if as_dag:
            dag = cosmos.DbtDag(dag_id="cosmos_names_dag", schedule=None, **kwargs)
            return _describe(dag, dag, dataset)
        with sdk.DAG(dag_id="cosmos_names_tg", schedule=None) as dag:
            group = cosmos.DbtTaskGroup(group_id="jaffle_shop", **kwargs)
        return {"group_id": group.group_id, **_describe(dag, group, dataset)}
    except NotImplementedError as error:  # recorded: Cosmos refuses TestBehavior.BUILD in WATCHER mode
        return {"error": f"{type(error).__name__}: {error}"}


def _write(name: str, data: dict[str, Any]) -> None:
    (HERE / name).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print("wrote", name)


def _versions() -> dict[str, str]:
    meta = importlib.import_module("importlib.metadata")
    return {p: meta.version(p) for p in ("astronomer-cosmos", "apache-airflow", "dbt-core", "dbt-duckdb")}


def _asset_uris(project: Path) -> dict[str, Any]:
    cosmos = importlib.import_module("cosmos")
    dataset = importlib.import_module("cosmos.dataset")
    asset = importlib.import_module("airflow.sdk").Asset
    rendered = project.parent / "rendered_profiles.yml"
    rendered.write_text(RENDERED_PROFILES)
    out: dict[str, Any] = {}
    for target in ("duckdb", "postgres"):
        target_path = f"target_{target}"
        cmd = [DBT, "parse", "--project-dir", str(project), "--profiles-dir", str(project), "--target", target]
        subprocess.run([*cmd, "--target-path", target_path], check=True, cwd=project, capture_output=True)

        def namespace(profiles: Path, target: str = target) -> Any:
            config = cosmos.ProfileConfig(
                profile_name="jaffle_shop", target_name=target, profiles_yml_filepath=profiles
            )
            return dataset.get_dataset_namespace(config)

        example_ns, rendered_ns = namespace(project / "profiles.yml"), namespace(rendered)
        uris = dataset.compute_model_outlet_uris(project / target_path / "manifest.json", rendered_ns)
        out[target] = {
            "namespace_from_example_profiles_yml": example_ns,
            "namespace_from_rendered_profiles_yml": rendered_ns,
            "consumer_outlet_uris": uris,
            "airflow_normalized": {uid: [asset(uri=u).uri for u in us] for uid, us in uris.items()},
        }
    samples = {  # target facts -> namespace, for adapters this project does not use
        "duckdb_absolute_path": ("duckdb", {"path": "/data/jaffle_shop.duckdb"}),
        "postgres_no_port": ("postgres", {"host": "db.example.com"}),
        "snowflake": ("snowflake", {"account": "xy12345.us-east-1"}),
        "snowflake_org_account": ("snowflake", {"account": "myorg-myaccount"}),
        "bigquery": ("bigquery", {"project": "my-gcp-project"}),
        "redshift": ("redshift", {"host": "cluster.abc.eu-west-1.redshift.amazonaws.com"}),
        "databricks": ("databricks", {"host": "dbc-1234.cloud.databricks.com"}),
    }
    resolvers = dataset._ADAPTER_NAMESPACE_RESOLVERS
    out["other_adapters"] = {}
    for key, (adapter, facts) in samples.items():
        ns = resolvers[adapter](facts)
        out["other_adapters"][key] = {
            "namespace": ns,
            "DB.Schema.my_table": dataset.construct_dataset_uri(ns, "DB.Schema.my_table"),
        }
    return out


def _render_both(project: Path, target: str, behavior: str, sources: str = "none") -> dict[str, Any]:
    return {
        "versions": _versions(),
        "target": target,
        "test_behavior": behavior,
        "source_rendering_behavior": sources,
        "task_group": _render(project, target, behavior, sources),
        "dag": _render(project, target, behavior, sources, as_dag=True),
    }


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="cosmos_names_") as tmp:
        root = Path(tmp)
        _setup_env(root)
        project = root / "jaffle_shop"
        shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
        edge = root / "edge"
        for rel, text in EDGE_FILES.items():
            (edge / rel).parent.mkdir(parents=True, exist_ok=True)
            (edge / rel).write_text(text)
        for target in ("duckdb", "postgres"):
            for behavior in BEHAVIORS:
                _write(f"{target}_{behavior}.json", _render_both(project, target, behavior))
        _write("duckdb_after_each_sources_all.json", _render_both(project, "duckdb", "after_each", "all"))
        _write("edge_after_each_sources_all.json", _render_both(edge, "duckdb", "after_each", "all"))
        _write("asset_uris.json", {"versions": _versions(), **_asset_uris(project)})


if __name__ == "__main__":
    main()
