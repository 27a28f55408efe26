"""Prepared graphs: what DAG parsing needs from dbt, written at deploy time, so the dag-processor runs no dbt.

``dbt-watcher prepare <DAG file or folder>`` imports the DAG files once with dbt at hand (in CI, or
where the DAGs are built) and writes, for each group, the project's graph and selection into the
project's own folder: ``<project_dir>/.dbt_watcher/prepared/<key>.json``. The project ships with the
DAGs (the producer needs it), so the prepared graphs ship too. When a dag-processor parses the DAG
file, a group whose prepared graph matches uses it before anything else: it reads no profiles.yml and
no Airflow connection, imports no dbt and starts no dbt command.

The key holds what the graph depends on that the DAG file decides: the project's files by content
(not ``profiles.yml``, which a dag-processor may not have, nor installed packages), the profile,
target, profiles_dir, connection, profile_args, env, dbt_executable, vars, selection and the keys of
per-node overrides. A project file changed since is a different key, so a stale graph is never used
(the group then parses with dbt, as without a prepared graph).

What the environment decides is recorded too: a digest of each environment variable the parse read
(``env_var()`` in the project and profile, ``DBT_TARGET``, ``DBT_PROFILE``; secrets left out). Where
one differs now, the prepared graph is not used: with dbt installed the group parses again (and
warns), without it the import fails naming the variables. The target's facts themselves (its host,
schema or account) are those of the machine that prepared: prepare once per environment whose
target differs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.files import write_text_atomically
from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.project.graph import GRAPH_FORMAT, ProjectGraph
from dbt_watcher.project.locate import fingerprint, parse_environment
from dbt_watcher.project.selection import Selection

log = logging.getLogger(__name__)

FOLDER = Path(".dbt_watcher") / "prepared"
_FILE_FORMAT = 1
#: Set by ``dbt-watcher prepare`` while it imports DAG files: every group loaded writes its graph.
writing: list[bool] = []
_written: set[Path] = set()
# A DAG file names a group's assets one call at a time; the project is hashed once per process.
_places: dict[tuple[str, str], tuple[Path, str]] = {}


def place(
    root: DbtProject, settings: Mapping[str, Any], selection: Selection, keys: tuple[str, ...]
) -> tuple[Path, str]:
    """The project folder and key of a group's prepared graph: the project files' portable hash and
    every parse setting of the group (``settings``: what the DAG file decides about the parse; the
    environment's values are checked apart, see read_prepared)."""
    described = {
        **settings,
        "select": selection.select,
        "exclude": selection.exclude,
        "selector": selection.selector,
        "extra_selections": keys,
    }
    memo = (str(root.project_dir), json.dumps(described, sort_keys=True, default=str))
    if memo not in _places:
        files = fingerprint(root, portable=True)[0]
        material = json.dumps({"format": GRAPH_FORMAT, "files": files, **described}, sort_keys=True, default=str)
        _places[memo] = (root.project_dir, hashlib.sha256(material.encode()).hexdigest()[:32])
    return _places[memo]


def _environment(env_names: frozenset[str]) -> dict[str, str]:
    """A digest of each environment value the parse read (never the value: it may be a host name)."""
    return {k: hashlib.sha256((v or "").encode()).hexdigest()[:16] for k, v in parse_environment(env_names).items()}


def read_prepared(project_dir: Path, key: str) -> tuple[ProjectGraph, list[str]] | None:
    """The prepared graph for this key and the environment variables whose values differ from when it
    was prepared (they may choose another target); None when there is none or it cannot be read."""
    path = project_dir / FOLDER / f"{key}.json"
    try:
        with open(path) as fh:
            document: Any = json.load(fh)
        graph = ProjectGraph.from_json(document["graph"])
        recorded: Mapping[str, str] = document["environment"]
    except FileNotFoundError:
        return None
    except OSError as exc:  # there but unreadable (its mode, its owner): falling back would hide why
        raise ConfigurationError(
            f"dbt-watcher cannot read the prepared graph {path}: {exc}.",
            "Make it readable by the user Airflow runs as (`dbt-watcher prepare` writes it with the umask's "
            "mode; a copy may have changed that), or delete it to parse the project with dbt.",
        ) from None
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        log.warning(
            "dbt-watcher ignores the prepared graph %s, made by another dbt-watcher version or damaged (%s); "
            "run `dbt-watcher prepare` again",
            path,
            exc,
        )
        return None
    now = _environment(frozenset(recorded))
    differ = sorted(name for name, digest in recorded.items() if now.get(name) != digest)
    if not differ:
        log.info("dbt-watcher uses the prepared graph %s (no dbt command at parse time)", path)
    return graph, differ


def write_prepared(project_dir: Path, key: str, graph: ProjectGraph, env_names: frozenset[str]) -> Path | None:
    """Write the graph where :func:`read_prepared` finds it (atomically: parsers may read meanwhile),
    with a digest of the environment values the parse read; None when this process wrote it already
    (a group loads its graph once per asset it names)."""
    path = project_dir / FOLDER / f"{key}.json"
    if path in _written:
        return None
    document = {"format": _FILE_FORMAT, "environment": _environment(env_names), "graph": graph.to_json()}
    write_text_atomically(path, json.dumps(document))
    _written.add(path)
    return path
