"""Where a run's dbt artifacts live, and the unified run_results.json.

Layout under the artifacts root (``artifacts_dir=``)::

    <dag_id>/<run_id>~<hash>/<group_id>[~map<i>]/<generation>/
        run_results.json     unified: one result per node, the latest attempt wins
        manifest.json        the manifest of the latest producer attempt
        attempt-1/           dbt's target folder of producer attempt 1 (dbt.log under logs/)
        local/<task>/try-2/  a consumer's own rebuild

``~<hash>`` (of the exact run id) keeps run ids that differ only in characters a path cannot hold
(``a:b``, ``a_b``) apart; the generation keeps a DAG run deleted and re-created with the same run id,
or reprocessed as a whole, apart from the earlier one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import shutil
from pathlib import Path
from typing import Any

from dbt_watcher.files import copy_atomically, write_text_atomically

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.+=-]")
#: How many folder levels below the artifacts root name one run's folder.
RUN_DEPTH = 4


def safe_part(part: str) -> str:
    """A name as one folder of the layout: characters a path cannot hold become ``_``."""
    cleaned = _UNSAFE.sub("_", part).strip(".") or "_"
    return cleaned[:100]


def _run_folders(dag_id: str, run_id: str) -> list[str]:
    """The two folder names of a DAG run in the layout: the DAG's, then the run's (``<run_id>~<hash>``)."""
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:10]
    return [safe_part(dag_id), f"{safe_part(run_id)}~{digest}"]


def group_folder(group_id: str, map_index: int) -> str:
    """The folder name of a group (one per map index of a mapped group)."""
    return safe_part(group_id) + (f"~map{map_index}" if map_index >= 0 else "")


def run_dir(root: Path, dag_id: str, run_id: str, group_id: str, *, map_index: int, generation: str) -> Path:
    return root.joinpath(*_run_folders(dag_id, run_id), group_folder(group_id, map_index), safe_part(generation))


def is_run_location(location: str, dag_id: str, run_id: str) -> bool:
    """Whether a location (a folder or an object-storage URL) has the layout of ``run_dir`` for this
    DAG run: the api-server serves artifacts only from such a place, whatever an XCom says."""
    parts = location.rstrip("/").split("/")
    return len(parts) > RUN_DEPTH and parts[-RUN_DEPTH:-2] == _run_folders(dag_id, run_id)


def attempt_dir(run_path: Path, attempt: int) -> Path:
    return run_path / f"attempt-{attempt}"


def local_build_dir(run_path: Path, task_id: str, try_number: int) -> Path:
    return run_path / "local" / safe_part(task_id) / f"try-{try_number}"


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A dbt artifact's JSON object (None if the file is missing, unreadable or not an object)."""
    try:
        with open(path) as fh:
            document = json.load(fh)
    except (OSError, ValueError):
        return None
    return document if isinstance(document, dict) else None


def read_run_results(target: Path) -> dict[str, Any] | None:
    """dbt's run_results.json in a target folder (None if dbt did not write one)."""
    return read_json_object(target / "run_results.json")


def publish_attempt(run_path: Path, attempt_target: Path) -> None:
    """Fold one attempt's run_results.json into the unified one and keep its manifest."""
    results_path = attempt_target / "run_results.json"
    if not results_path.is_file():
        return
    with open(results_path) as fh:
        latest = json.load(fh)
    unified_path = run_path / "run_results.json"
    if unified_path.is_file():
        with open(unified_path) as fh:
            unified = json.load(fh)
        newer = {r["unique_id"] for r in latest.get("results", [])}
        kept = [r for r in unified.get("results", []) if r.get("unique_id") not in newer]
        latest["results"] = kept + latest.get("results", [])
    write_text_atomically(unified_path, json.dumps(latest))
    manifest = attempt_target / "manifest.json"
    if manifest.is_file():
        shutil.copyfile(manifest, run_path / "manifest.json")


def location(run_path: Path, url: str | None) -> str:
    """Where a run's artifacts can be read from other machines: its folder under ``url``, else the
    local run folder."""
    if url is None:
        return str(run_path)
    from airflow.sdk import ObjectStoragePath

    return str(ObjectStoragePath(url).joinpath(*run_path.parts[-RUN_DEPTH:]))  # the same layout as on disk


def share(run_path: Path, folder: Path, url: str | None) -> str:
    """Copy ``folder`` (the run folder or a part of it) to object storage under ``url``.

    Returns :func:`location`. dbt needs a local target folder, so artifacts are always written
    locally first and copied after each dbt invocation.
    """
    if url is None:
        return str(run_path)
    from airflow.sdk import ObjectStoragePath

    run_root = ObjectStoragePath(location(run_path, url))
    files = [f for f in folder.rglob("*") if f.is_file() and f.name != "partial_parse.msgpack"]
    for local in files:
        remote = run_root / local.relative_to(run_path).as_posix()
        remote.parent.mkdir(parents=True, exist_ok=True)
        with open(local, "rb") as src, remote.open("wb") as dst:
            shutil.copyfileobj(src, dst)
    log.info("Copied %d artifact files of %s to %s", len(files), folder, run_root)
    return str(run_root)


def partial_parse_cache(cache_dir: Path, key: str) -> Path:
    """A per-project partial-parse file, so every run's fresh target folder still parses fast."""
    return cache_dir / "partial-parse" / f"{key}.msgpack"


def save_partial_parse(attempt_target: Path, cached: Path) -> None:
    produced = attempt_target / "partial_parse.msgpack"
    if not produced.is_file():
        return
    try:
        # Private: dbt records there the values of the environment variables models read.
        copy_atomically(produced, cached, private=True)
    except OSError as exc:
        log.info("Could not keep dbt's partial parse file for the next run: %s", exc)
