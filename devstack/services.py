"""The machine's services (PostgreSQL, Redis): check, start if down, make and drop databases."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import time
from typing import Any

PG_HOST = os.environ.get("DBT_WATCHER_PG_HOST", "127.0.0.1")
PG_PORT = int(os.environ.get("DBT_WATCHER_PG_PORT", "5432"))
PG_USER = os.environ.get("DBT_WATCHER_PG_USER", "postgres")


def _listening(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((host, port)) == 0


def _wait_for(host: str, port: int, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _listening(host, port):
            return
        time.sleep(0.5)
    raise RuntimeError(f"{what} is not listening on {host}:{port} after {timeout}s")


def ensure_postgres() -> None:
    """Start the machine's PostgreSQL cluster if nothing listens on its port."""
    if _listening(PG_HOST, PG_PORT):
        return
    versions = sorted(os.path.basename(p) for p in glob.glob("/etc/postgresql/*"))
    if not versions or shutil.which("pg_ctlcluster") is None:
        raise RuntimeError(f"PostgreSQL is not running on {PG_HOST}:{PG_PORT} and no local cluster was found")
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False)
    _wait_for(PG_HOST, PG_PORT, "PostgreSQL")


def ensure_redis(port: int = 6379) -> None:
    if _listening("127.0.0.1", port):
        return
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
    )
    _wait_for("127.0.0.1", port, "Redis")


def _connect(database: str = "postgres") -> Any:
    import psycopg2

    conn = psycopg2.connect(host=PG_HOST, port=PG_PORT, user=PG_USER, dbname=database)
    conn.autocommit = True
    return conn


def sqlalchemy_url(database: str) -> str:
    return f"postgresql+psycopg2://{PG_USER}@{PG_HOST}:{PG_PORT}/{database}"


def create_database(name: str) -> None:
    ensure_postgres()
    conn = _connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def drop_database(name: str) -> None:
    try:
        conn = _connect()
    except Exception:
        return
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (name,),
            )
            cur.execute(f'DROP DATABASE IF EXISTS "{name}"')
    finally:
        conn.close()


def query(database: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    conn = _connect(database)
    try:
        with conn.cursor() as cur:
            cur.execute(sql, params)
            return list(cur.fetchall()) if cur.description else []
    finally:
        conn.close()


if __name__ == "__main__":
    ensure_postgres()
    print(f"PostgreSQL is up on {PG_HOST}:{PG_PORT}")
    ensure_redis()
    print("Redis is up on 127.0.0.1:6379 (the Celery broker of the CeleryExecutor test)")
