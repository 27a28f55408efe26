"""The plugin's FastAPI app, mounted by Airflow's api-server at ``/dbt-watcher`` (see :mod:`dbt_watcher.plugin`).

Routes (every data route answers only users whom Airflow's auth manager lets read the DAG's XComs,
with the dependency Airflow's own XCom endpoint uses; the HTML pages hold no data)::

    GET /run, /node                          the pages (static HTML and JS)
    GET /api/run?dag_id=D&run_id=R           the run's groups and nodes (dbt_watcher.ui.run_view)
    GET /api/sql?dag_id=D&run_id=R&task_id=T&map_index=M
                                             the consumer's compiled SQL (and its tests') of this run
    GET /docs/D/<token>/{index.html, manifest.json, catalog.json}
                                             the run's dbt docs (``docs=True``)

Everything is read from the run's channel XComs and its artifacts (``run_results.json``, dbt docs'
files) where the producer left them: nothing is recomputed and nothing is written.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import FileResponse, HTMLResponse, Response

from dbt_watcher import compat
from dbt_watcher.channel.channel import INVOCATION, TASKS
from dbt_watcher.ui.links import read_docs_token
from dbt_watcher.ui.run_view import run_view

#: Files of the dbt docs site a run keeps (``dbt docs generate`` writes them to ``<artifacts>/docs``).
DOCS_FILES = {"index.html": "text/html", "manifest.json": "application/json", "catalog.json": "application/json"}
_PREFIX = "dbt_watcher."


def _static(name: str) -> Any:
    return resources.files("dbt_watcher.ui") / "static" / name


def create_app() -> FastAPI:
    app = FastAPI(title="dbt-watcher", docs_url=None, redoc_url=None, openapi_url=None)
    access = [Depends(compat.dag_read_access())]

    @app.get("/run", response_class=HTMLResponse)
    def run_html() -> str:
        return str(_static("run.html").read_text())

    @app.get("/node", response_class=HTMLResponse)
    def node_html() -> str:
        return str(_static("node.html").read_text())

    @app.get("/static/{name}")
    def static(name: str) -> Response:
        kinds = {".js": "text/javascript", ".css": "text/css"}
        kind = next((k for suffix, k in kinds.items() if name.endswith(suffix)), None)
        if kind is None or "/" in name or not _static(name).is_file():
            raise HTTPException(404, "no such file")
        return Response(_static(name).read_bytes(), media_type=kind)

    @app.get("/api/run", dependencies=access)
    def run(dag_id: str, run_id: str) -> dict[str, Any]:
        return run_view(compat.run_xcoms(dag_id, run_id, _PREFIX))

    @app.get("/api/sql", dependencies=access)
    def sql(dag_id: str, run_id: str, task_id: str, map_index: int = Query(-1)) -> dict[str, Any]:
        return compiled_sql(compat.run_xcoms(dag_id, run_id, _PREFIX), task_id, map_index)

    @app.get("/docs/{dag_id}/{token}/{name}", dependencies=access)
    def docs(dag_id: str, token: str, name: str) -> Response:
        if name not in DOCS_FILES:
            raise HTTPException(404, "no such file")
        try:
            run_id, producer, map_index = read_docs_token(token)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from exc
        artifacts = _artifacts(compat.run_xcoms(dag_id, run_id, INVOCATION), producer, map_index)
        path = _open(artifacts, f"docs/{name}") if artifacts else None
        if path is None:
            raise HTTPException(
                404,
                "This run has no dbt docs: the group generates them with docs=True, and the api-server must "
                "reach the run's artifacts (artifacts_url= when it runs on another machine than the workers).",
            )
        if isinstance(path, str):
            return FileResponse(path, media_type=DOCS_FILES[name])
        return Response(path.read_bytes(), media_type=DOCS_FILES[name])

    return app


def _artifacts(rows: list[tuple[str, int, str, Any]], producer: str, map_index: int) -> str | None:
    for task_id, index, key, value in rows:
        if (task_id, index, key) == (producer, map_index, INVOCATION) and isinstance(value, dict):
            artifacts = value.get("artifacts")
            return artifacts if isinstance(artifacts, str) else None
    return None


def _open(artifacts: str, relative: str) -> Any:
    """A file of the run's artifacts: a local path (str) or an ObjectStoragePath; None if absent."""
    if "://" not in artifacts:
        local = Path(artifacts) / relative
        return str(local) if local.is_file() else None
    from airflow.sdk import ObjectStoragePath

    remote = ObjectStoragePath(artifacts) / relative
    return remote if remote.exists() else None


def compiled_sql(rows: list[tuple[str, int, str, Any]], task_id: str, map_index: int) -> dict[str, Any]:
    """The compiled SQL dbt ran in this run for a consumer's node and its gating tests.

    Returns ``{"unique_id", "producer_task_id", "sql": [{"unique_id", "compiled_code"}], "note"}``; read from
    the unified ``run_results.json`` of the run (``compiled_code`` of each result, dbt's own field).
    """
    for producer, index, key, value in rows:
        if key != TASKS or index != map_index or not isinstance(value, dict):
            continue
        entry = (value.get("tasks") or {}).get(task_id)
        if entry is None:
            continue
        wanted = [entry["node"], *(entry.get("tests") or ())]
        answer: dict[str, Any] = {"unique_id": entry["node"], "producer_task_id": producer, "sql": [], "note": None}
        artifacts = _artifacts(rows, producer, map_index)
        found = _open(artifacts, "run_results.json") if artifacts else None
        if found is None:
            answer["note"] = (
                "No run_results.json for this run yet: dbt writes it when the build ends, and the api-server "
                "must reach the run's artifacts (artifacts_url= when it runs on another machine)."
            )
            return answer
        text = Path(found).read_text() if isinstance(found, str) else found.read_text()
        by_id = {r.get("unique_id"): r for r in json.loads(text).get("results", [])}
        answer["sql"] = [
            {"unique_id": uid, "compiled_code": by_id[uid].get("compiled_code")} for uid in wanted if uid in by_id
        ]
        return answer
    raise HTTPException(404, f"{task_id} is not a dbt-watcher consumer of this run (map index {map_index})")
