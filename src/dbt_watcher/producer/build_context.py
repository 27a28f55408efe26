"""What every node's build depends on at once, for ``skip_unchanged``: a run whose context differs from the
one its build state was recorded in builds everything.

dbt's ``state:modified`` compares each node's own definition; these are the inputs it does not see, or
sees only unrendered: the dbt and adapter versions, the profile and target as rendered now (its file and
the values of the environment variables it reads), the run's ``vars`` and ``dbt_args`` (``--empty``,
``--sample`` and ``--event-time-*`` build other data from the same SQL), the project's ``vars``, the
values of the environment variables the project reads (dbt's own record of those it read while parsing,
every ``env_var('...')`` written in a node or macro, for those read only at execution, and in
dbt_project.yml), the project's macros no node lists among its dependencies (materializations and what
they call), and the group's own settings (its target's identity, ``test_behavior``).

Everything is kept as a hash. Secret values are left out, as dbt leaves them out of its own records:
variables named ``DBT_ENV_SECRET_*`` or as Airflow masks them (``password``, ``token``, ...); a change of
a secret alone is not seen.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from dbt_watcher.invocation.secrets import ENV_VAR, is_secret_name
from dbt_watcher.rules.build_state import fingerprint

if TYPE_CHECKING:
    from dbt_watcher.runtime.task_dbt import TaskDbt


def build_context(
    dbt: TaskDbt, manifest: Mapping[str, Any] | None, settings: Mapping[str, str]
) -> tuple[dict[str, str] | None, str]:
    """The run's context as hashes (or None, and why it cannot be known: everything then builds);
    ``settings``: the group's own that decide what a build was (its target's identity, test_behavior)."""
    parsed_env = dbt.runner.parsed_env_vars()
    if parsed_env is None:
        return None, "dbt runs in another virtualenv (dbt_executable=), which keeps the environment it read to itself"
    if manifest is None:
        return None, "dbt wrote no manifest.json"
    meta = manifest.get("metadata") or {}
    adapter = str(meta.get("adapter_type"))
    env_names = set(parsed_env) | set(_env_var_names(_written_code(manifest)))
    project_yml = dbt.project.project_dir / "dbt_project.yml"
    project_text = project_yml.read_text(errors="replace") if project_yml.is_file() else ""
    return {
        **settings,
        "dbt_version": str(meta.get("dbt_version")),
        "adapter": f"{adapter} {_version(f'dbt-{adapter}')}",
        "profile": fingerprint(_profile(dbt)),
        "vars": fingerprint(_public(dict(dbt.invocation.vars))),
        "dbt_args": fingerprint(list(dbt.invocation.dbt_args)),
        "project_vars": fingerprint(dbt.project.project_yml().get("vars")),
        # dbt records the environment dbt_project.yml reads apart from manifest.env_vars, and compares
        # configs unrendered: a `+schema: "{{ env_var('X') }}"` moves relations dbt's comparison misses.
        "env": fingerprint(_environment(env_names | set(ENV_VAR.findall(project_text)))),
        "macros": fingerprint(_macros_no_node_lists(manifest, adapter)),
    }, ""


def _macros_no_node_lists(manifest: Mapping[str, Any], adapter: str) -> dict[str, Any]:
    """The project's and its packages' macros that no node lists among its dependencies: materializations
    and the macros they call (``create_table_as``, ``get_merge_sql``, ...), which dbt's ``state:modified``
    does not follow. dbt's own and the adapter's come with their versions, in the context already."""
    listed = {
        m for node in (manifest.get("nodes") or {}).values() for m in (node.get("depends_on") or {}).get("macros", [])
    }
    internal = {"dbt", f"dbt_{adapter}"}
    return {
        uid: macro.get("macro_sql")
        for uid, macro in (manifest.get("macros") or {}).items()
        if uid not in listed and macro.get("package_name") not in internal
    }


def _profile(dbt: TaskDbt) -> dict[str, Any]:
    """The profile as dbt renders it now: profiles.yml and the environment values it reads."""
    project = dbt.project
    path = project.profiles_dir / "profiles.yml"
    text = path.read_text(errors="replace") if path.is_file() else ""
    names = set(ENV_VAR.findall(text))
    return {
        "profiles.yml": fingerprint(text),
        "profile": project.profile,
        "target": project.target,
        "env": _environment(names),
    }


def _written_code(manifest: Mapping[str, Any]) -> Iterable[str]:
    for node in (manifest.get("nodes") or {}).values():
        yield str(node.get("raw_code") or "")
    for macro in (manifest.get("macros") or {}).values():
        yield str(macro.get("macro_sql") or "")


def _env_var_names(texts: Iterable[str]) -> Iterable[str]:
    for text in texts:
        if "env_var" in text:
            yield from ENV_VAR.findall(text)


def _environment(names: Iterable[str]) -> dict[str, Any]:
    """The values of these environment variables now, but the secret ones."""
    return _public({name: os.environ.get(name) for name in names})


def _public(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` without the secret ones (their names say so)."""
    return {k: v for k, v in values.items() if not is_secret_name(str(k))}


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
