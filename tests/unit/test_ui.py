"""The UI plugin's pieces without a stack: what the run page is given, the links, the routes' rules."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from dbt_watcher import airflow_lines, compat
from dbt_watcher.channel.channel import StatusChannel
from dbt_watcher.channel.wire import FINISHED, INVOCATION, TASKS
from dbt_watcher.invocation.events import NodeResult
from dbt_watcher.plugin import DbtWatcherPlugin
from dbt_watcher.rules import links
from dbt_watcher.rules.artifacts import run_dir
from dbt_watcher.ui.app import create_app
from dbt_watcher.ui.run_view import run_view
from tests.unit.fakes import MemoryStore

PRODUCER = "shop.dbt_producer"
TASK_MAP = {
    "group": "shop",
    "tasks": {
        "shop.orders": {"node": "model.p.orders", "gated": True, "asset": "duckdb://x/orders"},
        "shop.customers": {"node": "model.p.customers", "gated": True, "asset": None},
    },
}


def channel_rows(artifacts: str | None = None, *, finished: bool = True) -> list[tuple[str, int, str, Any]]:
    store = MemoryStore()
    writer = StatusChannel(store).writer(generation="g1", attempt=1, heartbeat_interval=60.0)
    # what the run's dbt invocation selected: the test gates orders' consumer
    writer.publish_selection({"model.p.orders": {"test.p.not_null_orders_id": "fqn:p.t"}, "model.p.customers": {}})
    writer.publish(NodeResult("model.p.orders", "success", "model", started_at="2026-12-01T00:00:01Z",
                              completed_at="2026-12-01T00:00:03Z", execution_time=2.0, rows_affected=7))  # fmt: skip
    writer.publish(NodeResult("test.p.not_null_orders_id", "fail", "test", message="Got 1 result",
                              started_at="2026-12-01T00:00:03Z", completed_at="2026-12-01T00:00:04Z"))  # fmt: skip
    if finished:
        writer.finish(FINISHED)
    values = dict(store.data) | {TASKS: TASK_MAP, INVOCATION: {"vars": {"password": "s3cret"}, "artifacts": artifacts}}
    return [(PRODUCER, -1, key, value) for key, value in values.items()] + [("other", -1, "return_value", 1)]


def test_the_run_view_joins_dbt_results_to_the_tasks_whose_verdict_they_are() -> None:
    view = run_view(channel_rows("/a"))
    (group,) = view["groups"]
    assert (group["group"], group["phase"], group["attempt"], group["problem"]) == ("shop", "finished", 1, None)
    orders, test = group["nodes"]  # in the order dbt started them
    assert (orders["unique_id"], orders["task_id"], orders["gates"], orders["asset"]) == (
        "model.p.orders", "shop.orders", False, "duckdb://x/orders")  # fmt: skip
    gate = (test["status"], test["task_id"], test["gates"], test["message"])
    assert gate == ("fail", "shop.orders", True, "Got 1 result")
    assert group["waiting"] == ["model.p.customers"]  # no result yet: never shown as anything else
    assert "s3cret" not in json.dumps(view)  # the run's vars never leave the server


def test_a_run_without_a_producer_status_says_so() -> None:
    view = run_view([(PRODUCER, -1, TASKS, TASK_MAP)])
    assert view["groups"][0]["problem"] == "the producer has published no status yet"
    assert view["groups"][0]["nodes"] == []
    assert run_view([])["groups"] == []


def test_an_unreadable_head_is_reported_not_hidden() -> None:
    view = run_view([(PRODUCER, -1, "dbt_watcher.head", {"v": 99})])
    assert "wire version" in view["groups"][0]["problem"]


def test_links_and_docs_addresses() -> None:
    run_id = "manual__2026-12-01T00:00:00+00:00/odd"
    assert links.read_docs_token(links.docs_token(run_id, PRODUCER, 3)) == (run_id, PRODUCER, 3)
    with pytest.raises(ValueError, match="not a docs address"):
        links.read_docs_token("bm90IGpzb24")
    at = links.ConsumerAt("d", run_id, "shop.orders", -1, PRODUCER, "model.p.orders")
    xcoms = links.link_xcoms(at)
    assert set(xcoms) == {"_link_DbtNodeLink", "_link_DbtDocsLink", "_link_DbtRunLink"}  # Airflow's key rule
    # relative: resolved against the Airflow UI's base URL, whatever its path prefix
    assert xcoms["_link_DbtNodeLink"].startswith("dbt-watcher/node?dag_id=d&run_id=manual__2026")
    assert xcoms["_link_DbtDocsLink"].endswith("/index.html#!/model/model.p.orders")
    assert xcoms["_link_DbtRunLink"].startswith("dbt-watcher/run?")


@pytest.mark.skipif(not airflow_lines.has_external_views(), reason="the UI plugin is off on Airflow 3.0")
def test_the_plugin_adds_a_run_tab_and_builds_its_app_only_when_asked() -> None:
    plugin = DbtWatcherPlugin()
    (view,) = plugin.external_views
    assert view["destination"] == "dag_run" and "{RUN_ID}" in view["href"] and not view["href"].startswith("/")
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/dbt-watcher"


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    folder = run_dir(tmp_path / "root", "d", "r", "shop", map_index=-1, generation="g1")
    (folder / "docs").mkdir(parents=True)
    (folder / "docs" / "static_index.html").write_text("<html>dbt docs</html>")
    results = [{"unique_id": "model.p.orders", "compiled_code": "select 1 as id"},
               {"unique_id": "test.p.not_null_orders_id", "compiled_code": "select * where id is null"}]  # fmt: skip
    (folder / "run_results.json").write_text(json.dumps({"results": results}))
    (tmp_path / "secret.txt").write_text("nope")
    return folder


def serve(monkeypatch: pytest.MonkeyPatch, rows: list[tuple[str, int, str, Any]]) -> TestClient:
    def allowed(dag_id: str) -> None:
        if dag_id != "d":
            raise HTTPException(403, "Forbidden")

    monkeypatch.setattr(compat, "dag_read_access", lambda: allowed)
    monkeypatch.setattr(compat, "run_xcoms", lambda dag, run, prefix: [r for r in rows if r[2].startswith(prefix)])
    return TestClient(create_app())


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, artifacts: Path) -> TestClient:
    return serve(monkeypatch, channel_rows(str(artifacts)))


def test_routes_serve_the_run_its_sql_and_its_docs(client: TestClient) -> None:
    assert "static/run.js" in client.get("/run").text
    assert client.get("/static/run.js").headers["content-type"].startswith("text/javascript")
    run = client.get("/api/run", params={"dag_id": "d", "run_id": "r"}).json()
    assert run["groups"][0]["nodes"][0]["rows_affected"] == 7
    sql = client.get("/api/sql", params={"dag_id": "d", "run_id": "r", "task_id": "shop.orders"}).json()
    assert [s["compiled_code"] for s in sql["sql"]] == ["select 1 as id", "select * where id is null"]
    docs = client.get(f"/docs/d/{links.docs_token('r', PRODUCER, -1)}/index.html")
    assert docs.text == "<html>dbt docs</html>"
    # the page a task or a dbt project wrote runs in an opaque origin: it cannot use the viewer's session
    assert "sandbox allow-scripts" in docs.headers["content-security-policy"]
    assert "allow-same-origin" not in docs.headers["content-security-policy"]


def test_routes_refuse_what_they_must(client: TestClient) -> None:
    token = links.docs_token("r", PRODUCER, -1)
    assert client.get("/api/run", params={"dag_id": "other", "run_id": "r"}).status_code == 403
    assert client.get(f"/docs/other/{token}/index.html").status_code == 403
    for name in ("..%2Fsecret.txt", "run_results.json", "secret.txt", "static_index.html"):
        assert client.get(f"/docs/d/{token}/{name}").status_code == 404
    assert client.get("/static/..%2F..%2Fapp.py").status_code == 404
    assert client.get("/api/sql", params={"dag_id": "d", "run_id": "r", "task_id": "shop.nope"}).status_code == 404


def test_artifacts_are_read_only_inside_this_runs_folder(
    monkeypatch: pytest.MonkeyPatch, artifacts: Path, tmp_path: Path
) -> None:
    token = links.docs_token("r", PRODUCER, -1)
    # an XCom rewritten to point elsewhere: another folder, another run's folder
    other_run = run_dir(tmp_path / "root", "d", "other-run", "shop", map_index=-1, generation="g1")
    shutil.copytree(artifacts, other_run)
    for location in (str(tmp_path), str(other_run)):
        client = serve(monkeypatch, channel_rows(location))
        assert client.get(f"/docs/d/{token}/index.html").status_code == 404
        sql = client.get("/api/sql", params={"dag_id": "d", "run_id": "r", "task_id": "shop.orders"}).json()
        assert sql["sql"] == [] and "No run_results.json" in sql["note"]
    # a symbolic link out of the run's folder
    (artifacts / "docs" / "static_index.html").unlink()
    (artifacts / "docs" / "static_index.html").symlink_to(tmp_path / "secret.txt")
    client = serve(monkeypatch, channel_rows(str(artifacts)))
    assert client.get(f"/docs/d/{token}/index.html").status_code == 404


def test_unreadable_content_is_reported_never_a_server_error(monkeypatch: pytest.MonkeyPatch, artifacts: Path) -> None:
    rows = [r for r in channel_rows(str(artifacts)) if r[2] != TASKS] + [(PRODUCER, -1, TASKS, {"tasks": ["x"]})]
    view = serve(monkeypatch, rows).get("/api/run", params={"dag_id": "d", "run_id": "r"})
    assert view.status_code == 200 and "not readable" in view.json()["groups"][0]["problem"]
    (artifacts / "run_results.json").write_text("[1, 2]")
    client = serve(monkeypatch, channel_rows(str(artifacts)))
    sql = client.get("/api/sql", params={"dag_id": "d", "run_id": "r", "task_id": "shop.orders"})
    assert sql.status_code == 200 and sql.json()["note"]
