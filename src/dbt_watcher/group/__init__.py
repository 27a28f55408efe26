"""Assembly: the ``@dbt_watcher_group`` decorator, the plan of a group's tasks and their rendering as a
TaskGroup — the only layer that creates operators."""
