"""skip_unchanged's decision and build state, with real dbt on the example project (no Airflow).

Each "run" does what a producer's first attempt does: parse, find what is unchanged, mark the rest as
building, build it in one dbt invocation, and record the end from the run's own results.
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dbt_watcher.channel.records import Invocation, RunStatus
from dbt_watcher.channel.wire import FINISHED
from dbt_watcher.invocation.events import NodeResult
from dbt_watcher.invocation.runners import InProcessDbt
from dbt_watcher.producer.unchanged import BuildStateKeeper
from dbt_watcher.project.locate import locate_project
from dbt_watcher.rules import build_state
from dbt_watcher.rules.watch import Watch
from dbt_watcher.runtime.task_dbt import TaskDbt

from ..airflow_line import ROW
from ..conftest import JAFFLE_SHOP

CUSTOMERS = "model.jaffle_shop.customers"
STG_CUSTOMERS = "model.jaffle_shop.stg_customers"
STG_APP_EVENTS = "model.jaffle_shop.stg_app_events"


class Group:
    """The example project, its build state, and one "run" after another."""

    def __init__(self, tmp_path: Path) -> None:
        self.dir = tmp_path / "jaffle_shop"
        shutil.copytree(JAFFLE_SHOP, self.dir, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
        # dbt runs the tests' SQL (dbt-duckdb keeps its database open in this process).
        (self.dir / "macros" / "exec_sql.sql").write_text(
            "{% macro exec_sql(statement) %}{% do run_query(statement) %}{% endmacro %}"
        )
        self.project = locate_project(self.dir)
        self.state = tmp_path / "state"
        self.runs = 0
        self.plan: tuple[str, ...] = ()
        self.target = "target-1"
        #: What has a consumer (a group may leave the seeds to another DAG).
        self.types = ("model", "seed", "snapshot")
        self.names: dict[str, str] = {}

    def run(
        self,
        *,
        vars: dict[str, Any] | None = None,
        full_refresh: bool = False,
        dbt_args: tuple[str, ...] = (),
        after_each: bool = False,
        events: frozenset[str] = frozenset(),
        between: Callable[[], None] | None = None,
    ) -> tuple[set[str], set[str]]:
        """One run; returns (nodes skipped as unchanged, nodes that dbt built successfully). ``events``: sources
        named by the asset events that triggered it; ``between``: what happens while dbt builds."""
        self.runs += 1
        runner = InProcessDbt()
        invocation = Invocation(vars or {}, full_refresh, dbt_args)
        dbt = TaskDbt(self.project, runner, invocation, self.dir / f"run-{self.runs}")
        assert runner.prepare(dbt.command("parse")).ran
        self._read_plan(dbt.target_path)
        # Under after_each a node has two consumers: its own (tests do not gate it) and its tests' task.
        watches = [Watch(uid, gated=not after_each) for uid in self.plan]
        watches += [Watch(uid) for uid in self.plan] if after_each else []
        keeper = BuildStateKeeper(self.state, f"run_{self.runs}", tuple(watches), self.target, changed_by_events=events)
        unchanged = keeper.plan_run(dbt, self.plan)
        results: dict[str, NodeResult] = {
            uid: NodeResult(uid, "excluded", message=b.reason, attempt=1) for uid, b in unchanged.items()
        }
        selection: dict[str, dict[str, str]] = {}
        todo = [self.names[uid] for uid in self.plan if uid not in unchanged]
        if todo:
            outcome, built, events = dbt.run_collecting(dbt.command("build", select=todo), attempt=1)
            assert outcome.ran
            results.update(built)
            positions = {uid: i for i, uid in enumerate(self.plan)}
            selection = dbt.gates(events.selected or frozenset(), positions)
        if between is not None:
            between()
        status = RunStatus("g1", 1, FINISHED, results, selection=selection, selection_attempt=1)
        keeper.record(status)
        succeeded = {uid for uid, r in results.items() if r.succeeded and uid in self.plan}
        return set(unchanged), succeeded

    def _read_plan(self, target: Path) -> None:
        manifest = json.loads((target / "manifest.json").read_text())
        nodes = manifest["nodes"].values()
        built = [n for n in nodes if n["resource_type"] in ("model", "seed", "snapshot")]
        self.plan = tuple(sorted(n["unique_id"] for n in built if n["resource_type"] in self.types))
        self.names = {n["unique_id"]: n["name"] for n in built}

    def edit(self, relative: str, old: str, new: str) -> None:
        path = self.dir / relative
        text = path.read_text()
        assert old in text
        path.write_text(text.replace(old, new))

    def sql(self, statement: str) -> None:
        args = ("--args", json.dumps({"statement": statement}))
        command = self.project.command("run-operation exec_sql", target_path=self.dir / "ops", extra_args=args)
        assert InProcessDbt().run(command).exit_code == 0


#: Each case runs dbt several times: a version row runs the two that cover dbt's state comparison and the
#: record on its dbt line (tests/unit is run once per row, four at a time, in CI), the main row every one.
main_row_only = pytest.mark.skipif(bool(ROW), reason="the main row runs it; a version row runs the core cases")


@pytest.fixture
def group(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Group:
    # A database of the test's own: dbt-duckdb keeps one open per path for the whole process.
    monkeypatch.setenv("JAFFLE_DUCKDB_PATH", str(tmp_path / "jaffle_shop.duckdb"))
    group = Group(tmp_path)
    unchanged, built = group.run()
    assert unchanged == set() and built == set(group.plan)  # run 1: no state, everything builds
    return group


def test_nothing_changed_builds_nothing_and_a_change_builds_its_subtree(group: Group) -> None:
    group.sql("insert into main.raw_app_events values (1, 1, 'click', timestamp '2026-01-01 00:00:00')")
    group.run()  # the source now has a max_loaded_at on record
    unchanged, built = group.run()
    assert built == set() and unchanged == set(group.plan)
    state, _ = build_state.load(group.state)
    assert state is not None and state.nodes[CUSTOMERS].reason.startswith("unchanged since run run_")

    group.edit("models/staging/stg_customers.sql", "select", "select /* edited */")
    unchanged, built = group.run()
    downstream = {STG_CUSTOMERS, CUSTOMERS, "model.jaffle_shop.customer_lifetime_value"}
    assert downstream <= built
    assert built == set(group.plan) - unchanged
    assert "model.jaffle_shop.stg_orders" in unchanged and "seed.jaffle_shop.raw_customers" in unchanged

    # New data in a source (its max_loaded_at moved): its readers build, nothing else.
    group.sql("insert into main.raw_app_events values (2, 1, 'click', timestamp '2026-02-01 00:00:00')")
    unchanged, built = group.run()
    assert STG_APP_EVENTS in built and CUSTOMERS in unchanged


@main_row_only
def test_under_after_each_a_node_whose_tests_failed_is_not_recorded(group: Group) -> None:
    group.edit(
        "models/staging/_staging.yml",
        "  - name: stg_app_events\n",
        "  - name: stg_app_events\n    columns:\n      - name: event_id\n        data_tests: [unique]\n",
    )
    duplicates = "(1, 1, 'a', timestamp '2026-01-01'), (1, 1, 'b', timestamp '2026-01-01')"
    group.sql(f"insert into main.raw_app_events values {duplicates}")
    group.run(after_each=True)
    state, _ = build_state.load(group.state)
    assert state is not None and STG_APP_EVENTS not in state.nodes and CUSTOMERS in state.nodes


@main_row_only
def test_a_model_marked_to_always_build_builds_with_what_reads_it(group: Group) -> None:
    group.edit(
        "models/marts/_marts.yml",
        "  - name: daily_revenue\n",
        "  - name: daily_revenue\n    config:\n      meta:\n        dbt_watcher: {skip_unchanged: false}\n",
    )
    group.run()
    unchanged, built = group.run()
    assert "model.jaffle_shop.daily_revenue" in built and CUSTOMERS in unchanged


@main_row_only
def test_a_seed_dbt_compares_by_path_alone_always_builds(group: Group) -> None:
    big = "id,value\n" + "".join(f"{i},{'x' * 20}\n" for i in range(50_000))  # over 1 MiB
    (group.dir / "seeds" / "big_seed.csv").write_text(big)
    group.run()
    unchanged, built = group.run()
    assert "seed.jaffle_shop.big_seed" in built and CUSTOMERS in unchanged


@main_row_only
def test_a_consumer_rebuild_is_forgotten(group: Group) -> None:
    build_state.forget(group.state, [STG_CUSTOMERS])
    state, _ = build_state.load(group.state)
    assert state is not None and STG_CUSTOMERS not in state.nodes and CUSTOMERS in state.nodes
    nodes = json.loads((group.state / "manifest.json").read_text())["nodes"].values()
    assert not any("compiled_code" in node for node in nodes)  # the kept manifest holds no compiled SQL


def test_a_node_whose_test_failed_builds_again_with_nothing_changed(group: Group) -> None:
    group.edit(
        "models/staging/_staging.yml",
        "  - name: stg_app_events\n",
        "  - name: stg_app_events\n    columns:\n      - name: event_id\n        data_tests: [unique]\n",
    )
    group.sql(
        "insert into main.raw_app_events values (1, 1, 'click', timestamp '2026-01-01 00:00:00'), "
        "(1, 1, 'duplicate', timestamp '2026-01-01 00:00:00')"
    )
    unchanged, built = group.run()
    assert STG_APP_EVENTS in built  # the model built, its gating test failed: not green, not recorded
    state, _ = build_state.load(group.state)
    assert state is not None and STG_APP_EVENTS not in state.nodes and CUSTOMERS in state.nodes

    # Same SQL, same test, same max_loaded_at: only the last build's failure says it must build again.
    group.sql("delete from main.raw_app_events where event_type = 'duplicate'")
    unchanged, built = group.run()
    assert built == {STG_APP_EVENTS} and CUSTOMERS in unchanged
    state, _ = build_state.load(group.state)
    assert state is not None and STG_APP_EVENTS in state.nodes


@main_row_only
def test_a_changed_context_full_refresh_and_a_broken_state_build_everything(
    group: Group, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert group.run(vars={"region": "eu"})[0] == set()
    assert group.run(full_refresh=True)[0] == set()
    assert group.run(dbt_args=("--empty",))[0] == set()  # other data from the same SQL: not a build of it
    assert group.run()[0] == set()
    # An environment variable read only while dbt executes (dbt's parse does not record it)
    group.edit(
        "models/staging/stg_orders.sql",
        "select",
        "select {% if execute %}'{{ env_var('SHOP_FLAG', 'a') }}' as flag, {% endif %}",
    )
    group.run()
    monkeypatch.setenv("SHOP_FLAG", "b")
    assert group.run()[0] == set()
    # The profile rendered now: a value it reads from the environment (here the DuckDB file) changed.
    monkeypatch.setenv("JAFFLE_DUCKDB_PATH", str(group.dir.parent / "elsewhere.duckdb"))
    assert group.run()[0] == set()
    (group.state / "builds.json").write_text("{not json")
    assert group.run()[0] == set()
    assert group.run()[0]  # the broken state was replaced by the run's own record


@main_row_only
def test_a_new_test_builds_the_model_it_gates(group: Group) -> None:
    clv = "model.jaffle_shop.customer_lifetime_value"
    group.edit(
        "models/marts/_marts.yml",
        "  - name: customer_lifetime_value\n",
        "  - name: customer_lifetime_value\n    columns:\n      - name: customer_id\n        data_tests: [not_null]\n",
    )
    unchanged, built = group.run()
    assert clv in built and "model.jaffle_shop.orders" in unchanged


@main_row_only
def test_an_asset_event_on_a_source_builds_its_readers(group: Group) -> None:
    group.sql("insert into main.raw_app_events values (1, 1, 'click', timestamp '2026-01-01 00:00:00')")
    group.run()
    assert group.run()[1] == set()
    assert group.run(events=frozenset({"source.jaffle_shop.app.events"}))[1] == {STG_APP_EVENTS}


@main_row_only
def test_nodes_reading_data_another_dag_builds_always_build(group: Group) -> None:
    group.types = ("model", "snapshot")  # the seeds are someone else's: their data may change any time
    group.sql("insert into main.raw_app_events values (1, 1, 'click', timestamp '2026-01-01 00:00:00')")
    group.run()
    unchanged, built = group.run()
    assert unchanged == {STG_APP_EVENTS}  # the one model that reads no seed
    assert {STG_CUSTOMERS, CUSTOMERS} <= built


@main_row_only
def test_a_run_that_finds_the_state_rewritten_meanwhile_records_nothing(group: Group) -> None:
    def another_run_writes() -> None:
        build_state.save(group.state, context={}, nodes={})

    group.run(between=another_run_writes)
    state, _ = build_state.load(group.state)
    assert state is not None and state.nodes == {}
    assert group.run()[0] == set()  # nothing on record: everything builds, and is recorded
    assert build_state.load(group.state)[0].nodes  # type: ignore[union-attr]


@main_row_only
def test_render_says_what_a_run_would_build_now(group: Group, tmp_path: Path) -> None:
    from dbt_watcher import cli, dbt_watcher_group

    artifacts = tmp_path / "artifacts"
    argv = ["render", str(group.dir), "--format", "text", "--unchanged-in", "daily", "--artifacts-dir", str(artifacts)]
    preview = cli.render_preview(cli._parser().parse_args(argv))
    assert f"a run now builds {len(group.plan)} of {len(group.plan)} nodes" in preview  # no state there yet

    # A run of the DAG's group records its builds where the preview looks (the same target and group).
    group.state = Path(re.search(r"build state in (\S+):", preview).group(1))  # type: ignore[union-attr]
    graph, _ = dbt_watcher_group(project_dir=group.dir)(lambda: None).load()
    group.target = build_state.fingerprint(graph.target.to_json())
    group.sql("insert into main.raw_app_events values (1, 1, 'click', timestamp '2026-01-01 00:00:00')")
    group.run()
    group.edit("models/marts/orders.sql", "select", "select -- edited\n")
    preview = cli.render_preview(cli._parser().parse_args(argv))
    assert "a run now builds 4 of 18 nodes" in preview, preview  # orders and the three models reading it
    assert "  build      model.jaffle_shop.customer_lifetime_value" in preview
    assert "  unchanged  model.jaffle_shop.customers: unchanged since run run_" in preview
