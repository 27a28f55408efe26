"""``test_behavior="after_all"``: one task, after every consumer, runs the selection's tests once."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from dbt_watcher.airflow_lines import AirflowException
from dbt_watcher.channel.channel import StatusChannel
from dbt_watcher.channel.store import ProducerXComs, RunAddress
from dbt_watcher.invocation.events import NodeStatus
from dbt_watcher.runtime.group_runtime import GroupRuntime

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)


class DbtTestsOperator(BaseOperator):
    """Runs ``dbt test`` for the group's selection with the run's dbt arguments."""

    ui_color = "#c8e6c9"

    def __init__(self, *, runtime: GroupRuntime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime

    def execute(self, context: Context) -> dict[str, int]:
        rt = self.runtime
        ti = context["ti"]
        address = RunAddress.of(ti, rt.producer_task_id)
        channel = StatusChannel(ProducerXComs(address))
        recorded = channel.read_for_rerun()
        if recorded is None:
            raise AirflowException(
                "The producer of this run has not started dbt (no record of the run's dbt arguments): "
                "nothing to test. Clear or retry the producer."
            )
        invocation, status = recorded
        run_path = rt.run_path(address.dag_id, address.run_id, address.map_index, status.generation)
        target_path = run_path / "tests" / f"try-{ti.try_number}"
        with rt.task_dbt(self, context, invocation, target_path) as dbt:
            command = dbt.command(
                "test",
                select=rt.selection.select,
                exclude=rt.selection.exclude,
                selector=rt.selection.selector,
                threads=rt.config.threads,
            )
            outcome, results, _events = dbt.run_collecting(command, attempt=status.attempt)
        if not outcome.ran:
            raise AirflowException(f"dbt test could not run: {outcome.error}")
        for warned in (r for r in results.values() if r.status == NodeStatus.WARN):
            log.warning("test %s warned: %s", warned.unique_id, warned.message)
        summary: dict[str, int] = {}
        for result in results.values():
            summary[result.status] = summary.get(result.status, 0) + 1
        log.info("dbt test: %s", summary)
        failed = [r for r in results.values() if not r.succeeded]
        if failed or outcome.exit_code:
            names = "; ".join(f"{r.unique_id} ({r.status}: {r.message})" for r in failed)
            raise AirflowException(
                f"dbt test exited with code {outcome.exit_code}: {len(failed)} tests did not pass: {names}"
            )
        return summary
