"""dbt at the bottom: dbt commands, the two ways to run them, typed node events, and the profile a run
uses (rendered from an Airflow connection, secrets kept out of logs). Takes paths and values; knows
nothing of Airflow tasks."""
