"""The CeleryExecutor proof: Redis broker, PostgreSQL result backend, two Celery workers.

One worker listens only on the ``dbt`` queue (the producer and consumer rebuilds), one on the
default queue; the triggerer holds every deferrable consumer, so consumers never take a worker
slot unless they rebuild their own node on a retry.
"""

from __future__ import annotations

import json
import re
import secrets
import shutil
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import redis

from devstack import services
from devstack.stack import REPO, AirflowStack

from .conftest import STACK_PARSING, asset_events, xcom
from .oracle import assert_verdicts
from .scenario import Outcome, artifacts, assert_all_green, run

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
DAG = "shop_celery"
WORKERS = {"dbt-worker": "dbt", "default-worker": "default"}
_WORKLOAD = re.compile(r"Executing workload in Celery: .*?task_id='([^']+)'.*?try_number=(\d+)")


@pytest.fixture(scope="module")
def celery_stack(workspace: Path, pg_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    services.ensure_redis()
    broker_db = secrets.randbelow(14) + 1  # a Redis database of its own, emptied first
    redis.Redis(host="127.0.0.1", port=6379, db=broker_db).flushdb()
    results_db = f"dbtw_celery_results_{secrets.token_hex(3)}"
    services.create_database(results_db)
    dags = workspace / "celery_dags"
    shutil.copytree(HERE / "celery_dags", dags, dirs_exist_ok=True)
    shared = tmp_path_factory.mktemp("shared-artifacts")
    try:
        airflow = AirflowStack.start(
            dags,
            name="dbtw_celery",
            extra_env={
                "AIRFLOW__CORE__EXECUTOR": "airflow.providers.celery.executors.celery_executor.CeleryExecutor",
                "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:6379/{broker_db}",
                "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + services.sqlalchemy_url(results_db),
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devstack.hostname.worker_name",
                "PYTHONPATH": str(REPO),
                "SHOP_PG_DBNAME": pg_database,
                "DBTW_SHARED_ARTIFACTS": shared.as_uri(),
                **STACK_PARSING,
            },
        )
        try:
            for name, queue in WORKERS.items():
                airflow.start_component(
                    "celery worker",
                    "--queues",
                    queue,
                    "--concurrency",
                    "2",
                    "--skip-serve-logs",
                    "--celery-hostname",
                    f"{name}@%h",
                    name=name,
                    env={"DBTW_WORKER_NAME": name},
                )
            for name in WORKERS:
                airflow.wait_for_log(name, " ready.", timeout=120)
            yield airflow
        finally:
            airflow.stop()
    finally:
        services.drop_database(results_db)


def workloads(stack: AirflowStack, worker: str) -> Counter[tuple[str, int]]:
    """(task id, try number) of every task a Celery worker executed, from its own log."""
    return Counter((m.group(1), int(m.group(2))) for m in _WORKLOAD.finditer(stack.component_log(worker)))


def wall_seconds(stack: AirflowStack, outcome: Outcome) -> float:
    rows = stack.sql("select start_date, end_date from dag_run where run_id = %s", (outcome.run_id,))
    start, end = rows[0]
    assert isinstance(start, datetime) and isinstance(end, datetime)
    return (end - start).total_seconds()


def test_celery_queues_producer_on_dbt_workers_consumers_in_the_triggerer(celery_stack: AirflowStack) -> None:
    stack = celery_stack
    before = {w: workloads(stack, w) for w in WORKERS}
    failed = run(stack, DAG, {"fail_model": "orders_enriched"}, timeout=420)
    states = failed.group()
    assert states["orders_enriched"] == "failed"
    assert states["stg_orders"] == states["stg_customers"] == "success", states
    assert states["dbt_producer"] == "failed"  # dbt exited 1: the build of this run is not green
    assert failed.states["report"] == "success"
    assert_verdicts(stack, failed)

    tis = {ti["task_id"]: ti for ti in stack.task_instances(DAG, failed.run_id)}
    assert tis["shop.dbt_producer"]["queue"] == "dbt" and tis["shop.dbt_producer"]["hostname"] == "dbt-worker"
    assert tis["report"]["hostname"] == "default-worker"
    # The failing consumer's second try rebuilt its node alone, on the dbt queue's worker.
    assert tis["shop.orders_enriched"]["try_number"] == 2 and tis["shop.orders_enriched"]["hostname"] == "dbt-worker"

    ran = {w: workloads(stack, w) - before[w] for w in WORKERS}
    assert ran["dbt-worker"] == Counter({("shop.dbt_producer", 1): 1, ("shop.orders_enriched", 2): 1})
    # no consumer ever took a worker slot; the audit resumed on one for a moment to emit the asset
    # events of the nodes that succeeded in the failed build (Airflow dropped the red producer's)
    assert ran["default-worker"] == Counter({("report", 1): 1, ("shop.dbt_audit", 1): 1})
    assert {task for uri, task, _ in asset_events(stack, DAG, failed.run_id) if uri.endswith("/stg_orders")} == {
        "shop.dbt_audit"
    }

    # Artifacts on shared storage: the producer's run_results (read by `report` on the other
    # worker) and the consumer rebuild's own run_results next to them.
    statuses = xcom(stack, DAG, failed.run_id, "report")
    assert statuses["model.shop.orders_enriched"] == "error" and statuses["model.shop.stg_orders"] == "success"
    shared = artifacts(stack, failed)
    assert (shared / "manifest.json").is_file()
    rebuild = json.loads((shared / "local" / "shop.orders_enriched" / "try-2" / "run_results.json").read_text())
    assert {r["unique_id"]: r["status"] for r in rebuild["results"]}["model.shop.orders_enriched"] == "error"

    good = run(stack, DAG, timeout=420)
    assert_all_green(stack, good)
    ran = {w: workloads(stack, w) - before[w] - ran[w] for w in WORKERS}
    assert sum(ran["dbt-worker"].values()) == 1 and sum(ran["default-worker"].values()) == 1
    consumers = len(good.group()) - 2  # the producer and the audit
    print(  # the numbers the note reports (run with -s to see them)
        f"\nCelery: {consumers} consumers; tasks per worker: dbt-worker {dict(ran['dbt-worker'])}, "
        f"default-worker {dict(ran['default-worker'])}; wall time {wall_seconds(stack, good):.1f} s"
    )


def test_same_dag_on_local_executor_for_comparison(stack: AirflowStack, celery_stack: AirflowStack) -> None:
    """The same DAG on the session's LocalExecutor stack: same final states. Its second run is the one
    compared with Celery's (the Celery stack's measured run is its second too)."""
    walls = []
    for _ in range(2):
        local = run(stack, DAG, timeout=420)
        assert_all_green(stack, local)
        walls.append(wall_seconds(stack, local))
    print(f"\nLocalExecutor: wall time {walls[-1]:.1f} s (first run {walls[0]:.1f} s)")
