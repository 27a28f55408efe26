"""In-process dbtRunner and a dbt subprocess with JSON logs must yield the same node results."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from dbt_watcher.invocation.command import DbtProject
from dbt_watcher.invocation.events import InvocationEvents, NodeResult
from dbt_watcher.invocation.runners import InProcessDbt, SubprocessDbt
from dbt_watcher.project.locate import locate_project

from ..conftest import JAFFLE_SHOP

DBT = str(Path(sys.executable).parent / "dbt")


def _project(tmp_path: Path, name: str) -> DbtProject:
    copy = tmp_path / name
    shutil.copytree(JAFFLE_SHOP, copy, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    return locate_project(copy)


def _comparable(result: NodeResult) -> tuple[object, ...]:
    # Timing values differ from run to run; which fields are present must not.
    return (
        result.unique_id,
        result.status,
        result.resource_type,
        result.started_at is not None,
        result.completed_at is not None,
        result.execution_time is not None,
        result.rows_affected,
        result.adapter_code,
        result.relation_name,
        result.failures,
        bool(result.message),
    )


def test_both_runners_give_the_same_event_stream(tmp_path: Path) -> None:
    streams = {}
    for name, runner in (("in_process", InProcessDbt()), ("subprocess", SubprocessDbt(DBT))):
        project = _project(tmp_path, name)
        results: list[NodeResult] = []
        command = project.command("build", target_path=tmp_path / f"{name}-target", log_path=tmp_path / f"{name}-logs")
        events = InvocationEvents(on_node=results.append)
        outcome = runner.run(command, on_event=events)
        assert outcome.ran and outcome.error is None and outcome.exit_code == 0
        # dbt's own selection, reported before the first node, is what the build ran (unit tests aside)
        assert events.selected == frozenset(r.unique_id for r in results if not r.unique_id.startswith("unit_test."))
        streams[name] = sorted(_comparable(r) for r in results)
        assert all("status" in r.asset_extra() for r in results)
    assert streams["in_process"] == streams["subprocess"]
    assert len(streams["in_process"]) == 31


def test_the_selection_follows_the_invocations_indirect_selection(tmp_path: Path) -> None:
    # --indirect-selection empty: dbt builds the model and none of its tests, so none may be awaited
    project = _project(tmp_path, "indirect")
    for mode, expect_tests in (("empty", False), ("eager", True)):
        target = tmp_path / f"target-{mode}"
        command = project.command(
            "build", select=("orders",), target_path=target, extra_args=("--indirect-selection", mode)
        )
        events = InvocationEvents()
        assert InProcessDbt().run(command, on_event=events).ran
        assert events.selected is not None and "model.jaffle_shop.orders" in events.selected
        assert any(uid.startswith("test.") for uid in events.selected) is expect_tests


def test_both_runners_list_the_same_nodes_and_report_a_broken_profile(tmp_path: Path) -> None:
    ids = {}
    unmatched: list[str] = []
    for name, runner in (("in_process", InProcessDbt()), ("subprocess", SubprocessDbt(DBT))):
        project = _project(tmp_path, name)
        command = project.command("ls", select=("tag:marts",))
        if isinstance(runner, SubprocessDbt):
            # A criterion next to a valid one that matches nothing (a typo) is reported, not fatal.
            command = project.command("ls", select=("tag:marts", "stg_orderz"))
            ids[name] = sorted(runner.list_ids(command, unmatched.append))
        else:
            ids[name] = sorted(runner.list_ids(command))
        outcome = runner.run(project.command("build").with_(target="nope"))
        assert not outcome.ran and outcome.error and "nope" in outcome.error, (name, outcome)
        assert outcome.exit_code == 2
    assert ids["in_process"] == ids["subprocess"] and len(ids["in_process"]) == 10
    assert unmatched == ["stg_orderz"]


def test_env_is_set_for_the_session_masked_when_secret_and_restored_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    from dbt_watcher.invocation import session

    masked: list[str] = []
    monkeypatch.setattr("airflow.sdk.log.mask_secret", lambda value, name=None: masked.append(value))
    project = DbtProject(project_dir=JAFFLE_SHOP, profiles_dir=tmp_path)
    env = {"JAFFLE_TARGET": "duckdb", "WAREHOUSE_PASSWORD": "pw-81723", "DBT_ENV_SECRET_TOKEN": "tok-3321"}
    with session.dbt_session(project, env=env) as (_project, runner):
        assert isinstance(runner, InProcessDbt)
        assert {k: os.environ.get(k) for k in env} == env
    assert not any(k in os.environ for k in env)
    assert sorted(masked) == ["pw-81723", "tok-3321"]  # the schema-like value stays readable in logs


def test_env_names_and_values_are_checked_and_templates_wait_for_the_run() -> None:
    from dbt_watcher.config import WatcherConfig
    from dbt_watcher.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="not environment variable names"):
        WatcherConfig(project_dir="p", env={"1BAD": "x"})
    with pytest.raises(ConfigurationError, match="values that are not strings"):
        WatcherConfig(project_dir="p", env={"PORT": 5432})  # type: ignore[dict-item]
    cfg = WatcherConfig(project_dir="p", env={"A": "1", "DAY": "{{ ds }}"})
    assert cfg.parse_env == {"A": "1"}


def test_install_deps_on_a_read_only_project_installs_into_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cache_dir: Path
) -> None:
    import os

    from dbt_watcher.invocation import session

    helper = tmp_path / "helper_pkg"
    (helper / "macros").mkdir(parents=True)
    (helper / "dbt_project.yml").write_text("name: helper_pkg\nversion: '1.0'\nconfig-version: 2\n")
    (helper / "macros" / "one.sql").write_text("{% macro one() %}1{% endmacro %}\n")
    bundle = tmp_path / "bundle" / "jaffle_shop"
    shutil.copytree(JAFFLE_SHOP, bundle, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*", ".dbt_watcher"))
    (bundle / "packages.yml").write_text(f"packages:\n  - local: {helper}\n")
    real_access = os.access  # root may write anywhere: the bundle is made read-only for this check alone
    monkeypatch.setattr(os, "access", lambda p, mode: str(p) != str(bundle) and real_access(p, mode))
    project = DbtProject(project_dir=bundle, profiles_dir=bundle)
    with session.dbt_session(project, install_deps=True, cache_dir=cache_dir, with_secrets=False) as (used, _runner):
        assert used.project_dir != bundle and used.project_dir.is_relative_to(cache_dir)
        assert (used.project_dir / "dbt_packages" / "helper_pkg").exists()
        assert used.profiles_dir == used.project_dir
    assert not (bundle / "dbt_packages").exists()  # the bundle was never written to


def test_a_timeout_raised_while_dbt_runs_is_airflows_not_a_dbt_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    # Airflow's DAG import timeout is a BaseException raised by a signal handler inside dbt's code; dbtRunner
    # catches it into its result. Reported as "dbt could not parse", its fix would send users to dbt.
    from dbt.cli import main as dbt_main

    from dbt_watcher.invocation.command import run_dbt

    class ImportTimeout(BaseException):
        pass

    class Runner:
        def __init__(self, **kwargs: object) -> None:
            pass

        def invoke(self, args: list[str]) -> object:
            return dbt_main.dbtRunnerResult(success=False, exception=ImportTimeout("DagBag import timeout"))

    monkeypatch.setattr(dbt_main, "dbtRunner", Runner)
    with pytest.raises(ImportTimeout):
        run_dbt(DbtProject(project_dir=JAFFLE_SHOP, profiles_dir=JAFFLE_SHOP).command("parse"))
