"""Prepared graphs: what DAG parsing needs from dbt, written at deploy time, so the dag-processor runs no dbt.

``dbt-watcher prepare <DAG file or folder>`` imports the DAG files once with dbt at hand (in CI, or
where the DAGs are built) and writes, for each group, the project's graph and selection into the
project's own folder: ``<project_dir>/.dbt_watcher/prepared/<key>.json``. The project ships with the
DAGs (the producer needs it), so the prepared graphs ship too. When a dag-processor parses the DAG
file, a group whose prepared graph matches uses it before anything else: it reads no profiles.yml and
no Airflow connection, imports no dbt and starts no dbt command.

The key holds what the graph depends on that the DAG file decides: the project's files (not
``profiles.yml``, which a dag-processor may not have), the profile, target, connection, profile_args,
vars, selection and the keys of per-node overrides. What the environment decides (the target's
host, schema or account, read from the profile when the graph was prepared) is taken as prepared:
prepare once per environment whose target differs, or use per-environment project folders.
A project file changed since is a different key, so a stale graph is never used (the group then
parses with dbt, as without a prepared graph).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbt_watcher.project.graph import GRAPH_FORMAT, ProjectGraph

log = logging.getLogger(__name__)

FOLDER = Path(".dbt_watcher") / "prepared"
#: Set by ``dbt-watcher prepare`` while it imports DAG files: every group loaded writes its graph.
writing: list[bool] = []
_written: set[Path] = set()


def prepared_key(fingerprint: str, settings: Mapping[str, Any]) -> str:
    """The key of a prepared graph: the project files' hash and the group's parse settings."""
    material = json.dumps({"format": GRAPH_FORMAT, "files": fingerprint, **settings}, sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def read_prepared(project_dir: Path, key: str) -> ProjectGraph | None:
    """The prepared graph for this key, or None (none prepared, or the project changed since)."""
    path = project_dir / FOLDER / f"{key}.json"
    try:
        with open(path) as fh:
            graph = ProjectGraph.from_json(json.load(fh))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("dbt-watcher ignores the prepared graph %s it cannot read: %s", path, exc)
        return None
    log.info("dbt-watcher uses the prepared graph %s (no dbt command at parse time)", path)
    return graph


def write_prepared(project_dir: Path, key: str, graph: ProjectGraph) -> Path | None:
    """Write the graph where :func:`read_prepared` finds it (atomically: parsers may read meanwhile);
    None when this process wrote it already (a group loads its graph once per asset it names)."""
    if project_dir / FOLDER / f"{key}.json" in _written:
        return None
    folder = project_dir / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{key}.", suffix=".tmp")
    with os.fdopen(fd, "w") as fh:
        json.dump(graph.to_json(), fh)
    path = folder / f"{key}.json"
    os.replace(tmp, path)
    _written.add(path)
    return path
