"""What every task of a group knows at run time: the group's config, plus what rendering derived.

Built once per DAG parse and shared by the producer and the consumers of the group. The config is the
one owner of every setting; the runtime adds only what is derived from the project (its resolved
paths, the selection, the sources) and from the TaskGroup (ids). Consumers re-resolve nothing: a
worker that parses the DAG file from its bundle gets the project path inside that bundle.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbt_watcher.channel.records import Invocation
from dbt_watcher.config import WatcherConfig
from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.invocation.session import DbtSession, dbt_session
from dbt_watcher.project.cache import default_cache_dir
from dbt_watcher.project.selection import Selection
from dbt_watcher.rules.artifacts import location, run_dir, share
from dbt_watcher.rules.build_state import state_dir
from dbt_watcher.runtime.task_dbt import TaskDbt


@dataclass(frozen=True)
class GroupRuntime:
    config: WatcherConfig
    #: The TaskGroup's full id (prefixed by enclosing groups) and the producer's task id.
    group_id: str
    producer_task_id: str
    project: DbtProject
    selection: Selection
    #: Freshness policy (None: no freshness check) and the sources it checks (id -> dbt selector).
    freshness_policy: Callable[..., Mapping[str, str]] | None = None
    freshness_sources_by_id: Mapping[str, str] = field(default_factory=dict)
    #: Asset URI of each source the group reads -> (its unique id, its dbt selector), for the features that
    #: read the asset events that triggered a run (only_changed_sources, skip_unchanged).
    source_assets: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    #: A hash of the target's connection facts (never credentials): skip_unchanged's state is per target.
    target_identity: str = ""
    #: Each node that has a consumer, with its place in dbt's order (parents first): whom a test gates.
    consumer_positions: Mapping[str, int] = field(default_factory=dict)
    #: The target's warehouse when it takes one writer at a time (a DuckDB file): every dbt invocation of
    #: the group holds a lock named after it (:func:`dbt_watcher.runtime.task_dbt.one_writer`).
    single_writer: str | None = None

    @property
    def source_selectors_by_uri(self) -> dict[str, str]:
        return {uri: selector for uri, (_, selector) in self.source_assets.items()}

    def sources_in_events(self, context: Mapping[str, Any]) -> dict[str, str] | None:
        """The group's sources named by the asset events that triggered the run (unique id -> selector);
        None when no asset event triggered it."""
        events = context.get("triggering_asset_events") or {}
        uris = {getattr(asset, "uri", None) for asset in events}
        if not uris:
            return None
        return {uid: selector for uri, (uid, selector) in self.source_assets.items() if uri in uris}

    # ------------------------------------------------------------------ settings, from the config
    @property
    def audit_task_id(self) -> str:
        """The audit's full task id: the producer's, with the audit's name (the same group prefix)."""
        naming = self.config.naming
        return self.producer_task_id.removesuffix(naming.producer_task_id()) + naming.audit_task_id()

    @property
    def poke_interval(self) -> float:
        return float(self.config.poke_interval)

    @property
    def timeout_seconds(self) -> float:
        return self.config.timeout_seconds

    @property
    def cache_dir(self) -> Path:
        return Path(self.config.cache_dir) if self.config.cache_dir else default_cache_dir()

    @property
    def base_invocation(self) -> Invocation:
        """The run's dbt arguments before templates and the run-time hook."""
        cfg = self.config
        return Invocation(dict(cfg.vars or {}), cfg.full_refresh is True, tuple(cfg.dbt_args))

    @property
    def exclude_tests(self) -> tuple[str, ...]:
        """dbt arguments that leave tests out of a build, for behaviours that run them elsewhere."""
        return () if self.config.test_behavior.in_build else ("--exclude-resource-type", "test", "unit_test")

    @property
    def producer_resumes(self) -> bool:
        """Whether a later producer attempt may build nodes an earlier one did not."""
        return self.config.retry_mode.builds_again

    @property
    def project_key(self) -> str:
        """Identifies the project and target, e.g. for the partial-parse file kept between runs."""
        p = self.project
        return hashlib.sha256(f"{p.project_dir}|{p.profiles_dir}|{p.profile}|{p.target}".encode()).hexdigest()[:24]

    # ------------------------------------------------------------------ places and sessions
    def rendered_env(self, task: Any, context: Any) -> dict[str, str]:
        """The group's ``env=`` rendered for this task try (its templates, by the task's Jinja)."""
        return {k: str(v) for k, v in task.render_template(dict(self.config.env or {}), context).items()}

    def session(self, env: Mapping[str, str] | None = None) -> DbtSession:
        """The project and dbt runner for this task (see :func:`dbt_watcher.invocation.session.dbt_session`);
        ``env``: the group's ``env=`` as the task rendered it (default: its values without templates)."""
        cfg = self.config
        return dbt_session(
            self.project,
            dbt_executable=str(cfg.dbt_executable) if cfg.dbt_executable else None,
            connection_id=cfg.connection_id,
            profile_args=cfg.profile_args,
            env=cfg.parse_env if env is None else env,
            threads=cfg.threads,
            install_deps=cfg.install_deps,
            cache_dir=self.cache_dir,
        )

    @contextlib.contextmanager
    def task_dbt(self, task: Any, context: Any, invocation: Invocation, target_path: Path) -> Iterator[TaskDbt]:
        """dbt for one try of ``task`` (:mod:`dbt_watcher.runtime.task_dbt`): the group's session with
        ``env=`` rendered for the try, and the run's arguments."""
        with self.session(env=self.rendered_env(task, context)) as (project, runner):
            yield TaskDbt(project, runner, invocation, target_path, self.writer_lock)

    @property
    def writer_lock(self) -> Path | None:
        if self.single_writer is None:
            return None
        name = hashlib.sha256(self.single_writer.encode()).hexdigest()[:16]
        return self.cache_dir / "locks" / f"{name}.lock"

    def run_path(self, dag_id: str, run_id: str, map_index: int, generation: str) -> Path:
        return run_dir(
            self.config.artifacts_root(), dag_id, run_id, self.group_id, map_index=map_index, generation=generation
        )

    def build_state_folder(self, dag_id: str, map_index: int) -> Path:
        """The group's build state for ``skip_unchanged`` (:mod:`dbt_watcher.rules.build_state`)."""
        return state_dir(self.config.artifacts_root(), dag_id, self.group_id, map_index, self.project_key)

    def location(self, run_path: Path) -> str:
        """Where the run's artifacts can be read from any machine (``artifacts_url`` or the folder)."""
        return location(run_path, self.config.artifacts_url)

    def share(self, run_path: Path, folder: Path | None = None) -> str:
        """Copy a run's artifacts (or one sub-folder) to ``artifacts_url``; where others read them."""
        return share(run_path, folder or run_path, self.config.artifacts_url)
