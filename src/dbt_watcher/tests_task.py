"""``test_behavior="after_all"``: one task, after every consumer, runs the selection's tests once."""

from __future__ import annotations

import logging
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from dbt_watcher.airflow_io import AssetStateChannelStore
from dbt_watcher.events import NodeResult
from dbt_watcher.run_args import RunArguments
from dbt_watcher.runtime import GroupRuntime
from dbt_watcher.status import invocation_key

log = logging.getLogger(__name__)
TESTS_TASK_ID = "dbt_tests"
_FAILED = frozenset({"fail", "error"})


class DbtTestsOperator(BaseOperator):
    """Runs ``dbt test`` for the group's selection with the run's dbt arguments."""

    ui_color = "#c8e6c9"

    def __init__(self, *, runtime: GroupRuntime, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.runtime = runtime

    def execute(self, context: Any) -> dict[str, int]:
        rt = self.runtime
        ti = context["ti"]
        stored = AssetStateChannelStore(rt.status_asset_name).get(invocation_key(context["run_id"]))
        args = RunArguments.from_json(stored) or rt.base_args
        target_path = rt.run_path(ti.dag_id, context["run_id"]) / "tests" / f"try-{ti.try_number}"
        results: dict[str, NodeResult] = {}
        with rt.session() as (project, runner):
            command = project.command(
                "test",
                select=rt.selection.select,
                exclude=rt.selection.exclude,
                selector=rt.selection.selector,
                threads=rt.threads,
                target_path=target_path,
                log_path=target_path / "logs",
                extra_args=("--no-use-colors", *args.dbt_args),
            ).with_(vars={**project.vars, **args.vars})
            outcome = runner.run(command, on_node=lambda r: results.__setitem__(r.unique_id, r))
        if not outcome.ran:
            raise AirflowException(f"dbt test could not run: {outcome.error}")
        failed = [r for r in results.values() if r.status in _FAILED]
        for warned in (r for r in results.values() if r.status == "warn"):
            log.warning("test %s warned: %s", warned.unique_id, warned.message)
        summary = {
            status: sum(1 for r in results.values() if r.status == status)
            for status in {r.status for r in results.values()}
        }
        log.info("dbt test: %s", summary)
        if failed:
            names = "; ".join(f"{r.unique_id} ({r.status}: {r.message})" for r in failed)
            raise AirflowException(f"{len(failed)} dbt tests failed: {names}")
        return summary
