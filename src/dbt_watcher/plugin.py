"""dbt-watcher's Airflow plugin, found through the ``airflow.plugins`` entry point.

It adds a listener whose ``on_starting`` runs when an Airflow job (scheduler, triggerer,
dag-processor) starts; in a triggerer it installs :mod:`dbt_watcher.consumer.triggerer_start`. Importing this
module costs nothing more than Airflow's plugin base class: it runs in every Airflow process.
"""

from __future__ import annotations

import sys
from typing import Any

from airflow.listeners import hookimpl
from airflow.plugins_manager import AirflowPlugin

_TRIGGERER_MODULE = "airflow.jobs.triggerer_job_runner"


class JobStartListener:
    """Installs the triggerer fast start when the triggerer's job starts."""

    @hookimpl
    def on_starting(self, component: Any) -> None:
        # The job's type is set by its runner after this hook runs; the triggerer is the process
        # that has already imported its job runner's module (the `airflow triggerer` command does).
        if _TRIGGERER_MODULE in sys.modules:
            from dbt_watcher.consumer.triggerer_start import install

            install()


class DbtWatcherPlugin(AirflowPlugin):
    name = "dbt_watcher"
    listeners = [JobStartListener()]
