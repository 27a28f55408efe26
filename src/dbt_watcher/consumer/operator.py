"""The consumer task of one dbt node: green exactly when the node succeeded in this DAG run.

Deferrable (the default), it starts directly in the triggerer (``start_from_trigger``) and usually
ends there too: no worker process is spent on a node that the producer built. It comes to a worker
only to rebuild its node on a retry (``dbt build --select <node>``), or to finish a success that
needs a worker (an ``on_success_callback``). With ``deferrable=False`` the same decisions are taken
by a sensor that polls from a worker slot. Under ``dag.test()``, where tasks run one at a time, it
reschedules itself instead of waiting, so the producer gets its turn.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseSensorOperator, PokeReturnValue
from airflow.sdk.exceptions import AirflowException, AirflowSkipException
from airflow.triggers.base import StartTriggerArgs

from dbt_watcher import compat
from dbt_watcher.channel.channel import FINISHED, RunStatus, StatusChannel, decode_result
from dbt_watcher.channel.store import ProducerXComs, RunAddress
from dbt_watcher.consumer.decision import Action, Decision, decide, final_decision
from dbt_watcher.consumer.poller import RunPoller
from dbt_watcher.consumer.trigger import (
    CLASSPATH,
    REASON_XCOM,
    TIMEOUT_GRACE_SECONDS,
    ConsumerTrigger,
    stream_key,
)
from dbt_watcher.invocation.events import InvocationEvents, NodeResult, NodeStatus
from dbt_watcher.lineage import operator_lineage
from dbt_watcher.plan.group_plan import ConsumerTask
from dbt_watcher.plan.runtime import GroupRuntime
from dbt_watcher.producer.artifacts import local_build_dir
from dbt_watcher.ui.links import CONSUMER_LINKS

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


class DbtConsumerOperator(BaseSensorOperator):
    """Watches one dbt node of the group's producer build."""

    ui_color = "#fbe9e7"
    # The node's page, its dbt docs and the run's timeline (dbt_watcher.ui); Airflow keeps the URLs
    # in XComs, which a consumer ending in the triggerer writes itself (ConsumerTrigger._end_xcoms).
    operator_extra_links = CONSUMER_LINKS

    def __init__(
        self,
        *,
        runtime: GroupRuntime,
        consumer: ConsumerTask,
        asset: Asset | None,
        deferrable: bool = True,
        watches_tests_only: bool = False,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("poke_interval", runtime.poke_interval)
        # Our own timeout check fails first, with a message; the sensor's is only a backstop.
        kwargs.setdefault("timeout", runtime.timeout_seconds + TIMEOUT_GRACE_SECONDS)
        kwargs.setdefault("mode", "poke")
        super().__init__(outlets=[asset] if asset is not None else [], **kwargs)
        self.runtime = runtime
        self.consumer = consumer
        self.asset = asset
        self.deferrable = deferrable
        self.watches_tests_only = watches_tests_only
        self._poller: RunPoller | None = None
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

    @property
    def watch(self) -> Any:
        return self.consumer.watch

    def _trigger_kwargs(self, **bound: Any) -> dict[str, Any]:
        watch = self.consumer.watch
        return {
            "node": watch.unique_id,
            "group_id": self.runtime.group_id,
            "tests": list(watch.tests),
            "upstream": list(watch.upstream),
            "producer_task_id": self.runtime.producer_task_id,
            "poke_interval": self.runtime.poke_interval,
            "timeout": self.runtime.timeout_seconds,
            "producer_resumes": watch.producer_resumes,
            "finish_on_worker": self.finish_on_worker,
            **bound,
        }

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """This node's inputs and outputs, for the OpenLineage listener of a worker-side finish."""
        return operator_lineage(self.consumer.lineage)

    def _address(self, context: Context) -> RunAddress:
        ti = context["ti"]
        return RunAddress.of(ti, self.runtime.producer_task_id)

    def execute(self, context: Context) -> Any:
        # Reached only when the task did not start in the triggerer.
        if compat.runs_inline(context):
            # dag.test() runs one task at a time: waiting here would keep the producer from running.
            self.mode = "reschedule"
        elif self.deferrable:
            ti = context["ti"]
            address = self._address(context)
            trigger = ConsumerTrigger(
                **self._trigger_kwargs(
                    dag_id=address.dag_id, run_id=address.run_id, map_index=address.map_index, try_number=ti.try_number
                )
            )
            self.defer(
                trigger=trigger,
                method_name="resume",
                timeout=timedelta(seconds=self.runtime.timeout_seconds + TIMEOUT_GRACE_SECONDS),
            )
        return super().execute(context)

    def poke(self, context: Context) -> bool | PokeReturnValue:
        ti = context["ti"]
        address = self._address(context)
        if self._poller is None or self._poller.address != address:
            self._poller = RunPoller(stream_key(address), address, self.runtime.poke_interval)
        decision = decide(self.watch, self._poller.poll_sync().view, try_number=int(ti.try_number))
        if decision.needs_task_states:
            self._poller.demand.ask([*self.watch.upstream, address.producer_task_id], time.time() + 1.0)
            decision = decide(self.watch, self._poller.poll_sync().view, try_number=int(ti.try_number))
        if decision.action is Action.WAIT:
            if ti.start_date is not None and time.time() - ti.start_date.timestamp() > self.runtime.timeout_seconds:
                timed_out = f"timed out after {self.runtime.timeout_seconds:.0f} s while {decision.reason}"
                ti.xcom_push(key=REASON_XCOM, value=timed_out)
                raise AirflowException(f"{timed_out.capitalize()}; the producer keeps running, this consumer fails.")
            return False
        if decision.action is Action.SKIP:
            ti.xcom_push(key=REASON_XCOM, value=decision.reason)
            raise AirflowSkipException(decision.reason)
        return PokeReturnValue(True, self._conclude(context, decision))

    def resume(self, context: Context, event: Any = None) -> Any:
        """Called on a worker when the trigger needs one: to build the node, or to finish a success."""
        payload = event if isinstance(event, dict) else {}
        if payload.get("action") == "succeed":
            return self._succeed(context, decode_result(payload["result"]), ())
        if payload.get("action") == "run_locally":
            return self._run_locally(context, str(payload.get("reason", "")))
        raise AirflowException(f"dbt-watcher consumer resumed with an unexpected event: {event!r}")

    def _conclude(self, context: Context, decision: Decision) -> Any:
        if decision.action is Action.SUCCEED and decision.result is not None:
            return self._succeed(context, decision.result, decision.warnings)
        if decision.action is Action.RUN_LOCALLY:
            return self._run_locally(context, decision.reason)
        context["ti"].xcom_push(key=REASON_XCOM, value=decision.reason)
        raise AirflowException(f"dbt node {self.watch.unique_id} did not succeed: {decision.reason}")

    def _succeed(self, context: Context, result: NodeResult, warnings: tuple[str, ...]) -> dict[str, Any]:
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

    def _run_locally(self, context: Context, reason: str) -> dict[str, Any]:
        """Build this one node (or run its tests) with the run's dbt arguments, on this worker."""
        ti = context["ti"]
        rt = self.runtime
        node = self.consumer.spec.node
        address = self._address(context)
        channel = StatusChannel(ProducerXComs(address))
        recorded = channel.read_for_rerun()
        if recorded is None:
            raise AirflowException(
                f"Try {ti.try_number}: {reason}. There is no record of the run's dbt arguments (the producer never "
                "started dbt in this run, or the record was deleted), so this consumer does not build its node "
                "alone with guessed arguments. Clear or retry the producer: it builds what is needed."
            )
        invocation, status = recorded
        what = "dbt test for the tests of" if self.watches_tests_only else "dbt build for"
        log.info("Try %s: %s. Running %s %s alone.", ti.try_number, reason, what, node.unique_id)
        run_path = rt.run_path(address.dag_id, address.run_id, address.map_index, status.generation)
        target_path = local_build_dir(run_path, self.task_id, int(ti.try_number))
        results: dict[str, NodeResult] = {}
        with rt.session(env=rt.rendered_env(self, context)) as (project, runner):
            command = project.command(
                "test" if self.watches_tests_only else "build",
                select=(node.selector,),
                target_path=target_path,
                log_path=target_path / "logs",
                extra_args=(
                    "--no-use-colors",
                    *(() if self.watches_tests_only else rt.exclude_tests),
                    *invocation.dbt_args,
                ),
            ).with_(vars=dict(invocation.vars), full_refresh=invocation.full_refresh)
            # attempt 0 marks a consumer's own rebuild (the audit tells it from the producer's results)
            events = InvocationEvents(on_node=lambda r: results.__setitem__(r.unique_id, r.with_attempt(0)))
            outcome = runner.run(command, on_event=events)
        if target_path.is_dir():
            rt.share(run_path, target_path)  # this try's own run_results, next to the producer's
        if not outcome.ran:
            raise AirflowException(f"dbt for {node.unique_id} could not run: {outcome.error}")
        if self.watches_tests_only:  # the model itself was built earlier in this run
            results.setdefault(
                node.unique_id, NodeResult(node.unique_id, NodeStatus.SUCCESS, node.resource_type, attempt=0)
            )
        decision = final_decision(self.watch, RunStatus("local", 0, FINISHED, results))
        if decision.action is Action.SUCCEED and decision.result is not None:
            return self._succeed(context, decision.result, decision.warnings)
        raise AirflowException(f"dbt node {node.unique_id} failed again when run alone: {decision.reason}")
