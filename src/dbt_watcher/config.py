"""The parameters of a dbt-watcher group: defaults, validation and the documentation of each one."""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

from dbt_watcher.checks import check_config
from dbt_watcher.errors import ParameterError
from dbt_watcher.modes import ProducerRetry, TestBehavior
from dbt_watcher.rules.translator import DEFAULT_TRANSLATOR, DbtWatcherTranslator


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
    #: Build only what changed since its last successful build in this group; every other consumer ends
    #: skipped, "unchanged since run ..." (a bool, or a template; full-refresh runs build everything).
    skip_unchanged: bool | str = False
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
    producer_retry: Literal["skip", "resume"] = "skip"
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
    test_behavior: TestBehavior = TestBehavior.BUILD
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
    #: An Airflow connection that becomes the dbt profile (docs/dbt-features.md lists the types).
    connection_id: str | None = None
    #: Non-secret dbt profile settings that win over what the connection gives (``{"schema": "mart"}``).
    profile_args: Mapping[str, Any] | None = None
    #: Environment variables for every dbt invocation (parse, build, rebuilds, tests); values may be
    #: templates, rendered at run time (DAG parsing uses only the values that are not).
    env: Mapping[str, str] | None = None
    #: Run ``dbt deps`` when the project declares packages and they are not installed.
    install_deps: bool = False

    #: How dbt nodes become Airflow objects (task ids, asset URIs, lineage names, docs, per-node
    #: operator arguments): a :class:`~dbt_watcher.rules.translator.DbtWatcherTranslator` (subclass);
    #: default: dbt-watcher's rules.
    translator: DbtWatcherTranslator | None = None
    #: Add a ``dbt_audit`` task that, once every consumer ended, checks each one's state against
    #: dbt's verdict for the run and fails naming any green without dbt's success.
    audit: bool = True
    #: After the build (once every consumer has its verdict), run ``dbt docs generate`` into the run's
    #: artifacts (``<run>/docs``), shown by the UI plugin's docs pages and each consumer's "dbt docs" link.
    docs: bool = False
    #: How long the producer's private record of a run (its Task State Store: attempts, and the
    #: mirror of what it published) is kept; a producer retried later than this builds again.
    status_retention: timedelta | float = timedelta(days=30)

    def __post_init__(self) -> None:
        check_config(vars(self))
        # Passed as text ("after_all"); kept as the enum every rule asks.
        object.__setattr__(self, "test_behavior", TestBehavior(self.test_behavior))
        self.naming  # noqa: B018 - a translator that refuses this group's layout says so at parse time

    @property
    def retry_mode(self) -> ProducerRetry:
        """What a later producer attempt does once dbt built in the run."""
        if not self.producer_retry_skip:
            return ProducerRetry.REBUILD
        return ProducerRetry(self.producer_retry)

    @property
    def select_template(self) -> str | None:
        """``select`` when it is a Jinja template, rendered at run time (None otherwise)."""
        text = self.select if isinstance(self.select, str) else " ".join(self.select or ())
        return text if _is_template(text) else None

    @property
    def parse_env(self) -> dict[str, str]:
        """``env`` without its templated values (they exist only at run time)."""
        return {k: v for k, v in (self.env or {}).items() if not _is_template(v)}

    @property
    def parse_settings(self) -> dict[str, Any]:
        """What this group's parameters decide about dbt's parse of the project (a prepared graph's key)."""
        return {
            "profile": self.profile,
            "target": self.target,
            "profiles_dir": _text(self.profiles_dir),
            "connection_id": self.connection_id,
            "profile_args": self.profile_args,
            "env": self.parse_env,
            "dbt_executable": _text(self.dbt_executable),
            "vars": self.vars,
        }

    @property
    def timeout_seconds(self) -> float:
        if isinstance(self.timeout, timedelta):
            return self.timeout.total_seconds()
        return float(self.timeout)

    def updated(self, **changes: Any) -> WatcherConfig:
        check_parameter_names(changes)
        return replace(self, **changes)

    @property
    def naming(self) -> DbtWatcherTranslator:
        """The translator in use (``translator=``, else the default rules)."""
        chosen = self.translator if self.translator is not None else DEFAULT_TRANSLATOR
        return chosen.for_group(TestBehavior(self.test_behavior))

    def artifacts_root(self) -> Path:
        if self.artifacts_dir is not None:
            return Path(os.path.expanduser(os.fspath(self.artifacts_dir)))
        home = os.environ.get("AIRFLOW_HOME") or os.path.join(os.path.expanduser("~"), "airflow")
        return Path(home) / "dbt-watcher" / "artifacts"


#: Cosmos' arguments of DbtDag / DbtTaskGroup, and where their settings go here (docs/migration.md).
COSMOS_ARGUMENTS = {
    "project_config": "project_dir= (and vars=, env=, install_deps=)",
    "profile_config": "profiles_dir=, profile= and target=, or connection_id= with profile_args=",
    "execution_config": "dbt_executable= and setup_operator_args= (watching is the only mode)",
    "render_config": "select=, exclude=, selector=, test_behavior=, emit_assets=",
    "default_args": "operator_args= (Airflow arguments of every task) or the DAG's own default_args",
}


def check_parameter_names(names: Iterable[str]) -> None:
    """Refuse keywords that name no parameter, suggesting the closest one (or the mapping of a Cosmos
    argument), where Python would only say "unexpected keyword argument"."""
    known = [f.name for f in fields(WatcherConfig)]
    unknown = [name for name in names if name not in known]
    if not unknown:
        return
    hints = []
    for name in unknown:
        if name in COSMOS_ARGUMENTS:
            hints.append(f"{name} is a Cosmos argument: here it is {COSMOS_ARGUMENTS[name]}")
        elif close := difflib.get_close_matches(name, known, n=1, cutoff=0.6):
            hints.append(f"did you mean {close[0]}= instead of {name}=?")
    hints.append("docs/parameters.md lists every parameter")
    raise ParameterError(f"dbt_watcher_group got unknown parameter(s): {', '.join(unknown)}.", "; ".join(hints) + ".")


def _text(value: Any) -> str | None:
    return str(value) if value is not None else None


def _is_template(text: str) -> bool:
    """Whether a parameter's text is a Jinja template, rendered by the task at run time."""
    return "{{" in text or "{%" in text
