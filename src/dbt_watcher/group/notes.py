"""What a user should know about a group before deploying it: logged at parse time, printed by
``dbt-watcher render``."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dbt_watcher.group.overrides import unmatched_keys

if TYPE_CHECKING:
    from dbt_watcher.config import WatcherConfig
    from dbt_watcher.group.plan import GroupPlan
    from dbt_watcher.project.graph import ProjectGraph

log = logging.getLogger("dbt_watcher.group.render")


def log_notes(graph: ProjectGraph, plan: GroupPlan, cfg: WatcherConfig) -> None:
    for level, message in plan_notes(graph, plan, cfg):
        log.log(level, "dbt-watcher: %s", message)


def plan_notes(graph: ProjectGraph, plan: GroupPlan, cfg: WatcherConfig) -> list[tuple[int, str]]:
    """What a user should know about a group before deploying it, as (logging level, message).

    Logged while the DAG file is parsed and printed by ``dbt-watcher render``.
    """
    notes: list[tuple[int, str]] = [(logging.INFO, f"no task for {uid}: {reason}") for uid, reason in plan.left_out]
    if graph.disabled:
        notes.append(
            (logging.INFO, f"{len(graph.disabled)} disabled dbt nodes have no task: {', '.join(graph.disabled)}")
        )
    if cfg.test_behavior.gates_consumers:
        notes.extend(
            (logging.INFO, f"{test} gates no consumer (it still runs in the build): {reason}")
            for test, reason in plan.unattached_tests
        )
    for key in unmatched_keys(graph, cfg.node_operator_args or {}):
        notes.append((logging.WARNING, f"node_operator_args key {key!r} matches no node of the group"))
    if cfg.source_freshness is not False and not any(s.has_freshness for s in graph.sources.values()):
        notes.append((logging.WARNING, "source_freshness is on but no source of the project has a freshness check"))
    if cfg.threads is None:
        notes.append(
            (logging.INFO, f"threads= is not set: the build uses the target's threads ({graph.target.threads})")
        )
    if not cfg.deferrable and len(plan.consumers) > _WORKER_SLOTS_HINT:
        notes.append(
            (
                logging.WARNING,
                f"deferrable=False holds one worker slot per consumer ({len(plan.consumers)} of them) for the whole "
                "build; deferrable=True waits in the triggerer instead",
            )
        )
    capacity = triggerer_capacity()
    if cfg.deferrable and len(plan.consumers) > capacity:
        notes.append(
            (
                logging.WARNING,
                f"{len(plan.consumers)} consumers wait in the triggerer, which runs at most [triggerer] capacity "
                f"triggers ({capacity} here) per triggerer process: the rest start as others end, later than "
                "their nodes. Raise the capacity or run more triggerers; see docs/performance.md, 'Scale'",
            )
        )
    return notes


_WORKER_SLOTS_HINT = 32  # Airflow's default parallelism: more non-deferrable consumers than this queue up
# Airflow's default [triggerer] capacity: consumers past it wait for a slot in the triggerer.
_TRIGGERER_CAPACITY = 1000


def triggerer_capacity() -> int:
    """The configured ``[triggerer] capacity`` as the parsing process sees it (Airflow's default where
    it cannot be read): the warning must stop once a deployment raised it."""
    try:
        from airflow.configuration import conf

        return conf.getint("triggerer", "capacity", fallback=_TRIGGERER_CAPACITY)
    except Exception:  # a configuration that cannot be read is no reason to fail a DAG's parse
        return _TRIGGERER_CAPACITY


#: A parse taking this share of the import timeout is close enough to it to warn: cold parses of one
#: 1,058-model project took 20 to 34 s on the same machine, by how busy it was.
SLOW_PARSE_SHARE = 0.4
_IMPORT_TIMEOUT = 30.0  # Airflow's default [core] dagbag_import_timeout


def dag_import_timeout() -> float:
    """``[core] dagbag_import_timeout`` as the parsing process sees it (Airflow's default where unreadable)."""
    try:
        from airflow.configuration import conf

        return conf.getfloat("core", "dagbag_import_timeout", fallback=_IMPORT_TIMEOUT)
    except Exception:  # a configuration that cannot be read is no reason to fail a DAG's parse
        return _IMPORT_TIMEOUT


def slow_parse_note(seconds: float) -> str | None:
    """A warning when parsing the project with dbt took a large share of the DAG file's import timeout."""
    timeout = dag_import_timeout()
    if timeout <= 0 or seconds < SLOW_PARSE_SHARE * timeout:
        return None
    return (
        f"parsing the project with dbt took {seconds:.1f} s of the {timeout:g} s a DAG file may take to import "
        "([core] dagbag_import_timeout). A cold parse (a new dag-processor, a changed project, a busy machine) "
        "can take longer and fail the import: run `dbt-watcher prepare` at deploy time (docs/deployment.md, "
        "'Parsing without dbt') or raise [core] dagbag_import_timeout"
    )


def plan_summary(plan: GroupPlan) -> str:
    kinds: dict[str, int] = {}
    for spec in plan.consumers:
        kinds[spec.node.resource_type] = kinds.get(spec.node.resource_type, 0) + 1
    return ", ".join(f"{n} {kind}s" for kind, n in sorted(kinds.items()))
