"""Project loading: path checks, the fingerprint cache, and dbt's own selection (real dbt-core)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import pytest

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.project import cache, manifest
from dbt_watcher.project.cache import load_graph
from dbt_watcher.project.locate import fingerprint, locate_project
from dbt_watcher.project.selection import Selection

from ..conftest import JAFFLE_SHOP


@pytest.fixture
def jaffle(tmp_path: Path) -> Path:
    copy = tmp_path / "jaffle_shop"
    shutil.copytree(JAFFLE_SHOP, copy, ignore=shutil.ignore_patterns("target", "logs", "*.duckdb*"))
    return copy


def test_missing_project_dir_names_the_path_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist") as info:
        locate_project(tmp_path / "nope")
    assert "project_dir=" in info.value.fix


def test_a_folder_without_dbt_project_yml_is_not_a_project(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"no dbt_project\.yml"):
        locate_project(tmp_path)


def test_profiles_dir_without_profiles_yml_is_rejected(jaffle: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"holds no profiles\.yml"):
        locate_project(jaffle, profiles_dir=tmp_path)


def test_relative_paths_resolve_from_the_given_folder(jaffle: Path) -> None:
    located = locate_project("jaffle_shop", relative_to=jaffle.parent)
    assert located.project_dir == jaffle and located.profiles_dir == jaffle


def test_fingerprint_changes_with_sources_but_not_with_target_or_logs(jaffle: Path) -> None:
    p = locate_project(jaffle)
    first, _ = fingerprint(p)
    (jaffle / "target").mkdir()
    (jaffle / "target" / "junk.json").write_text("{}")
    (jaffle / "logs").mkdir()
    (jaffle / "logs" / "dbt.log").write_text("x")
    assert fingerprint(p)[0] == first
    (jaffle / "models" / "staging" / "stg_orders.sql").write_text("select 1 as order_id")
    assert fingerprint(p)[0] != first


def test_graph_and_selection_come_from_dbt(jaffle: Path, cache_dir: Path) -> None:
    graph = load_graph(locate_project(jaffle), Selection(select=("tag:marts",)))
    names = sorted(n.name for n in graph.selected_nodes(["model"]))
    assert names == ["customer_lifetime_value", "customers", "daily_revenue", "orders", "store_revenue"]
    # dbt's indirect selection brings the marts' tests along
    assert any(n.resource_type == "test" for n in graph.selected_nodes())
    orders = graph.nodes["model.jaffle_shop.orders"]
    assert orders.relation is not None and orders.relation.identifier == "orders"
    assert graph.target.adapter_type == "duckdb" and graph.target.database == "jaffle_shop"
    rel = graph.nodes[next(u for u in graph.nodes if u.startswith("test.jaffle_shop.relationships"))]
    assert rel.attached_node == "model.jaffle_shop.orders"


def test_an_unchanged_project_never_starts_dbt_twice(
    jaffle: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    real = manifest.build_graph

    def counting(*args: object, **kwargs: object) -> object:
        calls.append("dbt")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(manifest, "build_graph", counting)
    p = locate_project(jaffle)
    first = load_graph(p, Selection())
    monkeypatch.setattr(cache, "_memory_cache", {})  # a new dag-processor child: disk cache only
    second = load_graph(p, Selection())
    assert calls == ["dbt"] and first == second
    load_graph(p, Selection(select=("orders",)))  # another selection is another key
    assert calls == ["dbt", "dbt"]
    (jaffle / "models" / "marts" / "orders.sql").write_text("select 1 as order_id, 1 as customer_id")
    load_graph(p, Selection())
    assert len(calls) == 3


def test_unknown_selector_and_target_are_parse_time_errors(jaffle: Path, cache_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="selector='nightly'"):
        load_graph(locate_project(jaffle), Selection(selector="nightly"))
    with pytest.raises(ConfigurationError, match="does not have a target named 'prod'"):
        load_graph(locate_project(jaffle, target="prod"), Selection())


def test_a_broken_project_reports_dbts_parse_error(jaffle: Path, cache_dir: Path) -> None:
    (jaffle / "models" / "marts" / "orders.sql").write_text("select * from {{ ref('no_such_model') }}")
    with pytest.raises(ConfigurationError, match="could not parse") as info:
        load_graph(locate_project(jaffle), Selection())
    assert "no_such_model" in str(info.value)


def test_a_manifest_left_by_another_target_is_never_used(jaffle: Path, cache_dir: Path) -> None:
    from dbt_watcher.invocation.command import run_dbt

    profiles = jaffle / "profiles.yml"
    other_output = "    other:\n      type: duckdb\n      path: other.duckdb\n      schema: elsewhere\n"
    profiles.write_text(profiles.read_text().replace("    postgres:\n", other_output + "    postgres:\n"))
    other = locate_project(jaffle, target="other")
    assert run_dbt(other.command("parse", extra_args=("--quiet",))).success  # target/manifest.json for "other"
    graph = load_graph(locate_project(jaffle), Selection())
    orders = graph.nodes["model.jaffle_shop.orders"].relation
    assert orders is not None and (orders.database, orders.schema) == ("jaffle_shop", "main")


def test_an_environment_variable_the_profile_reads_is_part_of_the_cache_key(
    jaffle: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The example profile picks its target with env_var('JAFFLE_TARGET'): another value is another graph.
    p = locate_project(jaffle)
    files, names = fingerprint(p)
    assert {"JAFFLE_TARGET", "JAFFLE_PG_SCHEMA"} <= names
    monkeypatch.setenv("JAFFLE_TARGET", "duckdb")
    first = cache.cache_key(p, Selection(), files, (), names)
    monkeypatch.setenv("JAFFLE_TARGET", "postgres")
    assert cache.cache_key(p, Selection(), files, (), names) != first
    monkeypatch.setenv("JAFFLE_TARGET", "duckdb")
    monkeypatch.setenv("DBT_TARGET", "postgres")  # dbt's own default for --target
    assert cache.cache_key(p, Selection(), files, (), names) != first


def test_a_link_pointing_nowhere_is_left_out_and_an_unreadable_file_is_named(
    jaffle: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Public projects commit such links (a `target-base` link to a developer's own folder); dbt
    # ignores them, so the graph cache's key must too.
    before = fingerprint(locate_project(jaffle))
    (jaffle / "target-base").symlink_to("/home/someone/never/there")
    (jaffle / "models" / "gone.sql").symlink_to(jaffle / "models" / "nowhere.sql")
    (jaffle / "models" / "loop.sql").symlink_to(jaffle / "models" / "loop.sql")
    assert fingerprint(locate_project(jaffle)) == before
    unreadable = jaffle / "models" / "marts" / "orders.sql"
    real = Path.read_bytes

    def read_bytes(path: Path) -> bytes:
        if path == unreadable:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(Path, "read_bytes", read_bytes)
    with pytest.raises(ConfigurationError, match=r"cannot read .*orders\.sql.*Permission denied") as info:
        fingerprint(locate_project(jaffle))
    assert "readable by the user Airflow runs as" in info.value.fix


def test_a_target_whose_adapter_is_not_installed_says_to_install_it(jaffle: Path) -> None:
    # With connection_id= there is no profiles.yml to check: the fix is the adapter package.
    profiles = (jaffle / "profiles.yml").read_text()
    (jaffle / "profiles.yml").write_text(profiles + "    warehouse:\n      type: snowdrift\n      threads: 1\n")
    from dbt_watcher.invocation.target import target_facts

    project = locate_project(jaffle, target="warehouse")
    with pytest.raises(ConfigurationError, match=r"adapter for 'snowdrift'.*is not installed") as info:
        target_facts(project)
    assert "pip install dbt-snowdrift" in info.value.fix and "profiles.yml" not in info.value.fix


def test_a_missing_adapter_with_an_extra_names_the_extra(jaffle: Path) -> None:
    profiles = (jaffle / "profiles.yml").read_text()
    (jaffle / "profiles.yml").write_text(profiles + "    warehouse:\n      type: snowflake\n      threads: 1\n")
    from dbt_watcher.invocation.target import target_facts

    with pytest.raises(ConfigurationError, match=r"adapter for 'snowflake'") as info:
        target_facts(locate_project(jaffle, target="warehouse"))
    assert 'pip install "dbt-watcher[snowflake]"' in info.value.fix


def test_every_warehouse_the_connection_rules_serve_has_an_extra() -> None:
    import importlib.metadata

    extras = set(importlib.metadata.metadata("dbt-watcher").get_all("Provides-Extra") or [])
    adapters = {"postgres", "redshift", "snowflake", "bigquery", "databricks", "trino", "sqlserver"}
    adapters |= {"clickhouse", "spark", "athena", "duckdb"}
    assert adapters <= extras, adapters - extras


def test_a_selection_criterion_matching_nothing_is_named_at_parse_time(
    jaffle: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    # A typo next to a valid name still selects something: dbt only warns, under the parse's quiet log level.
    # (The subprocess runner's report of the same event: test_runners.py, which runs `dbt ls` there anyway.)
    with caplog.at_level(logging.WARNING, logger="dbt_watcher"):
        graph = load_graph(locate_project(jaffle), Selection(select=("orders", "stg_orderz")))
    assert "model.jaffle_shop.orders" in graph.selected
    # Depending on how logging was configured before, the line reaches caplog, stdout or both: each
    # copy must name the typo, and no valid name may be reported.
    lines = [r.getMessage() for r in caplog.records] + capfd.readouterr().out.splitlines()
    warned = [line for line in lines if "matches no enabled node" in line]
    assert warned and all("criterion 'stg_orderz' of the selection" in line for line in warned)
    assert all("did you mean 'stg_orders'?" in line for line in warned)


def test_only_files_dbt_reads_change_the_fingerprint(jaffle: Path) -> None:
    # A data file, a script or a README in the project folder is not parsed by dbt: the graph stays cached.
    p = locate_project(jaffle)
    first, _ = fingerprint(p)
    (jaffle / "input.csv").write_text("x\n1\n")
    (jaffle / "scripts").mkdir()
    (jaffle / "scripts" / "load.py").write_text("print(1)")
    (jaffle / "README.md").write_text("# notes")
    assert fingerprint(p)[0] == first
    for read in ("selectors.yml", "macros/new_macro.sql", "seeds/extra.csv"):
        changed = jaffle / read
        changed.parent.mkdir(exist_ok=True)
        changed.write_text("x")
        assert fingerprint(p)[0] != first, read
        changed.unlink()
        assert fingerprint(p)[0] == first, read


def test_a_path_setting_names_what_dbt_reads_and_one_it_renders_hashes_every_file(jaffle: Path) -> None:
    project_yml = jaffle / "dbt_project.yml"
    original = project_yml.read_text()
    project_yml.write_text(original + "\nanalysis-paths: ['notebooks']\n")
    p = locate_project(jaffle)
    first, _ = fingerprint(p)
    (jaffle / "notebooks").mkdir()
    (jaffle / "notebooks" / "a.sql").write_text("select 1")
    assert fingerprint(p)[0] != first
    # A path dbt renders (or one outside the project) cannot be followed: every file of the folder counts.
    project_yml.write_text(original + "\nanalysis-paths: [\"{{ env_var('ANALYSES', 'analyses') }}\"]\n")
    first, _ = fingerprint(p)
    (jaffle / "input.csv").write_text("x\n1\n")
    assert fingerprint(p)[0] != first


def test_old_path_names_and_local_packages_keep_their_files_in_the_fingerprint(jaffle: Path) -> None:
    project_yml = jaffle / "dbt_project.yml"
    original = project_yml.read_text()
    project_yml.write_text(original + "\nsource-paths: ['transform']\n")  # model-paths' old name, still read
    p = locate_project(jaffle)
    first, _ = fingerprint(p)
    (jaffle / "transform").mkdir()
    (jaffle / "transform" / "m.sql").write_text("select 1")
    assert fingerprint(p)[0] != first
    # A local package is installed as a link the walk does not follow: every file of the folder counts.
    project_yml.write_text(original)
    (jaffle / "packages.yml").write_text("packages:\n  - local: my_package\n")
    first, _ = fingerprint(p)
    (jaffle / "my_package").mkdir()
    (jaffle / "my_package" / "macro.sql").write_text("{% macro m() %}1{% endmacro %}")
    assert fingerprint(p)[0] != first
