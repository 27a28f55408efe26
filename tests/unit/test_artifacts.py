"""Artifacts reach other machines through ``artifacts_url`` (Airflow's ObjectStoragePath)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dbt_watcher.config import WatcherConfig
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.rules.artifacts import local_build_dir, run_dir, share


def test_without_a_url_the_local_run_folder_is_the_location(tmp_path: Path) -> None:
    run_path = run_dir(tmp_path, "dag", "run 1", "shop", map_index=-1, generation="g1")
    assert share(run_path, run_path, None) == str(run_path)


def test_run_ids_that_clean_to_the_same_name_get_their_own_folder(tmp_path: Path) -> None:
    folders = {
        run_dir(tmp_path, "dag", run, "shop", map_index=-1, generation="g") for run in ("a:b", "a_b", "a/b", "..")
    }
    assert len(folders) == 4 and all(tmp_path in f.parents for f in folders)
    assert run_dir(tmp_path, "d", "r", "g", map_index=0, generation="x") != run_dir(
        tmp_path, "d", "r", "g", map_index=1, generation="x"
    )
    assert run_dir(tmp_path, "d", "r", "g", map_index=-1, generation="x") != run_dir(
        tmp_path, "d", "r", "g", map_index=-1, generation="y"
    )


def test_a_run_folder_and_a_rebuild_are_copied_under_the_url(tmp_path: Path) -> None:
    run_path = run_dir(tmp_path / "local", "dag", "manual__1", "shop", map_index=-1, generation="g1")
    (run_path / "attempt-1").mkdir(parents=True)
    (run_path / "run_results.json").write_text(json.dumps({"results": []}))
    (run_path / "attempt-1" / "partial_parse.msgpack").write_bytes(b"big and useless elsewhere")
    remote_root = tmp_path / "remote"
    where = share(run_path, run_path, remote_root.as_uri())
    copied = remote_root.joinpath(*run_path.parts[-4:])
    assert where.endswith("/shop/g1") and copied.is_dir()
    assert json.loads((copied / "run_results.json").read_text()) == {"results": []}
    assert not (copied / "attempt-1" / "partial_parse.msgpack").exists()

    rebuild = local_build_dir(run_path, "orders", 2)
    rebuild.mkdir(parents=True)
    (rebuild / "run_results.json").write_text("{}")
    share(run_path, rebuild, remote_root.as_uri())
    assert (copied / "local" / "orders" / "try-2" / "run_results.json").read_text() == "{}"


def test_artifacts_url_must_be_a_url() -> None:
    with pytest.raises(ConfigurationError, match="is not a URL"):
        WatcherConfig(project_dir=".", artifacts_url="/mnt/shared")
