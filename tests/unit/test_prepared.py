"""Prepared graphs: ``dbt-watcher prepare`` once with dbt, then DAG files parse where dbt, a profile
and the graph cache are all absent (dbt_watcher.project.prepared)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from dbt_watcher.cli import main
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.producer.operator import DbtProducerOperator

from ..conftest import EXAMPLES

#: Parses one DAG file with Airflow's DagBag in a process where importing dbt fails.
WITHOUT_DBT = """
import importlib.abc, json, sys

class NoDbt(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in ("dbt", "dbt_common", "dbt_adapters"):
            raise ImportError(f"{name} is not installed here")

sys.meta_path.insert(0, NoDbt())
sys.path.insert(0, sys.argv[1])
from dbt_watcher.airflow_lines import dag_bag as DagBag
bag = DagBag(dag_folder=sys.argv[2])
print(json.dumps({"errors": {k: v[-400:] for k, v in bag.import_errors.items()},
                  "tasks": {d: len(bag.dags[d].tasks) for d in bag.dags}}))
"""


@pytest.fixture
def examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*", ".dbt_watcher"))
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "airflow"))
    monkeypatch.setenv("DBT_WATCHER_CACHE_DIR", str(tmp_path / "prepare-cache"))
    return copy


def _parse_without_dbt(examples: Path, dag_file: str, tmp_path: Path, **env_vars: str) -> dict[str, dict[str, object]]:
    env = {**os.environ, "DBT_WATCHER_CACHE_DIR": str(tmp_path / "empty-cache"), **env_vars}
    dags = examples / "dags"
    out = subprocess.run(
        [sys.executable, "-c", WITHOUT_DBT, str(dags), str(dags / dag_file)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, dict[str, object]] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def test_prepared_dags_parse_without_dbt_a_profile_or_a_cache(examples: Path, tmp_path: Path) -> None:
    assert main(["prepare", str(examples / "dags")]) == 0
    written = sorted((examples / "jaffle_shop" / ".dbt_watcher" / "prepared").glob("*.json"))
    assert len(written) == 2  # the daily group and the custom one (other select, overrides)
    (examples / "jaffle_shop" / "profiles.yml").unlink()  # the dag-processor has no profile either
    for dag_file, tasks in [("jaffle_shop_dag.py", {"jaffle_shop_daily": 22}), ("jaffle_shop_custom_dag.py", None)]:
        parsed = _parse_without_dbt(examples, dag_file, tmp_path)
        assert parsed["errors"] == {}
        assert tasks is None or parsed["tasks"] == tasks


def test_a_project_changed_since_it_was_prepared_is_parsed_again(examples: Path, tmp_path: Path) -> None:
    assert main(["prepare", str(examples / "dags" / "jaffle_shop_dag.py")]) == 0
    model = examples / "jaffle_shop" / "models" / "marts" / "orders.sql"
    model.write_text(model.read_text() + "\n-- changed after prepare\n")
    parsed = _parse_without_dbt(examples, "jaffle_shop_dag.py", tmp_path)
    (error,) = parsed["errors"].values()
    assert "dbt" in str(error) and "is not installed here" in str(error)  # it tried dbt: the graph was stale


def test_a_prepared_graph_is_not_used_where_the_environment_chooses_otherwise(examples: Path, tmp_path: Path) -> None:
    # The example profile picks its target with env_var('JAFFLE_TARGET') (unset when prepared: duckdb).
    assert main(["prepare", str(examples / "dags" / "jaffle_shop_dag.py")]) == 0
    parsed = _parse_without_dbt(examples, "jaffle_shop_dag.py", tmp_path, JAFFLE_TARGET="postgres")
    (error,) = parsed["errors"].values()
    assert "JAFFLE_TARGET had other values" in str(error) and "dbt-watcher prepare" in str(error)


def test_running_dbt_without_the_profile_the_prepared_parse_did_without_fails_clearly(examples: Path) -> None:
    from dbt_watcher.airflow_lines import dag_bag as DagBag

    dag_file = examples / "dags" / "jaffle_shop_dag.py"
    assert main(["prepare", str(dag_file)]) == 0
    (examples / "jaffle_shop" / "profiles.yml").unlink()
    bag = DagBag(dag_folder=str(dag_file))
    assert bag.import_errors == {}  # parsed from the prepared graph
    producer = next(t for t in bag.dags["jaffle_shop_daily"].tasks if t.task_id.endswith(".dbt_producer"))
    assert isinstance(producer, DbtProducerOperator)
    with pytest.raises(ConfigurationError, match=r"No profiles\.yml found"), producer.runtime.session():
        pass


def test_an_unreadable_prepared_graph_is_named_not_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dbt_watcher.project import prepared

    folder = tmp_path / prepared.FOLDER
    folder.mkdir(parents=True)
    (folder / "k.json").write_text("{}")  # no graph in it: another version's file, say

    assert prepared.read_prepared(tmp_path, "k") is None  # ignored with a warning saying to prepare again
    assert prepared.read_prepared(tmp_path, "absent") is None

    def refused(path: object, *args: object, **kwargs: object) -> object:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(prepared, "open", refused, raising=False)
    with pytest.raises(
        ConfigurationError, match=r"cannot read the prepared graph .*k\.json.*Permission denied"
    ) as info:
        prepared.read_prepared(tmp_path, "k")
    assert "readable by the user Airflow runs as" in info.value.fix
