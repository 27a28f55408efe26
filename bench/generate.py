"""Generate the benchmark's dbt project (PostgreSQL) from a graph shape.

Every model pays a fixed, configurable warehouse latency (`pg_sleep` in a pre-hook, dbt var
`latency`) and writes one row to `bench_meta.node_log` when dbt starts it (pre-hook) and
finishes it (post-hook): the warehouse's own clock times every contender the same way.

`--scale N` replicates the shape N times (model `x` becomes `x__r1`, `x__r2`, ...; seeds and raw
source tables are shared), so `--scale 11` gives ~2,000 models. Raw FHIR tables are sources loaded
by `setup_sql()`, not part of the build.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_SHAPE = HERE / "shapes" / "fhir_dbt_analytics.json"
THREADS = (1, 2, 4, 8, 16)
SOURCE_SCHEMA = "fhir_raw"
LOG_TABLE = "bench_meta.node_log"


def snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def load_shape(path: Path = DEFAULT_SHAPE) -> dict[str, Any]:
    with open(path) as fh:
        return dict(json.load(fh))


def layered_shape(models: int = 3000, fanout: int = 750) -> dict[str, Any]:
    """A synthetic 4-layer project: one root model, ``fanout`` models reading it, then two layers that
    each read two or three models of the layer above (half of what is left, then the rest)."""
    if models < fanout + 3:
        raise ValueError(f"a layered project of {models} models cannot have a fan-out of {fanout}")
    rest = models - 1 - fanout
    sizes = [1, fanout, rest // 2, rest - rest // 2]
    layers: list[list[str]] = [[f"l{depth}_{i:05d}" for i in range(size)] for depth, size in enumerate(sizes)]
    shape_models = []
    for depth, names in enumerate(layers):
        above = layers[depth - 1] if depth else []
        for i, name in enumerate(names):
            refs = sorted({above[(i * 7 + k * 13) % len(above)] for k in range(2 + depth % 2)}) if above else []
            if depth == 1:
                refs = above  # every model of the first layer reads the root: the fan-out
            shape_models.append(
                {"name": name, "package": "layers", "layer": f"layers/l{depth}", "materialized": "view", "refs": refs}
            )
    return {"description": f"synthetic: 4 layers {sizes}, fan-out {fanout}", "seeds": [], "models": shape_models}


def chain_shape(models: int = 2000) -> dict[str, Any]:
    """A single dependency chain ``models`` deep: each model reads the one before it."""
    names = [f"c_{i:05d}" for i in range(models)]
    return {
        "description": f"synthetic: a chain {models} deep",
        "seeds": [],
        "models": [
            {"name": n, "package": "chain", "layer": "chain/c", "materialized": "view", "refs": names[i - 1 : i]}
            for i, n in enumerate(names)
        ],
    }


def _reads_raw(model: dict[str, Any]) -> bool:
    """The FHIR resource views (everything in that layer but fhir_table_list) read one raw table each."""
    return bool(model["layer"].endswith("fhir_resources") and model["refs"])


def replicate(shape: dict[str, Any], scale: int) -> list[dict[str, Any]]:
    models: list[dict[str, Any]] = []
    seeds = set(shape["seeds"])
    for k in range(scale):
        suffix = "" if k == 0 else f"__r{k}"
        for model in shape["models"]:
            models.append(
                {
                    **model,
                    "name": model["name"] + suffix,
                    "source": model["name"] if _reads_raw(model) else None,
                    "refs": [r if r in seeds else r + suffix for r in model["refs"]],
                }
            )
    return models


# PostgreSQL cuts identifiers at 63 characters, and dbt's `<name>__dbt_backup` relations of two long
# model names can then collide mid-build ("Cache inconsistency detected"). Node names stay those of
# the original project; only the relation gets a short, unique alias.
_MAX_RELATION = 48


def relation_alias(name: str) -> str | None:
    if len(name) <= _MAX_RELATION:
        return None
    return f"{name[: _MAX_RELATION - 9]}_{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def model_sql(model: dict[str, Any]) -> str:
    alias = relation_alias(model["name"])
    config = f"materialized='{model['materialized']}'" + (f", alias='{alias}'" if alias else "")
    lines = [f"{{{{ config({config}) }}}}", "select 1 as id"]
    for i, ref in enumerate(model["refs"]):
        lines.append(f"    , (select count(*) from {{{{ ref('{ref}') }}}}) as n{i}")
    if model.get("source"):
        lines.append(
            f"    , (select count(*) from {{{{ source('{SOURCE_SCHEMA}', '{snake(model['source'])}') }}}}) as n_raw"
        )
    return "\n".join(lines) + "\n"


def resource_names(shape: dict[str, Any]) -> list[str]:
    return sorted(m["name"] for m in shape["models"] if _reads_raw(m))


def log_insert(kind: str) -> str:
    """A hook statement that records, on the warehouse's clock, that dbt started or finished a node."""
    values = f"'{{{{ invocation_id }}}}', '{{{{ model.name }}}}', '{kind}', clock_timestamp()"
    return f"insert into {LOG_TABLE} values ({values})"


def write_project(out: Path, shape: dict[str, Any], *, scale: int = 1, latency: float = 1.0) -> dict[str, Any]:
    if out.exists():
        shutil.rmtree(out)
    (out / "models").mkdir(parents=True)
    (out / "seeds").mkdir()
    (out / "dbt_project.yml").write_text(
        f"""name: bench
version: "1.0.0"
config-version: 2
profile: bench
vars:
  latency: {latency}
models:
  bench:
    +pre-hook:
      - "{log_insert("start")}"
      - "select pg_sleep({{{{ var('latency') }}}})"
    +post-hook: "{log_insert("finish")}"
"""
    )
    outputs = "\n".join(
        f"""    t{t}:
      type: postgres
      host: "{{{{ env_var('BENCH_PG_HOST', '127.0.0.1') }}}}"
      port: 5432
      user: postgres
      password: ""
      dbname: "{{{{ env_var('BENCH_PG_DBNAME', 'bench') }}}}"
      schema: bench
      threads: {t}"""
        for t in THREADS
    )
    (out / "profiles.yml").write_text(f"bench:\n  target: t8\n  outputs:\n{outputs}\n")
    models = replicate(shape, scale)
    for model in models:
        folder = out / "models" / model["package"] / model["layer"].split("/")[-1]
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{model['name']}.sql").write_text(model_sql(model))
    tables = [snake(r) for r in resource_names(shape)]
    if tables:
        (out / "models" / "sources.yml").write_text(
            # A freshness check on every raw table: skip_unchanged (bench/unchanged.py) reads a source's
            # max_loaded_at as the evidence that it got no new data; a plain `dbt build` ignores it.
            "version: 2\nsources:\n  - name: fhir_raw\n    schema: fhir_raw\n    loaded_at_field: loaded_at\n"
            "    freshness:\n      warn_after: {count: 3650, period: day}\n    tables:\n"
            + "".join(f"      - name: {t}\n" for t in tables)
        )
    for seed in shape["seeds"]:
        (out / "seeds" / f"{seed}.csv").write_text("code,value\na,1\nb,2\nc,3\n")
    return {
        "models": len(models),
        "seeds": len(shape["seeds"]),
        "sources": len(tables),
        "scale": scale,
        "latency": latency,
    }


def parse(project: Path, env: dict[str, str] | None = None) -> None:
    """`dbt parse` a written project with its own profiles.yml, so target/manifest.json exists."""
    dbt = Path(sys.executable).parent / "dbt"
    subprocess.run(
        [str(dbt), "parse", "--project-dir", str(project), "--profiles-dir", str(project), "--quiet"],
        cwd=project,
        env=env,
        check=True,
    )


def setup_sql(shape: dict[str, Any]) -> str:
    """Statements that create the raw source tables and the node log (run once per bench database)."""
    statements = [f"create schema if not exists {SOURCE_SCHEMA}", "create schema if not exists bench_meta"]
    statements.append(
        f"create table if not exists {LOG_TABLE} (invocation_id text, node text, kind text, at timestamptz)"
    )
    for name in resource_names(shape):
        table = f"{SOURCE_SCHEMA}.{snake(name)}"
        statements.append(
            f"create table if not exists {table} as "
            "select g as id, timestamptz '2026-01-01 00:00:00+00' as loaded_at from generate_series(1, 100) g"
        )
    return ";\n".join(statements) + ";"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--shape", type=Path, default=DEFAULT_SHAPE)
    args = parser.parse_args()
    print(write_project(args.out, load_shape(args.shape), scale=args.scale, latency=args.latency))


if __name__ == "__main__":
    main()
