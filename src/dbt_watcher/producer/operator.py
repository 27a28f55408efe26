"""The producer task: one ``dbt build`` for the whole selection, every node result published live.

Its Airflow state is dbt's verdict on the run's build: green when the run's dbt invocation exited 0,
red with dbt's summary otherwise — a failed model or test, a failed project hook (``on-run-start``,
``on-run-end``), or dbt not running at all. Each model's own verdict is its consumer's.

A later attempt in the same DAG run (a retry or a clear of the producer) never repeats the build
silently; what it does depends on the run's ledger (:mod:`dbt_watcher.producer.ledger`):

* no attempt of this run started dbt (it died while parsing, say): it builds, as a first attempt;
* ``producer_retry="skip"`` (default): it publishes what earlier attempts published and ends with
  their verdict; consumers rebuild their own nodes on their retries;
* ``producer_retry="resume"``: one dbt invocation for the nodes that failed or never ran — dbt's
  ``retry`` idea, driven by the channel, so it also works after a crash that left no run_results.json;
* ``producer_retry_skip=False``: it builds the whole selection again.

A clear of the whole group (a DAG-run clear, a backfill that reprocesses the run) starts a new
*generation*: a fresh build, whose status no consumer confuses with the earlier one's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk import AssetAlias, BaseOperator

from dbt_watcher import airflow_lines, compat
from dbt_watcher.airflow_lines import AirflowException, AirflowFailException
from dbt_watcher.channel.channel import StatusChannel
from dbt_watcher.channel.liveness import heartbeat_interval
from dbt_watcher.channel.records import ConsumerEntry, Invocation, RunStatus, TaskMap
from dbt_watcher.channel.store import Mirrored, ProducerXComs, RunAddress, private_store
from dbt_watcher.channel.wire import FINISHED, TASKS, Store
from dbt_watcher.channel.writer import ChannelWriter
from dbt_watcher.modes import ProducerRetry
from dbt_watcher.producer.attempt import Attempt, finish_quietly, log_summary
from dbt_watcher.producer.closing import recover_attempt
from dbt_watcher.producer.ledger import Ledger, LedgerBook
from dbt_watcher.producer.narrowing import Narrowing
from dbt_watcher.producer.resume import nodes_to_resume
from dbt_watcher.producer.run_args import call_hook, merge_returned
from dbt_watcher.producer.selection import recorded_selection
from dbt_watcher.producer.stall import watch_consumers
from dbt_watcher.producer.unchanged import keeper_for
from dbt_watcher.rules.artifacts import attempt_dir
from dbt_watcher.rules.emission import EMITTED, add_events, emitted_record, pending_events, recorded
from dbt_watcher.rules.lineage import Completion, emit_completions
from dbt_watcher.rules.verdict import Action, final_decision
from dbt_watcher.rules.watch import ConsumerTask
from dbt_watcher.runtime.group_runtime import GroupRuntime
from dbt_watcher.task_states import ENDED, TaskState

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

#: Seconds the producer waits, after its last result, for the consumers to end before it reports them.
STALL_WINDOW = 120.0


class DbtProducerOperator(BaseOperator):
    """Runs ``dbt build`` once for the group and publishes each node's result as it finishes."""

    # Rendered by Airflow before execute: a run can be re-targeted from the trigger form.
    template_fields = ("dbt_vars", "dbt_full_refresh", "dbt_select", "dbt_skip_unchanged")
    ui_color = "#ff694b"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        runtime: GroupRuntime,
        consumers: Sequence[ConsumerTask] = (),
        alias: AssetAlias | None = None,
        hook: Callable[..., Any] | None = None,
        hook_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # A retry that skips or resumes needs the Task State Store (Airflow 3.3): without it, none by default.
        kwargs.setdefault("retries", 1 if airflow_lines.has_task_state_store() else 0)
        kwargs.setdefault("retry_delay", timedelta(seconds=10))
        # The producer is every consumer's critical path: first in line when slots are scarce.
        kwargs.setdefault("priority_weight", 10_000)
        kwargs.setdefault("weight_rule", "absolute")
        super().__init__(outlets=[alias] if alias else [], **kwargs)
        self.runtime = runtime
        self.consumers = tuple(consumers)
        self.alias = alias
        self.hook = hook
        self.hook_kwargs = dict(hook_kwargs or {})
        cfg = runtime.config
        self.dbt_vars: Any = dict(cfg.vars or {})
        self.dbt_full_refresh: Any = cfg.full_refresh
        self.dbt_select: str = cfg.select_template or ""
        self.dbt_skip_unchanged: Any = cfg.skip_unchanged

    def execute(self, context: Context) -> str:
        ti = context["ti"]
        rt = self.runtime
        number = int(ti.try_number)
        address = RunAddress.of(ti, ti.task_id)
        mirror = private_store(context, rt.config.status_retention)
        book = LedgerBook(mirror)
        ledger = self._generation(address, book, int(getattr(context["dag_run"], "clear_number", 0) or 0))
        previous = StatusChannel(mirror).read_all() if ledger.attempts else None
        if previous is not None and previous.generation != ledger.generation:
            previous = None
        channel = StatusChannel(Mirrored(ProducerXComs(address), mirror))
        run_path = rt.run_path(address.dag_id, address.run_id, address.map_index, ledger.generation)
        run_path.mkdir(parents=True, exist_ok=True)
        ledger, previous = self._recover(book, ledger, previous, run_path)
        # First thing: this try's channel, with what earlier attempts published (this try's XComs start
        # empty) and a heartbeat, so consumers see a live producer while it prepares and parses.
        writer = self._writer(channel, mirror, ledger, previous, number)
        ProducerXComs(address).set(TASKS, self._task_map())  # for the UI plugin (dbt_watcher.ui)
        if self.alias is not None and ledger.assets_emitted:  # for the audit (consumer/emission.py)
            ProducerXComs(address).set(EMITTED, emitted_record(ledger.generation, ledger.assets_emitted))
        try:
            select = self._retry_selection(address, ledger, previous, number)
            keeper = keeper_for(
                rt,
                address,
                self.consumers,
                context,
                skip=_truthy(self.dbt_skip_unchanged),
                ledger=ledger,
                builds=select is not None,
            )
            if select is None:
                self._finish_without_building(writer, ledger, previous)
                results = dict(previous.results) if previous is not None else {}
            else:
                invocation = self._invocation(context, mirror, run_path, reuse=ledger.built)
                with rt.task_dbt(self, context, invocation, attempt_dir(run_path, number)) as dbt:
                    attempt = Attempt(rt, dbt, channel, book, ledger, number, run_path, previous, writer)
                    outcome = attempt.run(
                        [c.watch.unique_id for c in self.consumers],
                        select=select,
                        narrowing=self._narrowing(context) if not ledger.built else None,
                        selectors={c.watch.unique_id: c.selector for c in self.consumers},
                        unchanged=keeper,
                    )
                ledger, results = outcome.ledger, dict(outcome.results)
        except BaseException as exc:
            # Anything before or around dbt (the hook, a connection, dbt itself): tell consumers now.
            finish_quietly(writer, f"the producer stopped: {type(exc).__name__}: {exc}")
            raise
        status = RunStatus(
            ledger.generation,
            number,
            FINISHED,
            results,
            selection=writer.selection,
            selection_attempt=writer.selection_attempt,
        )
        if keeper is not None:  # only for a first build, which builds
            keeper.record(status)
        problem = self._problem(address, ledger, status, built_now=select is not None)
        if problem is not None and self.alias is not None:  # Airflow drops the asset events of a failed task
            log.info(
                "This try ends red, so it emits no asset events: %s",
                "the audit emits those of the nodes that succeeded once the producer has ended for good"
                if rt.config.audit
                else "the nodes that succeeded get theirs from a later green try (audit=False)",
            )
        self._report(context, status, run_path)
        # Only after a build (it is what they wait for), and not under dag.test(): there the consumers
        # run one at a time after this task, so none can end while it watches.
        if rt.config.deferrable and select is not None and not compat.runs_inline(context):
            watch_consumers(self.consumers, status, lambda: self._states(address), window=STALL_WINDOW)
        shared = rt.share(run_path)  # also when dbt failed: that is when people read run_results.json
        if problem is not None:
            message = f"The dbt build of this run is not green: {problem}"
            if ProducerRetry(rt.config.producer_retry) is ProducerRetry.RESUME:
                raise AirflowException(message)  # a retry resumes: it builds what did not succeed
            raise AirflowFailException(message)  # a retry would build nothing: no point in one
        # Last: a try that fails after recording its events would lose them (Airflow drops a failed
        # try's events) while its retry took them for emitted.
        self._emit_assets(context, book, ledger, status, address)
        return shared

    # ------------------------------------------------------------------ what this attempt does
    def _generation(self, address: RunAddress, book: LedgerBook, clear_number: int) -> Ledger:
        """The run's ledger: fresh on a first attempt, and when the whole group was cleared."""
        ledger = book.load()
        if ledger is None:
            return book.save(Ledger.fresh(clear_number))
        if ledger.clear_number == clear_number:
            return ledger
        states = self._states(address)
        if not any(states.get(c.task_id) in ENDED for c in self.consumers):
            log.info("Every task of the group was cleared (DAG-run clear or backfill): a new build of this run")
            return book.save(Ledger.fresh(clear_number))
        return book.save(replace(ledger, clear_number=clear_number))

    def _recover(
        self, book: LedgerBook, ledger: Ledger, previous: RunStatus | None, run_path: Path
    ) -> tuple[Ledger, RunStatus | None]:
        """dbt's own record of earlier attempts that died before they published their end.

        An attempt killed after dbt wrote its run_results.json (a worker lost, Airflow terminating the
        task while the api-server was unreachable) leaves dbt's final word on disk: it is evidence of
        this run like any other, so it is published rather than rebuilt.
        """
        for record in ledger.attempts:
            if not record.dbt_started or record.exit_code is not None:
                continue
            recovered = recover_attempt(attempt_dir(run_path, record.number), record.number)
            if recovered is None:
                continue
            results, exit_code, problem = recovered
            log.warning(
                "Attempt %d ended without publishing; its run_results.json says dbt exited %d", record.number, exit_code
            )
            merged = {**(previous.results if previous is not None else {}), **results}
            previous = previous or RunStatus(ledger.generation, record.number, FINISHED)
            previous = replace(previous, results=merged)
            selected = recorded_selection(attempt_dir(run_path, record.number), self.runtime.consumer_positions)
            if selected is not None:
                selection = {**previous.selection, **selected}
                previous = replace(previous, selection=selection, selection_attempt=record.number)
            ledger = book.save(ledger.record(replace(record, exit_code=exit_code, problem=problem)))
        return ledger, previous

    def _retry_selection(
        self, address: RunAddress, ledger: Ledger, previous: RunStatus | None, number: int
    ) -> tuple[str, ...] | None:
        """What this attempt builds: () = the selection, None = nothing, else node selectors."""
        cfg = self.runtime.config
        if not ledger.built:
            if ledger.attempts:
                log.info("No earlier attempt of this run started dbt: attempt %d builds the selection.", number)
            return ()
        if cfg.retry_mode is ProducerRetry.REBUILD:
            log.warning("Attempt %d builds the whole selection again (producer_retry_skip=False).", number)
            return ()
        log.warning(
            "dbt already built in this DAG run (attempts %s); attempt %d does not build the selection again.",
            [a.number for a in ledger.attempts if a.dbt_started],
            number,
        )
        if cfg.retry_mode is not ProducerRetry.RESUME or previous is None:
            log.info("Nodes that did not succeed are left to their consumers, which rebuild them on retry.")
            return None
        todo = nodes_to_resume(self.consumers, previous, self._states(address))
        if not todo:
            log.info("producer_retry='resume': every node already succeeded; nothing to run.")
            return None
        log.info("producer_retry='resume': one dbt invocation for %d nodes that did not succeed.", len(todo))
        return todo

    def _invocation(self, context: Context, mirror: Store, run_path: Any, *, reuse: bool) -> Invocation:
        """The run's dbt arguments: the first build's again once dbt built in this run, else decided now."""
        if reuse:
            stored = StatusChannel(mirror).read_invocation()
            if stored is not None:
                return stored.mask_secrets()
        invocation = replace(
            self.runtime.base_invocation,
            vars=dict(self.dbt_vars or {}),
            full_refresh=_truthy(self.dbt_full_refresh),
            artifacts=self.runtime.location(run_path),
        )
        if self.hook is not None:
            invocation = merge_returned(invocation, call_hook(self.hook, context, self.hook_kwargs))
        return invocation.mask_secrets()  # vars may carry secrets: dbt's own log lines included

    def _task_map(self) -> dict[str, Any]:
        """Which consumer task watches which node: the UI plugin's key from dbt's nodes to tasks."""
        entries = {c.task_id: ConsumerEntry(c.watch.unique_id, c.watch.gated, c.asset_uri) for c in self.consumers}
        return TaskMap(self.runtime.group_id, entries).to_json()

    def _narrowing(self, context: Context) -> Narrowing:
        """What narrows this run's build (see :mod:`dbt_watcher.producer.narrowing`)."""
        rt = self.runtime
        changed = None
        in_events = rt.sources_in_events(context) if rt.config.only_changed_sources else None
        if in_events is not None:
            changed = tuple(sorted(set(in_events.values())))
            log.info("Triggered by asset events; building what is downstream of: %s", changed or "nothing")
        return Narrowing(
            freshness=rt.freshness_policy is not None and bool(rt.freshness_sources_by_id),
            select=self.dbt_select.strip() or None,
            changed_sources=changed,
        )

    def _writer(
        self, channel: StatusChannel, mirror: Store, ledger: Ledger, previous: RunStatus | None, number: int
    ) -> ChannelWriter:
        """This try's channel writer, started, carrying what earlier attempts of the generation published."""
        stored = StatusChannel(mirror).read_invocation()
        if stored is not None and ledger.built:
            channel.write_invocation(stored)
        writer = channel.writer(
            generation=ledger.generation,
            attempt=number,
            heartbeat_interval=heartbeat_interval(self.runtime.poke_interval),
            built=ledger.built,
            final_only=previous.final_only if previous is not None else False,
        )
        if previous is not None:
            writer.carry_over(previous)
        writer.start()
        return writer

    def _finish_without_building(self, writer: ChannelWriter, ledger: Ledger, previous: RunStatus | None) -> None:
        last = ledger.last_ended
        writer.finish(FINISHED, previous.error if previous is not None else None, last.exit_code if last else None)
        log_summary(previous.results if previous is not None else {}, 0.0, None)

    def _problem(self, address: RunAddress, ledger: Ledger, status: RunStatus, *, built_now: bool) -> str | None:
        """Why this try is red (None: green). Green when the run's build ended with dbt exiting 0.

        An attempt that built nothing (a retry or clear in skip mode) is also green once every node of
        the group succeeded in this run, dbt's own or rebuilt by its consumer: clearing the producer
        after the failed nodes were fixed turns the run green without building again.
        """
        last = ledger.last_ended
        if last is not None and last.exit_code == 0:
            return None
        if not built_now and ledger.built and self._every_node_green(address, status):
            log.info("Every node of the group succeeded in this run (some rebuilt by their consumers).")
            return None
        return last.problem if last is not None else "the dbt build of this run did not finish"

    def _states(self, address: RunAddress) -> dict[str, str]:
        # By task id: asking by group makes the API server load the whole serialized DAG for each call.
        return compat.task_states(
            address.dag_id, address.run_id, task_ids=[c.task_id for c in self.consumers], map_index=address.map_index
        )

    def _every_node_green(self, address: RunAddress, status: RunStatus) -> bool:
        states = self._states(address)
        return all(
            states.get(c.task_id) == TaskState.SUCCESS or final_decision(c.watch, status).action is Action.SUCCEED
            for c in self.consumers
        )

    # ------------------------------------------------------------------ what the group emits
    def _emit_assets(
        self, context: Context, book: LedgerBook, ledger: Ledger, status: RunStatus, address: RunAddress
    ) -> Ledger:
        """One event per green node whose consumer ends in the triggerer, once per generation
        (:mod:`dbt_watcher.rules.emission`); called only for a try that ends green."""
        if self.alias is None:
            return ledger
        if compat.runs_inline(context):
            # dag.test() runs every consumer after this task, on a worker, where each emits its own event.
            log.info("Under dag.test() each consumer ends on a worker and emits its own asset event")
            return ledger
        emitted = ledger.assets_emitted
        # The audit emits only after a red try of this generation ended; on a first try there is none to
        # read (and a missing XCom is logged by Airflow as an error in this task's log).
        if self.runtime.config.audit and any(a.number != status.attempt for a in ledger.attempts):
            by_audit = compat.xcom_get(
                address.dag_id, address.run_id, self.runtime.audit_task_id, address.map_index, key=EMITTED
            )
            emitted = emitted | recorded(by_audit, ledger.generation)
        events = pending_events(self.consumers, status, emitted)
        add_events(context["outlet_events"], self.alias, events)
        log.info("Emitting %d asset events for nodes whose consumers ended in the triggerer", len(events))
        if not events:
            return ledger
        ledger = book.save(replace(ledger, assets_emitted=ledger.assets_emitted | {e.unique_id for e in events}))
        ProducerXComs(address).set(EMITTED, emitted_record(ledger.generation, ledger.assets_emitted))
        return ledger

    def _report(self, context: Context, status: RunStatus, run_path: Path) -> None:
        """OpenLineage COMPLETE events of the consumers that ended in the triggerer (if installed), with
        their nodes' facets from the run's artifacts; then the group's callback."""
        # Under dag.test() every consumer ends on a worker: the provider's listener reports it.
        if not compat.runs_inline(context):
            completions = [
                Completion(c.task_id, c.lineage, c.watch.unique_id)
                for c in self.consumers
                if c.ends_in_triggerer and final_decision(c.watch, status).action is Action.SUCCEED
            ]
            if sent := emit_completions(context, completions, run_path):
                log.info("Sent %d OpenLineage events for consumers that ended in the triggerer", sent)
        if self.runtime.config.callback is not None:
            log.info("Calling the group's callback with the artifacts folder %s", run_path)
            self.runtime.config.callback(run_path, context)


def _truthy(value: Any) -> bool:
    """``full_refresh`` may arrive rendered from a template: "True", "false", "1", ..."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return bool(value)
