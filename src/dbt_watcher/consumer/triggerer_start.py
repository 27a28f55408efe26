"""Start dbt-watcher consumers in Airflow's triggerer without loading their DAG.

Why: a task with ``start_from_trigger`` makes Airflow 3.3's triggerer supervisor deserialize the
task's whole DAG (to read the flag) and ship it, serialized, inside the trigger's workload to the
trigger runner, which deserializes it once more to build a template context
(``TriggerRunnerSupervisor._create_workload`` and ``TriggerRunner.create_runtime_ti`` in
``airflow/jobs/triggerer_job_runner.py``). For a group of N consumers that is O(N) bytes and CPU per
consumer, O(N²) per run: at 1,000+ consumers the supervisor→runner socket fills and the triggerer
stalls for good.

A consumer's trigger needs none of it: its arguments are plain values (nothing is templated) and it
reads only the ids of its task instance (dag, run, try, map index), which every workload carries.
So, for dbt-watcher's triggers only (consumers and the audit), the supervisor is given a DAG
lookup that finds nothing, and Airflow's own code builds the workload it builds for any deferred
task whose DAG it cannot load: task instance, trigger arguments and timeout, no DAG. Every other
trigger takes Airflow's path untouched.

A second, narrower change: Airflow files a success callback request for every task a trigger ends,
which the dag-processor discards after parsing the whole DAG file (it runs failure callbacks only);
for dbt-watcher's tasks the request is not filed (see :func:`_wrap_send`), nor is Airflow's
"Sending callback" line logged for it (one INFO line per consumer, about a request that is then dropped).

Safety: installed only in a triggerer process (by :mod:`dbt_watcher.plugin` when the triggerer's
job starts), only on the Airflow versions whose ``_create_workload`` we test against
(:data:`TESTED_AIRFLOW`), only if its signature is the one we wrap; any other case logs why and
leaves Airflow as it is (consumers then start the slow way, still correctly). Set
``[dbt_watcher] triggerer_fast_start = False`` (``AIRFLOW__DBT_WATCHER__TRIGGERER_FAST_START``) to
turn it off.

The upstream change that would make this unnecessary: the triggerer building the runtime task
instance only for triggers that render templates, or caching one deserialized DAG per
``dag_version_id`` and shipping the task alone (see docs/performance.md, "Scale").
"""

from __future__ import annotations

import inspect
import logging
from collections import OrderedDict
from typing import Any

from dbt_watcher import airflow_lines

log = logging.getLogger(__name__)

#: (major, minor) of apache-airflow-core whose triggerer code this wrap is tested against.
TESTED_AIRFLOW = ((3, 3),)
_WRAPPED_PARAMETERS = ("self", "trigger", "dag_bag", "render_log_fname", "session")
_MARK = "_dbt_watcher_fast_start"


class _NoDag:
    """A DAG lookup that finds nothing: Airflow then builds a workload without the DAG."""

    def get_serialized_dag_model_for_run(self, *args: Any, **kwargs: Any) -> None:
        return None

    def get_serialized_dag_model(self, *args: Any, **kwargs: Any) -> None:
        return None


_NO_DAG = _NoDag()


def enabled() -> bool:
    """``[dbt_watcher] triggerer_fast_start`` (default True)."""
    from airflow.configuration import conf

    return bool(conf.getboolean("dbt_watcher", "triggerer_fast_start", fallback=True))


def airflow_version() -> tuple[int, int]:
    from importlib.metadata import version

    major, minor, *_ = version("apache-airflow-core").split(".")
    return int(major), int(minor)


def install() -> bool:
    """Wrap the triggerer supervisor's workload builder and its callback sink; True if installed.

    Idempotent. Never raises: a refusal is logged and Airflow keeps its own behaviour.
    """
    if not airflow_lines.has_triggerer_workloads():
        return False  # this triggerer ships no DAG to start a trigger (before 3.3): nothing to speed up
    try:
        from dbt_watcher.compat import triggerer_internals

        TriggerRunnerSupervisor, DatabaseCallbackSink = triggerer_internals()
        if not enabled():
            log.info("dbt-watcher: triggerer fast start is off ([dbt_watcher] triggerer_fast_start)")
            return False
        found = airflow_version()
        if found not in TESTED_AIRFLOW:
            log.warning(
                "dbt-watcher: triggerer fast start is not tested on Airflow %d.%d; consumers start the "
                "standard way (each loads its whole DAG in the triggerer)",
                *found,
            )
            return False
        create, send = TriggerRunnerSupervisor._create_workload, DatabaseCallbackSink.send
        if getattr(create, _MARK, False):
            return True
        if tuple(inspect.signature(create).parameters) != _WRAPPED_PARAMETERS:
            log.warning("dbt-watcher: the triggerer's _create_workload changed; triggerer fast start is off")
            return False
        TriggerRunnerSupervisor._create_workload = _wrap_create_workload(create)
        DatabaseCallbackSink.send = _wrap_send(send)
        callbacks_log = logging.getLogger(CALLBACKS_LOGGER)
        if not any(isinstance(f, DroppedCallbackLines) for f in callbacks_log.filters):
            callbacks_log.addFilter(DroppedCallbackLines())
    except Exception:
        log.exception("dbt-watcher: could not install triggerer fast start; consumers start the standard way")
        return False
    log.info("dbt-watcher: consumers start in this triggerer without loading their DAG")
    return True


class _Consumers:
    """Task instance ids of the consumers this triggerer started (bounded: oldest forgotten first)."""

    def __init__(self, limit: int = 100_000) -> None:
        self._ids: OrderedDict[Any, None] = OrderedDict()
        self._limit = limit

    def add(self, ti_id: Any) -> None:
        self._ids[ti_id] = None
        while len(self._ids) > self._limit:
            self._ids.popitem(last=False)

    def pop(self, ti_id: Any) -> bool:
        return self._ids.pop(ti_id, False) is None

    def __contains__(self, ti_id: Any) -> bool:
        return ti_id in self._ids


CONSUMERS = _Consumers()


#: The classpaths of dbt-watcher's triggers (tests check they match the classes), kept as text so the
#: triggerer's supervisor, which never runs a trigger, imports nothing more than this module.
OUR_TRIGGERS = frozenset({"dbt_watcher.consumer.trigger.ConsumerTrigger", "dbt_watcher.consumer.audit.AuditTrigger"})


def _wrap_create_workload(original: Any) -> Any:
    ours = OUR_TRIGGERS

    def _create_workload(self: Any, trigger: Any, dag_bag: Any, render_log_fname: Any, session: Any) -> Any:
        if trigger.classpath in ours and trigger.task_instance is not None:
            CONSUMERS.add(trigger.task_instance.id)
            dag_bag = _NO_DAG
        return original(self, trigger, dag_bag, render_log_fname, session)

    return _marked(_create_workload, original)


def _wrap_send(original: Any) -> Any:
    """Drop the success callback request Airflow files for a consumer that ended in the triggerer.

    Airflow 3.3 files one for every task a trigger ends with success (``handle_event_submit`` in
    ``airflow/models/trigger.py``); the dag-processor parses the task's whole DAG file for it and then
    discards it (``_execute_task_callbacks`` in ``airflow/dag_processing/processor.py`` runs failure
    callbacks only). At 1,000 consumers that was a DAG-file parse every few seconds for the whole run.
    Failure and retry callback requests are kept.
    """

    def send(self: Any, callback: Any, *args: Any, **kwargs: Any) -> Any:
        if _dropped(callback):
            CONSUMERS.pop(callback.ti.id)
            return None
        return original(self, callback, *args, **kwargs)

    return _marked(send, original)


def _dropped(callback: Any) -> bool:
    """A success callback request of a consumer this triggerer started: :func:`_wrap_send` drops it."""
    ti = getattr(callback, "ti", None)
    return ti is not None and not getattr(callback, "is_failure_callback", True) and ti.id in CONSUMERS


#: The logger of ``handle_event_submit`` (``airflow/models/trigger.py``), which logs every request it files.
CALLBACKS_LOGGER = "airflow.models.trigger"


class DroppedCallbackLines(logging.Filter):
    """Leave out Airflow's "Sending callback: <request>" line for a request :func:`_wrap_send` drops."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        return not (record.msg == "Sending callback: %s" and len(args) == 1 and _dropped(args[0]))


def _marked(wrapper: Any, original: Any) -> Any:
    setattr(wrapper, _MARK, True)
    wrapper.__wrapped__ = original
    wrapper.__doc__ = original.__doc__
    return wrapper
