"""dbt-watcher's Airflow plugin, found through the ``airflow.plugins`` entry point.

It adds:

* a listener whose ``on_starting`` runs when an Airflow job (scheduler, triggerer, dag-processor)
  starts; in a triggerer it installs :mod:`dbt_watcher.consumer.triggerer_start` and
  :mod:`dbt_watcher.consumer.triggerer_logs`;
* the UI (:mod:`dbt_watcher.ui`): a FastAPI app the api-server mounts at ``/dbt-watcher``, and a
  "dbt build" tab on every DAG run page (an external view, shown in an iframe by Airflow's UI).

Importing this module costs nothing more than Airflow's plugin base class: it runs in every Airflow
process. The FastAPI app (and FastAPI itself) is built only when a process asks for it: the api-server,
or ``airflow plugins``.
"""

from __future__ import annotations

import logging
import sys
from functools import cache
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

from dbt_watcher import airflow_lines

log = logging.getLogger(__name__)

_TRIGGERER_MODULE = "airflow.jobs.triggerer_job_runner"


class JobStartListener:
    """Installs the triggerer fast start and its log rule when the triggerer's job starts."""

    @hookimpl
    def on_starting(self, component: Any) -> None:
        # The job's type is set by its runner after this hook runs; the triggerer is the process
        # that has already imported its job runner's module (the `airflow triggerer` command does).
        if _TRIGGERER_MODULE in sys.modules:
            from dbt_watcher.consumer import triggerer_logs, triggerer_start

            triggerer_start.install()
            triggerer_logs.install()


@cache
def _fastapi_apps() -> list[dict[str, Any]]:
    if not airflow_lines.has_external_views():
        # Without external views (Airflow 3.0) a plugin page gets no browser session, so the UI could
        # not authorise a browser's request: it stays off rather than open.
        log.info(
            "dbt-watcher: the UI plugin is off on Airflow %s (it needs external views, Airflow 3.1+)",
            airflow_lines.airflow_version(),
        )
        return []
    from dbt_watcher.ui.app import create_app

    return [{"app": create_app(), "url_prefix": "/dbt-watcher", "name": "dbt-watcher"}]


#: The "dbt build" tab of every DAG run page. Airflow replaces {DAG_ID} and {RUN_ID}; a relative href
#: resolves against the UI's base URL.
_RUN_TAB = {
    "name": "dbt build",
    "href": "dbt-watcher/run?dag_id={DAG_ID}&run_id={RUN_ID}",
    "destination": "dag_run",
    "url_route": "dbt-build",
}


class DbtWatcherPlugin(AirflowPlugin):
    name = "dbt_watcher"
    listeners = [JobStartListener()]
    external_views = [_RUN_TAB] if airflow_lines.has_external_views() else []

    @property
    def fastapi_apps(self) -> list[dict[str, Any]]:  # type: ignore[override]  # read on an instance
        return _fastapi_apps()
