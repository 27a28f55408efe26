"""What every task of a group knows at run time, and the one way a task runs dbt for its run."""
