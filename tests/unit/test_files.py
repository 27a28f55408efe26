"""Files dbt-watcher writes for other processes are whole and readable as the umask allows.

A graph prepared as root in an image is read by the dag-processor's `airflow` user, and artifacts
written by a worker are read by the api-server: neither may be left at mkstemp's private 0600.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbt_watcher.files import copy_atomically, write_text_atomically
from dbt_watcher.project import prepared
from dbt_watcher.project.graph import ProjectGraph
from dbt_watcher.project.locate import locate_project
from dbt_watcher.project.selection import Selection
from dbt_watcher.rules.artifacts import save_partial_parse

from .graphs import graph, model


@pytest.fixture
def umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("umask")
def test_written_and_copied_files_get_the_mode_open_would_give(tmp_path: Path) -> None:
    write_text_atomically(tmp_path / "a" / "doc.json", "{}")
    copy_atomically(tmp_path / "a" / "doc.json", tmp_path / "b" / "copy.json")
    assert _mode(tmp_path / "a" / "doc.json") == 0o644 and _mode(tmp_path / "b" / "copy.json") == 0o644
    assert (tmp_path / "b" / "copy.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "copy.json", "doc.json"]  # no temp left
    os.umask(0o077)  # a stricter umask is kept
    write_text_atomically(tmp_path / "private.json", "{}")
    assert _mode(tmp_path / "private.json") == 0o600


@pytest.mark.usefixtures("umask")
def test_a_prepared_graph_is_readable_by_others_and_the_partial_parse_cache_is_not(tmp_path: Path) -> None:
    project = tmp_path / "shop"
    project.mkdir()
    (project / "dbt_project.yml").write_text("name: shop\nversion: '1.0'\nprofile: shop\nconfig-version: 2\n")
    root = locate_project(project, needs_profiles=False)
    written = prepared.write_prepared(*prepared.place(root, {}, Selection(), ()), graph(model("a")), frozenset())
    assert written is not None and _mode(written) == 0o644
    assert isinstance(ProjectGraph.from_json(json.loads(written.read_text())["graph"]), ProjectGraph)
    (tmp_path / "target").mkdir()
    (tmp_path / "target" / "partial_parse.msgpack").write_bytes(b"\x00")
    save_partial_parse(tmp_path / "target", tmp_path / "cache" / "pp.msgpack")
    # dbt records the values of env vars models read there: only this user reads it
    assert _mode(tmp_path / "cache" / "pp.msgpack") == 0o600
