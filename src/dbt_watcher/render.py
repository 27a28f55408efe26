"""Rendering a group: the plan's nodes become the producer, the consumers and the optional test and
model-hook tasks, with the group's, the dbt project's and the per-node operator arguments."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dbt_watcher.assets import node_asset, producer_alias, relation_uri, status_asset
from dbt_watcher.consumer import DbtConsumerOperator
from dbt_watcher.decorator import DbtWatcherGroup, WatcherGroupFactory
from dbt_watcher.lineage import NodeLineage
from dbt_watcher.overrides import node_args, unmatched_keys, validate_mapping
from dbt_watcher.plan import PRODUCER_TASK_ID, ConsumerSpec, GroupPlan
from dbt_watcher.producer import DbtProducerOperator, NodePlan
from dbt_watcher.project import default_cache_dir
from dbt_watcher.run_args import RunArguments
from dbt_watcher.runtime import GroupRuntime
from dbt_watcher.scope import default_freshness_policy
from dbt_watcher.tests_task import TESTS_TASK_ID, DbtTestsOperator

if TYPE_CHECKING:
    from dbt_watcher.config import WatcherConfig
    from dbt_watcher.graph import DbtNode, ProjectGraph

log = logging.getLogger(__name__)


def render(factory: WatcherGroupFactory, dag: Any, hook_kwargs: dict[str, Any]) -> DbtWatcherGroup:
    cfg = factory.config
    graph, plan = factory.load()
    _log_left_out(graph, plan, cfg)
    group_id = cfg.group_id or factory.function.__name__
    operator_args = dict(cfg.operator_args or {})
    group = DbtWatcherGroup(group_id=group_id, tooltip=f"dbt project {graph.project_name}")
    with group:
        full_group_id = group.group_id or group_id
        status = status_asset(dag.dag_id, full_group_id)
        producer_id = group.full_id(PRODUCER_TASK_ID)
        runtime = _runtime(factory, graph, plan, group_id=full_group_id, status_name=status.name, producer=producer_id)
        overrides = validate_mapping(cfg.node_operator_args)
        nodes: list[NodePlan] = []
        for spec in plan.consumers:
            args = {**operator_args, **node_args(spec.node, graph, overrides)}
            consumer = _consumer(group, runtime, spec, graph=graph, cfg=cfg, args=args)
            group.consumers[spec.node.unique_id] = consumer
            nodes.append(_node_plan(consumer, spec, graph, cfg))
        by_task = {c.spec.task_id: c for c in group.consumers.values()}
        for consumer in group.consumers.values():
            for upstream in consumer.spec.upstream:
                by_task[upstream] >> consumer
        _test_tasks(group, runtime, plan, cfg, operator_args)
        emits = any(n.producer_emits for n in nodes)
        group.producer = DbtProducerOperator(
            task_id=PRODUCER_TASK_ID,
            runtime=runtime,
            nodes=nodes,
            alias=producer_alias(dag.dag_id, full_group_id) if emits else None,
            hook=factory.function,
            hook_kwargs=hook_kwargs,
            status_asset=status,
            doc_md=f"`dbt build` of {plan_summary(plan)}",
            **{**operator_args, **dict(cfg.setup_operator_args or {})},
        )
        _model_hooks(group, factory)
        group.plan, group.graph = plan, graph
    return group


def _runtime(
    factory: WatcherGroupFactory,
    graph: ProjectGraph,
    plan: GroupPlan,
    *,
    group_id: str,
    status_name: str,
    producer: str,
) -> GroupRuntime:
    cfg = factory.config
    sources = graph.upstream_sources(c.node.unique_id for c in plan.consumers)
    policy = None
    if cfg.source_freshness is not False:
        policy = default_freshness_policy if cfg.source_freshness is True else cfg.source_freshness
    return GroupRuntime(
        group_id=group_id,
        project=factory.project(),
        selection=factory.selection(),
        threads=cfg.threads,
        base_args=RunArguments(dict(cfg.vars or {}), cfg.full_refresh is True, tuple(cfg.dbt_args)),
        status_asset_name=status_name,
        producer_task_id=producer,
        poke_interval=float(cfg.poke_interval),
        timeout_seconds=cfg.timeout_seconds,
        artifacts_root=cfg.artifacts_root(),
        cache_dir=Path(cfg.cache_dir) if cfg.cache_dir else default_cache_dir(),
        retry_skip=cfg.producer_retry_skip,
        retry_mode=cfg.producer_retry,
        test_behavior=cfg.test_behavior,
        dbt_executable=str(cfg.dbt_executable) if cfg.dbt_executable else None,
        connection_id=cfg.connection_id,
        install_deps=cfg.install_deps,
        select_template=cfg.select_template,
        full_refresh_template=cfg.full_refresh if isinstance(cfg.full_refresh, str) else None,
        freshness_policy=policy,
        freshness_sources_by_id={s.unique_id: s.selector for s in sources if s.has_freshness},
        only_changed_sources=cfg.only_changed_sources,
        source_selectors_by_uri={relation_uri(graph.target, s.relation): s.selector for s in sources},
        callback=cfg.callback,
        artifacts_url=cfg.artifacts_url,
    )


def _consumer(
    group: DbtWatcherGroup,
    runtime: GroupRuntime,
    spec: ConsumerSpec,
    *,
    graph: ProjectGraph,
    cfg: WatcherConfig,
    args: dict[str, Any],
) -> DbtConsumerOperator:
    # A deferred consumer waits for free in the triggerer, so it need not wait for its upstream
    # consumers to finish before it starts: it starts with the run and ends the moment dbt built
    # its node. The lineage edges stay (the graph shows them; retries are gated on them).
    # A non-deferrable consumer waits in a worker slot, so it starts only when its upstream consumers
    # are done; "none_failed" still lets it watch its node when a parent was left out of this run
    # (skipped) while dbt built the node itself (a run-time select of just that node, say).
    if spec.upstream:
        args.setdefault("trigger_rule", "always" if cfg.deferrable else "none_failed")
    if cfg.consumer_retry_queue is not None:
        # A deferrable consumer needs a worker only to rebuild its node: that is all this queue gets.
        args["queue"] = cfg.consumer_retry_queue
    return DbtConsumerOperator(
        task_id=spec.task_id,
        runtime=runtime,
        spec=spec,
        asset=node_asset(graph.target, spec.node) if cfg.emit_assets else None,
        lineage=node_lineage(graph, spec.node),
        deferrable=cfg.deferrable,
        upstream_task_ids=tuple(group.full_id(u) for u in spec.upstream),
        producer_resumes=runtime.producer_resumes,
        doc_md=f"dbt {spec.node.resource_type} `{spec.node.unique_id}` ({spec.node.original_file_path})",
        **args,
    )


def _node_plan(consumer: DbtConsumerOperator, spec: ConsumerSpec, graph: ProjectGraph, cfg: WatcherConfig) -> NodePlan:
    return NodePlan(
        watch=consumer.watch,
        consumer_task_id=consumer.task_id,
        selector=spec.node.selector,
        test_selectors={t: graph.nodes[t].selector for t in spec.tests},
        asset_uri=consumer.asset.uri if consumer.asset is not None else None,
        ends_in_triggerer=cfg.deferrable and not consumer.finish_on_worker,
        lineage=consumer.lineage,
    )


def node_lineage(graph: ProjectGraph, node: DbtNode) -> NodeLineage:
    """The relations a node reads (through ephemeral models) and the one it writes, as asset URIs."""
    inputs: set[str] = set()
    for uid in graph.walk_up(node.depends_on, through=lambda n: n.materialized == "ephemeral" or n.relation is None):
        if uid in graph.sources:
            inputs.add(relation_uri(graph.target, graph.sources[uid].relation))
        elif uid in graph.nodes and (relation := graph.nodes[uid].relation) is not None:
            inputs.add(relation_uri(graph.target, relation))
    output = relation_uri(graph.target, node.relation) if node.relation is not None else None
    return NodeLineage(tuple(sorted(inputs)), output)


def _test_tasks(
    group: DbtWatcherGroup, runtime: GroupRuntime, plan: GroupPlan, cfg: WatcherConfig, operator_args: dict[str, Any]
) -> None:
    if cfg.test_behavior == "after_all":
        tests = DbtTestsOperator(
            task_id=TESTS_TASK_ID, runtime=runtime, doc_md="`dbt test` of the selection", **operator_args
        )
        for consumer in group.consumers.values():
            consumer >> tests
    elif cfg.test_behavior == "after_each":
        taken = {c.task_id for c in plan.consumers}
        for spec in plan.consumers:
            if not spec.tests:
                continue
            task_id = f"{spec.task_id}_tests" if f"{spec.task_id}_tests" not in taken else f"{spec.task_id}__tests"
            model = group.consumers[spec.node.unique_id]
            watcher = DbtConsumerOperator(
                task_id=task_id,
                runtime=runtime,
                spec=spec,
                asset=None,
                deferrable=cfg.deferrable,
                upstream_task_ids=(model.task_id,),
                producer_resumes=runtime.producer_resumes,
                watches_tests_only=True,
                doc_md=f"the {len(spec.tests)} dbt tests of `{spec.node.unique_id}`",
                **operator_args,
            )
            model >> watcher


def _model_hooks(group: DbtWatcherGroup, factory: WatcherGroupFactory) -> None:
    from airflow.sdk import task
    from airflow.sdk.definitions.xcom_arg import XComArg

    for hook in factory.hooks:
        consumer = group.consumers[_find(group, factory, hook.node)]
        kwargs = {"task_id": hook.function.__name__, **hook.task_kwargs}
        task(hook.function, **kwargs)(XComArg(consumer, key="dbt_result"))


def _find(group: DbtWatcherGroup, factory: WatcherGroupFactory, name: str) -> str:
    for unique_id, consumer in group.consumers.items():
        if name in (consumer.spec.task_id, consumer.spec.node.name, unique_id):
            return unique_id
    raise KeyError(f"@{factory.function.__name__}.model({name!r}): no such model, seed or snapshot in the group")


def _log_left_out(graph: ProjectGraph, plan: GroupPlan, cfg: WatcherConfig) -> None:
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
    if plan.unattached_tests and cfg.test_behavior == "build":
        notes.append(
            (logging.INFO, f"tests that gate no consumer (they still run in the build): {plan.unattached_tests}")
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
    if cfg.deferrable and len(plan.consumers) > _TRIGGERER_START_HINT:
        notes.append(
            (
                logging.WARNING,
                f"{len(plan.consumers)} consumers start in the triggerer, and Airflow ships and deserializes the "
                "whole serialized DAG for each of them: that start-up grows with consumers x DAG size (measured "
                "at 2,035 models: about 50 consumers started a minute, so most ended long after dbt built their "
                "nodes). Split the project over several DAGs with select=; see docs/performance.md, "
                "'Very large groups'",
            )
        )
    return notes


_WORKER_SLOTS_HINT = 32  # Airflow's default parallelism: more non-deferrable consumers than this queue up
# Past this many start-from-trigger consumers, the triggerer's per-run start-up work (measured in
# docs/performance.md) reaches tens of seconds of CPU on one core.
_TRIGGERER_START_HINT = 500


def plan_summary(plan: GroupPlan) -> str:
    kinds: dict[str, int] = {}
    for spec in plan.consumers:
        kinds[spec.node.resource_type] = kinds.get(spec.node.resource_type, 0) + 1
    return ", ".join(f"{n} {kind}s" for kind, n in sorted(kinds.items()))
