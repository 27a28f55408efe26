"""What a resuming producer rebuilds: exactly what did not succeed, and nothing a consumer rebuilt."""

from __future__ import annotations

from dbt_watcher.decision import Watch
from dbt_watcher.events import NodeResult
from dbt_watcher.producer import NodePlan, nodes_to_resume
from dbt_watcher.status import RUNNING, RunStatus


def plan(name: str, tests: dict[str, str] | None = None) -> NodePlan:
    uid = f"model.shop.{name}"
    return NodePlan(
        watch=Watch(uid, tuple(tests or {})),
        consumer_task_id=f"g.{name}",
        selector=f"fqn:shop.{name},resource_type:model",
        test_selectors=tests or {},
    )


def status(*results: NodeResult) -> RunStatus:
    return RunStatus(1, RUNNING, 0.0, {r.unique_id: r for r in results})


def test_failed_skipped_and_never_run_nodes_are_rebuilt_green_ones_are_not() -> None:
    nodes = [plan("ok"), plan("broken"), plan("child"), plan("never_ran")]
    previous = status(
        NodeResult("model.shop.ok", "success"),
        NodeResult("model.shop.broken", "error"),
        NodeResult("model.shop.child", "skipped"),
    )
    assert nodes_to_resume(nodes, previous, {}) == (
        "fqn:shop.broken,resource_type:model",
        "fqn:shop.child,resource_type:model",
        "fqn:shop.never_ran,resource_type:model",
    )


def test_a_failed_test_of_a_built_model_reruns_only_that_test() -> None:
    tests = {"test.shop.t1": "fqn:shop.t1,resource_type:test", "test.shop.t2": "fqn:shop.t2,resource_type:test"}
    previous = status(
        NodeResult("model.shop.m", "success"), NodeResult("test.shop.t1", "fail"), NodeResult("test.shop.t2", "pass")
    )
    assert nodes_to_resume([plan("m", tests)], previous, {}) == ("fqn:shop.t1,resource_type:test",)


def test_nodes_whose_consumer_already_rebuilt_them_are_left_alone() -> None:
    previous = status(NodeResult("model.shop.broken", "error"))
    assert nodes_to_resume([plan("broken")], previous, {"g.broken": "success"}) == ()
