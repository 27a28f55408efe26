"""A group's project, graph and plan at DAG-parse time: a prepared graph when one matches, else the parse
cache, else dbt itself (:mod:`dbt_watcher.project`)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import logging
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from dbt_watcher.config import WatcherConfig
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.group.notes import slow_parse_note
from dbt_watcher.group.overrides import validate_mapping
from dbt_watcher.group.plan import GroupPlan, build_plan
from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.invocation.session import dbt_session
from dbt_watcher.project import prepared
from dbt_watcher.project.cache import default_cache_dir, load_graph, refuse_reentry
from dbt_watcher.project.graph import ProjectGraph
from dbt_watcher.project.locate import fingerprint, locate_project
from dbt_watcher.project.selection import Selection, as_tuple

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GroupLoader:
    """Loads one group's project as its DAG file declares it."""

    config: WatcherConfig
    #: The folder of the DAG file: a relative ``project_dir`` is resolved from it.
    source_dir: Path
    #: The module of the decorated function (dbt must not import it again while it parses).
    module: str

    def project(self) -> DbtProject:
        """The project as dbt runs it. Where a prepared graph ships with the project, a dag-processor
        without a profiles.yml still parses the DAG; a task that runs dbt there fails with the error."""
        cfg = self.config
        located = functools.partial(
            locate_project,
            cfg.project_dir,
            profiles_dir=cfg.profiles_dir,
            profile=cfg.profile,
            target=cfg.target,
            vars=cfg.vars,
            relative_to=self.source_dir,
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

    @property
    def cache_dir(self) -> Path:
        return Path(self.config.cache_dir) if self.config.cache_dir else default_cache_dir()

    @contextlib.contextmanager
    def parse_project(self) -> Iterator[DbtProject]:
        """The project as DAG parsing sees it: a connection's profile rendered (without secret), and
        its packages installed first when ``install_deps=True``."""
        cfg = self.config
        with dbt_session(
            self.project(),
            dbt_executable=_text(cfg.dbt_executable),
            connection_id=cfg.connection_id,
            profile_args=cfg.profile_args,
            env=cfg.parse_env,
            threads=cfg.threads,
            install_deps=cfg.install_deps,
            cache_dir=self.cache_dir,
            with_secrets=False,
        ) as (project, _runner):
            yield project

    def load(self) -> tuple[ProjectGraph, GroupPlan]:
        """The project graph and task plan (from the cache when the project is unchanged)."""
        module = sys.modules.get(self.module)
        refuse_reentry(self.module, getattr(module, "__file__", None))
        selection = self.selection()
        keys = tuple(validate_mapping(self.config.node_operator_args))
        root = self._root()
        graph = self._prepared(root, selection, keys)
        if graph is None:
            started = time.monotonic()
            with self.parse_project() as project:
                graph = load_graph(
                    project,
                    selection,
                    cache_dir=self.cache_dir,
                    extra_selections=keys,
                    dbt_executable=_text(self.config.dbt_executable),
                )
            slow = slow_parse_note(time.monotonic() - started)
            if slow is not None and not prepared.writing:
                log.warning("dbt-watcher: %s", slow)
            self._prepare(root, graph, selection, keys)
        plan = build_plan(
            graph,
            selection_text=f"The selection ({selection.describe()})",
            naming=self.config.naming,
            project_folder=root.project_dir.name,
        )
        return graph, plan

    def _root(self) -> DbtProject:
        return locate_project(self.config.project_dir, relative_to=self.source_dir, needs_profiles=False)

    def _prepared(self, root: DbtProject, selection: Selection, keys: tuple[str, ...]) -> ProjectGraph | None:
        """The group's prepared graph (dbt_watcher.project.prepared), looked for only where
        `dbt-watcher prepare` wrote one (hashing the project costs time) and never while preparing."""
        if prepared.writing or not (root.project_dir / prepared.FOLDER).is_dir():
            return None
        found = prepared.read_prepared(*prepared.place(root, self.config.parse_settings, selection, keys))
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

    def _prepare(self, root: DbtProject, graph: ProjectGraph, selection: Selection, keys: tuple[str, ...]) -> None:
        if prepared.writing:
            env_names = fingerprint(self.project())[1]
            where = prepared.place(root, self.config.parse_settings, selection, keys)
            path = prepared.write_prepared(*where, graph, env_names)
            if path is not None:
                log.info("Prepared %s (%d nodes)", path, len(graph.nodes))


def _dbt_importable() -> bool:
    try:
        return importlib.util.find_spec("dbt") is not None
    except ImportError:  # a finder that refuses it, or a broken install
        return False


def _text(value: object) -> str | None:
    return str(value) if value is not None else None
