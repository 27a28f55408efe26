"""A group's build state for ``skip_unchanged``: which nodes were last built successfully, when, and from what.

One folder per DAG, group (and map index) and dbt target, under the artifacts root::

    build~state/<dag_id>/<group_id>[~map<i>]/<target key>/
        manifest.json    dbt's manifest of the last run that wrote the state: the ``--state`` that dbt's
                         own ``state:modified`` compares the next run's project with
        builds.json      the nodes whose last build succeeded (run id, time), the run's context
                         fingerprint, each source's ``max_loaded_at``, the manifest's checksum
        .lock            held while a run reads and rewrites the state

Each run replaces the state (so it is bounded: one per group and target). A node is listed in
``builds.json`` only while its last build is known to have succeeded: a run removes every node it is
about to build before dbt starts (a run that dies mid-build leaves them out), and adds back the ones
that ended green. The manifest is kept whole: a node that is not listed is rebuilt whatever dbt says.

Nothing secret is stored: vars and environment values are kept as hashes. The ``~`` in the folder name
cannot appear in a DAG's folder of the run layout (:mod:`dbt_watcher.rules.artifacts`), so the two never meet.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import secrets
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbt_watcher.files import write_text_atomically
from dbt_watcher.rules.artifacts import group_folder, safe_part

log = logging.getLogger(__name__)

FOLDER = "build~state"
#: The format of builds.json; another one is read as foreign state (everything builds).
FORMAT = 1
BUILDS = "builds.json"
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class NodeBuild:
    """A node's last successful build: the DAG run that built it, and when (ISO 8601, UTC)."""

    run_id: str
    built_at: str

    @property
    def reason(self) -> str:
        """Why its consumer is skipped while it stays unchanged (the consumer's message, and the UI's)."""
        return f"unchanged since run {self.run_id} (built {self.built_at})"


@dataclass(frozen=True)
class BuildState:
    """What ``builds.json`` says, and the folder it came from."""

    folder: Path
    #: The settings every node's build depended on at once (dbt version, target, vars, environment),
    #: as hashes; a run whose context differs builds everything.
    context: Mapping[str, str]
    nodes: Mapping[str, NodeBuild] = field(default_factory=dict)
    #: Each source's ``max_loaded_at`` from the last run's ``dbt source freshness``.
    sources: Mapping[str, str] = field(default_factory=dict)
    #: Changes with every write: a run that finds another value than it wrote knows another run of the
    #: group wrote the state meanwhile.
    token: str = ""

    @property
    def manifest(self) -> Path:
        return self.folder / MANIFEST


def state_dir(root: Path, dag_id: str, group_id: str, map_index: int, target_key: str) -> Path:
    return root / FOLDER / safe_part(dag_id) / group_folder(group_id, map_index) / safe_part(target_key)


def fingerprint(value: Any) -> str:
    """A stable hash of a JSON-able value (vars, environment values): never the value itself."""
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@contextlib.contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold the state's lock (this machine's runs of the group) while reading and rewriting it."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def load(folder: Path) -> tuple[BuildState | None, str]:
    """The state in ``folder``, or None with the reason it cannot be used (then everything builds)."""
    path = folder / BUILDS
    if not path.is_file():
        return None, "no build state yet"
    try:
        document = json.loads(path.read_text())
        if not isinstance(document, dict) or document.get("format") != FORMAT:
            return None, f"the build state in {folder} has another format"
        if document.get("manifest_sha256") != _sha256(folder / MANIFEST):
            return None, f"the build state in {folder} does not match its manifest.json"
        nodes = {str(uid): NodeBuild(str(b["run_id"]), str(b["built_at"])) for uid, b in document["nodes"].items()}
        return BuildState(
            folder=folder,
            context={str(k): str(v) for k, v in document["context"].items()},
            nodes=nodes,
            sources={str(k): str(v) for k, v in (document.get("sources") or {}).items()},
            token=str(document.get("token", "")),
        ), ""
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        return None, f"the build state in {folder} cannot be read ({type(exc).__name__}: {exc})"


def save(
    folder: Path,
    *,
    context: Mapping[str, str],
    nodes: Mapping[str, NodeBuild],
    sources: Mapping[str, str] | None = None,
    manifest: Path | None = None,
) -> str:
    """Write the state (``manifest``: a new manifest.json; None keeps the one in place); returns its token.

    The manifest goes first and builds.json, which names the manifest's checksum, last: a reader never
    pairs a node list with a manifest it was not written with.
    """
    if manifest is not None:
        write_text_atomically(folder / MANIFEST, json.dumps(_comparable(json.loads(manifest.read_text()))))
    token = secrets.token_hex(8)
    document = {
        "format": FORMAT,
        "token": token,
        "context": dict(context),
        "manifest_sha256": _sha256(folder / MANIFEST),
        "sources": dict(sources or {}),
        "nodes": {uid: {"run_id": b.run_id, "built_at": b.built_at} for uid, b in sorted(nodes.items())},
    }
    write_text_atomically(folder / BUILDS, json.dumps(document, indent=1))
    return token


def forget(folder: Path, unique_ids: Iterable[str]) -> None:
    """A build outside the producer's record (a consumer rebuilding its node, a producer retry building
    again): these nodes, and so what reads them, are built again by the next run. The new token also tells
    a producer recording meanwhile. Never raises: a state it cannot change is cleared."""
    wanted = set(unique_ids)
    try:
        with locked(folder):
            state, _ = load(folder)
            if state is None or not wanted & set(state.nodes):
                return
            kept = {uid: b for uid, b in state.nodes.items() if uid not in wanted}
            save(folder, context=state.context, nodes=kept, sources=state.sources)
    except OSError:
        log.exception("Could not update the build state in %s; clearing it", folder)
        clear(folder)
        return
    log.info("The build state no longer records %d nodes it had; the next run builds them", len(wanted))


def clear(folder: Path) -> None:
    """Forget every build on record (``skip_unchanged`` turned off, or a state that cannot be kept right):
    the next run builds everything. Under the lock, which stays (a waiting process holds it). Never raises."""
    if not folder.is_dir():
        return
    try:
        with locked(folder):
            for name in (BUILDS, MANIFEST):
                (folder / name).unlink(missing_ok=True)
    except OSError:
        log.exception("Could not clear the build state in %s; removing it", folder)
        shutil.rmtree(folder, ignore_errors=True)


def _comparable(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest as dbt's state comparison reads it, without what it does not compare and what may hold
    values of vars or the environment: compiled SQL, the run's custom environment."""
    for node in (manifest.get("nodes") or {}).values():
        for key in ("compiled_code", "compiled", "compiled_path", "extra_ctes", "extra_ctes_injected"):
            node.pop(key, None)
    (manifest.get("metadata") or {}).pop("env", None)
    return manifest


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
