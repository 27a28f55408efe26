"""Project: a dbt project on disk, its manifest-derived graph, selection and target, and profiles."""
