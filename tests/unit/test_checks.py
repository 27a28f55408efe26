"""Bad input: every parameter is checked at parse time, and no secret reaches a message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dbt_watcher.config import WatcherConfig
from dbt_watcher.errors import ConfigurationError
from dbt_watcher.group.overrides import validate
from dbt_watcher.invocation.connection_profiles import profile_outputs
from dbt_watcher.invocation.secrets import profile_secrets, scrubbed_errors

from ..conftest import JAFFLE_SHOP


@pytest.mark.parametrize(
    ("params", "named"),
    [
        ({"poke_interval": float("nan")}, "poke_interval"),
        ({"poke_interval": float("inf")}, "poke_interval"),
        ({"poke_interval": 0.001}, "poke_interval"),
        ({"poke_interval": "1"}, "poke_interval"),
        ({"timeout": float("inf")}, "timeout"),
        ({"timeout": timedelta(0)}, "timeout"),
        ({"select": 123}, "select"),
        ({"select": {"tag": "daily"}}, "select"),
        ({"exclude": ["a", 3]}, "exclude"),
        ({"dbt_args": "--fail-fast"}, "dbt_args"),
        ({"dbt_args": ["--fail-fast", 3]}, "dbt_args"),
        ({"dbt_args": ["--select", "orders"]}, "--select"),
        ({"dbt_args": ["--target-path=/tmp/x"]}, "--target-path"),
        ({"dbt_args": ["-s", "orders"]}, "-s"),
        ({"artifacts_dir": "relative/folder"}, "artifacts_dir"),
        ({"deferrable": "yes"}, "deferrable"),
        ({"threads": True}, "threads"),
        ({"vars": ["a"]}, "vars"),
        ({"group_id": "has space"}, "group_id"),
        ({"status_retention": timedelta(minutes=5)}, "status_retention"),
        ({"producer_retry": "again"}, "producer_retry"),
        ({"skip_unchanged": "yes"}, "skip_unchanged"),
        ({"skip_unchanged": 1}, "skip_unchanged"),
    ],
)
def test_each_bad_parameter_is_named_with_its_fix(params: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named) as raised:
        WatcherConfig(project_dir=str(JAFFLE_SHOP), **params)
    assert "How to fix" in str(raised.value)


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ({"retries": "two"}, "retries"),
        ({"pool": 5}, "pool"),
        ({"retry_delay": -1}, "retry_delay"),
        ({"on_failure_callback": "notify"}, "on_failure_callback"),
        ({"depends_on_past": 1}, "depends_on_past"),
    ],
)
def test_per_node_operator_arguments_are_checked_by_value(args: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        validate(args, "node_operator_args['tag:x']")
    assert validate({"retries": 2, "retry_delay": 5, "pool": "dbt"}, "x")["retry_delay"] == timedelta(seconds=5)


def _profiles(tmp_path: Path, body: str) -> Path:
    (tmp_path / "profiles.yml").write_text(body)
    return tmp_path


def test_a_secret_in_a_profile_error_never_reaches_the_message(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WAREHOUSE_TOKEN", "token-from-the-env-42")
    folder = _profiles(
        tmp_path,
        "p:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n      path: w.duckdb\n"
        "      settings: s3cr3t-VALUE-123\n      token: \"{{ env_var('WAREHOUSE_TOKEN') }}\"\n",
    )
    assert {"s3cr3t-VALUE-123", "token-from-the-env-42"} <= profile_secrets(folder)
    with pytest.raises(ConfigurationError) as raised, scrubbed_errors(folder):
        raise ValueError("'s3cr3t-VALUE-123' is not valid under any of the given schemas; token-from-the-env-42")
    assert "s3cr3t" not in str(raised.value) and "token-from-the-env" not in str(raised.value)
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


def test_a_connection_keeps_its_tls_and_role_settings() -> None:
    conn = SimpleNamespace(
        conn_id="wh",
        conn_type="postgres",
        host="db",
        port=5432,
        login="u",
        password="pw-9137",
        schema="analytics",
        extra_dejson={"sslmode": "verify-full", "sslrootcert": "/etc/ca.pem", "role": "transformer", "other": "x"},
    )
    output, secrets = profile_outputs(conn, threads=4)
    assert (
        output["sslmode"] == "verify-full"
        and output["sslrootcert"] == "/etc/ca.pem"
        and output["role"] == "transformer"
    )
    assert "other" not in output and "pw-9137" not in str(output) and list(secrets.values()) == ["pw-9137"]


def test_a_dag_file_named_like_a_dbt_plugin_fails_at_once(tmp_path: Path, cache_dir: Path) -> None:
    # dbt imports every dbt_* module on sys.path as a possible plugin; Airflow puts the DAGs folder there.
    dag_file = tmp_path / "dbt_shop_dag.py"
    dag_file.write_text(
        "import pendulum\n"
        "from airflow.sdk import dag\n"
        "from dbt_watcher import dbt_watcher_group\n"
        f"@dbt_watcher_group(project_dir={str(JAFFLE_SHOP)!r})\n"
        "def shop(): ...\n"
        "@dag(schedule=None, start_date=pendulum.datetime(2026, 1, 1, tz='UTC'))\n"
        "def named_like_a_plugin():\n"
        "    shop()\n"
        "named_like_a_plugin()\n"
    )
    loader = (
        f"import json, sys; sys.path.insert(0, {str(tmp_path)!r})\n"
        "from dbt_watcher.airflow_lines import dag_bag as DagBag\n"
        f"bag = DagBag(dag_folder={str(dag_file)!r}, safe_mode=False)\n"
        "print(json.dumps({k: str(v) for k, v in bag.import_errors.items()}))\n"
    )
    env = {**os.environ, "DBT_WATCHER_CACHE_DIR": str(cache_dir)}
    out = subprocess.run(
        [sys.executable, "-c", loader], env=env, capture_output=True, text=True, check=True, timeout=120
    )
    errors = json.loads(out.stdout.strip().splitlines()[-1])
    message = errors[str(dag_file)]
    assert "starts with 'dbt_'" in message
    assert "Rename dbt_shop_dag.py" in message
    assert "import timeout" not in message


def test_profile_args_need_a_connection_and_hold_no_secret() -> None:
    with pytest.raises(ConfigurationError, match=r"profile_args=.*without connection_id"):
        WatcherConfig(project_dir="p", profile_args={"schema": "mart"})
    conn = SimpleNamespace(conn_id="wh", conn_type="postgres", host="db", port=None, login="u", password="pw-1",
                           schema="wh", extra_dejson={})  # fmt: skip
    output, _ = profile_outputs(conn, threads=None, profile_args={"schema": "mart"})
    assert output["schema"] == "mart"
    with pytest.raises(ConfigurationError, match="profile_args holds password"):
        profile_outputs(conn, threads=None, profile_args={"password": "pw-1"})
    nested = {"oauth_client_secret": "x", "settings": {"motherduck_token": "y"}, "private_key_path": "/k.p8"}
    with pytest.raises(ConfigurationError, match=r"holds oauth_client_secret, settings\.motherduck_token:"):
        profile_outputs(conn, threads=None, profile_args=nested)
