"""dbt in the Airflow UI: a run page per DAG run (timeline and node table), a node page per consumer
(its result and compiled SQL), and the run's dbt docs; served by the plugin's FastAPI app in the
api-server (:mod:`dbt_watcher.ui.app`), reached from a DAG run's "dbt build" tab and from every
consumer's extra links (:mod:`dbt_watcher.rules.links`).
"""
