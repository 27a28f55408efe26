"""``@dbt_watcher_group``: a TaskFlow-style decorator that renders a dbt project as a TaskGroup.

The decorated function's body is a run-time hook (see :mod:`dbt_watcher.producer.run_args`): the producer
calls it with the Airflow context just before ``dbt build`` and merges what it returns
(``vars``, ``full_refresh``, ``dbt_args``) into the build. A body of ``...`` means "nothing to add".
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from dbt_watcher.config import WatcherConfig
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.plan.group import DbtWatcherGroup, source_assets
from dbt_watcher.plan.group_plan import GroupPlan, build_plan
from dbt_watcher.plan.overrides import validate_mapping
from dbt_watcher.project import prepared
from dbt_watcher.project.project import (
    DbtProject,
    Selection,
    as_tuple,
    default_cache_dir,
    load_graph,
    refuse_reentry,
)

if TYPE_CHECKING:
    from airflow.sdk import Asset

    from dbt_watcher.project.graph import ProjectGraph
    from dbt_watcher.translator import DbtWatcherTranslator

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelHook:
    """A function registered with ``@group.model(name)``: a task right after that node's consumer."""

    node: str
    function: Callable[..., Any]
    task_kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class WatcherGroupFactory:
    """What ``@dbt_watcher_group(...)`` returns: call it inside a DAG to render the group."""

    function: Callable[..., Any]
    config: WatcherConfig
    _source_dir: Path = field(default_factory=Path.cwd)
    _hooks: list[ModelHook] = field(default_factory=list)

    def override(self, **changes: Any) -> WatcherGroupFactory:
        """A copy with some parameters changed, for one use (like a TaskFlow task's override)."""
        return WatcherGroupFactory(self.function, self.config.updated(**changes), self._source_dir, list(self._hooks))

    def __call__(self, *args: Any, **kwargs: Any) -> DbtWatcherGroup:
        from dbt_watcher.plan.render import render

        return render(self, _bind_call_arguments(self.function, args, kwargs))

    def model(self, name: str, **task_kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorate a function to run as a task right after node ``name``'s consumer succeeds.

        The function receives the node's result (status, timing, rows, relation) as a dict;
        ``task_kwargs`` are the task's arguments (``retries=3``, ``task_id=...``, ...).
        """

        def register(function: Callable[..., Any]) -> Callable[..., Any]:
            self._hooks.append(ModelHook(name, function, dict(task_kwargs)))
            return function

        return register

    @property
    def hooks(self) -> tuple[ModelHook, ...]:
        return tuple(self._hooks)

    def project(self) -> DbtProject:
        """The project as dbt runs it. Where a prepared graph ships with the project, a dag-processor
        without a profiles.yml still parses the DAG; a task that runs dbt there fails with the error."""
        cfg = self.config
        located = functools.partial(
            DbtProject.locate,
            cfg.project_dir,
            profiles_dir=cfg.profiles_dir,
            profile=cfg.profile,
            target=cfg.target,
            vars=cfg.vars,
            relative_to=self._source_dir,
        )
        try:
            return located(needs_profiles=cfg.connection_id is None)
        except ConfigurationError as exc:
            project = located(needs_profiles=False)
            if not (project.project_dir / prepared.FOLDER).is_dir():
                raise
            return dataclasses.replace(project, missing_profiles=exc)

    def selection(self) -> Selection:
        cfg = self.config
        # A templated select is rendered at run time; the group then renders every node, and the
        # run leaves out (skipped, with the reason) what the rendered selection does not match.
        select = () if cfg.select_template else as_tuple(cfg.select)
        return Selection(select, as_tuple(cfg.exclude), cfg.selector)

    @contextlib.contextmanager
    def parse_project(self) -> Iterator[DbtProject]:
        """The project as DAG parsing sees it: a connection's profile rendered (without secret), and
        its packages installed first when ``install_deps=True``."""
        from dbt_watcher.invocation.runners import dbt_session

        cfg = self.config
        with dbt_session(
            self.project(),
            dbt_executable=_str(cfg.dbt_executable),
            connection_id=cfg.connection_id,
            profile_args=cfg.profile_args,
            env=cfg.parse_env,
            threads=cfg.threads,
            install_deps=cfg.install_deps,
            with_secrets=False,
        ) as (project, _runner):
            yield project

    def load(self) -> tuple[ProjectGraph, GroupPlan]:
        """The project graph and task plan (from the cache when the project is unchanged)."""
        module = sys.modules.get(self.function.__module__)
        refuse_reentry(self.function.__module__, getattr(module, "__file__", None))
        selection = self.selection()
        cache_dir = Path(self.config.cache_dir) if self.config.cache_dir else default_cache_dir()
        keys = tuple(validate_mapping(self.config.node_operator_args))
        graph = self._prepared(selection, keys)
        if graph is None:
            with self.parse_project() as project:
                graph = load_graph(
                    project,
                    selection,
                    cache_dir=cache_dir,
                    extra_selections=keys,
                    dbt_executable=_str(self.config.dbt_executable),
                )
            self._prepare(graph, selection, keys)
        plan = build_plan(
            graph, selection_text=f"The selection ({selection.describe()})", task_name=self.config.naming.task_id
        )
        return graph, plan

    def _prepared(self, selection: Selection, keys: tuple[str, ...]) -> ProjectGraph | None:
        """The group's prepared graph (dbt_watcher.project.prepared), looked for only where
        `dbt-watcher prepare` wrote one (hashing the project costs time) and never while preparing."""
        root = DbtProject.locate(self.config.project_dir, relative_to=self._source_dir, needs_profiles=False)
        if prepared.writing or not (root.project_dir / prepared.FOLDER).is_dir():
            return None
        found = prepared.read_prepared(*prepared.place(self.config, self._source_dir, selection, keys))
        if found is None:
            return None
        graph, differ = found
        if not differ:
            return graph
        problem = f"the prepared graph of {root.project_dir} was made where {', '.join(differ)} had other values"
        if _dbt_importable():
            log.warning("dbt-watcher: %s; parsing the project with dbt instead", problem)
            return None
        raise ConfigurationError(
            f"{problem}, and dbt is not installed here to parse the project for this environment.",
            "Run `dbt-watcher prepare` with this environment's values (they may choose another target) and "
            "ship its output, or set the variables as they were when it was prepared.",
        )

    def _prepare(self, graph: ProjectGraph, selection: Selection, keys: tuple[str, ...]) -> None:
        if prepared.writing:
            env_names = self.project().fingerprint()[1]
            where = prepared.place(self.config, self._source_dir, selection, keys)
            path = prepared.write_prepared(*where, graph, env_names)
            if path is not None:
                log.info("Prepared %s (%d nodes)", path, len(graph.nodes))

    def asset(self, name: str) -> Asset:
        """The Asset of a node, at parse time, without rendering the group (for other DAGs)."""
        graph, plan = self.load()
        return self.config.naming.node_asset(graph.target, plan.find(name).node)

    def source_assets(self) -> list[Asset]:
        """The Assets of the dbt sources the group reads, without rendering it."""
        graph, plan = self.load()
        return source_assets(graph, plan, self.config.naming)


def _dbt_importable() -> bool:
    try:
        return importlib.util.find_spec("dbt") is not None
    except ImportError:  # a finder that refuses it, or a broken install
        return False


def _str(value: Any) -> str | None:
    return str(value) if value is not None else None


def dbt_watcher_group(
    *,
    project_dir: str | os.PathLike[str],
    profiles_dir: str | os.PathLike[str] | None = None,
    profile: str | None = None,
    target: str | None = None,
    threads: int | None = None,
    select: str | Sequence[str] | None = None,
    exclude: str | Sequence[str] | None = None,
    selector: str | None = None,
    vars: Mapping[str, Any] | None = None,
    full_refresh: bool | str = False,
    deferrable: bool = True,
    poke_interval: float = 0.5,
    timeout: float | timedelta = timedelta(hours=24),
    setup_operator_args: Mapping[str, Any] | None = None,
    producer_retry_skip: bool = True,
    producer_retry: Literal["skip", "resume"] = "skip",
    consumer_retry_queue: str | None = None,
    emit_assets: bool = True,
    operator_args: Mapping[str, Any] | None = None,
    group_id: str | None = None,
    artifacts_dir: str | os.PathLike[str] | None = None,
    artifacts_url: str | None = None,
    dbt_args: Sequence[str] = (),
    cache_dir: str | os.PathLike[str] | None = None,
    test_behavior: Literal["build", "none", "after_all", "after_each"] = "build",
    source_freshness: bool | Callable[..., Mapping[str, str]] = False,
    only_changed_sources: bool = False,
    node_operator_args: Mapping[str, Mapping[str, Any]] | None = None,
    callback: Callable[..., Any] | None = None,
    dbt_executable: str | os.PathLike[str] | None = None,
    connection_id: str | None = None,
    profile_args: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    install_deps: bool = False,
    translator: DbtWatcherTranslator | None = None,
    audit: bool = True,
    docs: bool = False,
    status_retention: timedelta | float = timedelta(days=30),
) -> Callable[[Callable[..., Any]], WatcherGroupFactory]:
    """Render a dbt project as a TaskGroup: one producer ``dbt build`` and one live task per node.

    Every parameter is documented on :class:`dbt_watcher.config.WatcherConfig` (the one owner of each
    setting; this signature mirrors it so that type checkers and IDEs know the parameters) and in
    docs/parameters.md. Raises :class:`~dbt_watcher.errors.ConfigurationError` for a bad value.
    """
    config = WatcherConfig(**{name: value for name, value in locals().items() if name in _FIELDS})

    def decorate(function: Callable[..., Any]) -> WatcherGroupFactory:
        if not callable(function):
            raise ConfigurationError(
                f"@dbt_watcher_group(...) decorates a function, not {type(function).__name__}.",
                "Write @dbt_watcher_group(project_dir=...) above a function definition.",
            )
        source = inspect.getsourcefile(function)
        return WatcherGroupFactory(function, config, Path(source).parent if source else Path.cwd())

    return decorate


_FIELDS = frozenset(f.name for f in fields(WatcherConfig))


def _bind_call_arguments(
    function: Callable[..., Any], args: tuple[Any, ...], kwargs: Mapping[str, Any]
) -> dict[str, Any]:
    if not args:
        return dict(kwargs)
    try:
        bound = inspect.signature(function).bind_partial(*args, **kwargs)
    except TypeError as exc:
        raise ConfigurationError(
            f"{function.__name__}() does not accept these arguments: {exc}.",
            "Pass the arguments its signature names, as keywords.",
        ) from exc
    return dict(bound.arguments)
