"""The UI plugin in a real stack and a real browser (Debian's headless Chromium).

A stack of its own with real users under the simple auth manager in multi-team mode: the DAG bundle
belongs to team ``analytics``; ``alice`` is a viewer in it, ``bob`` a viewer in ``finance`` only. What
the pages show is checked against dbt's verdict for the run (its run_results.json), not against a
hand-written expectation: one timeline bar and one table row per node dbt reported, each with dbt's
status; the compiled SQL is dbt's ``compiled_code``. Screenshots go to the test's folder, or to the
folder named by ``DBT_WATCHER_SCREENSHOTS`` (docs/img is made that way).
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbt_watcher.rules.links import docs_page
from devstack.browser import Browser
from devstack.stack import COMPONENTS, AirflowStack

from .conftest import STACK_PARSING
from .oracle import run_folder
from .scenario import Outcome, finish, run, trigger

pytestmark = pytest.mark.integration
PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw"}


@pytest.fixture(scope="module")
def ui_stack(workspace: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("ui")
    (root / "dags").mkdir()
    for dag_file in ("jaffle_shop_dag.py", "shop_dags.py"):
        shutil.copy(workspace / "dags" / dag_file, root / "dags" / dag_file)
    ignore = shutil.ignore_patterns("target", "logs", "*.duckdb*")
    shutil.copytree(workspace / "jaffle_shop", root / "jaffle_shop", ignore=ignore)
    shutil.copytree(workspace / "projects" / "shop", root / "projects" / "shop", ignore=ignore)
    bundle = {
        "name": "dags-folder",
        "classpath": "airflow.dag_processing.bundles.local.LocalDagBundle",
        "kwargs": {"path": str(root / "dags")},
        "team_name": "analytics",
    }
    stack = AirflowStack.start(
        root / "dags",
        name="dbtw_ui",
        users={"alice": ("viewer:analytics", PASSWORDS["alice"]), "bob": ("viewer:finance", PASSWORDS["bob"])},
        before_start=[("teams", "create", "analytics"), ("teams", "create", "finance")],
        extra_env={
            "AIRFLOW__CORE__MULTI_TEAM": "True",
            "AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST": json.dumps([bundle]),
            **STACK_PARSING,
        },
        components=[c for c in COMPONENTS if c != "triggerer"],
    )
    try:
        # In multi-team mode a triggerer runs the triggers of one team (or of none).
        stack.start_component("triggerer", "--team-name", "analytics")
        stack.wait_healthy(["triggerer"])
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def runs(ui_stack: AirflowStack) -> dict[str, Outcome]:
    # The demo (a DuckDB file of its own) and the failed run at once; the docs run writes the shop's file
    # after the failed run (one writer per DuckDB file). Every DAG parsed first: a cold parse of the shop
    # DAGs beside a build can pass Airflow's 30 s import timeout on a busy two-core machine.
    ui_stack.wait_for_dags(["jaffle_shop_daily", "shop_duckdb", "shop_docs"])
    demo = trigger(ui_stack, "jaffle_shop_daily")
    failed = run(ui_stack, "shop_duckdb", {"fail_model": "customers_dim"})
    return {
        "demo": finish(ui_stack, "jaffle_shop_daily", demo, timeout=600),
        "failed": failed,
        "docs": run(ui_stack, "shop_docs"),
    }


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with Browser() as chromium:
        yield chromium


def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("DBT_WATCHER_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def dbt_results(stack: AirflowStack, outcome: Outcome, group: str) -> dict[str, dict[str, Any]]:
    folder = run_folder(stack, outcome.dag_id, outcome.run_id, group)
    assert folder is not None
    results = json.loads((folder / "run_results.json").read_text())["results"]
    # Project hooks (on-run-start/-end) are operations, not nodes: their outcome is the producer's.
    return {r["unique_id"]: r for r in results if not r["unique_id"].startswith("operation.")}


def ephemeral_models(stack: AirflowStack, outcome: Outcome, group: str) -> set[str]:
    folder = run_folder(stack, outcome.dag_id, outcome.run_id, group)
    assert folder is not None
    nodes = json.loads((folder / "manifest.json").read_text())["nodes"]
    return {uid for uid, n in nodes.items() if n.get("config", {}).get("materialized") == "ephemeral"}


def log_in(browser: Browser, stack: AirflowStack, user: str) -> None:
    browser.get(f"http://127.0.0.1:{stack.port}/api/v2/version")  # a page of the site, for its cookie
    browser._session("DELETE", "/cookie")
    browser.add_cookie("_token", stack.user_token(user, PASSWORDS[user]))


def page(stack: AirflowStack, name: str, **query: Any) -> str:
    return f"http://127.0.0.1:{stack.port}/dbt-watcher/{name}?{urllib.parse.urlencode(query)}"


def status_of(url: str, token: str | None) -> int:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.parametrize("name, group", [("demo", "jaffle_shop"), ("failed", "shop")])
def test_the_run_page_shows_every_node_with_dbts_verdict(
    ui_stack: AirflowStack, runs: dict[str, Outcome], browser: Browser, tmp_path: Path, *, name: str, group: str
) -> None:
    outcome = runs[name]
    expected = dbt_results(ui_stack, outcome, group)
    log_in(browser, ui_stack, "alice")
    started = time.monotonic()
    browser.get(page(ui_stack, "run", dag_id=outcome.dag_id, run_id=outcome.run_id))
    browser.wait_for("return document.body.dataset.ready === '1'")
    took = time.monotonic() - started
    bars = browser.execute(
        "return [...document.querySelectorAll('rect.bar')].map(b => [b.dataset.node, b.dataset.status])"
    )
    rows = browser.execute(
        "return [...document.querySelectorAll('table.nodes tbody tr')]"
        ".map(r => [r.dataset.node, r.dataset.status, r.dataset.taskState])"
    )
    verdict = {uid: r["status"] for uid, r in expected.items()}
    # dbt reports an ephemeral model's start and finish as events but keeps no result for it in
    # run_results.json: the page shows what dbt reported, so such a bar is the one allowed extra.
    ephemeral = ephemeral_models(ui_stack, outcome, group)
    assert {u: s for u, s in bars if u not in ephemeral} == verdict  # one bar per node dbt reported, its status
    assert {u: s for u, s, _ in rows if u not in ephemeral} == verdict
    for uid, _status, task_state in rows:  # the task column is Airflow's own state of that task
        task = next((t for t in outcome.states if t.endswith("." + uid.split(".")[-1])), None)
        if task is not None and uid.startswith(("model.", "seed.", "snapshot.")):
            assert task_state == outcome.states[task], uid
    assert browser.execute("return document.querySelectorAll('rect.producer').length") == 1
    assert browser.execute("return document.querySelectorAll('rect.task-end').length") > 0
    height = browser.execute("return document.body.scrollHeight")
    browser.set_size(1400, min(max(int(height) + 40, 600), 4000))
    shot = browser.screenshot(shots(tmp_path) / f"ui-run-{name}.png")
    print(f"{name}: {len(bars)} nodes, page ready in {took:.2f} s; screenshot {shot}")
    if name == "failed":
        assert outcome.state == "failed" and any(r["status"] == "error" for r in expected.values())


def test_the_run_tab_inside_airflows_ui(
    ui_stack: AirflowStack, runs: dict[str, Outcome], browser: Browser, tmp_path: Path
) -> None:
    outcome = runs["demo"]
    log_in(browser, ui_stack, "alice")
    quoted = urllib.parse.quote(outcome.run_id, safe="")
    browser.get(f"http://127.0.0.1:{ui_stack.port}/dags/{outcome.dag_id}/runs/{quoted}/plugin/dbt-build")
    src = browser.wait_for("const f = document.querySelector('iframe'); return f && f.src", timeout=90)
    assert (
        "/dbt-watcher/run?" in src
        and urllib.parse.quote(outcome.run_id, safe="") in src.replace("%2B", "+").replace("+", "%2B")
    ) or "dbt-watcher/run" in src
    time.sleep(3)
    browser.set_size(1400, 1000)
    browser.screenshot(shots(tmp_path) / "ui-airflow-tab.png")


def test_a_user_without_access_to_the_dag_sees_nothing(
    ui_stack: AirflowStack, runs: dict[str, Outcome], browser: Browser, tmp_path: Path
) -> None:
    outcome = runs["demo"]
    log_in(browser, ui_stack, "bob")
    browser.get(page(ui_stack, "run", dag_id=outcome.dag_id, run_id=outcome.run_id))
    browser.wait_for("return document.body.dataset.ready === '1'")
    assert browser.execute("return document.body.dataset.denied") == "1"
    assert browser.execute("return document.querySelectorAll('rect.bar, table.nodes tr').length") == 0
    browser.screenshot(shots(tmp_path) / "ui-denied.png")
    bob, alice = ui_stack.user_token("bob", PASSWORDS["bob"]), ui_stack.user_token("alice", PASSWORDS["alice"])
    api = page(ui_stack, "api/run", dag_id=outcome.dag_id, run_id=outcome.run_id)
    assert (status_of(api, alice), status_of(api, bob), status_of(api, None)) == (200, 403, 401)
    docs = docs_page(outcome.dag_id, outcome.run_id, "jaffle_shop.dbt_producer", -1)
    assert status_of(f"http://127.0.0.1:{ui_stack.port}/{docs}", bob) == 403


def test_a_consumers_links_open_its_sql_and_its_docs(
    ui_stack: AirflowStack, runs: dict[str, Outcome], browser: Browser, tmp_path: Path
) -> None:
    outcome = runs["docs"]
    expected = dbt_results(ui_stack, outcome, "shop")
    quoted = urllib.parse.quote(outcome.run_id, safe="")
    task = "shop.orders_enriched"
    links = ui_stack.api("GET", f"/api/v2/dags/{outcome.dag_id}/dagRuns/{quoted}/taskInstances/{task}/links")[
        "extra_links"
    ]
    assert set(links) == {"dbt node: result and SQL", "dbt docs", "dbt build timeline"}, links
    log_in(browser, ui_stack, "alice")
    # the links are relative to the UI's base URL (here the root)
    browser.get(f"http://127.0.0.1:{ui_stack.port}/{links['dbt node: result and SQL']}")
    browser.wait_for("return document.body.dataset.ready === '1'")
    sql = dict(
        browser.execute(
            "return [...document.querySelectorAll('pre[data-sql]')].map(p => [p.dataset.sql, p.textContent])"
        )
    )
    uid = "model.shop.orders_enriched"
    assert sql[uid] == expected[uid]["compiled_code"]
    browser.screenshot(shots(tmp_path) / "ui-node.png")
    browser.get(f"http://127.0.0.1:{ui_stack.port}/{links['dbt docs']}")
    title = browser.wait_for(
        "return document.querySelector('.app-title, .model-title, h1') && document.title", timeout=60
    )
    assert "dbt" in str(title).lower()
    browser.wait_for("return document.body.innerText.includes('orders_enriched')", timeout=60)
    browser.screenshot(shots(tmp_path) / "ui-docs.png")


def test_the_run_page_follows_a_live_run(ui_stack: AirflowStack, runs: dict[str, Outcome], browser: Browser) -> None:
    log_in(browser, ui_stack, "alice")
    run_id = ui_stack.trigger("jaffle_shop_daily")
    browser.get(page(ui_stack, "run", dag_id="jaffle_shop_daily", run_id=run_id))  # opened once, never reloaded
    seen = []
    deadline = time.monotonic() + 600
    while ui_stack.run_state("jaffle_shop_daily", run_id) not in ("success", "failed"):
        assert time.monotonic() < deadline, "the run did not end"
        seen.append(browser.execute("return document.querySelectorAll('rect.bar').length"))
        time.sleep(1)
    outcome = Outcome("jaffle_shop_daily", run_id, "", ui_stack.task_states("jaffle_shop_daily", run_id))
    final = len(dbt_results(ui_stack, outcome, "jaffle_shop"))
    browser.wait_for(f"return document.querySelectorAll('rect.bar').length === {final}", timeout=30)
    assert seen == sorted(seen), seen  # nodes only ever appear
    assert seen and seen[0] < final, f"the page was opened after the build ended: {seen}"
    # and once every task has ended, it stops refreshing
    browser.wait_for("return !document.getElementById('summary').textContent.includes('refreshing')", timeout=30)
