"""A dbt project on disk, and its node graph from dbt's own manifest and selection engine.

The dag-processor parses a DAG file again and again. Loading a project therefore goes through a
cache keyed by a hash of the project's files and the selection: an unchanged project never starts
dbt twice, and a cache hit never even imports dbt.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.invocation.command import DbtCommand
from dbt_watcher.project.graph import GRAPH_FORMAT, ProjectGraph
from dbt_watcher.project.secrets import ENV_VAR

log = logging.getLogger(__name__)

# Directories whose contents never change what dbt parses.
_IGNORED_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", "node_modules", ".dbt_watcher"})
_IGNORED_SUFFIXES = (".duckdb", ".duckdb.wal", ".pyc", ".log")
_HASH_CONTENT_LIMIT = 1 << 20  # bigger files (large seeds) are fingerprinted by size and mtime
# dbt's own settings that choose what a parse reads, when no flag gives them.
_DBT_SETTINGS = ("DBT_TARGET", "DBT_PROFILE")
_CACHE_FILES_KEPT = 64

_memory_cache: dict[str, ProjectGraph] = {}
# The projects this process is parsing with dbt right now, and the error of a group built inside one.
_parsing: list[Path] = []
_reentry: list[ConfigurationError] = []


@dataclass(frozen=True)
class Selection:
    """A dbt node selection, exactly as dbt's ``--select``/``--exclude``/``--selector`` take it."""

    select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    selector: str | None = None

    def describe(self) -> str:
        parts = []
        if self.select:
            parts.append(f"select={' '.join(self.select)!r}")
        if self.exclude:
            parts.append(f"exclude={' '.join(self.exclude)!r}")
        if self.selector:
            parts.append(f"selector={self.selector!r}")
        return ", ".join(parts) or "the whole project"


@dataclass(frozen=True)
class DbtProject:
    """Where a dbt project lives and which profile and target run it."""

    project_dir: Path
    profiles_dir: Path
    profile: str | None = None
    target: str | None = None
    vars: Mapping[str, Any] = field(default_factory=dict)
    #: Why no profiles.yml was found, when a prepared graph let DAG parsing go on without one
    #: (dbt_watcher.project.prepared); running dbt with this project raises it.
    missing_profiles: ConfigurationError | None = None

    @classmethod
    def locate(
        cls,
        project_dir: str | os.PathLike[str],
        *,
        profiles_dir: str | os.PathLike[str] | None = None,
        profile: str | None = None,
        target: str | None = None,
        vars: Mapping[str, Any] | None = None,
        relative_to: Path | None = None,
        needs_profiles: bool = True,
    ) -> DbtProject:
        """Resolve and check the paths; raise a :class:`ConfigurationError` naming what is wrong."""
        root = _resolve(project_dir, relative_to)
        if not root.is_dir():
            raise ConfigurationError(
                f"dbt project directory {str(root)!r} does not exist.",
                "Pass project_dir= the folder that holds dbt_project.yml; a relative path is "
                "resolved from the folder of the DAG file.",
            )
        if not (root / "dbt_project.yml").is_file():
            raise ConfigurationError(
                f"{str(root)!r} is not a dbt project: it has no dbt_project.yml.",
                "Point project_dir= at the folder that holds dbt_project.yml.",
            )
        # With connection_id the profile is rendered from an Airflow connection: no profiles.yml needed.
        found = _find_profiles_dir(root, profiles_dir, relative_to) if needs_profiles else root
        return cls(
            project_dir=root,
            profiles_dir=found,
            profile=profile,
            target=target,
            vars=dict(vars or {}),
        )

    def command(self, name: str, **options: Any) -> DbtCommand:
        """A dbt command for this project with its profile, target and vars."""
        return DbtCommand(
            command=name,
            project_dir=self.project_dir,
            profiles_dir=self.profiles_dir,
            profile=self.profile,
            target=self.target,
            vars=self.vars,
            **options,
        )

    def project_yml(self) -> dict[str, Any]:
        with open(self.project_dir / "dbt_project.yml") as fh:
            data = yaml.safe_load(fh) or {}
        return data if isinstance(data, dict) else {}

    def fingerprint(self, *, portable: bool = False) -> tuple[str, frozenset[str]]:
        """A hash of every file dbt may read (project files and profiles.yml), and the names of the
        environment variables they read with ``env_var()``: their values change what dbt parses (a
        target chosen by ``env_var('DBT_TARGET')``, a schema from the environment), so they are part
        of the graph cache's key.

        ``portable``: the hash a prepared graph is found by on another machine (project/prepared.py):
        without profiles.yml (a dag-processor may have none), without installed packages (packages.yml
        decides them), and by content only (a checkout changes modification times).
        """
        skip = set(_IGNORED_DIRS)
        settings = self.project_yml()
        folders = [("target-path", "target"), ("log-path", "logs")]
        if portable:
            folders.append(("packages-install-path", "dbt_packages"))
        for key, default in folders:
            value = settings.get(key, default)
            skip.add(value if isinstance(value, str) and "{" not in value else default)
        digest = hashlib.sha256()
        names: set[str] = set()
        files = sorted(_walk(self.project_dir, skip))
        profiles = self.profiles_dir / "profiles.yml"
        # Named relative to the project (profiles.yml by its name: a connection's profile is rendered
        # in a new temporary folder each time), so a moved or re-rendered project keeps its key. The
        # project's own profiles.yml counts as the profile, not as a project file.
        named = [(str(p.relative_to(self.project_dir)), p) for p in files if p != self.project_dir / "profiles.yml"]
        with_profiles = profiles.is_file() and not portable
        for label, path in [*named, *([("profiles.yml", profiles)] if with_profiles else [])]:
            stat = path.stat()
            digest.update(label.encode())
            if stat.st_size > _HASH_CONTENT_LIMIT and not portable:
                digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
                continue
            content = path.read_bytes()
            digest.update(hashlib.sha256(content).digest())
            if b"env_var" in content:
                names.update(ENV_VAR.findall(content.decode(errors="replace")))
        return digest.hexdigest(), frozenset(names)


def _resolve(path: str | os.PathLike[str], relative_to: Path | None) -> Path:
    candidate = Path(os.path.expanduser(os.fspath(path)))
    if not candidate.is_absolute():
        candidate = (relative_to or Path.cwd()) / candidate
    return candidate.resolve()


def _find_profiles_dir(
    project_dir: Path, profiles_dir: str | os.PathLike[str] | None, relative_to: Path | None
) -> Path:
    # The same search order as dbt: explicit, DBT_PROFILES_DIR, the project folder, ~/.dbt.
    if profiles_dir is not None:
        found = _resolve(profiles_dir, relative_to)
        if not (found / "profiles.yml").is_file():
            raise ConfigurationError(
                f"profiles_dir {str(found)!r} holds no profiles.yml.",
                "Pass profiles_dir= the folder that holds profiles.yml, or leave it out to use "
                "DBT_PROFILES_DIR, the project folder or ~/.dbt.",
            )
        return found
    candidates = [Path(p) for p in [os.environ.get("DBT_PROFILES_DIR")] if p]
    candidates += [project_dir, Path.home() / ".dbt"]
    for candidate in candidates:
        if (candidate / "profiles.yml").is_file():
            return candidate.resolve()
    raise ConfigurationError(
        f"No profiles.yml found for the dbt project {str(project_dir)!r}.",
        "Pass profiles_dir=, set DBT_PROFILES_DIR, or put profiles.yml in the project folder.",
    )


def _walk(root: Path, skip: set[str]) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
        found.extend(Path(current) / f for f in files if not f.endswith(_IGNORED_SUFFIXES))
    return found


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


def parse_environment(env_names: frozenset[str]) -> dict[str, str | None]:
    """The values of the environment variables a parse reads (and dbt's own DBT_TARGET/DBT_PROFILE),
    secrets left out: dbt allows ``DBT_ENV_SECRET_*`` only in profiles and packages, where they never
    change the graph, and a key must not carry even a hash of a password."""
    from dbt_watcher.project.secrets import is_secret_name

    names = sorted(n for n in {*env_names, *_DBT_SETTINGS} if not is_secret_name(n))
    return {name: os.environ.get(name) for name in names}


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
    fingerprint, env_names = project.fingerprint()
    key = cache_key(project, selection, fingerprint, extra_selections, env_names)
    if key in _memory_cache:
        return _memory_cache[key]
    directory = cache_dir or default_cache_dir()
    cached = _read_cache(directory / f"{key}.json")
    if cached is None:
        from dbt_watcher.project.manifest import build_graph
        from dbt_watcher.project.secrets import scrubbed_errors

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
        directory.mkdir(parents=True, exist_ok=True)
        # Write then rename: two dag-processor children may race on the same key.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{key}.", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(graph.to_json(), fh)
        os.replace(tmp, directory / f"{key}.json")
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


def as_tuple(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """Accept ``"a b"``, ``["a", "b"]`` or ``None`` for select/exclude, like dbt's CLI does."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(value.split())
    return tuple(str(v) for v in value)
