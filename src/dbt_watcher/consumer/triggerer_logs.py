"""The triggerer's log without the lines dbt-watcher's own reads would make look like errors.

A consumer's poll reads the producer's channel head (``dbt_watcher.head``) once the producer's try has
started. Between the try's start and its first head write (the worker parses the DAG file first, seconds
for a large project) the XCom does not exist yet, and the triggerer's Task SDK client logs each such read
as ``ERROR XCom not found``: one line per group per tick, about a state that is expected. Only that event,
for that key, is dropped; every other missing XCom is still logged as Airflow logs it.
"""

from __future__ import annotations

import logging
from collections.abc import MutableMapping
from typing import Any

from dbt_watcher import compat
from dbt_watcher.channel.wire import HEAD

log = logging.getLogger(__name__)


def drop_unpublished_head(logger: Any, method_name: str, event_dict: MutableMapping[str, Any]) -> Any:
    """A structlog processor: drop the Task SDK client's "XCom not found" for the channel head."""
    if event_dict.get("event") == "XCom not found" and event_dict.get("key") == HEAD:
        import structlog

        raise structlog.DropEvent
    return event_dict


def install() -> bool:
    """Install :func:`drop_unpublished_head` in this process; never raises (a refusal is logged)."""
    try:
        if compat.drop_log_events(drop_unpublished_head):
            return True
    except Exception:
        log.exception("dbt-watcher: could not quiet the triggerer's reads of unpublished channel heads")
        return False
    log.info(
        "dbt-watcher: this triggerer's log pipeline is not structlog's list; reads of unpublished heads stay logged"
    )
    return False
