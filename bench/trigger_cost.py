"""What Airflow's triggerer spends to start one consumer from the triggerer, at a given project size.

A task with ``start_from_trigger`` makes the triggerer's supervisor deserialize the task's whole DAG
(to check the flag), send it to the runner inside the trigger's workload, and the runner deserialize
it again to build the task's runtime instance. This script times those steps on the benchmark's
generated project, outside any stack: ``python bench/trigger_cost.py --scale 11`` (~2,000 models).
It also times the same DAG with every consumer's trigger arguments cut to the node and its upstream
tasks, to show whether a smaller serialized task would help.
"""

from __future__ import annotations

import argparse
import copy
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import generate


def best_ms(step: Callable[[], object], runs: int = 5) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        step()
        times.append(time.perf_counter() - started)
    return min(times) * 1000


def serialized_dag(project: Path) -> dict[str, Any]:
    import pendulum
    from airflow.sdk import dag
    from airflow.serialization.serialized_objects import DagSerialization

    from dbt_watcher import dbt_watcher_group

    @dbt_watcher_group(project_dir=str(project), target="t8")
    def fhir() -> None: ...

    @dag(dag_id="trigger_cost", schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz="UTC"))
    def trigger_cost() -> None:
        fhir()

    return dict(DagSerialization.to_dict(trigger_cost()))


def costs(data: dict[str, Any]) -> dict[str, float]:
    """Milliseconds per consumer for each step, as the triggerer does them (best of 5)."""
    import msgspec
    from airflow.executors.workloads.trigger import RunTrigger
    from airflow.jobs.triggerer_job_runner import ToTriggerRunner, messages
    from airflow.sdk.execution_time.comms import _ResponseFrame
    from airflow.serialization.serialized_objects import DagSerialization
    from pydantic import TypeAdapter

    workload = RunTrigger(id=1, classpath="c", encrypted_kwargs="k", dag_data=data, dag_run_data={})
    body = TypeAdapter(ToTriggerRunner)
    decoder = msgspec.msgpack.Decoder(_ResponseFrame)

    def send() -> bytes:
        sync = messages.TriggerStateSync(to_create=[workload], to_cancel=set())
        return bytes(_ResponseFrame(id=1, body=sync.model_dump()).as_bytes())

    frame = send()
    return {
        "frame_kb": len(frame) / 1000,
        "from_dict_ms": best_ms(lambda: DagSerialization.from_dict(data)),
        "send_ms": best_ms(send),
        "receive_ms": best_ms(lambda: body.validate_python(decoder.decode(frame[4:]).body)),
    }


def trimmed(data: dict[str, Any]) -> dict[str, Any]:
    """The same DAG with each consumer's trigger arguments cut to what cannot be derived."""
    small = copy.deepcopy(data)
    for task in small["dag"]["tasks"]:
        start = task["__var"].get("start_trigger_args")
        if start:
            kwargs = start["trigger_kwargs"]["__var"]
            start["trigger_kwargs"]["__var"] = {k: kwargs[k] for k in ("node", "group_id", "upstream")}
    return small


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale", type=int, default=1, help="replicas of the fhir shape (11 = ~2,000 models)")
    args = parser.parse_args()
    logging.disable(logging.INFO)
    with tempfile.TemporaryDirectory(prefix="dbt-watcher-trigger-cost-") as tmp:
        project = Path(tmp) / "fhir_bench"
        workload = generate.write_project(project, generate.load_shape(), scale=args.scale)
        generate.parse(project)
        data = serialized_dag(project)
    consumers = sum(1 for t in data["dag"]["tasks"] if "start_trigger_args" in t["__var"])
    print(
        f"{workload['models']} models, {len(data['dag']['tasks'])} tasks, {consumers} deferrable consumers; "
        f"serialized DAG {len(json.dumps(data)) / 1000:.0f} KB (JSON)"
    )
    for label, variant in (("as built", data), ("trigger arguments trimmed", trimmed(data))):
        c = costs(variant)
        per_consumer = 2 * c["from_dict_ms"] + c["send_ms"] + c["receive_ms"]
        print(
            f"{label}: workload frame {c['frame_kb']:.0f} KB; from_dict {c['from_dict_ms']:.1f} ms (x2: supervisor "
            f"and runner), send {c['send_ms']:.1f} ms, receive {c['receive_ms']:.1f} ms; "
            f"≈ {per_consumer:.0f} ms per consumer, ≈ {consumers * per_consumer / 1000:.1f} s per run"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
