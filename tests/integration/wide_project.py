"""A generated dbt project of cheap DuckDB views, for the 1,000-consumer test (written at test time).

The graph is the benchmark's 4-layer shape (bench/generate.py ``layered_shape``): one root, a fan-out
layer, then two layers that read two or three models each.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def write_wide_project(out: Path, models: int = 1000, fanout: int = 250) -> int:
    sys.path.insert(0, str(REPO / "bench"))
    import generate

    shape = generate.layered_shape(models, fanout)
    (out / "models").mkdir(parents=True, exist_ok=True)
    (out / "dbt_project.yml").write_text(
        "name: wide\nversion: '1.0.0'\nconfig-version: 2\nprofile: wide\nmodels:\n  wide:\n    +materialized: view\n"
    )
    (out / "profiles.yml").write_text(
        "wide:\n  target: duckdb\n  outputs:\n    duckdb:\n"
        "      type: duckdb\n      path: wide.duckdb\n      threads: 4\n"
    )
    for model in shape["models"]:
        refs = "".join(f"\nunion all select 1 from {{{{ ref('{r}') }}}} where false" for r in model["refs"])
        (out / "models" / f"{model['name']}.sql").write_text(f"select 1 as id{refs}\n")
    return len(shape["models"])
