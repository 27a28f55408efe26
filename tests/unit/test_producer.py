"""The producer's attempts, retries and verdicts with a fake dbt runner (the real stack proves the rest)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any, cast

import pytest

from dbt_watcher import airflow_lines, compat
from dbt_watcher.airflow_lines import AirflowException, AirflowFailException
from dbt_watcher.channel.channel import StatusChannel
from dbt_watcher.config import WatcherConfig
from dbt_watcher.errors import DbtInvocationError
from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.invocation.runners import Outcome
from dbt_watcher.invocation.selection import SELECTION_EVENT, TestFacts
from dbt_watcher.producer import operator as producer_module
from dbt_watcher.producer.ledger import LedgerBook
from dbt_watcher.producer.operator import DbtProducerOperator
from dbt_watcher.producer.resume import nodes_to_resume
from dbt_watcher.project.selection import Selection
from dbt_watcher.rules.assets import producer_alias
from dbt_watcher.rules.emission import EMITTED, emitted_record
from dbt_watcher.rules.verdict import Action, final_decision
from dbt_watcher.rules.watch import ConsumerTask, Watch
from dbt_watcher.runtime.group_runtime import GroupRuntime
from tests.unit.fakes import MemoryStore

from ..conftest import JAFFLE_SHOP
from .fakes import OutletsFake, TaskStateStoreFake
from .graphs import model

if TYPE_CHECKING:
    from airflow.sdk import Context

A, B = "model.shop.a", "model.shop.b"
TEST_B = "test.shop.not_null_b.abc"
TEST_FACTS = TestFacts(TEST_B, attached_node=B, file_key_name="models.b", depends_on=(B,), fqn=("shop", "not_null_b"))
PRODUCER = "shop.dbt_producer"


def node_events(uid: str, status: str) -> list[tuple[str, dict[str, Any]]]:
    info = {"unique_id": uid, "resource_type": uid.split(".", maxsplit=1)[0]}
    return [("NodeStart", {"node_info": info}), ("NodeFinished", {"node_info": info, "run_result": {"status": status}})]


class FakeRunner:
    """Plays dbt's events, writes its run_results.json, exits with ``code``; or dies at ``die_after``; or,
    with ``raises``, ends as a dbt that raised: no run_results.json, ``Outcome(ran=False)``."""

    def __init__(
        self,
        events: list[tuple[str, dict[str, Any]]],
        code: int = 0,
        *,
        die_after: int | None = None,
        run_results: list[dict[str, Any]] | None = None,
        die_at_end: bool = False,
        raises: str | None = None,
    ) -> None:
        self.die_at_end, self.raises = die_at_end, raises
        self.events, self.code, self.die_after, self.run_results = events, code, die_after, run_results
        self.commands: list[Any] = []

    def prepare(self, command: Any) -> Outcome:
        return Outcome(True)

    def list_ids(self, command: Any) -> list[str]:
        return []

    def test_facts(self, target_path: Path, test_ids: Any) -> dict[str, TestFacts]:
        """The fake project's one test, on model b."""
        return {t: TEST_FACTS for t in test_ids if t == TEST_B}

    def run(self, command: Any, on_event: Any = None) -> Outcome:
        self.commands.append(command)
        for i, (name, data) in enumerate(self.events):
            if self.die_after is not None and i >= self.die_after:
                raise SystemExit("killed")  # what a SIGTERM looks like to the task
            on_event(name, data)
        if self.raises is not None:
            return Outcome(False, error=self.raises, exit_code=2)
        results = self.run_results
        if results is None:
            results = [
                {"unique_id": d["node_info"]["unique_id"], "status": d["run_result"]["status"]}
                for n, d in self.events
                if n == "NodeFinished"
            ]
        command.target_path.mkdir(parents=True, exist_ok=True)
        (command.target_path / "run_results.json").write_text(json.dumps({"results": results}))
        test = {
            "attached_node": B,
            "file_key_name": "models.b",
            "depends_on": {"nodes": [B]},
            "fqn": ["shop", "not_null_b"],
        }
        (command.target_path / "manifest.json").write_text(json.dumps({"nodes": {TEST_B: test}}))
        if self.die_at_end:
            raise SystemExit("killed after dbt wrote run_results.json")
        return Outcome(True, exit_code=self.code)


class Stage:
    """One DAG run of a two-model group: the producer's XComs, its Task State Store, Airflow's states."""

    def __init__(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, emits: bool = False, **config: Any) -> None:
        # The stage is a line with a Task State Store (Airflow 3.3; it hands one to every try), whatever line
        # runs the test; the producer without one: tests/unit/test_airflow_lines.py.
        monkeypatch.setattr(airflow_lines, "has_task_state_store", lambda: True)
        self.xcoms, self.tss = MemoryStore(), TaskStateStoreFake()
        self.audit_record: Any = None  # the audit's XCom of the asset events it emitted
        self.emitted: list[str] = []  # asset events Airflow registered: those of the tries that ended green
        self.states: dict[str, str] = {}
        self.clear_number = 0
        cfg = WatcherConfig(project_dir=str(JAFFLE_SHOP), artifacts_dir=str(tmp_path / "artifacts"), **config)
        project = DbtProject(JAFFLE_SHOP, JAFFLE_SHOP)
        runtime = GroupRuntime(cfg, "shop", PRODUCER, project, Selection(), consumer_positions={A: 0, B: 1})
        consumers = [
            ConsumerTask(
                f"shop.{uid.split('.')[-1]}",
                model(uid.split(".")[-1]),
                Watch(uid, True, (), runtime.producer_resumes),
                f"fqn:shop.{uid}",
                asset_uri=f"duckdb://db/main/{uid.split('.')[-1]}" if emits else None,
                ends_in_triggerer=emits,
            )
            for uid in (A, B)
        ]
        alias = producer_alias("d", "shop") if emits else None
        self.producer = DbtProducerOperator(task_id="dbt_producer", runtime=runtime, consumers=consumers, alias=alias)
        self.runner: FakeRunner | None = None
        self.env: dict[str, str] = {}  # the env= the producer's try rendered for its session

        @contextlib.contextmanager
        def session(_: Any, env: Mapping[str, str] | None = None) -> Iterator[tuple[DbtProject, FakeRunner]]:
            assert self.runner is not None
            self.env = dict(env or {})
            yield project, self.runner

        monkeypatch.setattr(GroupRuntime, "session", session)
        monkeypatch.setattr(producer_module, "STALL_WINDOW", 0.0)  # stall reports: tests/unit/test_stall.py
        monkeypatch.setattr(compat, "xcom_set", lambda *a, key, value: self.xcoms.set(key, value))
        monkeypatch.setattr(
            compat, "xcom_get", lambda *a, key: self.audit_record if key == EMITTED else self.xcoms.get(key)
        )
        monkeypatch.setattr(compat, "task_states", lambda *a, **kw: dict(self.states))

    def attempt(self, number: int, runner: FakeRunner | None) -> str:
        """Run producer try ``number``; a new try starts with empty XComs, as in Airflow."""
        self.runner = runner
        self.xcoms.data.clear()
        outlets = OutletsFake()
        context = cast(
            "Context",
            {
                "ti": SimpleNamespace(try_number=number, map_index=-1, dag_id="d", run_id="r1", task_id=PRODUCER),
                "run_id": "r1",
                "dag_run": SimpleNamespace(clear_number=self.clear_number),
                "task_state_store": self.tss,
                "outlet_events": outlets,
            },
        )
        result = str(self.producer.execute(context))
        self.emitted += outlets.uris  # Airflow registers the events of a try that succeeds, only
        return result

    def status(self) -> Any:
        return StatusChannel(self.xcoms).read_all()

    def ledger(self) -> Any:
        return LedgerBook(self.tss).load()


GOOD = [*node_events(A, "success"), *node_events(B, "success"), *node_events(TEST_B, "pass")]


def test_a_clean_build_is_green_and_records_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = Stage(tmp_path, monkeypatch)
    stage.attempt(1, FakeRunner(GOOD))
    status = stage.status()
    assert status.state == "finished" and status.exit_code == 0 and status.built
    assert StatusChannel(stage.xcoms).read_invocation() is not None  # written when dbt started its first node
    ledger = stage.ledger()
    assert ledger.attempts[0].dbt_started and ledger.last_ended.exit_code == 0


def test_a_failed_model_makes_the_producer_red_without_a_pointless_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = Stage(tmp_path, monkeypatch)
    events = [*node_events(A, "error"), *node_events(B, "skipped")]
    with pytest.raises(AirflowFailException, match=r"dbt exited with code 1.*model\.shop\.a \(error\)"):
        stage.attempt(1, FakeRunner(events, code=1))
    assert stage.status().results[A].status == "error"


def test_a_failed_project_hook_makes_the_producer_red_while_nodes_stay_green(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kind 6: every node succeeded, dbt exited 1 because on-run-end failed
    stage = Stage(tmp_path, monkeypatch)
    hook = {
        "unique_id": "operation.shop.shop-on-run-end-0",
        "status": "error",
        "message": "relation audit does not exist",
    }
    results = [
        {"unique_id": A, "status": "success"},
        {"unique_id": B, "status": "success"},
        {"unique_id": TEST_B, "status": "pass"},
        hook,
    ]
    with pytest.raises(AirflowFailException, match="on-run-end-0 error: relation audit does not exist"):
        stage.attempt(1, FakeRunner(GOOD, code=1, run_results=results))
    status = stage.status()
    assert final_decision(stage.producer.consumers[1].watch, status).action is Action.SUCCEED
    assert "relation audit" in (status.error or "")


def test_an_attempt_that_died_before_dbt_started_is_retried_as_a_first_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kind 5: nothing was built, so there is no record to rebuild nodes with, and the retry builds all
    stage = Stage(tmp_path, monkeypatch)
    with pytest.raises(SystemExit):
        stage.attempt(1, FakeRunner(GOOD, die_after=0))
    assert not stage.ledger().built and StatusChannel(stage.tss).read_invocation() is None
    runner = FakeRunner(GOOD)
    stage.attempt(2, runner)
    assert len(runner.commands) == 1 and runner.commands[0].select == ()  # the whole selection
    assert stage.status().results[A].attempt == 2


def test_a_skip_retry_after_a_crash_republishes_builds_nothing_and_stays_red(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = Stage(tmp_path, monkeypatch)
    with pytest.raises(SystemExit):
        stage.attempt(1, FakeRunner(GOOD, die_after=3))  # a built; b started, never finished
    runner = FakeRunner(GOOD)
    with pytest.raises(AirflowFailException, match="did not finish"):
        stage.attempt(2, runner)
    assert runner.commands == []
    status = stage.status()
    assert status.results[A].status == "success" and B not in status.results and status.attempt == 2


def test_a_resume_retry_builds_only_what_did_not_succeed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = Stage(tmp_path, monkeypatch, producer_retry="resume")
    with pytest.raises(AirflowException):
        stage.attempt(1, FakeRunner([*node_events(A, "success"), *node_events(B, "error")], code=1))
    runner = FakeRunner([*node_events(B, "success"), *node_events(TEST_B, "pass")])
    stage.attempt(2, runner)
    assert runner.commands[0].select == (f"fqn:shop.{B}",)
    assert final_decision(stage.producer.consumers[1].watch, stage.status()).action is Action.SUCCEED


def test_a_resume_retry_after_nodes_were_left_out_keeps_its_own_selection(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Attempt 1 leaves a out (a rendered select matches b only), builds b, and b's test fails: the resume
    # runs that test alone, as the run selected it, and does not build b again (nor a).
    stage = Stage(tmp_path, monkeypatch, producer_retry="resume")
    stage.producer.dbt_select = "b"
    first = FakeRunner([(SELECTION_EVENT, {"unique_ids": [B, TEST_B]}), *node_events(B, "success")], code=1)
    first.list_ids = lambda command: [B]  # type: ignore[method-assign]
    first.events.extend(node_events(TEST_B, "fail"))
    with pytest.raises(AirflowException):
        stage.attempt(1, first)
    assert stage.status().results[A].excluded
    runner = FakeRunner(node_events(TEST_B, "pass"))
    stage.attempt(2, runner)
    assert [c.select for c in runner.commands] == [(TEST_FACTS.selector,)]


def test_a_whole_group_clear_is_a_new_generation_and_a_fresh_build(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # kind 3: a DAG-run clear or a backfill reprocess; the earlier status must not count as built
    stage = Stage(tmp_path, monkeypatch)
    stage.attempt(1, FakeRunner(GOOD))
    first = stage.status().generation
    stage.clear_number, stage.states = 1, {"shop.a": "none", "shop.b": "none"}
    runner = FakeRunner(GOOD)
    stage.attempt(2, runner)
    assert len(runner.commands) == 1 and stage.status().generation != first


def test_clearing_only_the_producer_does_not_build_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = Stage(tmp_path, monkeypatch)
    stage.attempt(1, FakeRunner(GOOD))
    first = stage.status().generation
    stage.clear_number, stage.states = 1, {"shop.a": "success", "shop.b": "success"}
    runner = FakeRunner(GOOD)
    stage.attempt(2, runner)  # green: the run's build exited 0
    assert runner.commands == [] and stage.status().generation == first


def test_with_fail_fast_the_closing_record_is_published_and_final(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = Stage(tmp_path, monkeypatch, dbt_args=["--fail-fast"])
    events = [*node_events(A, "error"), *node_events(B, "success")]
    results = [
        {"unique_id": A, "status": "error"},
        {"unique_id": B, "status": "skipped", "message": "Skipping due to fail_fast"},
    ]
    with pytest.raises(AirflowFailException):
        stage.attempt(1, FakeRunner(events, code=1, run_results=results))
    status = stage.status()
    assert status.final_only and status.results[B].status == "skipped" and status.results[B].closing
    assert final_decision(stage.producer.consumers[1].watch, status).action is Action.FAIL


def test_with_fail_fast_a_dbt_that_raised_leaves_its_live_events_as_its_last_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dbt-duckdb can raise while --fail-fast cancels the other threads' queries: no run_results.json
    stage = Stage(tmp_path, monkeypatch, dbt_args=["--fail-fast"])
    selection = (SELECTION_EVENT, {"unique_ids": [A, B, TEST_B]})
    events = [selection, *node_events(A, "success"), *node_events(B, "success")]  # TEST_B never ran
    with pytest.raises(DbtInvocationError, match="stopped after it started building: ConnectionException"):
        stage.attempt(1, FakeRunner(events, raises="ConnectionException: Connection already closed!"))
    status = stage.status()
    assert not status.final_only and status.error and "Connection already closed" in status.error
    a, b = (consumer.watch for consumer in stage.producer.consumers)
    assert final_decision(a, status).action is Action.SUCCEED  # dbt's last word: success, no test gates it
    decision = final_decision(b, status)  # built, but its test was cancelled: not proven
    assert decision.action is Action.FAIL and "not_null_b" in decision.reason


def test_with_fail_fast_a_producer_killed_after_dbts_closing_record_publishes_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # dbt wrote run_results.json (the test it cancelled: skipped), then the task was killed
    stage = Stage(tmp_path, monkeypatch, dbt_args=["--fail-fast"])
    events = [*node_events(A, "error"), *node_events(B, "success"), *node_events(TEST_B, "pass")]
    results = [
        {"unique_id": A, "status": "error"},
        {"unique_id": B, "status": "success"},
        {"unique_id": TEST_B, "status": "skipped", "message": "Skipping due to fail_fast"},
    ]
    with pytest.raises(SystemExit):
        stage.attempt(1, FakeRunner(events, code=1, run_results=results, die_at_end=True))
    status = stage.status()
    assert status.final_only and status.results[TEST_B].closing and status.results[TEST_B].skipped
    assert final_decision(stage.producer.consumers[1].watch, status).action is Action.FAIL


def test_resume_rebuilds_failed_nodes_and_tests_not_green_consumers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    stage = Stage(tmp_path, monkeypatch)
    stage.attempt(1, FakeRunner(GOOD))
    previous = stage.status()
    consumers = stage.producer.consumers
    assert nodes_to_resume(consumers, previous, {}) == ()
    from dataclasses import replace

    from dbt_watcher.invocation.events import NodeResult

    broken: Mapping[str, NodeResult] = {**previous.results, TEST_B: NodeResult(TEST_B, "fail")}
    assert nodes_to_resume(consumers, replace(previous, results=broken), {}) == (TEST_FACTS.selector,)
    assert nodes_to_resume(consumers, replace(previous, results=broken), {"shop.b": "success"}) == ()


def test_an_attempt_killed_after_dbt_finished_is_recovered_from_dbts_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Airflow terminated the task (its api-server was down) after dbt wrote run_results.json
    stage = Stage(tmp_path, monkeypatch)
    with pytest.raises(SystemExit):
        stage.attempt(1, FakeRunner(GOOD, die_at_end=True))
    runner = FakeRunner(GOOD)
    stage.attempt(2, runner)  # green: dbt's own record of attempt 1 says it exited 0
    assert runner.commands == []
    status = stage.status()
    assert all(final_decision(c.watch, status).action is Action.SUCCEED for c in stage.producer.consumers)
    assert stage.ledger().attempts[0].exit_code == 0


def test_a_hook_that_raises_is_published_at_once_and_consumers_wait_for_the_retry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dbt_watcher.rules.verdict import View, decide

    stage = Stage(tmp_path, monkeypatch)

    def hook() -> None:
        raise RuntimeError("the warehouse's API is down")

    stage.producer.hook = hook
    with pytest.raises(RuntimeError):
        stage.attempt(1, FakeRunner(GOOD))
    status = stage.status()
    assert status.state == "failed" and not status.built and "API is down" in (status.error or "")
    watch = stage.producer.consumers[0].watch
    assert decide(watch, View(status, producer_state="up_for_retry"), try_number=1).action is Action.WAIT
    assert decide(watch, View(status, producer_state="failed"), try_number=1).action is Action.FAIL
    stage.producer.hook = None
    runner = FakeRunner(GOOD)
    stage.attempt(2, runner)
    assert len(runner.commands) == 1 and runner.commands[0].select == ()


def test_asset_events_come_from_a_green_try_once_and_never_from_a_red_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Airflow drops a failed task's asset events: a red try must not count its events as emitted
    stage = Stage(tmp_path, monkeypatch, emits=True)
    with pytest.raises(AirflowFailException):
        stage.attempt(1, FakeRunner([*node_events(A, "success"), *node_events(B, "error")], code=1))
    assert stage.emitted == [] and stage.ledger().assets_emitted == frozenset()
    # the audit emitted a's event for the red try; b was rebuilt green by its own consumer
    stage.audit_record = emitted_record(stage.status().generation, [A])
    stage.clear_number, stage.states = 1, {"shop.a": "success", "shop.b": "success"}
    stage.attempt(2, FakeRunner(GOOD))  # green: every node succeeded in this run; builds nothing
    assert stage.emitted == []  # a's event came from the audit, b's from its consumer on a worker


def test_a_green_try_emits_each_node_once_per_generation(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    stage = Stage(tmp_path, monkeypatch, emits=True)
    stage.attempt(1, FakeRunner(GOOD))
    assert stage.emitted == ["duckdb://db/main/a", "duckdb://db/main/b"]
    stage.clear_number, stage.states = 1, {"shop.a": "success", "shop.b": "success"}
    stage.attempt(2, FakeRunner(GOOD))
    assert len(stage.emitted) == 2  # a clear of the producer emits nothing again
