"""Issue 24: ``skip_unchanged=True`` builds only what changed since its last successful build, in a real stack.

Every run is judged by the verdict oracle (each task against dbt's run_results.json), and the group's build
state by the same oracle: every node it records as built must have been green by dbt's verdict in the run
it names. What each run built is read from dbt's own run_results.json, never from the tasks.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import duckdb
import pytest

from devstack import services
from devstack.stack import AirflowStack

from .conftest import asset_events, xcom
from .oracle import DbtVerdict, assert_verdicts, run_folder
from .scenario import Outcome, run

pytestmark = pytest.mark.integration

GROUP = "jaffle"
STG_CUSTOMERS = "model.jaffle_shop.stg_customers"
STG_APP_EVENTS = "model.jaffle_shop.stg_app_events"
CONSUMERS = 18  # models, seeds and snapshots of the example project


class Scenario:
    """One DAG of dags/unchanged_dags.py, its project copy, warehouse and build state."""

    def __init__(self, stack: AirflowStack, target: str, pg_database: str) -> None:
        self.stack, self.target, self.pg_database = stack, target, pg_database
        self.dag_id = f"unchanged_{target}"
        self.project = stack.dags_folder.parent / "projects" / f"unchanged_{target}"
        self.verdicts: dict[str, DbtVerdict] = {}

    # ------------------------------------------------------------------ the world between runs
    def sql(self, statement: str) -> None:
        if self.target == "duckdb":
            with duckdb.connect(str(self.project / "unchanged.duckdb")) as con:
                con.execute(statement.replace("{schema}", "main"))
        else:
            services.query(self.pg_database, statement.replace("{schema}", "unchanged"))

    def load_events(self, *rows: tuple[int, str, str]) -> None:
        """Land app events (event id, type, loaded_at) in the `app.events` source."""
        values = ", ".join(f"({i}, 1, '{kind}', timestamp '{at}')" for i, kind, at in rows)
        self.sql(f"insert into {{schema}}.raw_app_events values {values}")

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.project / relative
        text = path.read_text()
        assert old in text, f"{old!r} is not in {path}"
        path.write_text(text.replace(old, new))

    @property
    def state_folder(self) -> Path:
        root = self.stack.home / "dbt-watcher" / "artifacts" / "build~state" / self.dag_id / GROUP
        folders = [p for p in root.glob("*") if p.is_dir()]
        assert len(folders) == 1, f"one build state per target expected under {root}: {folders}"
        return folders[0]

    # ------------------------------------------------------------------ a run, judged by dbt
    def run(self, conf: dict[str, object] | None = None) -> tuple[Outcome, set[str], set[str]]:
        """Run the DAG; returns the outcome, the nodes dbt built in it and the consumers skipped as unchanged."""
        outcome = run(self.stack, self.dag_id, conf, timeout=420)
        verdict = assert_verdicts(self.stack, outcome, GROUP)
        self.verdicts[outcome.run_id] = verdict
        results = (
            json.loads((self.folder(outcome) / "run_results.json").read_text())["results"] if verdict.status else []
        )
        built = {r["unique_id"] for r in results if r["unique_id"].split(".")[0] in ("model", "seed", "snapshot")}
        skipped = {t for t, s in outcome.group(f"{GROUP}.").items() if s == "skipped"}
        self.check_state()
        return outcome, built, skipped

    def folder(self, outcome: Outcome) -> Path:
        """The run's artifacts folder: from the producer's record of dbt's invocation (there once dbt started
        building, also when the producer ended red), else from its XCom (a run in which dbt built nothing)."""
        found = run_folder(self.stack, self.dag_id, outcome.run_id, GROUP)
        return found or Path(xcom(self.stack, self.dag_id, outcome.run_id, f"{GROUP}.dbt_producer"))

    def check_state(self) -> None:
        """Every node the build state records was green by dbt's verdict in the run it names."""
        state = json.loads((self.state_folder / "builds.json").read_text())
        for uid, build in state["nodes"].items():
            verdict = self.verdicts.get(build["run_id"])
            assert verdict is not None, f"{uid}: recorded from run {build['run_id']}, which this test did not run"
            task = f"{GROUP}.{uid.rsplit('.', 1)[-1]}"
            assert verdict.node_green(uid, task), f"{uid} recorded as built in {build['run_id']}, where dbt says not"

    def reason(self, outcome: Outcome, name: str) -> str:
        log = self.stack.task_log(self.dag_id, outcome.run_id, f"{GROUP}.{name}")
        return next((line for line in log.splitlines() if "unchanged since run" in line), "")


def _prepare_source(scenario: Scenario) -> None:
    """The app events source with a first load, before the first run (its freshness is then on record)."""
    scenario.sql(
        "create table if not exists {schema}.raw_app_events "
        "(event_id integer, customer_id integer, event_type varchar(40), loaded_at timestamp)"
    )
    scenario.load_events((1, "page_view", "2026-01-01 08:00:00"))


def test_skip_unchanged_builds_what_changed_and_nothing_else_on_duckdb(stack: AirflowStack, pg_database: str) -> None:
    s = Scenario(stack, "duckdb", pg_database)
    # A test of our own on the source's reader: data alone can make it fail (below).
    s.edit(
        "models/staging/_staging.yml",
        "  - name: stg_app_events\n",
        "  - name: stg_app_events\n    columns:\n      - name: event_id\n        data_tests: [unique]\n",
    )
    _prepare_source(s)

    first, built, _ = s.run()
    assert first.state == "success" and len(built) == CONSUMERS

    # Nothing changed: nothing builds; every consumer is skipped, naming the run; no asset event.
    second, built, skipped = s.run()
    assert built == set() and len(skipped) == CONSUMERS
    assert second.states[f"{GROUP}.dbt_producer"] == "success" and second.state == "success"
    assert f"unchanged since run {first.run_id}" in s.reason(second, "customers")
    assert asset_events(stack, s.dag_id, second.run_id) == []

    # One model's SQL changes, and the source gets a duplicate event (newer data; its test then fails):
    # the model and what reads it build, and the source's reader; nothing else.
    s.edit("models/staging/stg_customers.sql", "select", "select -- edited by the test\n")
    s.load_events((1, "duplicate", "2026-01-02 08:00:00"))
    third, built, skipped = s.run()
    manifest = json.loads((s.folder(third) / "manifest.json").read_text())
    expected = _descendants(manifest, {STG_CUSTOMERS, STG_APP_EVENTS})
    assert built == expected, f"built {sorted(built)}, expected {sorted(expected)}"
    assert third.states[f"{GROUP}.stg_app_events"] == "failed"  # its test failed in dbt
    assert len(skipped) == CONSUMERS - len(expected)

    # The duplicate goes, the newest load stays: SQL, tests and max_loaded_at are as in the last run, and
    # only the node that failed there builds again.
    s.sql("delete from {schema}.raw_app_events where event_type = 'duplicate'")
    s.load_events((2, "page_view", "2026-01-02 08:00:00"))
    _, built, _ = s.run()
    assert built == {STG_APP_EVENTS}

    # The state is gone: everything builds. A full refresh builds everything too.
    shutil.rmtree(s.state_folder)
    _, built, _ = s.run()
    assert len(built) == CONSUMERS
    _, built, _ = s.run({"full_refresh": True})
    assert len(built) == CONSUMERS


@pytest.mark.postgres_adapter
def test_skip_unchanged_on_postgres(stack: AirflowStack, pg_database: str) -> None:
    s = Scenario(stack, "postgres", pg_database)
    services.query(pg_database, "create schema if not exists unchanged")
    _prepare_source(s)
    first, built, _ = s.run()
    assert first.state == "success" and len(built) == CONSUMERS
    s.edit("models/marts/orders.sql", "select", "select -- edited by the test\n")
    second, built, skipped = s.run()
    manifest = json.loads((s.folder(second) / "manifest.json").read_text())
    assert built == _descendants(manifest, {"model.jaffle_shop.orders"})
    assert len(skipped) == CONSUMERS - len(built) and second.state == "success"
    assert f"unchanged since run {first.run_id}" in s.reason(second, "customers")


def _descendants(manifest: dict[str, object], roots: set[str]) -> set[str]:
    """The roots and every model, seed and snapshot downstream of them, by dbt's child_map."""
    children: dict[str, list[str]] = manifest["child_map"]  # type: ignore[assignment]
    seen, todo = set(roots), list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in seen:
                seen.add(child)
                todo.append(child)
    return {uid for uid in seen if uid.split(".")[0] in ("model", "seed", "snapshot")}
