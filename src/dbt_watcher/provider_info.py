"""dbt-watcher as an Airflow provider: what ``airflow providers list`` and the UI's Providers page show.

Airflow finds this through the ``apache_airflow_provider`` entry point and calls
:func:`get_provider_info` in every process that lists providers. This module imports nothing, and the
package's ``__init__`` imports nothing at module level either: a provider whose import reaches
``airflow.sdk`` while Airflow is still discovering providers hits a circular import.

The plugin (the triggerer fast start) is registered through the ``airflow.plugins`` entry point, not
here: Airflow loads providers' plugins only when ``[core] lazy_load_providers`` is off, and a plugin
named in both places is reported as an import error ("already registered").
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """The provider's description, in the shape of Airflow's ``provider_info.schema.json``.

    ``package-name`` must equal the distribution's name: Airflow refuses a provider whose names differ
    (``airflow._shared.providers_discovery.discover_all_providers_from_packages``).
    """
    return {
        "package-name": "dbt-watcher",
        "name": "dbt-watcher",
        "description": "Run a dbt project once inside Airflow 3 while every dbt model keeps its own live "
        "Airflow task (a deferrable consumer) and Airflow Asset.",
    }
