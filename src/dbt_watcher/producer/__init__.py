"""Producer: the one task that runs ``dbt build`` for the group and publishes every node's result."""
