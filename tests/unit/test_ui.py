"""The UI plugin's pieces without a stack: what the run page is given, the links, the routes' rules."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi import HTTPException
from fastapi.testclient import TestClient

from dbt_watcher import compat
from dbt_watcher.channel.channel import FINISHED, INVOCATION, TASKS, StatusChannel
from dbt_watcher.channel.store import MemoryStore
from dbt_watcher.invocation.events import NodeResult
from dbt_watcher.plugin import DbtWatcherPlugin
from dbt_watcher.ui import links
from dbt_watcher.ui.app import create_app
from dbt_watcher.ui.run_view import node_name, run_view

PRODUCER = "shop.dbt_producer"
TASK_MAP = {
    "group": "shop",
    "tasks": {
        "shop.orders": {"node": "model.p.orders", "tests": ["test.p.not_null_orders_id"], "asset": "duckdb://x/orders"},
        "shop.customers": {"node": "model.p.customers", "tests": [], "asset": None},
    },
}


def channel_rows(artifacts: str | None = None, *, finished: bool = True) -> list[tuple[str, int, str, Any]]:
    store = MemoryStore()
    writer = StatusChannel(store).writer(generation="g1", attempt=1, heartbeat_interval=60.0)
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
    assert xcoms["_link_DbtNodeLink"].startswith("/dbt-watcher/node?dag_id=d&run_id=manual__2026")
    assert xcoms["_link_DbtDocsLink"].endswith("/index.html#!/model/model.p.orders")
    assert "/dbt-watcher/run?" in xcoms["_link_DbtRunLink"]


def test_the_plugin_adds_a_run_tab_and_builds_its_app_only_when_asked() -> None:
    plugin = DbtWatcherPlugin()
    (view,) = plugin.external_views
    assert view["destination"] == "dag_run" and "{RUN_ID}" in view["href"] and not view["href"].startswith("/")
    (app,) = plugin.fastapi_apps
    assert app["url_prefix"] == "/dbt-watcher"


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> TestClient:
    artifacts = tmp_path / "run"
    (artifacts / "docs").mkdir(parents=True)
    (artifacts / "docs" / "index.html").write_text("<html>dbt docs</html>")
    results = [{"unique_id": "model.p.orders", "compiled_code": "select 1 as id"},
               {"unique_id": "test.p.not_null_orders_id", "compiled_code": "select * where id is null"}]  # fmt: skip
    (artifacts / "run_results.json").write_text(json.dumps({"results": results}))
    (tmp_path / "secret.txt").write_text("nope")
    rows = channel_rows(str(artifacts))

    def allowed(dag_id: str) -> None:
        if dag_id != "d":
            raise HTTPException(403, "Forbidden")

    monkeypatch.setattr(compat, "dag_read_access", lambda: allowed)
    monkeypatch.setattr(compat, "run_xcoms", lambda dag, run, prefix: [r for r in rows if r[2].startswith(prefix)])
    return TestClient(create_app())


def test_routes_serve_the_run_its_sql_and_its_docs(client: TestClient) -> None:
    assert "static/run.js" in client.get("/run").text
    assert client.get("/static/run.js").headers["content-type"].startswith("text/javascript")
    run = client.get("/api/run", params={"dag_id": "d", "run_id": "r"}).json()
    assert run["groups"][0]["nodes"][0]["rows_affected"] == 7
    sql = client.get("/api/sql", params={"dag_id": "d", "run_id": "r", "task_id": "shop.orders"}).json()
    assert [s["compiled_code"] for s in sql["sql"]] == ["select 1 as id", "select * where id is null"]
    token = links.docs_token("r", PRODUCER, -1)
    assert client.get(f"/docs/d/{token}/index.html").text == "<html>dbt docs</html>"
    missing = client.get(f"/docs/d/{token}/catalog.json")
    assert missing.status_code == 404 and "docs=True" in missing.json()["detail"]


def test_routes_refuse_what_they_must(client: TestClient) -> None:
    token = links.docs_token("r", PRODUCER, -1)
    assert client.get("/api/run", params={"dag_id": "other", "run_id": "r"}).status_code == 403
    assert client.get(f"/docs/other/{token}/index.html").status_code == 403
    for name in ("..%2Fsecret.txt", "run_results.json", "secret.txt"):
        assert client.get(f"/docs/d/{token}/{name}").status_code == 404
    assert client.get("/static/..%2F..%2Fapp.py").status_code == 404
    assert client.get("/api/sql", params={"dag_id": "d", "run_id": "r", "task_id": "shop.nope"}).status_code == 404


def test_node_names_follow_dbts_unique_ids() -> None:
    assert node_name("model.p.orders") == "orders"
    assert node_name("model.p.orders.v2") == "orders.v2"
    assert node_name("test.p.not_null_orders_id.5b1a2c") == "not_null_orders_id"
    assert node_name("odd") == "odd"
