"""The plugin's FastAPI app, mounted by Airflow's api-server at ``/dbt-watcher`` (see :mod:`dbt_watcher.plugin`).

Routes (every data route answers only users whom Airflow's auth manager lets read the DAG's XComs,
with the dependency Airflow's own XCom endpoint uses; the HTML pages hold no data)::

    GET /run, /node                          the pages (static HTML and JS)
    GET /api/run?dag_id=D&run_id=R           the run's groups and nodes (dbt_watcher.ui.run_view)
    GET /api/sql?dag_id=D&run_id=R&task_id=T&map_index=M
                                             the consumer's compiled SQL (and its tests') of this run
    GET /docs/D/<token>/index.html           the run's dbt docs (``docs=True``: dbt's single-file site)

Everything is read from the run's channel XComs and its artifacts (``run_results.json``, dbt docs'
``static_index.html``) where the producer left them: nothing is recomputed and nothing is written.
Artifacts are read only from a location with the layout of this DAG run's folder, never through a
symbolic link out of it, and the docs page runs in a CSP sandbox: a page written by a task or a dbt
project cannot act with the viewer's Airflow session.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse, Response

from dbt_watcher import compat
from dbt_watcher.channel.records import TaskMap
from dbt_watcher.channel.wire import INVOCATION, TASKS
from dbt_watcher.rules.artifacts import is_run_location
from dbt_watcher.rules.links import read_docs_token
from dbt_watcher.ui.run_view import artifacts_of, by_producer, gating_tests, run_view

#: dbt's single-file docs site (``dbt docs generate --static``, in ``<artifacts>/docs``).
DOCS_PAGE = "docs/static_index.html"
#: The docs page runs scripts in an opaque origin: no cookie, no same-origin request to Airflow.
DOCS_HEADERS = {"Content-Security-Policy": "sandbox allow-scripts allow-popups", "X-Content-Type-Options": "nosniff"}
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
        return run_view(compat.run_xcoms(dag_id, as_run_id(run_id), _PREFIX))

    @app.get("/api/sql", dependencies=access)
    def sql(dag_id: str, run_id: str, task_id: str, map_index: int = Query(-1)) -> dict[str, Any]:
        run_id = as_run_id(run_id)
        return compiled_sql(compat.run_xcoms(dag_id, run_id, _PREFIX), dag_id, run_id, task_id, map_index)

    @app.get("/docs/{dag_id}/{token}/{name}", dependencies=access)
    def docs(dag_id: str, token: str, name: str) -> Response:
        if name != "index.html":
            raise HTTPException(404, "no such file")
        try:
            run_id, producer, map_index = read_docs_token(token)
        except ValueError as exc:
            raise HTTPException(404, str(exc)) from exc
        values = by_producer(compat.run_xcoms(dag_id, run_id, INVOCATION)).get((producer, map_index), {})
        page = _read(artifacts_of(values), dag_id, run_id, DOCS_PAGE)
        if page is None:
            raise HTTPException(
                404,
                "This run has no dbt docs: the group generates them with docs=True, and the api-server must "
                "reach the run's artifacts (artifacts_url= when it runs on another machine than the workers).",
            )
        return Response(page, media_type="text/html", headers=DOCS_HEADERS)

    return app


def as_run_id(text: str) -> str:
    """The run id a query string meant. Airflow 3.1's UI puts the run id in an external view's URL
    without encoding it, so the ``+`` of a time zone offset (``manual__...+00:00``) arrives as a space;
    a run id never holds a space (Airflow's run id pattern), so a space can only be such a ``+``."""
    return text.replace(" ", "+")


def _read(artifacts: str | None, dag_id: str, run_id: str, relative: str) -> bytes | None:
    """A file of this DAG run's artifacts; None when there is none or it may not be read.

    The location comes from the producer's XCom, which users with XCom write access can change: it is
    used only if it has the layout of this DAG run's folder, and a local file only if it really lies
    in that folder (no symbolic link out of it).
    """
    if not artifacts or not is_run_location(artifacts, dag_id, run_id):
        return None
    try:
        if "://" not in artifacts:
            root = Path(artifacts).resolve()
            local = (root / relative).resolve()
            return local.read_bytes() if local.is_relative_to(root) and local.is_file() else None
        from airflow.sdk import ObjectStoragePath

        remote = ObjectStoragePath(artifacts) / relative
        return remote.read_bytes() if remote.is_file() else None
    except Exception:  # an unknown scheme, a missing filesystem package, a denied read: no file
        return None


def compiled_sql(
    rows: list[tuple[str, int, str, Any]], dag_id: str, run_id: str, task_id: str, map_index: int
) -> dict[str, Any]:
    """The compiled SQL dbt ran in this run for a consumer's node and its gating tests.

    Returns ``{"unique_id", "producer_task_id", "sql": [{"unique_id", "compiled_code"}], "note"}``; read from
    the unified ``run_results.json`` of the run (``compiled_code`` of each result, dbt's own field).
    """
    for (producer, index), values in sorted(by_producer(rows).items()):
        tasks = TaskMap.from_json(values.get(TASKS)) if index == map_index else None
        entry = tasks.tasks.get(task_id) if tasks is not None else None
        if entry is None:
            continue
        wanted = [entry.node, *(gating_tests(values, entry.node) if entry.gated else ())]
        answer: dict[str, Any] = {"unique_id": entry.node, "producer_task_id": producer, "sql": [], "note": None}
        found = _read(artifacts_of(values), dag_id, run_id, "run_results.json")
        try:
            results = json.loads(found)["results"] if found is not None else None
            by_id = {r.get("unique_id"): r for r in results if isinstance(r, dict)} if results else None
        except (ValueError, TypeError, KeyError):
            by_id = None
        if by_id is None:
            answer["note"] = (
                "No run_results.json for this run yet: dbt writes it when the build ends, and the api-server "
                "must reach the run's artifacts (artifacts_url= when it runs on another machine)."
            )
            return answer
        answer["sql"] = [
            {"unique_id": uid, "compiled_code": by_id[uid].get("compiled_code")} for uid in wanted if uid in by_id
        ]
        return answer
    raise HTTPException(404, f"{task_id} is not a dbt-watcher consumer of this run (map index {map_index})")
