"""The triggerer's log drops the Task SDK client's "XCom not found" for an unpublished channel head only."""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
import structlog

from dbt_watcher.channel.wire import HEAD
from dbt_watcher.consumer import triggerer_logs


@pytest.fixture
def written() -> Iterator[list[dict[str, Any]]]:
    lines: list[dict[str, Any]] = []

    def collect(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
        lines.append(dict(event_dict))
        raise structlog.DropEvent

    before, configure = structlog.get_config(), structlog.configure
    structlog.configure(processors=[collect], cache_logger_on_first_use=True)
    try:
        yield lines
    finally:
        structlog.configure = configure  # the install wraps it, as in a triggerer
        structlog.configure(**before)


def test_only_the_missing_head_is_dropped_also_from_a_logger_cached_before(written: list[dict[str, Any]]) -> None:
    client_log = structlog.get_logger(logger_name="airflow.sdk.api.client")
    client_log.error("XCom not found", key="some_other_key")  # cached on first use, before the install
    assert triggerer_logs.install() and triggerer_logs.install()  # idempotent
    assert structlog.get_config()["processors"].count(triggerer_logs.drop_unpublished_head) == 1
    client_log.error("XCom not found", dag_id="d", run_id="r", task_id="g.dbt_producer", key=HEAD)
    client_log.error("XCom not found", key="return_value")
    client_log.error("Connection refused", key=HEAD)
    assert [(line["event"], line["key"]) for line in written] == [
        ("XCom not found", "some_other_key"),
        ("XCom not found", "return_value"),
        ("Connection refused", HEAD),
    ]


def test_the_rule_survives_the_supervisors_own_logging_set_up(written: list[dict[str, Any]]) -> None:
    # Airflow 3.1-3.3: the triggerer's supervisor configures logging again after its job started.
    assert triggerer_logs.install()
    collect = [p for p in structlog.get_config()["processors"] if p is not triggerer_logs.drop_unpublished_head]
    structlog.configure(processors=collect, cache_logger_on_first_use=True)
    assert structlog.get_config()["processors"][0] is triggerer_logs.drop_unpublished_head
    client_log = structlog.get_logger(logger_name="airflow.sdk.api.client")
    client_log.error("XCom not found", key=HEAD)
    client_log.error("XCom not found", key="return_value")
    assert [line["key"] for line in written] == ["return_value"]
