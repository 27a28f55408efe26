"""The status channel: one writer, incremental readers, attempts that rewrite, content that cannot be read,
and liveness on the reader's own clock."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from dbt_watcher.channel import writer as writer_module
from dbt_watcher.channel.channel import ChannelReader, StatusChannel
from dbt_watcher.channel.liveness import Liveness, producer_stopped, stale_after, trusted
from dbt_watcher.channel.records import Invocation
from dbt_watcher.channel.store import Mirrored
from dbt_watcher.channel.wire import FINISHED, HEAD, RUNNING, chunk_key, decode_result, encode_result
from dbt_watcher.invocation.events import NodeResult
from dbt_watcher.producer.ledger import AttemptRecord, Ledger, LedgerBook
from tests.unit.fakes import MemoryStore


def result(uid: str, status: str = "success", **kw: Any) -> NodeResult:
    return NodeResult(unique_id=uid, status=status, resource_type="model", execution_time=0.5, rows_affected=3, **kw)


def write(store: Any, *uids: str, attempt: int = 1, generation: str = "g1", previous: Any = None, **head: Any) -> None:
    writer = StatusChannel(store).writer(generation=generation, attempt=attempt, heartbeat_interval=60.0, **head)
    if previous is not None:
        writer.carry_over(previous)
    for uid in uids:
        writer.publish(result(uid))
    writer.finish(FINISHED)


def test_wire_format_round_trips_and_drops_empty_fields() -> None:
    r = NodeResult(unique_id="model.a.b", status="error", message="boom", attempt=2, closing=True)
    entry = encode_result(r)
    assert "x" not in entry and entry["q"] is True
    assert decode_result(entry) == r


def test_writer_and_reader_agree_across_chunks_and_read_each_chunk_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "CHUNK_RESULTS", 3)
    store = MemoryStore()
    write(store, *(f"model.p.m{i}" for i in range(8)))
    head = store.data[HEAD]
    assert head["closed"] == 2 and len(head["open"]) == 2
    reader = ChannelReader()
    first = reader.read(store)
    assert first.status is not None and first.status.complete and first.changed is None
    assert sorted(first.status.results) == sorted(f"model.p.m{i}" for i in range(8))
    before = store.gets
    again = reader.read(store)
    assert store.gets - before == 1 and again.changed == frozenset()  # the head only, nothing new


def test_a_reader_decodes_only_what_is_new() -> None:
    store = MemoryStore()
    writer = StatusChannel(store).writer(generation="g", attempt=1, heartbeat_interval=60.0)
    writer.start()
    reader = ChannelReader()
    writer.publish(result("model.p.a"))
    writer._flush(RUNNING)
    assert reader.read(store).changed is None
    writer.publish(result("model.p.b"))
    writer._flush(RUNNING)
    assert reader.read(store).changed == frozenset({"model.p.b"})
    writer.finish(FINISHED)


def test_async_reader_sees_the_same_status() -> None:
    store = MemoryStore()
    write(store, "model.p.a", "model.p.b")
    read = asyncio.run(ChannelReader().aread(store))
    assert read.status is not None and set(read.status.results) == {"model.p.a", "model.p.b"}


def test_a_missing_chunk_is_incomplete_never_an_absent_result(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(writer_module, "CHUNK_RESULTS", 2)
    store = MemoryStore()
    write(store, "model.p.a", "model.p.b", "model.p.c")
    del store.data[chunk_key(1, 0)]
    read = ChannelReader().read(store)
    assert read.status is not None and not read.status.complete


def test_a_later_attempt_is_never_read_from_an_earlier_attempts_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    # kind 8: attempt 2 carries attempt 1's results over and rewrites them; chunks are versioned by attempt
    monkeypatch.setattr(writer_module, "CHUNK_RESULTS", 2)
    store = MemoryStore()
    write(store, "model.p.a", "model.p.b", "model.p.c")
    reader = ChannelReader()
    first = reader.read(store).status
    assert first is not None and first.results["model.p.a"].status == "success"
    writer = StatusChannel(store).writer(generation="g1", attempt=2, heartbeat_interval=60.0)
    writer.publish(result("model.p.a", "error"))  # attempt 2 rebuilt it, and it failed this time
    writer.publish(result("model.p.c"))
    writer.finish(FINISHED)
    second = reader.read(store)
    assert second.changed is None and second.status is not None and second.status.attempt == 2
    assert second.status.results["model.p.a"].status == "error" and "model.p.b" not in second.status.results


def test_a_new_generation_drops_everything_read_before() -> None:
    store = MemoryStore()
    write(store, "model.p.a")
    reader = ChannelReader()
    before = reader.read(store).status
    write(store, "model.p.b", generation="g2")
    after = reader.read(store).status
    assert before is not None and after is not None and after.generation == "g2"
    assert set(after.results) == {"model.p.b"} and set(before.results) == {"model.p.a"}  # not cleared in place


@pytest.mark.parametrize("head", ["garbage", {"v": 2, "gen": "g"}, {"v": 2, "gen": "g", "attempt": "x", "closed": 0}])
def test_unreadable_content_is_reported_not_taken_as_a_verdict(head: Any) -> None:
    read = ChannelReader().read(MemoryStore({HEAD: head}))
    assert read.status is None and read.malformed


def test_an_unreadable_chunk_is_reported() -> None:
    store = MemoryStore()
    write(store, *(f"model.p.m{i}" for i in range(150)))
    store.data[chunk_key(1, 0)] = {"not": "a list"}
    assert ChannelReader().read(store).malformed


def test_the_writer_restores_an_emptied_store_and_carries_earlier_attempts_over() -> None:
    store = MemoryStore()
    write(store, "model.p.a")
    earlier = StatusChannel(store).read_all()
    store.data.clear()
    write(store, "model.p.b", attempt=2, previous=earlier)
    status = StatusChannel(store).read_all()
    assert status is not None and set(status.results) == {"model.p.a", "model.p.b"}
    assert status.results["model.p.b"].attempt == 2 and status.results["model.p.a"].attempt == 1


def test_the_selection_travels_with_the_results_and_is_carried_to_later_attempts() -> None:
    store = MemoryStore()
    writer = StatusChannel(store).writer(generation="g1", attempt=1, heartbeat_interval=60.0)
    writer.publish_selection({"model.p.a": {"test.p.t1": "fqn:p.t1"}, "model.p.b": {}})
    writer.publish(result("model.p.a"))
    writer.finish(FINISHED)
    first = StatusChannel(store).read_all()
    assert first is not None and first.selection_attempt == 1 and first.selection_current
    assert first.selection == {"model.p.a": {"test.p.t1": "fqn:p.t1"}, "model.p.b": {}}
    store.data.clear()  # a new try starts with empty XComs
    second = StatusChannel(store).writer(generation="g1", attempt=2, heartbeat_interval=60.0)
    second.carry_over(first)
    second.finish(FINISHED)
    carried = StatusChannel(store).read_all()
    assert carried is not None and carried.selection == first.selection
    assert carried.selection_attempt == 1 and not carried.selection_current  # attempt 2 selected nothing yet


def test_a_selection_is_not_known_while_a_chunk_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    writer = StatusChannel(store).writer(generation="g1", attempt=1, heartbeat_interval=60.0)
    writer.publish_selection({f"model.p.m{i}": {} for i in range(150)})  # more than one chunk
    writer.finish(FINISHED)
    del store.data[chunk_key(1, 0)]
    status = StatusChannel(store).read_all()
    assert status is not None and not status.complete and status.selection_attempt is None


def test_the_mirror_gets_every_write_first() -> None:
    published, mirror = MemoryStore(), MemoryStore()
    channel = StatusChannel(Mirrored(published, mirror))
    write(Mirrored(published, mirror), "model.p.a")
    channel.write_invocation(Invocation(vars={"day": "2026-01-01"}, dbt_args=("--fail-fast",)))
    assert mirror.data == published.data
    assert StatusChannel(mirror).read_invocation() == Invocation(vars={"day": "2026-01-01"}, dbt_args=("--fail-fast",))


def test_ledger_round_trips_and_knows_whether_dbt_ever_started() -> None:
    book = LedgerBook(MemoryStore())
    ledger = book.save(Ledger.fresh(0).record(AttemptRecord(1)))
    assert not book.load().built  # type: ignore[union-attr]
    ledger = book.save(ledger.record(AttemptRecord(1, dbt_started=True, exit_code=1, problem="1 error")))
    loaded = book.load()
    assert loaded == ledger and loaded.built and loaded.last_ended == AttemptRecord(1, True, 1, "1 error")


# ---------------------------------------------------------------- liveness: one clock, the reader's
def test_silence_is_counted_on_the_readers_clock_only() -> None:
    live = Liveness()
    live.observe(1, now=100.0)
    assert not live.seen_change  # one read cannot tell a live writer from a left-over head
    live.observe(2, now=100.5)
    assert live.seen_change and live.alive(2.0)
    live.observe(2, now=101.5)
    live.observe(2, now=103.0)
    assert live.silent_for == 2.5 and not live.alive(2.0)
    live.observe(3, now=500.0)  # a producer clock years off changes nothing: only seq is compared
    assert live.alive(2.0)


def test_an_outage_of_the_reader_is_not_silence_of_the_producer() -> None:
    live = Liveness()
    live.observe(1, now=0.0)
    live.observe(2, now=0.5)
    live.read_failed()  # api-server down for a minute
    live.observe(2, now=60.5)
    assert live.silent_for == 0.0 and live.alive(2.0)


def test_airflow_decides_whether_the_producer_stopped_and_whose_word_counts() -> None:
    assert stale_after(0.5) == 2.0
    assert not producer_stopped("running", resumes=False) and not producer_stopped(None, resumes=False)
    assert producer_stopped("failed", resumes=True) and producer_stopped("up_for_retry", resumes=False)
    assert not producer_stopped("up_for_retry", resumes=True)
    assert trusted(True, "queued") and trusted(False, "success") and not trusted(False, "queued")
    assert not trusted(False, None) and not trusted(False, "running")
