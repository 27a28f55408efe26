"""A dependency chain 2,000 models deep renders and serializes (nothing in the path recurses per level).

The graph is handed to the real decorator as a prepared graph (dbt_watcher.project.prepared), so the
test needs no dbt parse of 2,000 models.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pendulum
import pytest
from airflow.sdk import DAG

from dbt_watcher import dbt_watcher_group
from dbt_watcher.project import prepared
from dbt_watcher.project.locate import locate_project
from dbt_watcher.project.selection import Selection

from .graphs import graph, model

DEPTH = 2_000


def test_a_chain_two_thousand_models_deep_renders_and_serializes(tmp_path: Path, cache_dir: Path) -> None:
    project = tmp_path / "chain"
    (project / "models").mkdir(parents=True)
    (project / "dbt_project.yml").write_text("name: chain\nversion: '1.0'\nprofile: chain\nconfig-version: 2\n")
    nodes = [model("m0")] + [model(f"m{i}", f"model.shop.m{i - 1}") for i in range(1, DEPTH)]

    def chain() -> None: ...

    factory = dbt_watcher_group(project_dir=project, threads=8)(chain)
    root = locate_project(project, needs_profiles=False)
    place = prepared.place(root, factory.config.parse_settings, Selection(), ())
    prepared.write_prepared(*place, graph(*nodes), frozenset())
    limit = sys.getrecursionlimit()
    with DAG("deep_chain", schedule=None, start_date=pendulum.datetime(2026, 1, 1)) as dag:
        group = factory()
    assert len(group.consumers) == DEPTH and sys.getrecursionlimit() == limit
    last = dag.get_task(f"chain.m{DEPTH - 1}")
    assert last.upstream_task_ids == {f"chain.m{DEPTH - 2}"}

    from tests.airflow_line import DagSerialization

    serialized = DagSerialization.to_dict(dag)
    assert len(serialized["dag"]["tasks"]) == DEPTH + 2  # the producer and the audit


@pytest.fixture(autouse=True)
def _no_prepared_memo() -> None:
    prepared._places.clear()
