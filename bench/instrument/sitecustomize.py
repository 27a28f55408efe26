"""Benchmark instrumentation, loaded into every process of the bench's Airflow stack via PYTHONPATH.

Active only when BENCH_INSTRUMENT_DIR is set. It measures, without changing behaviour:

* every task process a worker runs (``supervise_task``): wall time, CPU of the task process, and
  how many execution-API requests it made — the worker process-seconds (P5) and consumer API
  calls (P3) of each contender;
* every execution-API request the triggerer makes on behalf of its triggers — the triggers' share
  of P3, attributed to a DAG run by time.

Patches are applied when Airflow's modules are first imported, through an import hook.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import json
import os
import resource
import sys
import threading
import time
from typing import Any

OUT = os.environ.get("BENCH_INSTRUMENT_DIR")
_lock = threading.Lock()
_task_requests = [0]
_in_task = [False]


def _write(record: dict[str, Any]) -> None:
    if not OUT:
        return
    line = json.dumps(record, default=str) + "\n"
    with _lock, open(os.path.join(OUT, f"{os.getpid()}.jsonl"), "a") as fh:
        fh.write(line)


def _patch_client(module: Any) -> None:
    original = module.Client.request

    def request(self: Any, *args: Any, **kwargs: Any) -> Any:
        if _in_task[0]:
            _task_requests[0] += 1
        elif any("triggerer" in a for a in sys.argv):
            url = str(args[1] if len(args) > 1 else kwargs.get("url", ""))
            _write({"kind": "trigger_request", "t": time.time(), "path": url})
        return original(self, *args, **kwargs)

    module.Client.request = request


def _patch_supervisor(module: Any) -> None:
    original = module.supervise_task

    def supervise_task(*args: Any, **kwargs: Any) -> Any:
        ti = kwargs.get("ti")
        started, cpu_before = time.time(), resource.getrusage(resource.RUSAGE_CHILDREN)
        _in_task[0], _task_requests[0] = True, 0
        try:
            return original(*args, **kwargs)
        finally:
            cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            _in_task[0] = False
            _write(
                {
                    "kind": "task",
                    "dag_id": getattr(ti, "dag_id", None),
                    "task_id": getattr(ti, "task_id", None),
                    "run_id": getattr(ti, "run_id", None),
                    "try_number": getattr(ti, "try_number", None),
                    "start": started,
                    "end": time.time(),
                    "cpu": (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime),
                    "requests": _task_requests[0],
                }
            )

    module.supervise_task = supervise_task


_PATCHES = {"airflow.sdk.api.client": _patch_client, "airflow.sdk.execution_time.supervisor": _patch_supervisor}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname not in _PATCHES:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        original_exec = loader.exec_module  # type: ignore[union-attr]

        def exec_module(module: Any) -> None:
            original_exec(module)
            _PATCHES[fullname](module)

        loader.exec_module = exec_module  # type: ignore[method-assign,union-attr]
        return spec


if OUT:
    os.makedirs(OUT, exist_ok=True)
    sys.meta_path.insert(0, _Finder())
