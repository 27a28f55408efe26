"""A dbt project on disk: find and check it (the same search for profiles.yml as dbt's), and the
fingerprint of every file dbt reads when it parses, with the environment variables its parse reads."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.invocation.secrets import ENV_VAR, is_secret_name

# Directories whose contents never change what dbt parses.
_IGNORED_DIRS = frozenset({".git", ".venv", "venv", "__pycache__", "node_modules", ".dbt_watcher"})
# What dbt reads of a project when it parses: these files at its root, and the folders dbt_project.yml names
# (dbt's defaults where it names none). Nothing else there changes the graph: a data file, a script or a
# README dropped into the project folder must not send every DAG file that uses the project back to dbt.
_ROOT_FILES = (
    "dbt_project.yml",
    "packages.yml",
    "dependencies.yml",
    "package-lock.yml",
    "selectors.yml",
    ".dbtignore",
    "catalogs.yml",
    "vars.yml",  # dbt 1.12
)
_SOURCE_PATHS: dict[str, tuple[str, ...]] = {
    "model-paths": ("models",),
    "source-paths": (),  # the old name of model-paths, still honoured
    "seed-paths": ("seeds",),
    "data-paths": (),  # the old name of seed-paths
    "test-paths": ("tests",),
    "analysis-paths": ("analyses",),
    "macro-paths": ("macros",),
    "snapshot-paths": ("snapshots",),
    "function-paths": ("functions",),  # dbt 1.11
    "osi-paths": ("osi", "OSI"),  # dbt 1.12
    "docs-paths": (),
    "asset-paths": (),
}
_IGNORED_SUFFIXES = (".duckdb", ".duckdb.wal", ".pyc", ".log")
_HASH_CONTENT_LIMIT = 1 << 20  # bigger files (large seeds) are fingerprinted by size and mtime
# dbt's own settings that choose what a parse reads, when no flag gives them.
_DBT_SETTINGS = ("DBT_TARGET", "DBT_PROFILE")


def locate_project(
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
    return DbtProject(
        project_dir=root,
        profiles_dir=found,
        profile=profile,
        target=target,
        vars=dict(vars or {}),
    )


def fingerprint(project: DbtProject, *, portable: bool = False) -> tuple[str, frozenset[str]]:
    """A hash of every file dbt reads when it parses (dbt_project.yml and its neighbours, the folders
    it names, profiles.yml), and the names of the environment variables they read with ``env_var()``:
    their values change what dbt parses (a target chosen by ``env_var('DBT_TARGET')``, a schema from
    the environment), so they are part of the graph cache's key.

    ``portable``: the hash a prepared graph is found by on another machine (project/prepared.py):
    without profiles.yml (a dag-processor may have none), without installed packages (packages.yml
    decides them), and by content only (a checkout changes modification times).
    """
    skip = set(_IGNORED_DIRS)
    settings = project.project_yml()
    folders = [("target-path", "target"), ("log-path", "logs")]
    if portable:
        folders.append(("packages-install-path", "dbt_packages"))
    for key, default in folders:
        value = settings.get(key, default)
        skip.add(value if isinstance(value, str) and "{" not in value else default)
    digest = hashlib.sha256()
    names: set[str] = set()
    files = sorted(_files_dbt_reads(project.project_dir, settings, skip, portable))
    profiles = project.profiles_dir / "profiles.yml"
    # Named relative to the project (profiles.yml by its name: a connection's profile is rendered
    # in a new temporary folder each time), so a moved or re-rendered project keeps its key. The
    # project's own profiles.yml counts as the profile, not as a project file.
    named = [(str(p.relative_to(project.project_dir)), p) for p in files if p != project.project_dir / "profiles.yml"]
    with_profiles = profiles.is_file() and not portable
    for label, path in [*named, *([("profiles.yml", profiles)] if with_profiles else [])]:
        try:
            stat = path.stat()
            digest.update(label.encode())
            if stat.st_size > _HASH_CONTENT_LIMIT and not portable:
                digest.update(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
                continue
            content = path.read_bytes()
        except OSError as exc:
            # Nothing there: a link that points nowhere or round in a loop (a developer's own `target`
            # link committed by mistake, which dbt ignores too), or a file gone since the walk (an
            # editor's temporary file). Not a file dbt reads: left out.
            if exc.errno in (errno.ENOENT, errno.ELOOP):
                continue
            raise ConfigurationError(
                f"dbt-watcher cannot read {str(path)!r} in the dbt project {str(project.project_dir)!r}: "
                f"{exc.strerror or exc}.",
                "Make the file readable by the user Airflow runs as, or remove it from the project folder.",
            ) from None
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


def _files_dbt_reads(root: Path, settings: Mapping[str, Any], skip: set[str], portable: bool) -> set[Path]:
    """The files of the project dbt reads when it parses; every file of the folder where a path setting
    is one this cannot follow (rendered by dbt, absolute, outside the project, the project itself)."""
    keys = [*_SOURCE_PATHS.items(), *([] if portable else [("packages-install-path", ("dbt_packages",))])]
    declared = [root / name for name in ("packages.yml", "dependencies.yml")]
    if any(path.is_file() and b"local:" in path.read_bytes() for path in declared):
        return set(_walk(root, skip))  # a local package is installed as a link, which the walk does not follow
    folders: set[str] = set()
    for key, default in keys:
        value = settings.get(key, list(default))
        paths = [value] if isinstance(value, str) and key == "packages-install-path" else value
        if not isinstance(paths, list) or not all(isinstance(v, str) and _inside(v) for v in paths):
            return set(_walk(root, skip))
        folders.update(paths)
    found = {root / name for name in _ROOT_FILES if (root / name).is_file()}
    for folder in folders:
        if (root / folder).is_dir() and Path(folder).parts[0] not in skip:
            found.update(_walk(root / folder, skip))
    return found


def _inside(path: str) -> bool:
    parts = Path(path).parts
    return bool(parts) and "{" not in path and not Path(path).is_absolute() and ".." not in parts


def _walk(root: Path, skip: set[str]) -> list[Path]:
    found: list[Path] = []
    for current, dirs, files in os.walk(root):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".")]
        found.extend(Path(current) / f for f in files if not f.endswith(_IGNORED_SUFFIXES))
    return found


def parse_environment(env_names: frozenset[str]) -> dict[str, str | None]:
    """The values of the environment variables a parse reads (and dbt's own DBT_TARGET/DBT_PROFILE),
    secrets left out: dbt allows ``DBT_ENV_SECRET_*`` only in profiles and packages, where they never
    change the graph, and a key must not carry even a hash of a password."""
    names = sorted(n for n in {*env_names, *_DBT_SETTINGS} if not is_secret_name(n))
    return {name: os.environ.get(name) for name in names}
