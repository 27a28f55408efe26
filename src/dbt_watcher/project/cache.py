"""The parsed-graph cache: the dag-processor parses a DAG file again and again, so a project's graph is
kept under a hash of the project's files, the parse settings and the selection. An unchanged project
never starts dbt twice, and a cache hit never even imports dbt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.files import write_text_atomically
from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.project.graph import GRAPH_FORMAT, ProjectGraph
from dbt_watcher.project.locate import fingerprint, parse_environment
from dbt_watcher.project.selection import Selection

log = logging.getLogger(__name__)

_CACHE_FILES_KEPT = 64

_memory_cache: dict[str, ProjectGraph] = {}
# The projects this process is parsing with dbt right now, and the error of a group built inside one.
_parsing: list[Path] = []
_reentry: list[ConfigurationError] = []


def default_cache_dir() -> Path:
    """Where parsed graphs are cached: ``$DBT_WATCHER_CACHE_DIR`` or the user's cache folder."""
    configured = os.environ.get("DBT_WATCHER_CACHE_DIR")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dbt-watcher"


def _dbt_version() -> str:
    try:
        return version("dbt-core")
    except PackageNotFoundError:  # pragma: no cover - dbt is a hard dependency
        return "unknown"


def cache_key(
    project: DbtProject,
    selection: Selection,
    fingerprint: str,
    extra: tuple[str, ...] = (),
    env_names: frozenset[str] = frozenset(),
) -> str:
    """The graph cache's key: everything a parse and a selection depend on. Environment values are
    hashed, never kept."""
    env = parse_environment(env_names)
    material = json.dumps(
        {
            "format": GRAPH_FORMAT,
            "dbt": _dbt_version(),
            "files": fingerprint,
            "dir": str(project.project_dir),
            "profile": project.profile,
            "target": project.target,
            "vars": project.vars,
            "env": hashlib.sha256(json.dumps(env, sort_keys=True).encode()).hexdigest(),
            "select": selection.select,
            "exclude": selection.exclude,
            "selector": selection.selector,
            "extra_selections": extra,
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(material.encode()).hexdigest()[:32]


def load_graph(
    project: DbtProject,
    selection: Selection,
    *,
    cache_dir: Path | None = None,
    extra_selections: tuple[str, ...] = (),
    dbt_executable: str | None = None,
) -> ProjectGraph:
    """The project's graph and selection: from the cache when the project is unchanged.

    ``extra_selections`` are more dbt selection strings resolved in the same pass (the keys of
    per-node overrides); what each matched is in ``ProjectGraph.matches``.
    """
    files, env_names = fingerprint(project)
    key = cache_key(project, selection, files, extra_selections, env_names)
    if key in _memory_cache:
        return _memory_cache[key]
    directory = cache_dir or default_cache_dir()
    cached = _read_cache(directory / f"{key}.json")
    if cached is None:
        from dbt_watcher.invocation.secrets import scrubbed_errors
        from dbt_watcher.project.manifest import build_graph

        _parsing.append(project.project_dir)
        try:
            with _scratch_dir(directory) as scratch, scrubbed_errors(project.profiles_dir):
                cached = build_graph(
                    project,
                    selection,
                    scratch,
                    extra_selections=extra_selections,
                    dbt_executable=dbt_executable,
                )
        except ConfigurationError:
            if _reentry:
                raise _reentry.pop() from None
            raise
        finally:
            _parsing.pop()
        _write_cache(directory, key, cached)
    _memory_cache[key] = cached
    return cached


def refuse_reentry(module: str, file: str | None) -> None:
    """Fail clearly when dbt's own parse imported a DAG file that builds a group.

    dbt imports every top-level module on ``sys.path`` whose name starts with ``dbt_``, looking for
    dbt plugins (``dbt/plugins/manager.py``, ``PluginManager.get_prefixed_modules``), and Airflow puts
    the DAGs folder on ``sys.path``. A DAG file named ``dbt_*.py`` is therefore imported again inside
    dbt's parse of its own project, which parses again, without end (until Airflow's import timeout).

    Raises:
        ConfigurationError: when called while this process is parsing a project with dbt.
    """
    if not _parsing:
        return
    name = Path(file).name if file else f"{module}.py"
    error = ConfigurationError(
        f"dbt imported the DAG file {file or module} while parsing the project '{_parsing[-1]}': dbt imports "
        "every module on sys.path whose name starts with 'dbt_', looking for dbt plugins, and Airflow puts the "
        "DAGs folder on sys.path, so the file would build its group again inside dbt's parse, without end",
        f"Rename {name} so that its name does not start with 'dbt_' (for example {name[4:-3] or 'project'}_dbt.py).",
    )
    _reentry.append(error)
    raise error


def _read_cache(path: Path) -> ProjectGraph | None:
    try:
        with open(path) as fh:
            return ProjectGraph.from_json(json.load(fh))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _write_cache(directory: Path, key: str, graph: ProjectGraph) -> None:
    try:
        # Write then rename: two dag-processor children may race on the same key.
        write_text_atomically(directory / f"{key}.json", json.dumps(graph.to_json()))
        entries = sorted(directory.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True)
        for stale in entries[_CACHE_FILES_KEPT:]:
            stale.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("dbt-watcher could not write its graph cache in %s: %s", directory, exc)


class _scratch_dir:
    """A throw-away dbt target/log folder, so parsing never writes into the project."""

    def __init__(self, cache_dir: Path) -> None:
        self.cache_dir = cache_dir
        self.path: Path | None = None

    def __enter__(self) -> Path:
        try:
            self.cache_dir.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix="parse-", dir=self.cache_dir))
        except OSError:
            self.path = Path(tempfile.mkdtemp(prefix="dbt-watcher-parse-"))
        return self.path

    def __exit__(self, *exc: object) -> None:
        if self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)
