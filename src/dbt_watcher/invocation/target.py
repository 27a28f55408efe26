"""The target's connection facts (adapter type, host, port, database, schema, threads) from dbt's
own profile loader: in this interpreter, or in another virtualenv's (``dbt_executable=``).

The loader is one piece of source text run either way, so both report the same facts. It never
returns a credential.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.invocation.command import DbtProject


@dataclass(frozen=True)
class Target:
    """Connection facts of the dbt target that asset URIs need (never credentials)."""

    adapter_type: str
    profile_name: str
    target_name: str
    host: str | None = None
    port: int | None = None
    database: str | None = None
    schema: str | None = None
    threads: int | None = None
    #: Snowflake's account identifier (the authority of its asset URIs).
    account: str | None = None
    #: The AWS region of an Athena target.
    region: str | None = None
    #: A DuckDB target's database file as profiles.yml gives it (Cosmos-compatible asset URIs name it).
    path: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Target:
        return cls(**data)


# Executed with exec() here, or with `python -c` by the dbt virtualenv's interpreter.
LOADER = """
def profile_facts(project_dir, profiles_dir, profile, target, vars_json):
    import json, os
    from argparse import Namespace
    from dbt.config.runtime import load_profile
    from dbt.flags import set_from_args
    from dbt_common.context import set_invocation_context
    previous = os.getcwd()
    os.chdir(project_dir)
    try:
        # What dbtRunner sets up before it reads a profile: its flags and the env_var() context.
        set_from_args(Namespace(project_dir=project_dir, profiles_dir=profiles_dir), None)
        set_invocation_context(dict(os.environ))
        loaded = load_profile(project_dir, json.loads(vars_json), profile or None, target or None, None)
    finally:
        os.chdir(previous)
    creds = loaded.credentials
    port = getattr(creds, "port", None)
    return {
        "adapter_type": str(creds.type),
        "profile_name": str(loaded.profile_name),
        "target_name": str(loaded.target_name),
        # dbt-mysql calls the host "server"; Snowflake and Athena name their endpoint otherwise.
        "host": getattr(creds, "host", None) or getattr(creds, "server", None),
        "port": int(port) if port is not None else None,
        "database": getattr(creds, "database", None),
        "schema": getattr(creds, "schema", None),
        "threads": loaded.threads,
        "account": getattr(creds, "account", None),
        "region": getattr(creds, "region_name", None),
        # The file as profiles.yml names it, without a query string: MotherDuck takes its token there.
        "path": str(creds.path).split("?")[0] if str(creds.type) == "duckdb" and getattr(creds, "path", None) else None,
    }
"""


#: dbt's error when a profile's ``type`` names an adapter that is not installed.
_MISSING_ADAPTER = re.compile(r"Could not find adapter type (\w+)")


def _extras() -> list[str]:
    """The extras dbt-watcher's installed metadata declares (one per warehouse adapter, and test/dev/bench)."""
    try:
        return importlib.metadata.metadata("dbt-watcher").get_all("Provides-Extra") or []
    except importlib.metadata.PackageNotFoundError:
        return []


def target_facts(project: DbtProject, dbt_executable: str | None = None) -> Target:
    args = [
        str(project.project_dir),
        str(project.profiles_dir),
        project.profile or "",
        project.target or "",
        json.dumps(dict(project.vars), default=str),
    ]
    try:
        if dbt_executable is None:
            namespace: dict[str, Any] = {}
            exec(LOADER, namespace)
            facts = namespace["profile_facts"](*args)
        else:
            python = Path(dbt_executable).parent / "python"
            script = LOADER + "\nimport json, sys\nprint(json.dumps(profile_facts(*sys.argv[1:])))\n"
            out = subprocess.run([str(python), "-c", script, *args], capture_output=True, text=True, check=True)
            facts = json.loads(out.stdout.strip().splitlines()[-1])
    except Exception as exc:
        detail = getattr(exc, "stderr", None) or exc
        missing = _MISSING_ADAPTER.search(str(detail))
        if missing:  # profiles.yml is fine (or absent, with connection_id=): the adapter is not installed
            adapter = missing[1]
            package = f'"dbt-watcher[{adapter}]"' if adapter in _extras() else f"dbt-{adapter}"
            raise ConfigurationError(
                f"The dbt adapter for {adapter!r} (the type of target {project.target or '(default)'!r}) is not "
                "installed where this DAG is parsed.",
                f"Install it beside dbt-core in every Airflow component's environment: pip install {package} "
                "(or the package name dbt's docs give for the adapter).",
            ) from None
        raise ConfigurationError(
            f"dbt could not load profile {project.profile or '(from dbt_project.yml)'!r}, target "
            f"{project.target or '(default)'!r} from {str(project.profiles_dir)!r}: {detail}",
            "Check profile=/target= and profiles.yml; `dbt debug` in the project folder shows the problem.",
        ) from exc
    return Target.from_json(facts)
