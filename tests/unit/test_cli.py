"""``dbt-watcher render``: the preview is the group the decorator renders, as text and Mermaid."""

from __future__ import annotations

from pathlib import Path

import pytest

from dbt_watcher.cli import main

from ..conftest import JAFFLE_SHOP


def test_render_prints_tasks_edges_mermaid_and_notes(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(JAFFLE_SHOP), "--select", "+orders", "--test-behavior", "after_each"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("dbt project jaffle_shop: 11 tasks, 8 edges")  # 9 consumers, the producer, the audit
    orders = "dbt.orders              DbtConsumerOperator(model.jaffle_shop.orders)"
    assert f"{orders}  <- dbt.int_order_payments, dbt.stg_orders" in out
    assert "dbt.orders_tests" in out and "dbt.customers " not in out and "dbt.dbt_audit" in out
    # after_each: the model's own consumer is not gated; its test watcher is, by the tests it names
    watcher = out[out.index("dbt.orders_tests ") :].splitlines()
    assert "gated by: test.jaffle_shop." in watcher[1]
    assert "note: threads= is not set: the build uses the target's threads (4)" in out
    mermaid = out[out.index("flowchart LR") :].splitlines()
    assert len([line for line in mermaid if "-->" in line]) == 8


def test_render_mermaid_only_and_no_threads_note_when_set(cache_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(JAFFLE_SHOP), "--threads", "4", "--non-deferrable", "--format", "mermaid"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("flowchart LR") and "threads=" not in out


def test_render_names_the_problem_and_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["render", str(tmp_path / "missing")]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "How to fix" in err


def test_version_prints_the_packages_version(capsys: pytest.CaptureFixture[str]) -> None:
    from dbt_watcher import __version__

    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"dbt-watcher {__version__}"
