"""Rendering a group: the plan's nodes become the producer, the consumers, the audit and the optional
test and model-hook tasks, with the group's, the dbt project's and the per-node operator arguments."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from dbt_watcher.assets import producer_alias
from dbt_watcher.consumer.audit import DbtAuditOperator
from dbt_watcher.consumer.operator import DbtConsumerOperator
from dbt_watcher.consumer.tests_task import DbtTestsOperator
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.lineage import NodeLineage
from dbt_watcher.plan.group import DbtWatcherGroup
from dbt_watcher.plan.group_plan import (
    AUDIT_TASK_ID,
    PRODUCER_TASK_ID,
    TESTS_TASK_ID,
    ConsumerSpec,
    ConsumerTask,
    GroupPlan,
    Watch,
)
from dbt_watcher.plan.notes import log_notes, plan_summary
from dbt_watcher.plan.overrides import node_args, validate, validate_mapping
from dbt_watcher.plan.runtime import GroupRuntime
from dbt_watcher.producer.narrowing import default_freshness_policy
from dbt_watcher.producer.operator import DbtProducerOperator

if TYPE_CHECKING:
    from dbt_watcher.config import WatcherConfig
    from dbt_watcher.decorator import WatcherGroupFactory
    from dbt_watcher.project.graph import DbtNode, ProjectGraph
    from dbt_watcher.translator import DbtWatcherTranslator

log = logging.getLogger(__name__)


def render(factory: WatcherGroupFactory, hook_kwargs: dict[str, Any]) -> DbtWatcherGroup:
    cfg = factory.config
    try:
        group = DbtWatcherGroup(group_id=cfg.group_id or factory.function.__name__)
    except RuntimeError:  # Airflow: "TaskGroup can only be used inside a dag"
        group = None
    if group is None or group.dag is None:
        raise ConfigurationError(
            f"{factory.function.__name__}() was called outside a DAG.",
            "Call the dbt_watcher_group function inside a @dag function or a `with DAG(...)` block.",
        )
    graph, plan = factory.load()
    log_notes(graph, plan, cfg)
    group.tooltip = f"dbt project {graph.project_name}"
    operator_args = dict(cfg.operator_args or {})
    with group:
        runtime = _runtime(factory, graph, plan, group)
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
            group.consumers[spec.node.unique_id] = _consumer(runtime, task, graph, cfg, args)
            tasks.append(task)
        for consumer in group.consumers.values():
            for upstream in consumer.consumer.spec.upstream:
                group.consumers[_uid(plan, upstream)] >> consumer
        tasks += _test_tasks(group, runtime, plan, graph, operator_args)
        # The events of consumers that end in the triggerer: the producer's, or the audit's when it is red.
        alias = producer_alias(group.dag.dag_id, runtime.group_id) if any(t.producer_emits for t in tasks) else None
        group.producer = DbtProducerOperator(
            task_id=PRODUCER_TASK_ID,
            runtime=runtime,
            consumers=tasks,
            alias=alias,
            hook=factory.function,
            hook_kwargs=hook_kwargs,
            doc_md=f"`dbt build` of {plan_summary(plan)}",
            **{**operator_args, **dict(cfg.setup_operator_args or {})},
        )
        if cfg.audit:
            DbtAuditOperator(
                task_id=AUDIT_TASK_ID,
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
        _model_hooks(group, factory, plan)
        group.plan, group.graph, group.translator = plan, graph, cfg.naming
    return group


def _uid(plan: GroupPlan, task_id: str) -> str:
    return plan.find(task_id).node.unique_id


def _runtime(
    factory: WatcherGroupFactory, graph: ProjectGraph, plan: GroupPlan, group: DbtWatcherGroup
) -> GroupRuntime:
    cfg = factory.config
    sources = graph.upstream_sources(c.node.unique_id for c in plan.consumers)
    policy = None
    if cfg.source_freshness is not False:
        policy = default_freshness_policy if cfg.source_freshness is True else cfg.source_freshness
    return GroupRuntime(
        config=cfg,
        group_id=str(group.group_id),
        producer_task_id=group.full_id(PRODUCER_TASK_ID),
        project=factory.project(),
        selection=factory.selection(),
        freshness_policy=policy,
        freshness_sources_by_id={s.unique_id: s.selector for s in sources if s.has_freshness},
        source_selectors_by_uri={cfg.naming.uri(graph.target, s.relation): s.selector for s in sources},
    )


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
    # A model's consumer is gated by its tests when they run in the build; with "after_each" a second
    # consumer of the same node watches only the tests.
    gating = spec.tests if (cfg.test_behavior == "build" or tests_only) else ()
    upstream = (group.full_id(spec.task_id),) if tests_only else tuple(group.full_id(u) for u in spec.upstream)
    asset = cfg.naming.node_asset(graph.target, spec.node) if cfg.emit_assets and not tests_only else None
    return ConsumerTask(
        task_id=group.full_id(tests_only or spec.task_id),
        spec=spec,
        watch=Watch(spec.node.unique_id, tuple(gating), upstream, runtime.producer_resumes),
        selector=spec.node.selector,
        test_selectors={t: graph.nodes[t].selector for t in gating},
        asset_uri=asset.uri if asset is not None else None,
        ends_in_triggerer=cfg.deferrable and not finish_on_worker,
        lineage=node_lineage(graph, spec.node, cfg.naming) if not tests_only else NodeLineage(),
    )


def _consumer(
    runtime: GroupRuntime, task: ConsumerTask, graph: ProjectGraph, cfg: WatcherConfig, args: dict[str, Any]
) -> DbtConsumerOperator:
    # A deferred consumer waits for free in the triggerer, so it need not wait for its upstream
    # consumers to finish before it starts: it starts with the run and ends the moment dbt built
    # its node. The lineage edges stay (the graph shows them; retries are gated on them).
    # A non-deferrable consumer waits in a worker slot, so it starts only when its upstream consumers
    # are done; "none_failed" still lets it watch its node when a parent was left out of this run
    # (skipped) while dbt built the node itself (a run-time select of just that node, say).
    spec = task.spec
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
    if cfg.test_behavior == "after_all":
        tests = DbtTestsOperator(
            task_id=TESTS_TASK_ID, runtime=runtime, doc_md="`dbt test` of the selection", **operator_args
        )
        for consumer in group.consumers.values():
            consumer >> tests
        return []
    watchers: list[ConsumerTask] = []
    if cfg.test_behavior == "after_each":
        taken = {c.task_id for c in plan.consumers}
        for spec in plan.consumers:
            if not spec.tests:
                continue
            task_id = f"{spec.task_id}_tests" if f"{spec.task_id}_tests" not in taken else f"{spec.task_id}__tests"
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


def _model_hooks(group: DbtWatcherGroup, factory: WatcherGroupFactory, plan: GroupPlan) -> None:
    from airflow.sdk import XComArg, task

    for hook in factory.hooks:
        try:
            unique_id = _uid(plan, hook.node)
        except KeyError as exc:
            raise ConfigurationError(
                f"@{factory.function.__name__}.model({hook.node!r}): no such model, seed or snapshot in the group.",
                "Name a node of the group: its dbt name, its task id or its unique id.",
            ) from exc
        kwargs = {"task_id": hook.function.__name__, **hook.task_kwargs}
        task(hook.function, **kwargs)(XComArg(group.consumers[unique_id], key="dbt_result"))
