"""Turn a dbt project into a :class:`ProjectGraph` with dbt itself (only on a cache miss).

* the manifest: ``dbt parse`` through dbtRunner, into a scratch folder. A ``target/manifest.json``
  found in the project is never used: nothing in it proves it was parsed for this group's target,
  vars and environment (one left by another target names other schemas);
* the selection: ``dbt ls`` through dbtRunner on that manifest, so ``select``, ``exclude``,
  ``selector`` (and YAML default selectors, state methods, indirect test selection) mean exactly
  what they mean to ``dbt build``;
* the target's connection facts (adapter type, host, port) for asset URIs, from dbt's profile.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.invocation.command import DbtCommand, DbtProject, describe_failure, run_dbt
from dbt_watcher.invocation.events import UNMATCHED_SELECTION_EVENT
from dbt_watcher.invocation.runners import SubprocessDbt
from dbt_watcher.invocation.target import target_facts
from dbt_watcher.project.graph import DbtNode, DbtSource, ProjectGraph, Relation
from dbt_watcher.project.selection import Selection

log = logging.getLogger(__name__)

_NODE_TYPES = frozenset({"model", "seed", "snapshot", "test"})
_DOC_LIMIT = 2_000  # characters of a description kept in the graph
_COLUMNS_LIMIT = 200
_QUIET = ("--log-level", "none", "--no-send-anonymous-usage-stats", "--no-use-colors")
_LARGE_PROJECT_FILES = 1_000


def _warn_if_large(project: DbtProject) -> None:
    """Say so before a parse that may outlast Airflow's DAG import timeout: a parse cut off there writes
    no cache, so the next one starts over (3,000 models take about 30 s on two cores)."""
    files = sum(1 for _ in project.project_dir.glob("models/**/*.sql"))
    if files >= _LARGE_PROJECT_FILES:
        log.warning(
            "dbt-watcher parses %s (%d model files) with dbt. A cold parse of a project this size takes 20 s "
            "or more on two cores (1,058 models: 20 to 34 s), close to Airflow's [core] dagbag_import_timeout "
            "(30 s by default), and a parse cut off there caches nothing: prepare the graph at deploy time "
            "(`dbt-watcher prepare`, docs/deployment.md) or raise the timeout.",
            project.project_dir,
            files,
        )


def build_graph(
    project: DbtProject,
    selection: Selection,
    scratch: Path,
    *,
    extra_selections: tuple[str, ...] = (),
    dbt_executable: str | None = None,
) -> ProjectGraph:
    _warn_if_large(project)
    target = target_facts(project, dbt_executable)
    if dbt_executable:
        manifest_path, select = _in_subprocess(project, scratch, dbt_executable)
    else:
        manifest_path, select = _in_process(project, scratch)
    selected = select(selection, "the selection")
    matches = {key: frozenset(select(Selection(select=(key,)), f"the key {key!r}")) for key in extra_selections}
    # Nodes are read from the manifest's JSON: it is exact, while dbt's typed reader of a written
    # manifest loses fields of generic tests (attached_node).
    with open(manifest_path) as fh:
        document = json.load(fh)
    nodes = {}
    for unique_id, raw in document.get("nodes", {}).items():
        converted = _convert(raw)
        if converted is not None:
            nodes[unique_id] = converted
    return ProjectGraph(
        project_name=str(document.get("metadata", {}).get("project_name") or project.project_dir.name),
        nodes=nodes,
        selected=frozenset(uid for uid in selected if uid in nodes),
        target=target,
        disabled=tuple(sorted(document.get("disabled") or {})),
        sources={uid: _source(raw) for uid, raw in (document.get("sources") or {}).items()},
        matches=matches,
    )


Selector = Callable[[Selection, str], list[str]]


def _in_process(project: DbtProject, scratch: Path) -> tuple[Path, Selector]:
    """``dbt parse``, then the selection by ``dbt ls`` on that manifest."""
    manifest = _parse(project, scratch)
    manifest_path = scratch / "target" / "manifest.json"

    def select(selection: Selection, purpose: str) -> list[str]:
        unmatched: list[str] = []

        def on_event(name: str, data: Mapping[str, Any]) -> None:
            if name == UNMATCHED_SELECTION_EVENT:
                unmatched.append(str(data.get("spec_raw", "")))

        result = run_dbt(_ls_command(project, selection, scratch), on_event=on_event, manifest=manifest)
        if not result.success:
            raise _selection_error(selection, purpose, describe_failure(result))
        _warn_unmatched(unmatched, purpose, manifest_path)
        lines: list[str] = list(result.result or [])  # type: ignore[arg-type]
        return [json.loads(line)["unique_id"] for line in lines]

    return manifest_path, select


def _in_subprocess(project: DbtProject, scratch: Path, executable: str) -> tuple[Path, Selector]:
    """The same with the dbt of another virtualenv: ``dbt parse`` then ``dbt ls`` as subprocesses."""
    runner = SubprocessDbt(executable)
    outcome = runner.run(project.command("parse", **_scratch_options(scratch)))
    if not outcome.ran:
        raise ConfigurationError(
            f"dbt could not parse the project {str(project.project_dir)!r}: {outcome.error}",
            "Run `dbt parse` in the project folder with the same profile and target, and fix what it reports.",
        )

    def select(selection: Selection, purpose: str) -> list[str]:
        unmatched: list[str] = []
        try:
            found = runner.list_ids(_ls_command(project, selection, scratch, listing=False), unmatched.append)
        except RuntimeError as exc:
            raise _selection_error(selection, purpose, str(exc)) from exc
        _warn_unmatched(unmatched, purpose, scratch / "target" / "manifest.json")
        return found

    return scratch / "target" / "manifest.json", select


def _ls_command(project: DbtProject, selection: Selection, scratch: Path, *, listing: bool = True) -> DbtCommand:
    listing_args = ("--output", "json", "--output-keys", "unique_id") if listing else ()
    return project.command(
        "ls",
        select=selection.select,
        exclude=selection.exclude,
        selector=selection.selector,
        target_path=scratch / "target",
        log_path=scratch / "logs",
        extra_args=(*listing_args, *(_QUIET if listing else ())),
    )


def _warn_unmatched(criteria: list[str], purpose: str, manifest_path: Path) -> None:
    # dbt's own warning is hidden by the parse's quiet log level; a typo must not pass silently.
    names = _node_names(manifest_path) if criteria else set()
    for criterion in dict.fromkeys(criteria):
        # A plain name, without graph operators (+orders+, @orders, 2+orders), may be a typo of a node's.
        bare = re.sub(r"^[@+\d]*|[+\d]*$", "", criterion)
        close = difflib.get_close_matches(bare, sorted(names), n=1) if ":" not in bare else []
        log.warning(
            "dbt-watcher: the selection criterion %r of %s matches no enabled node of the project%s; "
            "`dbt ls --select %s` in the project folder shows what it matches.",
            criterion,
            purpose,
            f" (did you mean {close[0]!r}?)" if close else " (a typo?)",
            criterion,
        )


def _node_names(manifest_path: Path) -> set[str]:
    """The names of the manifest's nodes and sources (what a plain selection criterion names)."""
    try:
        document = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return set()
    found = {str(n.get("name")) for n in (document.get("nodes") or {}).values()}
    return found | {str(s.get("name")) for s in (document.get("sources") or {}).values()}


def _selection_error(selection: Selection, purpose: str, detail: str) -> ConfigurationError:
    return ConfigurationError(
        f"dbt could not resolve {purpose} ({selection.describe()}): {detail}",
        "Check the select/exclude/selector values; `dbt ls` with the same arguments shows what they "
        "match. A selector= must be defined in the project's selectors.yml.",
    )


def _scratch_options(scratch: Path) -> dict[str, Any]:
    return {"target_path": scratch / "target", "log_path": scratch / "logs", "extra_args": _QUIET}


def _parse(project: DbtProject, scratch: Path) -> Any:
    result = run_dbt(project.command("parse", **_scratch_options(scratch)))
    if not result.success or result.result is None:
        raise ConfigurationError(
            f"dbt could not parse the project {str(project.project_dir)!r}: {describe_failure(result)}",
            "Run `dbt parse` in the project folder with the same profile and target, and fix what it reports.",
        )
    return result.result


def _source(raw: dict[str, Any]) -> DbtSource:
    freshness = raw.get("freshness") or {}
    configured = bool(raw.get("loaded_at_field") or raw.get("loaded_at_query")) and any(
        (freshness.get(level) or {}).get("count") for level in ("warn_after", "error_after")
    )
    return DbtSource(
        unique_id=raw["unique_id"],
        source_name=raw["source_name"],
        name=raw["name"],
        relation=Relation(raw.get("database"), raw.get("schema"), raw.get("identifier") or raw["name"]),
        has_freshness=configured,
    )


def _convert(raw: dict[str, Any]) -> DbtNode | None:
    resource_type = str(raw.get("resource_type"))
    if resource_type not in _NODE_TYPES:
        return None
    config = raw.get("config") or {}
    meta = {**(config.get("meta") or {}), **(raw.get("meta") or {})}
    raw_airflow = meta.get("airflow")
    airflow_meta: dict[str, Any] = dict(raw_airflow) if isinstance(raw_airflow, dict) else {}
    relation = None
    if resource_type != "test":
        relation = Relation(raw.get("database"), raw.get("schema"), raw.get("alias") or raw["name"])
    version = raw.get("version")
    return DbtNode(
        unique_id=raw["unique_id"],
        resource_type=resource_type,
        name=raw["name"],
        package=raw["package_name"],
        fqn=tuple(raw["fqn"]),
        depends_on=tuple((raw.get("depends_on") or {}).get("nodes") or ()),
        materialized=config.get("materialized"),
        relation=relation,
        tags=tuple(raw.get("tags") or ()),
        airflow_meta=airflow_meta,
        attached_node=raw.get("attached_node"),
        file_key_name=raw.get("file_key_name"),
        version=str(version) if version is not None else None,
        original_file_path=raw.get("original_file_path", ""),
        severity=str(config.get("severity") or "") or None,
        enabled=bool(config.get("enabled", True)),
        # Kept short: each consumer's doc_md is part of the serialized DAG every Airflow component reads.
        description=str(raw.get("description") or "")[:_DOC_LIMIT],
        columns=tuple(
            (str(name), str((column or {}).get("description") or "")[:_DOC_LIMIT])
            for name, column in list((raw.get("columns") or {}).items())[:_COLUMNS_LIMIT]
        )
        if resource_type != "test"
        else (),
    )
