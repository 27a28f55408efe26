"""Plan: from the selected dbt graph to the group's tasks — ids, edges, attached tests, overrides, rendering."""
