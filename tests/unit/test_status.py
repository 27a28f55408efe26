from __future__ import annotations

import asyncio
from typing import Any

from freezegun import freeze_time

from dbt_watcher.events import NodeResult
from dbt_watcher.status import (
    FAILED,
    FINISHED,
    RUNNING,
    StatusReader,
    StatusWriter,
    decode_result,
    encode_result,
    head_key,
    run_prefix,
)


class MemoryStore:
    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.gets = 0
        self.sets = 0

    def get(self, key: str) -> Any:
        self.gets += 1
        return self.data.get(key)

    def set(self, key: str, value: Any) -> None:
        self.sets += 1
        self.data[key] = value

    async def aget(self, key: str) -> Any:
        return self.get(key)


def result(uid: str, status: str = "success") -> NodeResult:
    return NodeResult(unique_id=uid, status=status, resource_type="model", execution_time=0.5, rows_affected=3)


def test_wire_format_round_trips_and_drops_empty_fields() -> None:
    r = NodeResult(unique_id="model.a.b", status="error", message="boom", attempt=2)
    entry = encode_result(r)
    assert "x" not in entry  # no execution time: not sent
    assert decode_result(entry) == r


def test_writer_and_reader_agree_across_chunks() -> None:
    store = MemoryStore()
    writer = StatusWriter(store, "run1", attempt=1, chunk_size=3)
    for i in range(8):
        writer.publish(result(f"model.p.m{i}"))
    writer.finish(FINISHED)
    head = store.data[head_key("run1")]
    assert head["closed"] == 2 and len(head["open"]) == 2
    reader = StatusReader("run1")
    status = reader.read(store)
    assert status is not None and status.state == FINISHED and status.complete
    assert sorted(status.results) == sorted(f"model.p.m{i}" for i in range(8))
    # closed chunks are fetched once: a second read costs one get (the head)
    before = store.gets
    reader.read(store)
    assert store.gets - before == 1


def test_async_reader_sees_the_same_status() -> None:
    store = MemoryStore()
    writer = StatusWriter(store, "r", attempt=1, chunk_size=2)
    for i in range(5):
        writer.publish(result(f"model.p.m{i}", "error" if i == 3 else "success"))
    writer.finish(FINISHED)
    status = asyncio.run(StatusReader("r").aread(store))
    assert status is not None and status.results["model.p.m3"].status == "error"


def test_missing_head_means_no_status_and_missing_chunk_means_incomplete() -> None:
    store = MemoryStore()
    assert StatusReader("nope").read(store) is None
    writer = StatusWriter(store, "r", attempt=1, chunk_size=2)
    for i in range(4):
        writer.publish(result(f"model.p.m{i}"))
    writer.finish(FINISHED)
    del store.data["r/chunk/0"]
    status = StatusReader("r").read(store)
    assert status is not None and not status.complete


def test_final_write_restores_an_emptied_store() -> None:
    store = MemoryStore()
    writer = StatusWriter(store, "r", attempt=1, chunk_size=2, flush_interval=0.0)
    writer.start()
    for i in range(5):
        writer.publish(result(f"model.p.m{i}"))
    store.data.clear()  # somebody emptied the store mid-build
    writer.finish(FINISHED)
    status = StatusReader("r").read(store)
    assert status is not None and status.complete and len(status.results) == 5


def test_a_later_attempt_carries_over_and_its_results_win() -> None:
    store = MemoryStore()
    first = StatusWriter(store, "r", attempt=1)
    first.publish(result("model.p.a", "error"))
    first.publish(result("model.p.b"))
    first.finish(FINISHED)
    previous = StatusReader("r").read(store)
    assert previous is not None
    second = StatusWriter(store, "r", attempt=2)
    second.carry_over(previous)
    second.publish(result("model.p.a"))
    second.finish(FINISHED)
    status = StatusReader("r").read(store)
    assert status is not None and status.attempt == 2
    assert status.results["model.p.a"].status == "success" and status.results["model.p.a"].attempt == 2
    assert status.results["model.p.b"].attempt == 1


def test_background_thread_publishes_while_running_and_beats() -> None:
    store = MemoryStore()
    writer = StatusWriter(store, "r", attempt=1, flush_interval=0.01, heartbeat_interval=0.05)
    writer.start()
    writer.publish(result("model.p.a"))
    import time

    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status = StatusReader("r").read(store)
        if status is not None and "model.p.a" in status.results:
            break
        time.sleep(0.01)
    assert status is not None and status.state == RUNNING
    first_beat = status.heartbeat
    time.sleep(0.2)
    later = StatusReader("r").read(store)
    assert later is not None and later.heartbeat > first_beat
    writer.finish(FAILED, "boom")
    final = StatusReader("r").read(store)
    assert final is not None and final.state == FAILED and final.error == "boom"


def test_staleness_is_about_the_heartbeat_of_a_running_producer() -> None:
    store = MemoryStore()
    with freeze_time("2026-01-01 00:00:00"):
        writer = StatusWriter(store, "r", attempt=1)
        writer._flush(RUNNING)
        status = StatusReader("r").read(store)
    assert status is not None
    assert not status.is_stale(status.heartbeat + 1.0, stale_after=2.0)
    assert status.is_stale(status.heartbeat + 3.0, stale_after=2.0)


def test_long_run_ids_are_hashed_to_fit_the_key_limit() -> None:
    long_id = "manual__" + "x" * 600
    assert len(head_key(long_id)) < 512
    assert run_prefix("short") == "short"
