"""Rendering a group: the plan's nodes become the producer, the consumers, the audit and the optional
test and model-hook tasks, with the group's, the dbt project's and the per-node operator arguments."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from dbt_watcher import airflow_lines
from dbt_watcher.config import WatcherConfig
from dbt_watcher.consumer.audit import DbtAuditOperator
from dbt_watcher.consumer.operator import DbtConsumerOperator
from dbt_watcher.consumer.tests_task import DbtTestsOperator
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.group.notes import log_notes, plan_summary
from dbt_watcher.group.overrides import node_args, validate, validate_mapping
from dbt_watcher.group.plan import ConsumerSpec, GroupPlan
from dbt_watcher.group.task_group import DbtWatcherGroup
from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.invocation.target import Target
from dbt_watcher.modes import TestBehavior
from dbt_watcher.producer.narrowing import default_freshness_policy
from dbt_watcher.producer.operator import DbtProducerOperator
from dbt_watcher.project.graph import DbtNode, ProjectGraph
from dbt_watcher.project.selection import Selection
from dbt_watcher.rules.assets import producer_alias
from dbt_watcher.rules.build_state import fingerprint
from dbt_watcher.rules.lineage import NodeLineage
from dbt_watcher.rules.translator import DbtWatcherTranslator
from dbt_watcher.rules.watch import ConsumerTask, Watch
from dbt_watcher.runtime.group_runtime import GroupRuntime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelHook:
    """A function registered with ``@group.model(name)``: a task right after that node's consumer."""

    node: str
    function: Callable[..., Any]
    task_kwargs: Mapping[str, Any]


@dataclass(frozen=True)
class Rendering:
    """What rendering a group takes: the group's parameters, its graph and plan, and the decorated function."""

    config: WatcherConfig
    graph: ProjectGraph
    plan: GroupPlan
    project: DbtProject
    selection: Selection
    #: The decorated function: the producer calls it before the build (its run-time hook).
    function: Callable[..., Any]
    hooks: tuple[ModelHook, ...] = ()
    #: The arguments the group was called with, handed to ``function``.
    hook_kwargs: Mapping[str, Any] | None = None


def open_group(config: WatcherConfig, function_name: str) -> DbtWatcherGroup:
    """The group's (still empty) TaskGroup in the DAG being defined; a clear error outside a DAG."""
    try:
        group = DbtWatcherGroup(group_id=config.group_id or function_name)
    except RuntimeError:  # Airflow: "TaskGroup can only be used inside a dag"
        group = None
    if group is None or group.dag is None:
        raise ConfigurationError(
            f"{function_name}() was called outside a DAG.",
            "Call the dbt_watcher_group function inside a @dag function or a `with DAG(...)` block.",
        )
    return group


def render(group: DbtWatcherGroup, source: Rendering) -> DbtWatcherGroup:
    """Fill ``group`` (from :func:`open_group`) with the tasks of ``source``'s plan."""
    cfg, graph, plan = source.config, source.graph, source.plan
    log_notes(graph, plan, cfg)
    group.tooltip = f"dbt project {graph.project_name}"
    operator_args = dict(cfg.operator_args or {})
    with group:
        runtime = _runtime(source, group)
        overrides = validate_mapping(cfg.node_operator_args)
        tasks: list[ConsumerTask] = []
        for spec in plan.consumers:
            args = {
                **operator_args,
                **node_args(spec.node, graph, overrides),
                **validate(
                    cfg.naming.operator_args(spec.node), f"the translator's operator_args of {spec.node.unique_id}"
                ),
            }
            task = consumer_task(group, runtime, spec, graph, finish_on_worker=bool(args.get("on_success_callback")))
            group.consumers[spec.node.unique_id] = _consumer(runtime, spec, task, graph, args)
            tasks.append(task)
        for spec in plan.consumers:
            for upstream in spec.upstream:
                group.consumers[_uid(plan, upstream)] >> group.consumers[spec.node.unique_id]
        tasks += _test_tasks(group, runtime, plan, graph, operator_args)
        # The events of consumers that end in the triggerer: the producer's, or the audit's when it is red.
        alias = producer_alias(group.dag.dag_id, runtime.group_id) if any(t.producer_emits for t in tasks) else None
        group.producer = DbtProducerOperator(
            task_id=cfg.naming.producer_task_id(),
            runtime=runtime,
            consumers=tasks,
            alias=alias,
            hook=source.function,
            hook_kwargs=source.hook_kwargs,
            doc_md=f"`dbt build` of {plan_summary(plan)}",
            **producer_args(operator_args, cfg.setup_operator_args),
        )
        if cfg.audit:
            DbtAuditOperator(
                task_id=cfg.naming.audit_task_id(),
                runtime=runtime,
                consumers=tasks,
                alias=alias,
                doc_md="Checks every consumer's state against dbt's verdict for the run (docs/reliability.md).",
                # queue and executor: it resumes on a worker to emit asset events when the producer ends red
                **{
                    k: v
                    for k, v in operator_args.items()
                    if k in ("owner", "pool", "priority_weight", "queue", "executor")
                },
            )
        _model_hooks(group, source)
        group.plan, group.graph, group.translator = plan, graph, cfg.naming
    return group


def _uid(plan: GroupPlan, task_id: str) -> str:
    return plan.find(task_id).node.unique_id


def _runtime(source: Rendering, group: DbtWatcherGroup) -> GroupRuntime:
    cfg, graph, plan = source.config, source.graph, source.plan
    sources = graph.upstream_sources(c.node.unique_id for c in plan.consumers)
    policy = None
    if cfg.source_freshness is not False:
        policy = default_freshness_policy if cfg.source_freshness is True else cfg.source_freshness
    return GroupRuntime(
        config=cfg,
        group_id=str(group.group_id),
        producer_task_id=group.full_id(cfg.naming.producer_task_id()),
        project=source.project,
        selection=source.selection,
        freshness_policy=policy,
        freshness_sources_by_id={s.unique_id: s.selector for s in sources if s.has_freshness},
        # Keyed as Airflow stores the URI (normalised by Asset), as events carry it.
        source_assets=(
            {cfg.naming.source_asset(graph.target, s).uri: (s.unique_id, s.selector) for s in sources}
            if cfg.only_changed_sources or cfg.skip_unchanged is not False
            else {}
        ),
        target_identity=fingerprint(graph.target.to_json()),
        consumer_positions={spec.node.unique_id: i for i, spec in enumerate(plan.consumers)},
        single_writer=single_writer(graph.target),
    )


#: dbt adapters whose warehouse takes one writing process at a time.
SINGLE_WRITER_ADAPTERS = frozenset({"duckdb"})


def single_writer(target: Target) -> str | None:
    """The name of the target's warehouse when only one process may write it (a DuckDB database)."""
    if target.adapter_type not in SINGLE_WRITER_ADAPTERS:
        return None
    return f"{target.adapter_type}:{target.database or target.target_name}"


def consumer_task(
    group: DbtWatcherGroup,
    runtime: GroupRuntime,
    spec: ConsumerSpec,
    graph: ProjectGraph,
    *,
    finish_on_worker: bool,
    tests_only: str | None = None,
) -> ConsumerTask:
    """One consumer task as everybody sees it. ``tests_only``: the task id of a node's test watcher."""
    cfg = runtime.config
    # The tests the run selects for the node gate its consumer when they run in the build, except with
    # "after_each", where a second consumer of the node watches them (a node with no test at parse time
    # has none: its own consumer stays gated, so a test that only the run enables still gates something).
    behavior = cfg.test_behavior
    gated = bool(tests_only) or (behavior.in_build and not (behavior is TestBehavior.AFTER_EACH and spec.tests))
    upstream = (group.full_id(spec.task_id),) if tests_only else tuple(group.full_id(u) for u in spec.upstream)
    asset = cfg.naming.node_asset(graph.target, spec.node) if cfg.emit_assets and not tests_only else None
    return ConsumerTask(
        task_id=group.full_id(tests_only or spec.task_id),
        node=spec.node,
        watch=Watch(spec.node.unique_id, gated, upstream, runtime.producer_resumes),
        selector=spec.node.selector,
        asset_uri=asset.uri if asset is not None else None,
        ends_in_triggerer=cfg.deferrable and not finish_on_worker,
        lineage=node_lineage(graph, spec.node, cfg.naming) if not tests_only else NodeLineage(),
    )


def _consumer(
    runtime: GroupRuntime, spec: ConsumerSpec, task: ConsumerTask, graph: ProjectGraph, args: dict[str, Any]
) -> DbtConsumerOperator:
    # A deferred consumer waits for free in the triggerer, so it need not wait for its upstream
    # consumers to finish before it starts: it starts with the run and ends the moment dbt built
    # its node. The lineage edges stay (the graph shows them; retries are gated on them).
    # A non-deferrable consumer waits in a worker slot, so it starts only when its upstream consumers
    # are done; "none_failed" still lets it watch its node when a parent was left out of this run
    # (skipped) while dbt built the node itself (a run-time select of just that node, say).
    cfg = runtime.config
    if spec.upstream:
        args.setdefault("trigger_rule", "always" if cfg.deferrable else "none_failed")
    if cfg.consumer_retry_queue is not None:
        # A deferrable consumer needs a worker only to rebuild its node: that is all this queue gets.
        args["queue"] = cfg.consumer_retry_queue
    return DbtConsumerOperator(
        task_id=spec.task_id,
        runtime=runtime,
        consumer=task,
        asset=cfg.naming.node_asset(graph.target, spec.node) if task.asset_uri else None,
        deferrable=cfg.deferrable,
        doc_md=cfg.naming.doc_md(spec.node),
        **args,
    )


def node_lineage(graph: ProjectGraph, node: DbtNode, naming: DbtWatcherTranslator) -> NodeLineage:
    """The relations a node reads (through ephemeral models) and the one it writes, as asset URIs
    with their OpenLineage names."""
    inputs: set[str] = set()
    for uid in graph.walk_up(node.depends_on, through=lambda n: n.materialized == "ephemeral" or n.relation is None):
        if uid in graph.sources:
            inputs.add(naming.uri(graph.target, graph.sources[uid].relation))
        elif uid in graph.nodes and (relation := graph.nodes[uid].relation) is not None:
            inputs.add(naming.uri(graph.target, relation))
    output = naming.uri(graph.target, node.relation) if node.relation is not None else None
    names = {uri: naming.lineage_dataset(uri) for uri in (*inputs, *([output] if output else []))}
    return NodeLineage(tuple(sorted(inputs)), output, names)


def _test_tasks(
    group: DbtWatcherGroup, runtime: GroupRuntime, plan: GroupPlan, graph: ProjectGraph, operator_args: dict[str, Any]
) -> list[ConsumerTask]:
    """The tasks of ``after_all`` and ``after_each``; returns the test watchers (they are consumers)."""
    cfg = runtime.config
    if cfg.test_behavior is TestBehavior.AFTER_ALL:
        tests = DbtTestsOperator(
            task_id=cfg.naming.after_all_tests_task_id(runtime.project.project_dir.name),
            runtime=runtime,
            doc_md="`dbt test` of the selection",
            **operator_args,
        )
        for consumer in group.consumers.values():
            consumer >> tests
        return []
    watchers: list[ConsumerTask] = []
    if cfg.test_behavior is TestBehavior.AFTER_EACH:
        taken = {c.task_id for c in plan.consumers} | cfg.naming.fixed_task_ids(runtime.project.project_dir.name)
        for spec in plan.consumers:
            if not spec.tests:
                continue
            named = cfg.naming.tests_task_id(spec.node, spec.task_id)
            task_id = named if named not in taken else f"{spec.task_id}__tests"
            if task_id in taken:
                raise ConfigurationError(
                    f"The tests of {spec.node.unique_id} get the task id {task_id!r}, which another task has.",
                    "Give the translator's tests_task_id a rule that keeps the tests of each node apart.",
                )
            taken.add(task_id)
            task = consumer_task(group, runtime, spec, graph, finish_on_worker=False, tests_only=task_id)
            model = group.consumers[spec.node.unique_id]
            model >> DbtConsumerOperator(
                task_id=task_id,
                runtime=runtime,
                consumer=task,
                asset=None,
                deferrable=cfg.deferrable,
                watches_tests_only=True,
                doc_md=f"the {len(spec.tests)} dbt tests of `{spec.node.unique_id}`",
                **operator_args,
            )
            watchers.append(task)
    return watchers


def _model_hooks(group: DbtWatcherGroup, source: Rendering) -> None:
    from airflow.sdk import XComArg, task

    for hook in source.hooks:
        try:
            unique_id = _uid(source.plan, hook.node)
        except KeyError as exc:
            raise ConfigurationError(
                f"@{source.function.__name__}.model({hook.node!r}): no such model, seed or snapshot in the group.",
                "Name a node of the group: its dbt name, its task id or its unique id.",
            ) from exc
        kwargs = {"task_id": hook.function.__name__, **hook.task_kwargs}
        task(hook.function, **kwargs)(XComArg(group.consumers[unique_id], key="dbt_result"))


def producer_args(operator_args: Mapping[str, Any], setup_operator_args: Mapping[str, Any] | None) -> dict[str, Any]:
    """The producer's operator arguments: the group's, then its own (``setup_operator_args``) on top.

    Without a Task State Store (before Airflow 3.3) a producer retry can neither skip nor resume, so
    the group-wide ``retries`` (meant for the consumers) does not reach it; its own ``retries`` is
    checked at parse time (:func:`dbt_watcher.checks.check_airflow_line`).
    """
    inherited = dict(operator_args)
    if not airflow_lines.has_task_state_store():
        inherited.pop("retries", None)
    return {**inherited, **dict(setup_operator_args or {})}
