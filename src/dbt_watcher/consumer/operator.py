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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import Asset, BaseSensorOperator, PokeReturnValue
from airflow.triggers.base import StartTriggerArgs

from dbt_watcher import compat
from dbt_watcher.airflow_lines import AirflowException, AirflowSkipException
from dbt_watcher.channel.channel import StatusChannel
from dbt_watcher.channel.records import RunStatus
from dbt_watcher.channel.store import ProducerXComs, RunAddress
from dbt_watcher.channel.wire import FINISHED, decode_result
from dbt_watcher.consumer.poller import RunPoller
from dbt_watcher.consumer.shared_poll import stream_key
from dbt_watcher.consumer.trigger import CLASSPATH, REASON_XCOM, TIMEOUT_GRACE_SECONDS, ConsumerTrigger
from dbt_watcher.invocation.events import NodeResult, NodeStatus
from dbt_watcher.rules import build_state
from dbt_watcher.rules.artifacts import local_build_dir, read_run_results
from dbt_watcher.rules.lineage import operator_lineage
from dbt_watcher.rules.lineage_facets import RunArtifacts
from dbt_watcher.rules.links import CONSUMER_LINKS
from dbt_watcher.rules.verdict import Action, Decision, decide, final_decision
from dbt_watcher.rules.watch import ConsumerTask
from dbt_watcher.runtime.group_runtime import GroupRuntime
from dbt_watcher.runtime.task_dbt import TaskDbt, closing_selection

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
        #: The target folder of this try's own build of the node, when it built it (its facets' source).
        self._local_build: Path | None = None
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
            "gated": watch.gated,
            "upstream": list(watch.upstream),
            "producer_task_id": self.runtime.producer_task_id,
            "poke_interval": self.runtime.poke_interval,
            "timeout": self.runtime.timeout_seconds,
            "producer_resumes": watch.producer_resumes,
            "finish_on_worker": self.finish_on_worker,
            **bound,
        }

    def get_openlineage_facets_on_complete(self, task_instance: Any) -> Any:
        """This node's inputs and outputs with its facets, for the OpenLineage listener of a worker-side finish."""
        return operator_lineage(self.consumer.lineage, self._artifacts(task_instance), self.watch.unique_id)

    def _artifacts(self, ti: Any) -> RunArtifacts | None:
        """The artifacts of the build this try's verdict came from: its own, or the run's once the producer
        has ended (while it builds, the run folder holds an earlier attempt's files, or none)."""
        if self._local_build is not None:
            return RunArtifacts.read(self._local_build)
        try:
            address = RunAddress.of(ti, self.runtime.producer_task_id)
            status = self._poller.reader.last if self._poller is not None else None
            if status is None or not status.finished:
                status = StatusChannel(ProducerXComs(address)).read_all()
            if status is None or not status.finished:
                return None  # no facets for a node that ended while its build was still running
            folder = self.runtime.run_path(address.dag_id, address.run_id, address.map_index, status.generation)
        except Exception:  # lineage is best effort: the task already has its state
            log.warning("Could not locate this run's dbt artifacts for OpenLineage facets", exc_info=True)
            return None
        return RunArtifacts.read(folder)

    def _address(self, context: Context) -> RunAddress:
        ti = context["ti"]
        return RunAddress.of(ti, self.runtime.producer_task_id)

    def execute(self, context: Context) -> Any:
        # Reached only when the task did not start in the triggerer.
        if compat.runs_inline(context):
            # dag.test() runs one task at a time: waiting here would keep the producer from running.
            self.mode = "reschedule"
        elif self.deferrable:
            # Decide once before deferring: a consumer whose answer is already known (a retry that
            # starts after the producer ended, a node dbt already finished) ends now, on this worker,
            # instead of deferring and resuming at once, which meets an Airflow race
            # (RESUME_HOLD_SECONDS in dbt_watcher.consumer.trigger).
            done = self.poke(context)
            if done:
                return done.xcom_value if isinstance(done, PokeReturnValue) else None
            ti = context["ti"]
            address = self._address(context)
            trigger = ConsumerTrigger(
                **self._trigger_kwargs(
                    dag_id=address.dag_id,
                    run_id=address.run_id,
                    map_index=address.map_index,
                    try_number=ti.try_number,
                    deferred_at=time.time(),
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
        if payload.get("action") == "fail":  # where a trigger's failure is not retried (before Airflow 3.3)
            reason = str(payload.get("reason", "no reason given"))
            context["ti"].xcom_push(key=REASON_XCOM, value=reason)
            raise AirflowException(f"dbt node {self.watch.unique_id} did not succeed: {reason}")
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

    def _gates(
        self, dbt: TaskDbt, selected: frozenset[str] | None, target_path: Path
    ) -> dict[str, dict[str, str]] | None:
        """The tests this rebuild's own invocation selected for the node (None: not known, so not green)."""
        if selected is None:
            selected = closing_selection(read_run_results(target_path))
        if selected is None:
            return None
        try:  # the node itself counts as selected: a `dbt test` selects only its tests
            return dbt.gates(selected | {self.watch.unique_id}, self.runtime.consumer_positions)
        except LookupError:
            log.exception("Could not tell which tests gate %s in this rebuild", self.watch.unique_id)
            return None

    def _run_locally(self, context: Context, reason: str) -> dict[str, Any]:
        """Build this one node (or run its tests) with the run's dbt arguments, on this worker."""
        ti = context["ti"]
        rt = self.runtime
        node = self.consumer.node
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
        built = status.results.get(node.unique_id)
        # A node the producer built is never built again: its tests run, as the run's invocation selects them.
        tests_only = self.watches_tests_only or (built is not None and built.succeeded)
        what = "dbt test for the tests of" if tests_only else "dbt build for"
        log.info("Try %s: %s. Running %s %s alone.", ti.try_number, reason, what, node.unique_id)
        run_path = rt.run_path(address.dag_id, address.run_id, address.map_index, status.generation)
        target_path = self._local_build = local_build_dir(run_path, self.task_id, int(ti.try_number))
        if not tests_only and rt.config.skip_unchanged is not False:
            build_state.forget(rt.build_state_folder(address.dag_id, address.map_index), [node.unique_id])
        with rt.task_dbt(self, context, invocation, target_path) as dbt:
            command = dbt.command(
                "test" if tests_only else "build",
                select=(node.selector,),
                extra_args=() if tests_only else rt.exclude_tests,
            )
            # attempt 0 marks a consumer's own rebuild (the audit tells it from the producer's results)
            outcome, results, events = dbt.run_collecting(command, attempt=0)
            gates = self._gates(dbt, events.selected, target_path)
        if target_path.is_dir():
            rt.share(run_path, target_path)  # this try's own run_results, next to the producer's
        if not outcome.ran:
            raise AirflowException(f"dbt for {node.unique_id} could not run: {outcome.error}")
        if tests_only:  # the node itself was built earlier in this run
            earlier = built if built is not None and built.succeeded else None
            results.setdefault(
                node.unique_id,
                earlier or NodeResult(node.unique_id, NodeStatus.SUCCESS, node.resource_type, attempt=0),
            )
        local = RunStatus("local", 0, FINISHED, results, selection=gates or {}, selection_attempt=0 if gates else None)
        decision = final_decision(self.watch, local)
        if decision.action is Action.SUCCEED and decision.result is not None:
            return self._succeed(context, decision.result, decision.warnings)
        raise AirflowException(f"dbt node {node.unique_id} failed again when run alone: {decision.reason}")
