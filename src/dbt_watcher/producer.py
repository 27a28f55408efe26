"""The producer task: one ``dbt build`` for the whole selection, every node result published live.

Its Airflow state is the state of the dbt invocation, not of the models: it succeeds when dbt ran
and every result was published (failed models are reported by their own consumers), and fails
when dbt could not run at all (bad profile, parse error, crash).

A later attempt in the same DAG run (a retry or a clear) never repeats the build silently:

* ``producer_retry="skip"`` (default): it finishes the run with what earlier attempts published;
* ``producer_retry="resume"``: one dbt invocation for the nodes that failed or never ran — dbt's
  ``retry`` idea, driven by the status channel, so it also works after a crash that left no
  run_results.json;
* ``producer_retry_skip=False``: it builds the whole selection again (opt-in).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, AssetAlias, BaseOperator

from dbt_watcher.airflow_io import AssetStateChannelStore, group_task_states
from dbt_watcher.attempt import Attempt, log_summary
from dbt_watcher.decision import Action, Decision, Watch, decide
from dbt_watcher.events import NodeResult
from dbt_watcher.lineage import Completion, NodeLineage, emit_completions
from dbt_watcher.run_args import RunArguments, call_hook
from dbt_watcher.runtime import GroupRuntime
from dbt_watcher.status import FAILED, FINISHED, RunStatus, StatusReader, StatusWriter, invocation_key

log = logging.getLogger(__name__)

#: Task State Store keys: the producer's private record of this run, which survives its retries.
LEDGER_BUILDS = "build_attempts"
LEDGER_ASSETS = "assets_emitted"


@dataclass(frozen=True)
class NodePlan:
    """What the producer knows of one consumer's node."""

    watch: Watch
    consumer_task_id: str
    selector: str
    test_selectors: Mapping[str, str] = field(default_factory=dict)
    asset_uri: str | None = None
    #: The consumer ends in the triggerer, where Airflow registers no asset event and runs no
    #: lineage listener: the producer emits both for it.
    ends_in_triggerer: bool = False
    lineage: NodeLineage = field(default_factory=NodeLineage)

    @property
    def producer_emits(self) -> bool:
        return self.ends_in_triggerer and self.asset_uri is not None


class DbtProducerOperator(BaseOperator):
    """Runs ``dbt build`` once for the group and publishes each node's result as it finishes."""

    # Rendered by Airflow before execute: a run can be re-targeted from the trigger form.
    template_fields = ("dbt_vars", "dbt_full_refresh", "dbt_select")
    ui_color = "#ff694b"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        runtime: GroupRuntime,
        nodes: Sequence[NodePlan] = (),
        alias: AssetAlias | None = None,
        hook: Callable[..., Any] | None = None,
        hook_kwargs: Mapping[str, Any] | None = None,
        status_asset: Asset,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retries", 1)
        kwargs.setdefault("retry_delay", timedelta(seconds=10))
        # The producer is every consumer's critical path: first in line when slots are scarce.
        kwargs.setdefault("priority_weight", 10_000)
        kwargs.setdefault("weight_rule", "absolute")
        super().__init__(inlets=[status_asset], outlets=[alias] if alias else [], **kwargs)
        self.runtime = runtime
        self.nodes = tuple(nodes)
        self.alias = alias
        self.hook = hook
        self.hook_kwargs = dict(hook_kwargs or {})
        self.dbt_vars: Any = dict(runtime.base_args.vars)
        self.dbt_full_refresh: Any = runtime.full_refresh_template or runtime.base_args.full_refresh
        self.dbt_select: str = runtime.select_template or ""

    def execute(self, context: Any) -> str:
        ti = context["ti"]
        run_id: str = context["run_id"]
        number = int(ti.try_number)
        rt = self.runtime
        store = AssetStateChannelStore(rt.status_asset_name)
        run_path = rt.run_path(ti.dag_id, run_id)
        run_path.mkdir(parents=True, exist_ok=True)
        ledger = context["task_state_store"]
        earlier: list[int] = list(ledger.get(LEDGER_BUILDS, default=None) or [])
        previous = StatusReader(run_id).read(store)
        retry = built_before(earlier, previous)
        select = self._retry_selection(context, previous, earlier, number) if retry else ()
        if select is None:
            self._finish_without_building(store, run_id, number, previous)
            results = dict(previous.results) if previous is not None else {}
        else:
            ledger.set(LEDGER_BUILDS, [*earlier, number])  # before dbt starts: a crash must know
            args = self._run_arguments(context, store, run_id, fresh=not earlier and previous is None)
            with rt.session() as (project, runner):
                attempt = Attempt(rt, project, runner, store, run_id, number, run_path, args, previous)
                plan = [node.watch.unique_id for node in self.nodes]
                narrowing = None if retry else self._narrowing(context)
                results = attempt.run(plan, select=select, narrowing=narrowing)
        self._emit_assets(context, results, number)
        self._emit_lineage(context, results, number)
        if rt.callback is not None:
            log.info("Calling the group's callback with the artifacts folder %s", run_path)
            rt.callback(run_path, context)
        return rt.share(run_path)

    def _narrowing(self, context: Any) -> dict[str, Any] | None:
        """What narrows this run's build, if anything (see :mod:`dbt_watcher.scope`)."""
        rt = self.runtime
        narrowing: dict[str, Any] = {}
        if rt.freshness_policy is not None and rt.freshness_sources_by_id:
            narrowing["freshness"] = True
        if self.dbt_select.strip():
            narrowing["select"] = self.dbt_select.strip()
        if rt.only_changed_sources:
            events = context.get("triggering_asset_events") or {}
            uris = {getattr(asset, "uri", None) for asset in events}
            if uris:
                changed = sorted({sel for uri, sel in rt.source_selectors_by_uri.items() if uri in uris})
                log.info("Triggered by asset events; building what is downstream of: %s", changed or "nothing")
                narrowing["changed_sources"] = changed
        if not narrowing:
            return None
        narrowing["selectors"] = {node.watch.unique_id: node.selector for node in self.nodes}
        return narrowing

    def _retry_selection(
        self, context: Any, previous: RunStatus | None, earlier: list[int], number: int
    ) -> tuple[str, ...] | None:
        """What a later attempt builds: () = everything again, None = nothing, else node selectors."""
        rt = self.runtime
        if not rt.retry_skip:
            log.warning("Attempt %d rebuilds the whole selection (producer_retry_skip=False).", number)
            return ()
        log.warning(
            "A dbt build already ran in this DAG run (producer attempt(s) %s); producer_retry_skip=True, so "
            "attempt %d does not build the selection again.",
            earlier or "unknown",
            number,
        )
        if rt.retry_mode != "resume" or previous is None:
            log.info("Nodes that did not succeed are left to their consumers, which rebuild them on retry.")
            return None
        states = group_task_states(context["ti"].dag_id, context["run_id"], rt.group_id)
        todo = nodes_to_resume(self.nodes, previous, states)
        if not todo:
            log.info("producer_retry='resume': every node already succeeded; nothing to run.")
            return None
        log.info("producer_retry='resume': one dbt invocation for %d nodes that did not succeed.", len(todo))
        return todo

    def _run_arguments(self, context: Any, store: AssetStateChannelStore, run_id: str, *, fresh: bool) -> RunArguments:
        if not fresh:  # later attempts reuse the arguments the first one chose
            stored = RunArguments.from_json(store.get(invocation_key(run_id)))
            if stored is not None:
                return stored
        args = RunArguments(
            vars=dict(self.dbt_vars or {}),
            full_refresh=_truthy(self.dbt_full_refresh),
            dbt_args=self.runtime.base_args.dbt_args,
        )
        if self.hook is not None:
            args = args.merged_with(call_hook(self.hook, context, self.hook_kwargs))
        store.set(invocation_key(run_id), args.to_json())
        return args

    def _finish_without_building(
        self, store: AssetStateChannelStore, run_id: str, number: int, previous: RunStatus | None
    ) -> None:
        writer = StatusWriter(store, run_id, number)
        if previous is not None:
            writer.carry_over(previous)
        error = previous.error if previous is not None and previous.state == FAILED else None
        writer.finish(FAILED if error else FINISHED, error)
        log_summary(previous.results if previous is not None else {}, 0.0, None)

    def _emit_assets(self, context: Any, results: Mapping[str, NodeResult], number: int) -> None:
        """One event per green node whose consumer ends in the triggerer — once per DAG run."""
        if self.alias is None:
            return
        ledger = context["task_state_store"]
        done = set(ledger.get(LEDGER_ASSETS, default=None) or [])
        final = RunStatus(attempt=number, state=FINISHED, heartbeat=time.time(), results=results)
        events = context["outlet_events"][self.alias]
        emitted = []
        for node in self.nodes:
            if not node.producer_emits or node.asset_uri is None or node.watch.unique_id in done:
                continue
            decision = final_decision(node.watch, final)
            if decision.action is Action.SUCCEED and decision.result is not None:
                events.add(Asset(uri=node.asset_uri), extra=decision.result.asset_extra())
                emitted.append(node.watch.unique_id)
        if emitted:
            ledger.set(LEDGER_ASSETS, sorted(done | set(emitted)))
        log.info("Emitting %d asset events for nodes whose consumers ended in the triggerer", len(emitted))

    def _emit_lineage(self, context: Any, results: Mapping[str, NodeResult], number: int) -> None:
        """OpenLineage COMPLETE events of the consumers that ended in the triggerer (if installed)."""
        final = RunStatus(attempt=number, state=FINISHED, heartbeat=time.time(), results=results)
        completions = [
            Completion(node.consumer_task_id, node.lineage)
            for node in self.nodes
            if node.ends_in_triggerer and final_decision(node.watch, final).action is Action.SUCCEED
        ]
        sent = emit_completions(context, completions)
        if sent:
            log.info("Sent %d OpenLineage events for consumers that ended in the triggerer", sent)


def _truthy(value: Any) -> bool:
    """``full_refresh`` may arrive rendered from a template: "True", "false", "1", ..."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)


def built_before(earlier: list[int], previous: RunStatus | None) -> bool:
    """Whether an earlier attempt of this run may have built nodes.

    An attempt that failed before dbt built anything (it could not connect, say) left a failed
    status with no results: running the build now is the first build, not a second one. With no
    status at all but a recorded attempt, nobody can tell what was built: assume it was.
    """
    if previous is None:
        return bool(earlier)
    return not (previous.state == FAILED and not previous.results)


def nodes_to_resume(
    nodes: Sequence[NodePlan], previous: RunStatus, consumer_states: Mapping[str, str]
) -> tuple[str, ...]:
    """dbt selectors for everything that did not succeed: failed or never-run nodes, failed tests.

    Nodes whose consumer already went green (it rebuilt the node itself), and nodes deliberately
    left out of the run, are left alone, so no node is built twice.
    """
    final = RunStatus(attempt=previous.attempt, state=FINISHED, heartbeat=time.time(), results=previous.results)
    selectors: list[str] = []
    for node in nodes:
        built = previous.results.get(node.watch.unique_id)
        if consumer_states.get(node.consumer_task_id) == "success" or (built is not None and built.excluded):
            continue
        if final_decision(node.watch, final).action is Action.SUCCEED:
            continue
        if built is not None and built.succeeded:
            selectors.extend(
                selector
                for test_id, selector in sorted(node.test_selectors.items())
                if not (previous.results.get(test_id) and previous.results[test_id].succeeded)
            )
        else:
            selectors.append(node.selector)
    return tuple(selectors)


def final_decision(watch: Watch, final: RunStatus) -> Decision:
    """What a consumer would decide from a finished run's results (producer gone for good)."""
    return decide(watch, final, try_number=1, producer_state="success", now=time.time(), stale_after=1.0)
