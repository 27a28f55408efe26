"""``@dbt_watcher_group``: a TaskFlow-style decorator that renders a dbt project as a TaskGroup.

The decorated function's body is a run-time hook (see :mod:`dbt_watcher.producer.run_args`): the producer
calls it with the Airflow context just before ``dbt build`` and merges what it returns
(``vars``, ``full_refresh``, ``dbt_args``) into the build. A body of ``...`` means "nothing to add".
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, Literal, ParamSpec, TypeVar

from dbt_watcher.config import WatcherConfig, check_parameter_names
from dbt_watcher.errors import ConfigurationError, ParameterError
from dbt_watcher.group.loading import GroupLoader
from dbt_watcher.group.plan import GroupPlan
from dbt_watcher.group.render import ModelHook, Rendering, open_group, render
from dbt_watcher.group.task_group import DbtWatcherGroup, source_assets
from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.modes import TestBehavior
from dbt_watcher.project.graph import ProjectGraph
from dbt_watcher.project.selection import Selection
from dbt_watcher.rules.translator import DbtWatcherTranslator

if TYPE_CHECKING:
    from airflow.sdk import Asset

#: The decorated function's parameters: calling the group takes the same arguments.
P = ParamSpec("P")
Q = ParamSpec("Q")
R = TypeVar("R")


def _named_parameters(function: Callable[Q, R]) -> Callable[Q, R]:
    """Check the keywords against WatcherConfig before the call, for a suggestion instead of Python's bare
    TypeError (the signature, and what type checkers see, stay the function's own)."""

    @functools.wraps(function)
    def checked(*args: Q.args, **kwargs: Q.kwargs) -> R:
        if args:
            raise ParameterError(
                f"{function.__name__}() takes keyword arguments only; it got {len(args)} positional.",
                f"Name each argument: @{function.__name__}(project_dir=...).",
            )
        check_parameter_names(kwargs)
        return function(*args, **kwargs)

    return checked


@dataclass(frozen=True)
class WatcherGroupFactory(Generic[P]):
    """What ``@dbt_watcher_group(...)`` returns: call it inside a DAG to render the group."""

    function: Callable[P, Any]
    config: WatcherConfig
    _source_dir: Path = field(default_factory=Path.cwd)
    _hooks: list[ModelHook] = field(default_factory=list)

    def override(self, **changes: Any) -> WatcherGroupFactory[P]:
        """A copy with some parameters changed, for one use (like a TaskFlow task's override)."""
        return WatcherGroupFactory(self.function, self.config.updated(**changes), self._source_dir, list(self._hooks))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> DbtWatcherGroup:
        group = open_group(self.config, self.function.__name__)
        graph, plan = self.load()
        source = Rendering(
            config=self.config,
            graph=graph,
            plan=plan,
            project=self.project(),
            selection=self.selection(),
            function=self.function,
            hooks=self.hooks,
            hook_kwargs=_bind_call_arguments(self.function, args, kwargs),
        )
        return render(group, source)

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

    @property
    def loader(self) -> GroupLoader:
        return GroupLoader(self.config, self._source_dir, self.function.__module__)

    def project(self) -> DbtProject:
        """The project as dbt runs it (:meth:`GroupLoader.project`)."""
        return self.loader.project()

    def selection(self) -> Selection:
        return self.loader.selection()

    def load(self) -> tuple[ProjectGraph, GroupPlan]:
        """The project graph and task plan (from the cache when the project is unchanged)."""
        return self.loader.load()

    def asset(self, name: str) -> Asset:
        """The Asset of a node, at parse time, without rendering the group (for other DAGs)."""
        graph, plan = self.load()
        return self.config.naming.node_asset(graph.target, plan.find(name).node)

    def source_assets(self) -> list[Asset]:
        """The Assets of the dbt sources the group reads, without rendering it."""
        graph, plan = self.load()
        return source_assets(graph, plan, self.config.naming)


@_named_parameters
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
    skip_unchanged: bool | str = False,
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
    test_behavior: TestBehavior | Literal["build", "none", "after_all", "after_each"] = "build",
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
) -> Callable[[Callable[P, Any]], WatcherGroupFactory[P]]:
    """Render a dbt project as a TaskGroup: one producer ``dbt build`` and one live task per node.

    Every parameter is documented on :class:`dbt_watcher.config.WatcherConfig` (the one owner of each
    setting; this signature mirrors it so that type checkers and IDEs know the parameters) and in
    docs/parameters.md. Raises :class:`~dbt_watcher.errors.ConfigurationError` for a bad value.
    """
    config = WatcherConfig(**{name: value for name, value in locals().items() if name in _FIELDS})

    def decorate(function: Callable[P, Any]) -> WatcherGroupFactory[P]:
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
