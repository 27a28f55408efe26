"""The dbt project: where it is, its graph and selection from dbt's own manifest, the parse cache and
prepared graphs. Calls dbt through :mod:`dbt_watcher.invocation`."""
