"""Rules every task and the UI share: the verdict, who emits asset events, the artifacts layout, the
consumers' links, and how dbt relations are named (asset URIs, lineage, the translator)."""
