"""What every task of a group knows at run time: the resolved project, selection and settings.

Built once per DAG parse by the decorator and shared by the producer and the consumers of the
group. Consumers re-resolve nothing: a worker that parses the DAG file from its bundle gets the
project path inside that bundle, so local retries work on any machine.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbt_watcher.artifacts import run_dir, share
from dbt_watcher.config import stale_after
from dbt_watcher.project import DbtProject, Selection
from dbt_watcher.run_args import RunArguments


@dataclass(frozen=True)
class GroupRuntime:
    group_id: str
    project: DbtProject
    selection: Selection
    threads: int | None
    base_args: RunArguments
    status_asset_name: str
    producer_task_id: str
    poke_interval: float
    timeout_seconds: float
    artifacts_root: Path
    cache_dir: Path
    retry_skip: bool
    retry_mode: str = "skip"
    test_behavior: str = "build"
    dbt_executable: str | None = None
    connection_id: str | None = None
    install_deps: bool = False
    #: ``select`` when it is a template rendered at run time; the group then renders everything.
    select_template: str | None = None
    #: ``full_refresh`` when it is a template (e.g. "{{ params.full_refresh }}").
    full_refresh_template: str | None = None
    #: Freshness policy (None: no freshness check) and the sources it checks (dbt selectors).
    freshness_policy: Callable[..., Mapping[str, str]] | None = None
    freshness_sources_by_id: Mapping[str, str] = field(default_factory=dict)
    only_changed_sources: bool = False
    #: Asset URI of each source the group reads -> its dbt selector (for only_changed_sources).
    source_selectors_by_uri: Mapping[str, str] = field(default_factory=dict)
    callback: Callable[..., Any] | None = None
    #: Object-storage URL the run folders are copied to (``artifacts_url=``), if any.
    artifacts_url: str | None = None

    @property
    def project_key(self) -> str:
        """Identifies the project and target, e.g. for the partial-parse file kept between runs."""
        p = self.project
        return hashlib.sha256(f"{p.project_dir}|{p.profiles_dir}|{p.profile}|{p.target}".encode()).hexdigest()[:24]

    def session(self) -> Any:
        """The project and dbt runner for this task (see :func:`dbt_watcher.runners.dbt_session`)."""
        from dbt_watcher.runners import dbt_session

        return dbt_session(
            self.project,
            dbt_executable=self.dbt_executable,
            connection_id=self.connection_id,
            threads=self.threads,
            install_deps=self.install_deps,
        )

    @property
    def tests_in_build(self) -> bool:
        """Whether the producer's build runs dbt tests (and the status channel carries them)."""
        return self.test_behavior in ("build", "after_each")

    @property
    def exclude_tests(self) -> tuple[str, ...]:
        """dbt arguments that leave tests out of a build, for behaviours that run them elsewhere."""
        return () if self.tests_in_build else ("--exclude-resource-type", "test", "unit_test")

    @property
    def producer_resumes(self) -> bool:
        """Whether a later producer attempt may build nodes an earlier one did not."""
        return not self.retry_skip or self.retry_mode == "resume"

    @property
    def stale_after(self) -> float:
        return stale_after(self.poke_interval)

    def run_path(self, dag_id: str, run_id: str) -> Path:
        return run_dir(self.artifacts_root, dag_id, run_id, self.group_id)

    def share(self, run_path: Path, folder: Path | None = None) -> str:
        """Copy a run's artifacts (or one sub-folder) to ``artifacts_url``; where others read them."""
        return share(run_path, folder or run_path, self.artifacts_url)
