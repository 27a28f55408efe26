"""The parameters of a dbt-watcher group: defaults, validation and the documentation of each one."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from dbt_watcher.errors import ConfigurationError

TEST_BEHAVIORS = ("build", "none", "after_all", "after_each")


@dataclass(frozen=True)
class WatcherConfig:
    """Everything ``@dbt_watcher_group(...)`` accepts. See docs/parameters.md for the long form."""

    #: Folder holding ``dbt_project.yml``. A relative path is resolved from the DAG file's folder.
    project_dir: str | os.PathLike[str]
    #: Folder holding ``profiles.yml``; default: DBT_PROFILES_DIR, the project folder, ~/.dbt.
    profiles_dir: str | os.PathLike[str] | None = None
    #: dbt profile name; default: the ``profile`` of dbt_project.yml.
    profile: str | None = None
    #: dbt target name; default: the profile's ``target``.
    target: str | None = None
    #: ``--threads`` of the producer's ``dbt build``; default: the target's ``threads``.
    threads: int | None = None
    #: dbt ``--select`` (a string like ``"tag:daily orders+"`` or a list).
    select: str | Sequence[str] | None = None
    #: dbt ``--exclude``.
    exclude: str | Sequence[str] | None = None
    #: Name of a YAML selector in the project's selectors.yml.
    selector: str | None = None
    #: dbt ``--vars`` for every invocation (parse, build and local retries).
    vars: Mapping[str, Any] | None = None
    #: Add ``--full-refresh`` to the build (a bool, or a template like "{{ params.full_refresh }}").
    full_refresh: bool | str = False
    #: Consumers wait in the triggerer (True) or in a worker slot (False).
    deferrable: bool = True
    #: Seconds between two reads of the group's status (one read per group, shared by all consumers).
    poke_interval: float = 0.5
    #: Seconds a consumer waits for its node before failing; the producer is not affected.
    timeout: float | timedelta = timedelta(hours=24)
    #: Operator arguments for the producer only (e.g. ``{"queue": "dbt"}``); win over operator_args.
    setup_operator_args: Mapping[str, Any] | None = None
    #: A retry or clear of the producer never starts a second full build in the same DAG run.
    producer_retry_skip: bool = True
    #: What such a retry does: ``"skip"`` (finish the run; consumers rebuild their own failed nodes)
    #: or ``"resume"`` (one dbt invocation for the nodes that failed or never ran).
    producer_retry: str = "skip"
    #: Worker queue for consumers' own rebuilds (deferrable consumers need a worker only for those).
    consumer_retry_queue: str | None = None
    #: Emit one Airflow Asset event per successfully built model, seed and snapshot.
    emit_assets: bool = True
    #: Operator arguments for every task of the group (retries, pool, owner, ...).
    operator_args: Mapping[str, Any] | None = None
    #: The TaskGroup id; default: the decorated function's name.
    group_id: str | None = None
    #: Root folder of per-run artifacts; default: $AIRFLOW_HOME/dbt-watcher/artifacts.
    artifacts_dir: str | os.PathLike[str] | None = None
    #: Object-storage URL (``s3://conn_id@bucket/prefix``, ``gs://...``, ``file:///shared/...``) that
    #: each run's artifacts are copied to through Airflow's ObjectStoragePath, so tasks on other
    #: machines can read them; the producer's XCom is then the run's URL there. Default: none.
    artifacts_url: str | None = None
    #: Extra dbt CLI arguments appended to the producer's ``dbt build`` (and local retries).
    dbt_args: Sequence[str] = field(default_factory=tuple)
    #: Folder for the parsed-project cache; default: $DBT_WATCHER_CACHE_DIR or ~/.cache/dbt-watcher.
    cache_dir: str | os.PathLike[str] | None = None
    #: Where dbt tests run: "build" (in the producer's build, gating their model's consumer), "none",
    #: "after_all" (one task runs the selection's tests after every consumer), "after_each" (one
    #: task per model watches that model's tests, after its consumer).
    test_behavior: str = "build"
    #: Run ``dbt source freshness`` first and leave out nodes downstream of stale sources; True for
    #: dbt's verdict (error = stale) or a function deciding from the results.
    source_freshness: bool | Callable[..., Mapping[str, str]] = False
    #: In a run triggered by asset events, build only what is downstream of the sources whose
    #: assets changed.
    only_changed_sources: bool = False
    #: Per-node operator arguments keyed by dbt selection strings: {"tag:finance": {"pool": "fin"}}.
    node_operator_args: Mapping[str, Mapping[str, Any]] | None = None
    #: Called once by the producer after the build: callback(artifacts_dir, context).
    callback: Callable[..., Any] | None = None
    #: A dbt executable of another virtualenv; dbt then runs as a subprocess.
    dbt_executable: str | os.PathLike[str] | None = None
    #: An Airflow connection that becomes the dbt profile at run time (PostgreSQL or DuckDB).
    connection_id: str | None = None
    #: Run ``dbt deps`` when the project declares packages and they are not installed.
    install_deps: bool = False

    def __post_init__(self) -> None:
        if self.threads is not None and (not isinstance(self.threads, int) or self.threads < 1):
            raise ConfigurationError(
                f"threads={self.threads!r} is not a positive whole number.",
                "Pass threads=4, say, or leave it out.",
            )
        if not isinstance(self.poke_interval, (int, float)) or self.poke_interval <= 0:
            raise ConfigurationError(
                f"poke_interval={self.poke_interval!r} must be a positive number of seconds.",
                "Pass poke_interval=1.0, say.",
            )
        if self.timeout_seconds <= 0:
            raise ConfigurationError(
                f"timeout={self.timeout!r} must be positive.", "Pass timeout=3600 or timedelta(hours=1)."
            )
        for name in ("setup_operator_args", "operator_args", "vars"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Mapping):
                raise ConfigurationError(f"{name} must be a dict, not {type(value).__name__}.", f"Pass {name}={{...}}.")
        if not isinstance(self.full_refresh, bool) and "{{" not in str(self.full_refresh):
            raise ConfigurationError(
                f"full_refresh={self.full_refresh!r} is neither True/False nor a template.",
                'Pass full_refresh=True, or a template such as full_refresh="{{ params.full_refresh }}".',
            )
        if self.producer_retry not in ("skip", "resume"):
            raise ConfigurationError(
                f"producer_retry={self.producer_retry!r} is not a retry mode.",
                'Pass producer_retry="skip" (the default) or producer_retry="resume".',
            )
        if self.consumer_retry_queue is not None and not self.deferrable:
            raise ConfigurationError(
                "consumer_retry_queue needs deferrable consumers: with deferrable=False every try of a "
                "consumer runs on a worker.",
                'Leave consumer_retry_queue out and pass operator_args={"queue": ...}, or keep deferrable=True.',
            )
        if self.test_behavior not in TEST_BEHAVIORS:
            raise ConfigurationError(
                f"test_behavior={self.test_behavior!r} is not a test behaviour.",
                f"Pass one of: {', '.join(TEST_BEHAVIORS)}.",
            )
        if self.source_freshness is not False and not (
            self.source_freshness is True or callable(self.source_freshness)
        ):
            raise ConfigurationError(
                f"source_freshness={self.source_freshness!r} is neither True nor a function.",
                "Pass source_freshness=True, or a function that takes the freshness results and returns "
                "{source_unique_id: reason} for the sources to treat as stale.",
            )
        if self.callback is not None and not callable(self.callback):
            raise ConfigurationError(
                "callback must be a function.", "Pass callback=my_function(artifacts_dir, context)."
            )
        if self.artifacts_url is not None and "://" not in str(self.artifacts_url):
            raise ConfigurationError(
                f"artifacts_url={self.artifacts_url!r} is not a URL.",
                'Pass an object-storage URL such as "s3://aws_default@my-bucket/dbt-artifacts" or '
                '"file:///mnt/shared/dbt-artifacts"; for a local folder use artifacts_dir=.',
            )
        if isinstance(self.dbt_args, str):
            raise ConfigurationError("dbt_args must be a list of arguments.", 'Pass dbt_args=["--fail-fast"].')

    @property
    def select_template(self) -> str | None:
        """``select`` when it is a Jinja template, rendered at run time (None otherwise)."""
        text = self.select if isinstance(self.select, str) else " ".join(self.select or ())
        return text if "{{" in text or "{%" in text else None

    @property
    def timeout_seconds(self) -> float:
        if isinstance(self.timeout, timedelta):
            return self.timeout.total_seconds()
        return float(self.timeout)

    def updated(self, **changes: Any) -> WatcherConfig:
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise ConfigurationError(
                f"unknown dbt_watcher_group parameter(s): {', '.join(sorted(unknown))}.",
                "See docs/parameters.md for the parameters dbt_watcher_group accepts.",
            )
        return replace(self, **changes)

    def artifacts_root(self) -> Path:
        if self.artifacts_dir is not None:
            return Path(self.artifacts_dir)
        home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
        return Path(home) / "dbt-watcher" / "artifacts"


def heartbeat_interval(poke_interval: float) -> float:
    """How often a running producer rewrites its heartbeat: twice per poke interval."""
    return poke_interval / 2.0


def stale_after(poke_interval: float) -> float:
    """After how long without a heartbeat readers ask Airflow whether the producer still runs.

    Two missed heartbeats plus the writer's batching delay: a dead producer is noticed within
    about two poke intervals; a slow one costs at most an extra task-state read.
    """
    return 2.0 * heartbeat_interval(poke_interval) + 0.25
