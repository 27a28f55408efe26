"""A triggerer that does not end the consumers is reported by the producer, never silent."""

from __future__ import annotations

import logging

import pytest

from dbt_watcher.channel.records import RunStatus
from dbt_watcher.channel.wire import FINISHED
from dbt_watcher.invocation.events import NodeResult
from dbt_watcher.producer.stall import watch_consumers
from dbt_watcher.rules.watch import ConsumerTask, Watch

from .graphs import model


def consumer(name: str) -> ConsumerTask:
    uid = f"model.shop.{name}"
    return ConsumerTask(f"g.{name}", model(name), Watch(uid, gated=False), f"sel:{name}")


def test_consumers_still_waiting_after_the_window_are_named(caplog: pytest.LogCaptureFixture) -> None:
    consumers = [consumer("a"), consumer("b"), consumer("c")]
    status = RunStatus(
        "g",
        1,
        FINISHED,
        {"model.shop.a": NodeResult("model.shop.a", "success"), "model.shop.b": NodeResult("model.shop.b", "error")},
    )
    states = iter([{"g.a": "deferred", "g.b": "deferred"}, {"g.a": "deferred", "g.b": "up_for_retry"}] * 3)
    now = [0.0]
    with caplog.at_level(logging.ERROR):
        left = watch_consumers(
            consumers,
            status,
            lambda: next(states),
            window=5.0,
            sleep=lambda s: now.__setitem__(0, now[0] + s),
            clock=lambda: now[0],
        )
    # a is green by dbt's word and still waits; b failed (its retry waits for the producer to end, so the
    # producer must not wait for it); c has no result
    assert left == ["g.a"]
    assert "1 consumer(s) that dbt's results make green have not ended" in caplog.text and "g.a" in caplog.text


def test_consumers_that_end_end_the_watch_at_once() -> None:
    consumers = [consumer("a")]
    status = RunStatus("g", 1, FINISHED, {"model.shop.a": NodeResult("model.shop.a", "success")})
    assert (
        watch_consumers(
            consumers, status, lambda: {"g.a": "success"}, window=60.0, sleep=lambda s: pytest.fail(f"slept {s} s")
        )
        == []
    )
