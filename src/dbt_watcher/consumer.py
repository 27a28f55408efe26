"""The consumer task of one dbt node: green exactly when the node succeeded in this DAG run.

Deferrable (the default), it starts directly in the triggerer (``start_from_trigger``) and usually
ends there too: no worker process is spent on a node that the producer built. It comes to a
worker only to rebuild its node on a retry (``dbt build --select <node>``), or to finish a success
that needs a worker (an ``on_success_callback``). With ``deferrable=False`` the same decisions are
taken by a sensor that polls from a worker slot.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

from airflow.sdk import Asset, BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowSkipException
from airflow.triggers.base import StartTriggerArgs

from dbt_watcher.airflow_io import AssetStateChannelStore, group_task_states
from dbt_watcher.artifacts import local_build_dir
from dbt_watcher.decision import Action, Decision, Watch, decide, needs_producer_state
from dbt_watcher.events import NodeResult
from dbt_watcher.lineage import NodeLineage, operator_lineage
from dbt_watcher.plan import ConsumerSpec
from dbt_watcher.run_args import RunArguments
from dbt_watcher.runtime import GroupRuntime
from dbt_watcher.status import FINISHED, RunStatus, StatusReader, decode_result, invocation_key
from dbt_watcher.trigger import CLASSPATH, TIMEOUT_GRACE_SECONDS, ConsumerTrigger

log = logging.getLogger(__name__)


class DbtConsumerOperator(BaseSensorOperator):
    """Watches one dbt node of the group's producer build."""

    ui_color = "#fbe9e7"

    def __init__(
        self,
        *,
        runtime: GroupRuntime,
        spec: ConsumerSpec,
        asset: Asset | None,
        deferrable: bool = True,
        upstream_task_ids: tuple[str, ...] = (),
        producer_resumes: bool = False,
        watches_tests_only: bool = False,
        lineage: NodeLineage | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", runtime.poke_interval)
        # Our own timeout check fails first, with a message; the sensor's is only a backstop.
        kwargs.setdefault("timeout", runtime.timeout_seconds + TIMEOUT_GRACE_SECONDS)
        kwargs.setdefault("mode", "poke")
        super().__init__(outlets=[asset] if asset is not None else [], **kwargs)
        self.runtime = runtime
        self.spec = spec
        self.asset = asset
        self.deferrable = deferrable
        # A model's consumer gates on its tests when they run in the build ("build"); with
        # "after_each" a second consumer of the same node watches only the tests.
        tests = spec.tests if (runtime.test_behavior == "build" or watches_tests_only) else ()
        self.watches_tests_only = watches_tests_only
        self.lineage = lineage or NodeLineage()
        self.watch = Watch(spec.node.unique_id, tests, tuple(upstream_task_ids), producer_resumes)
        # A success that must run Airflow code on a worker cannot end in the triggerer.
        self.finish_on_worker = bool(self.on_success_callback)
        if deferrable:
            self.start_from_trigger = True
            self.start_trigger_args = StartTriggerArgs(
                trigger_cls=CLASSPATH,
                trigger_kwargs=self._trigger_kwargs(),
                next_method="resume",
                timeout=timedelta(seconds=runtime.timeout_seconds + TIMEOUT_GRACE_SECONDS),
            )

    def _trigger_kwargs(self, **bound: Any) -> dict[str, Any]:
        return {
            "node": self.spec.node.unique_id,
            "group_id": self.runtime.group_id,
            "tests": list(self.watch.tests),
            "upstream": list(self.watch.upstream),
            "status_asset": self.runtime.status_asset_name,
            "producer_task_id": self.runtime.producer_task_id,
            "poke_interval": self.runtime.poke_interval,
            "timeout": self.runtime.timeout_seconds,
            "producer_resumes": self.watch.producer_resumes,
            "finish_on_worker": self.finish_on_worker,
            **bound,
        }

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """This node's inputs and outputs, for the OpenLineage listener of a worker-side finish."""
        return operator_lineage(self.lineage)

    def execute(self, context: Any) -> Any:
        if self.deferrable:
            # Reached only when the task did not start in the triggerer (e.g. dag.test()).
            ti = context["ti"]
            trigger = ConsumerTrigger(
                **self._trigger_kwargs(dag_id=ti.dag_id, run_id=context["run_id"], try_number=ti.try_number)
            )
            self.defer(
                trigger=trigger,
                method_name="resume",
                timeout=timedelta(seconds=self.runtime.timeout_seconds + TIMEOUT_GRACE_SECONDS),
            )
        return super().execute(context)

    def poke(self, context: Any) -> bool | PokeReturnValue:
        ti = context["ti"]
        run_id = context["run_id"]
        status = StatusReader(run_id).read(AssetStateChannelStore(self.runtime.status_asset_name))
        now = time.time()
        states: dict[str, str] | None = None
        if needs_producer_state(status, now, self.runtime.stale_after):
            states = group_task_states(ti.dag_id, run_id, self.runtime.group_id)
        decision = self._decide(ti, status, now, states)
        if decision.needs_task_states and states is None:
            states = group_task_states(ti.dag_id, run_id, self.runtime.group_id)
            decision = self._decide(ti, status, now, states)
        if decision.action is Action.WAIT:
            if ti.start_date is not None and now - ti.start_date.timestamp() > self.runtime.timeout_seconds:
                raise AirflowException(
                    f"Timed out after {self.runtime.timeout_seconds:.0f} s while {decision.reason}; "
                    "the producer keeps running, this consumer fails."
                )
            return False
        if decision.action is Action.SKIP:
            raise AirflowSkipException(decision.reason)
        return PokeReturnValue(True, self._conclude(context, decision))

    def _decide(self, ti: Any, status: RunStatus | None, now: float, states: dict[str, str] | None) -> Decision:
        producer_state = states.get(self.runtime.producer_task_id, "none") if states is not None else None
        return decide(
            self.watch,
            status,
            try_number=int(ti.try_number),
            producer_state=producer_state,
            now=now,
            stale_after=self.runtime.stale_after,
            task_states=states,
        )

    def resume(self, context: Any, event: Any = None) -> Any:
        """Called on a worker when the trigger needs one: to build the node, or to finish a success."""
        payload = event if isinstance(event, dict) else {}
        if payload.get("action") == "succeed":
            return self._succeed(context, decode_result(payload["result"]), ())
        if payload.get("action") == "run_locally":
            return self._run_locally(context, str(payload.get("reason", "")))
        raise AirflowException(f"dbt-watcher consumer resumed with an unexpected event: {event!r}")

    def _conclude(self, context: Any, decision: Decision) -> Any:
        if decision.action is Action.SUCCEED and decision.result is not None:
            return self._succeed(context, decision.result, decision.warnings)
        if decision.action is Action.RUN_LOCALLY:
            return self._run_locally(context, decision.reason)
        raise AirflowException(f"dbt node {self.spec.node.unique_id} did not succeed: {decision.reason}")

    def _succeed(self, context: Any, result: NodeResult, warnings: tuple[str, ...]) -> dict[str, Any]:
        for warning in warnings:
            log.warning("%s", warning)
        log.info(
            "dbt node %s: %s in %ss (rows affected: %s)",
            result.unique_id,
            result.status,
            result.execution_time,
            result.rows_affected,
        )
        if self.asset is not None:
            context["outlet_events"][self.asset].extra = result.asset_extra()
        context["ti"].xcom_push(key="dbt_result", value=result.to_dict())
        return result.to_dict()

    def _run_locally(self, context: Any, reason: str) -> dict[str, Any]:
        """Build this one node (or run its tests) with the run's dbt arguments, on this worker."""
        ti = context["ti"]
        rt = self.runtime
        node = self.spec.node
        what = "dbt test for the tests of" if self.watches_tests_only else "dbt build for"
        log.info("Try %s: %s. Running %s %s alone.", ti.try_number, reason, what, node.unique_id)
        store = AssetStateChannelStore(rt.status_asset_name)
        args = RunArguments.from_json(store.get(invocation_key(context["run_id"]))) or rt.base_args
        run_path = rt.run_path(ti.dag_id, context["run_id"])
        target_path = local_build_dir(run_path, self.task_id, int(ti.try_number))
        results: dict[str, NodeResult] = {}
        with rt.session() as (project, runner):
            command = project.command(
                "test" if self.watches_tests_only else "build",
                select=(node.selector,),
                target_path=target_path,
                log_path=target_path / "logs",
                extra_args=("--no-use-colors", *(() if self.watches_tests_only else rt.exclude_tests), *args.dbt_args),
            ).with_(vars={**project.vars, **args.vars}, full_refresh=args.full_refresh)
            outcome = runner.run(command, on_node=lambda r: results.__setitem__(r.unique_id, r))
        if target_path.is_dir():
            rt.share(run_path, target_path)  # this try's own run_results, next to the producer's
        if not outcome.ran:
            raise AirflowException(f"dbt for {node.unique_id} could not run: {outcome.error}")
        if self.watches_tests_only:  # the model itself was built earlier in this run
            results.setdefault(node.unique_id, NodeResult(node.unique_id, "success", node.resource_type))
        local = RunStatus(attempt=0, state=FINISHED, heartbeat=time.time(), results=results)
        decision = decide(self.watch, local, try_number=1, producer_state="success", now=time.time(), stale_after=1.0)
        if decision.action is Action.SUCCEED and decision.result is not None:
            return self._succeed(context, decision.result, decision.warnings)
        raise AirflowException(f"dbt node {node.unique_id} failed again when run alone: {decision.reason}")
