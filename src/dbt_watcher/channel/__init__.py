"""Channel: the status of one DAG run's build, one writer (the producer), many readers (the consumers)."""
