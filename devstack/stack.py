"""A real Airflow 3 deployment on this machine, for tests, the demo and the benchmark.

api-server, scheduler, dag-processor and triggerer run as separate processes (LocalExecutor by
default) on a fresh PostgreSQL metadata database with a unique name, which is dropped on stop.
Every process gets its own process group, so stopping kills exactly what we started.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devstack import services

REPO = Path(__file__).resolve().parent.parent
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
TERMINAL_RUN_STATES = {"success", "failed"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AirflowStack:
    home: Path
    dags_folder: Path
    db_name: str
    port: int
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _token: str | None = None
    #: The harness's own user (username, password) when the stack has real users; None: all admins.
    login: tuple[str, str] | None = None
    keep_home: bool = False
    # DAG files that fail to import on purpose (tests of parse-time errors): waiting for other DAGs
    # must not give up early because of them.
    expected_import_errors: frozenset[str] = frozenset()

    # ---------------------------------------------------------------- lifecycle
    @classmethod
    def start(
        cls,
        dags_folder: Path,
        *,
        home: Path | None = None,
        extra_env: Mapping[str, str] | None = None,
        components: Iterable[str] = COMPONENTS,
        name: str = "dbtw",
        users: Mapping[str, tuple[str, str]] | None = None,
        before_start: Iterable[tuple[str, ...]] = (),
    ) -> AirflowStack:
        """A running stack. ``users``: {username: (role[:team|team], password)} for the simple auth
        manager (an ``admin`` user is added for the harness); default: everyone is an admin.
        ``before_start``: Airflow CLI commands run after ``db migrate``, before the components start."""
        services.ensure_postgres()
        home = home or Path(tempfile.mkdtemp(prefix=f"{name}-airflow-"))
        home.mkdir(parents=True, exist_ok=True)
        db_name = f"{name}_{int(time.time())}_{secrets.token_hex(3)}"
        services.create_database(db_name)
        port = free_port()
        env = dict(os.environ)
        env.update(
            {
                "AIRFLOW_HOME": str(home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": services.sqlalchemy_url(db_name),
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__DAGS_FOLDER": str(dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(port),
                "AIRFLOW__API__WORKERS": "2",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_hex(32),
                "AIRFLOW__CORE__FERNET_KEY": "",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
                "AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK": "False",
                "DBT_WATCHER_CACHE_DIR": str(home / "dbt-watcher-cache"),
                "DBT_SEND_ANONYMOUS_USAGE_STATS": "false",
                "PYTHONUNBUFFERED": "1",
            }
        )
        login = None
        if users:
            login = ("admin", secrets.token_hex(8))
            everyone = {**users, login[0]: ("admin", login[1])}
            passwords = home / "simple_auth_manager_passwords.json"
            passwords.write_text(json.dumps({name: password for name, (_, password) in everyone.items()}))
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] = "False"
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] = ",".join(f"{n}:{r}" for n, (r, _) in everyone.items())
            env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"] = str(passwords)
        env.update(extra_env or {})
        stack = cls(home=home, dags_folder=dags_folder, db_name=db_name, port=port, env=env, login=login)
        try:
            stack.run_cli("db", "migrate", timeout=180)
            for command in before_start:
                stack.run_cli(*command)
            for component in components:
                stack.start_component(component)
            stack.wait_healthy(components)
        except BaseException:
            stack.stop()
            raise
        return stack

    def run_cli(self, *args: str, timeout: float = 120) -> str:
        out = subprocess.run(
            [sys.executable, "-m", "airflow", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if out.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}")
        return out.stdout

    def start_component(
        self,
        component: str,
        *extra: str,
        name: str | None = None,
        env: Mapping[str, str] | None = None,
        python: str | None = None,
    ) -> None:
        """Start ``airflow <component> <extra...>``; ``name`` keys it when one component runs twice
        (two Celery workers, say), ``env`` adds to the stack's environment for this process only,
        ``python`` runs it with another virtualenv's interpreter (one without dbt, say)."""
        name = name or component
        log_dir = self.home / "component-logs"
        log_dir.mkdir(exist_ok=True)
        handle = open(log_dir / f"{name}.log", "ab")  # noqa: SIM115 - lives as long as the process
        self.procs[name] = subprocess.Popen(
            [python or sys.executable, "-m", "airflow", *component.split(), *extra],
            env={**self.env, **(env or {})},
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def usage(self, name: str) -> tuple[float, float]:
        """(CPU seconds so far, resident MB now) of a component with every process it started: they
        all stay in the session ``start_component`` opened for it (a task or trigger runner changes
        only its process group)."""
        proc = self.procs[name]
        ticks = pages = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended while we looked
            if int(fields[3]) == proc.pid:  # the session id
                ticks += sum(int(f) for f in fields[11:15])  # utime, stime and reaped children's
                pages += int(fields[21])  # rss
        return ticks / os.sysconf("SC_CLK_TCK"), pages * os.sysconf("SC_PAGE_SIZE") / 1e6

    def wait_for_log(self, name: str, needle: str, timeout: float = 120) -> None:
        """Wait until a component's own log shows ``needle`` (e.g. a Celery worker's "ready.")."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.component_log(name):
                return
            proc = self.procs.get(name)
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited ({proc.returncode}):\n{self.component_log(name)[-3000:]}")
            time.sleep(0.5)
        raise TimeoutError(f"{name} did not log {needle!r} within {timeout}s:\n{self.component_log(name)[-3000:]}")

    def stop_component(self, component: str, sig: int = signal.SIGTERM, grace: float = 15.0) -> None:
        proc = self.procs.pop(component, None)
        if proc is None or proc.poll() is not None:
            return
        try:
            os.killpg(proc.pid, sig)
            proc.wait(timeout=grace)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
        with contextlib.suppress(ProcessLookupError):
            # The LocalExecutor's workers can outlive a scheduler's SIGTERM: end the whole group.
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)

    def restart_component(self, component: str, grace: float = 15.0) -> None:
        self.stop_component(component, grace=grace)
        self.start_component(component)

    def wait_healthy(self, components: Iterable[str] = COMPONENTS, timeout: float = 120) -> None:
        wanted = {"scheduler": "scheduler", "triggerer": "triggerer", "dag-processor": "dag_processor"}
        needed = [wanted[c] for c in components if c in wanted]
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RuntimeError(
                        f"airflow {name} exited ({proc.returncode}):\n{self.component_log(name)[-3000:]}"
                    )
            try:
                last = self._request("GET", "/api/v2/monitor/health", auth=False)
                if all(last.get(n, {}).get("status") == "healthy" for n in needed):
                    return
            except (OSError, urllib.error.URLError, ValueError):
                pass
            time.sleep(1)
        raise TimeoutError(f"Airflow stack not healthy after {timeout}s: {last}")

    def stop(self) -> None:
        for component in list(self.procs):
            self.stop_component(component)
        services.drop_database(self.db_name)
        # DBT_WATCHER_KEEP_STACK=1 keeps every stack's home (logs, artifacts) for a look after a failure.
        if not self.keep_home and not os.environ.get("DBT_WATCHER_KEEP_STACK"):
            shutil.rmtree(self.home, ignore_errors=True)

    def log_lines(self, needle: str) -> list[str]:
        """Lines containing ``needle`` in every task and trigger log file of the stack."""
        found: list[str] = []
        for path in sorted((self.home / "logs").rglob("*.log")):
            found.extend(line for line in path.read_text(errors="replace").splitlines() if needle in line)
        return found

    def component_log(self, component: str) -> str:
        path = self.home / "component-logs" / f"{component}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # ---------------------------------------------------------------- REST API
    def _request(self, method: str, path: str, body: Any = None, *, auth: bool = True) -> Any:
        headers = {"Content-Type": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method, headers=headers)
        with urllib.request.urlopen(req, timeout=30) as resp:
            raw = resp.read()
        return json.loads(raw) if raw else None

    def token(self) -> str:
        if self._token is None:
            self._token = self.user_token(*self.login) if self.login else self._get_all_admins_token()
        return self._token

    def _get_all_admins_token(self) -> str:
        return str(self._request("GET", "/auth/token", auth=False)["access_token"])

    def user_token(self, username: str, password: str) -> str:
        """A JWT for one of the stack's users (the simple auth manager's login API)."""
        body = {"username": username, "password": password}
        return str(self._request("POST", "/auth/token", body, auth=False)["access_token"])

    def api(self, method: str, path: str, body: Any = None) -> Any:
        return self._request(method, path, body)

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 300) -> None:
        """Wait until the DAGs are parsed; fail early with the import errors if a file is broken.

        A cold start parses every project of the DAG folder with dbt first, which takes minutes on a
        2-core machine, hence the long timeout; files broken on purpose never end the wait early.
        """
        pending = set(dag_ids)
        started = time.monotonic()
        deadline = started + timeout
        while pending and time.monotonic() < deadline:
            if time.monotonic() - started > 30 and self.unexpected_import_errors():
                break
            for dag_id in list(pending):
                try:
                    self.api("GET", f"/api/v2/dags/{dag_id}")
                    pending.discard(dag_id)
                except urllib.error.HTTPError:
                    pass
            if pending:
                time.sleep(1)
        if pending:
            errors = self.api("GET", "/api/v2/importErrors")
            raise TimeoutError(f"DAGs not parsed: {sorted(pending)}; import errors: {json.dumps(errors)[:4000]}")

    def import_errors(self) -> list[dict[str, Any]]:
        return list(self.api("GET", "/api/v2/importErrors").get("import_errors", []))

    def unexpected_import_errors(self) -> list[dict[str, Any]]:
        return [e for e in self.import_errors() if e.get("filename") not in self.expected_import_errors]

    def trigger(self, dag_id: str, conf: Mapping[str, Any] | None = None, run_id: str | None = None) -> str:
        body: dict[str, Any] = {"logical_date": None, "conf": dict(conf or {})}
        if run_id:
            body["dag_run_id"] = run_id
        return str(self.api("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"])

    def run_state(self, dag_id: str, run_id: str) -> str:
        """The run's state, from the metadata database: the REST API's dag-run view loads every task
        instance's DAG version, which at thousands of tasks costs the api-server seconds per call."""
        rows = self.sql("select state from dag_run where dag_id = %s and run_id = %s", (dag_id, run_id))
        return str(rows[0][0]) if rows else "unknown"

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> str:
        deadline = time.monotonic() + timeout
        state = "unknown"
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in TERMINAL_RUN_STATES:
                return state
            time.sleep(0.25)  # one cheap query: a suite of sixty runs would wait half a minute more at 1 s
        states = self.task_states(dag_id, run_id)
        counts = collections.Counter(str(s) for s in states.values())
        ended = ("success", "failed", "skipped", "upstream_failed", "removed")
        unfinished = sorted(t for t, s in states.items() if s not in ended)
        raise TimeoutError(
            f"run {run_id} of {dag_id} still {state} after {timeout}s; task states {dict(counts)}; "
            f"not ended ({len(unfinished)}): {unfinished[:20]}"
        )

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        """Every task instance of a run (the API pages at 100 by default, so follow the pages)."""
        quoted = urllib.parse.quote(run_id, safe="")
        found: list[dict[str, Any]] = []
        while True:
            path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances?limit=100&offset={len(found)}"
            page = self.api("GET", path)
            found.extend(page["task_instances"])
            if not page["task_instances"] or len(found) >= page["total_entries"]:
                return found

    def task_states(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        return {ti["task_id"]: ti["state"] for ti in self.task_instances(dag_id, run_id)}

    def clear_tasks(self, dag_id: str, run_id: str, task_ids: list[str], *, downstream: bool = False) -> None:
        body = {
            "dry_run": False,
            "task_ids": task_ids,
            "dag_run_id": run_id,
            "include_downstream": downstream,
            "only_failed": False,
            "reset_dag_runs": True,
        }
        self.api("POST", f"/api/v2/dags/{dag_id}/clearTaskInstances", body)

    # ---------------------------------------------------------------- metadata DB
    def sql(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return services.query(self.db_name, query, params)

    def task_log(self, dag_id: str, run_id: str, task_id: str, try_number: int = 1) -> str:
        """A task try's log (worker and triggerer parts) as text, one line per log event."""
        quoted = urllib.parse.quote(run_id, safe="")
        path = f"/api/v2/dags/{dag_id}/dagRuns/{quoted}/taskInstances/{task_id}/logs/{try_number}"
        data = self.api("GET", f"{path}?full_content=true")
        lines = []
        for entry in data.get("content", []):
            if isinstance(entry, dict):
                extra = " ".join(f"{k}={v}" for k, v in entry.items() if k not in ("event", "timestamp", "level"))
                lines.append(f"{entry.get('timestamp', '')} {entry.get('level', '')} {entry.get('event', '')} {extra}")
            else:
                lines.append(str(entry))
        return "\n".join(lines)
