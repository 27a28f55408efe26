"""dbt profile outputs from Airflow Connections, one rule per warehouse (``connection_id=``).

Each rule reads the fields and extras the Airflow provider of that warehouse defines for its
connection type, and returns the dbt output for the adapter's credentials plus the secrets it needs.
A secret is never in the output: the output reads it with ``env_var('DBT_ENV_SECRET_DBT_WATCHER_<NAME>')``,
a name dbt scrubs from its own logs, and the secret reaches dbt only as that environment variable
for the duration of one invocation. ``profile_args`` (non-secret dbt settings such as ``schema``)
are merged last; a secret there is refused.

Connection types (docs/dbt-features.md has the table of fields):
``postgres``, ``redshift`` (password or IAM), ``snowflake`` (password, key pair, OAuth),
``google_cloud_platform`` (BigQuery: key file, key JSON, or application default credentials),
``databricks`` (token), ``trino``, ``mssql`` (SQL Server), ``clickhouse``, ``spark`` (Thrift or HTTP),
``aws`` (Athena), ``duckdb`` (a file or MotherDuck).

The field names of each adapter's credentials are those of its ``*Credentials`` class (dbt-postgres
1.11, dbt-redshift 1.11, dbt-snowflake 1.12, dbt-bigquery 1.12, dbt-databricks 1.12, dbt-trino 1.11,
dbt-sqlserver 1.11, dbt-clickhouse 1.10, dbt-spark 1.10, dbt-athena 1.11, dbt-duckdb 1.11);
tests/integration/test_connection_profiles.py has dbt parse every rule's output with the adapter installed.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from dbt_watcher.errors import ConfigurationError
from dbt_watcher.invocation.secrets import is_secret_name

SECRET_PREFIX = "DBT_ENV_SECRET_DBT_WATCHER_"
JSON_PREFIX = "DBT_WATCHER_SECRET_"
#: Profile settings that hold a secret: refused in ``profile_args`` (they belong in the connection).
SECRET_SETTINGS = frozenset(
    {
        "password",
        "token",
        "private_key",
        "private_key_passphrase",
        "keyfile_json",
        "aws_secret_access_key",
        "aws_session_token",
        "client_secret",
        "refresh_token",
        "motherduck_token",
    }
)
#: Connection extras that are settings of dbt-postgres's credentials, passed on unchanged.
POSTGRES_EXTRAS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "role",
    "search_path",
    "keepalives_idle",
    "connect_timeout",
    "application_name",
    "retries",
)


class Rendered:
    """A dbt output being built, and the secrets it reads from the environment."""

    def __init__(self, output: dict[str, Any]) -> None:
        self.output = output
        self.secrets: dict[str, str] = {}

    def secret(self, setting: str, value: Any, *, native: bool = False) -> None:
        """Put ``setting`` in the output as an env_var() of a secret; ``native``: a JSON object.

        dbt renders a ``DBT_ENV_SECRET_*`` variable as a placeholder and puts the value in only after
        Jinja ran (dbt/config/renderer.py, ``SecretRenderer``), so a filter such as ``as_native`` never
        sees it: a JSON object (a BigQuery key) travels in a variable without that prefix. Airflow
        still masks it in task logs (its connection extras are masked by name: ``keyfile_dict``).
        """
        if value in (None, ""):
            return
        name = (JSON_PREFIX if native else SECRET_PREFIX) + setting.upper()
        self.secrets[name] = value if isinstance(value, str) else json.dumps(value)
        self.output[setting] = f"{{{{ env_var('{name}'){' | as_native' if native else ''} }}}}"

    def set(self, **settings: Any) -> None:
        """Add the settings whose value is known."""
        self.output.update({k: v for k, v in settings.items() if v not in (None, "")})


def _extra(conn: Any) -> dict[str, Any]:
    extra = getattr(conn, "extra_dejson", None)
    return dict(extra) if isinstance(extra, dict) else {}


def _get(extra: Mapping[str, Any], *names: str) -> Any:
    """An extra by any of its names (providers accept both ``key`` and ``extra__<type>__key``)."""
    for name in names:
        if extra.get(name) not in (None, ""):
            return extra[name]
    return None


def _need(conn: Any, what: str, value: Any, fix: str) -> Any:
    if value in (None, ""):
        raise ConfigurationError(f"connection {conn.conn_id!r} ({conn.conn_type}) has no {what}.", fix)
    return value


def _postgres(conn: Any, x: dict[str, Any]) -> Rendered:
    r = Rendered({"type": "postgres", "host": conn.host or "localhost", "port": int(conn.port or 5432)})
    r.output["user"] = conn.login or ""  # dbt-postgres requires the setting, even empty
    r.set(dbname=conn.schema or x.get("database") or "postgres")
    r.output["schema"] = x.get("dbt_schema", "public")
    r.output["password"] = ""
    r.secret("password", conn.password)
    r.set(**{key: x[key] for key in POSTGRES_EXTRAS if x.get(key) is not None})
    return r


def _redshift(conn: Any, x: dict[str, Any]) -> Rendered:
    host = _need(conn, "host", conn.host, "Set the cluster or workgroup endpoint as the connection's host.")
    r = Rendered({"type": "redshift", "host": host, "port": int(conn.port or 5439)})
    r.set(user=conn.login, dbname=conn.schema or x.get("database") or "dev", schema=x.get("dbt_schema", "public"))
    if x.get("iam") or x.get("method") == "iam":
        r.set(
            method="iam",
            cluster_id=_get(x, "cluster_identifier", "cluster_id"),
            region=_get(x, "region", "region_name"),
        )
        # dbt-redshift's IAM method takes the database user from `user` (it has no db_user setting).
        r.set(iam_profile=_get(x, "profile", "iam_profile"), user=x.get("db_user") or conn.login)
    else:
        r.set(method="database")
        r.secret("password", conn.password)
    r.set(sslmode=x.get("sslmode"), role=x.get("role"))
    return r


def _snowflake(conn: Any, x: dict[str, Any]) -> Rendered:
    account = _need(
        conn, "account", _get(x, "account", "extra__snowflake__account"), 'Set extra {"account": "<org>-<account>"}.'
    )
    r = Rendered({"type": "snowflake", "account": account})
    r.set(
        user=conn.login,
        database=_get(x, "database", "extra__snowflake__database"),
        warehouse=_get(x, "warehouse", "extra__snowflake__warehouse"),
        role=_get(x, "role", "extra__snowflake__role"),
        schema=conn.schema or x.get("dbt_schema"),
    )
    authenticator = str(_get(x, "authenticator", "extra__snowflake__authenticator") or "").lower()
    key = _get(x, "private_key_content", "extra__snowflake__private_key_content")
    key_file = _get(x, "private_key_file", "extra__snowflake__private_key_file")
    if authenticator == "oauth":
        # The Airflow Snowflake hook's OAuth layout: client id in login, client secret in password,
        # the refresh token in the extras; dbt-snowflake then takes the refresh token as `token`.
        # Without a client id, extra `token` is an access token.
        client_id = x.get("client_id") or (conn.login if x.get("refresh_token") else None)
        r.set(authenticator="oauth", oauth_client_id=client_id)
        r.secret("token", x.get("refresh_token") or x.get("token"))
        if client_id:
            r.secret("oauth_client_secret", x.get("client_secret") or conn.password)
    elif key or key_file:
        # The Airflow Snowflake hook reads the key's passphrase from the connection's password.
        if key:
            r.secret("private_key", key)
        else:
            r.set(private_key_path=key_file)
        r.secret("private_key_passphrase", conn.password)
    else:
        if authenticator:
            r.set(authenticator=authenticator)
        r.secret("password", conn.password)
    return r


def _bigquery(conn: Any, x: dict[str, Any]) -> Rendered:
    project = _get(x, "project", "project_id", "extra__google_cloud_platform__project")
    r = Rendered({"type": "bigquery"})
    r.set(project=_need(conn, "project", project, 'Set extra {"project": "<gcp project id>"}.'))
    r.set(dataset=conn.schema or x.get("dataset") or x.get("dbt_schema"), location=x.get("location"))
    key_path = _get(x, "key_path", "extra__google_cloud_platform__key_path")
    key_json = _get(x, "keyfile_dict", "extra__google_cloud_platform__keyfile_dict")
    if key_json:
        r.set(method="service-account-json")
        r.secret("keyfile_json", json.loads(key_json) if isinstance(key_json, str) else key_json, native=True)
    elif key_path:
        r.set(method="service-account", keyfile=key_path)
    else:
        r.set(method="oauth")  # application default credentials of the machine
    return r


def _databricks(conn: Any, x: dict[str, Any]) -> Rendered:
    host = _need(conn, "host", conn.host, "Set the workspace host (adb-....azuredatabricks.net) as the host.")
    http_path = _need(conn, "http_path", x.get("http_path"), 'Set extra {"http_path": "/sql/1.0/warehouses/<id>"}.')
    r = Rendered({"type": "databricks", "host": str(host).removeprefix("https://"), "http_path": http_path})
    r.set(catalog=x.get("catalog"), schema=conn.schema or x.get("dbt_schema") or "default")
    r.secret("token", x.get("token") or conn.password)
    return r


def _trino(conn: Any, x: dict[str, Any]) -> Rendered:
    host = _need(conn, "host", conn.host, "Set the Trino coordinator as the connection's host.")
    catalog = _need(conn, "catalog", x.get("catalog"), 'Set extra {"catalog": "<catalog>"}.')
    r = Rendered({"type": "trino", "host": host, "port": int(conn.port or 8080), "database": catalog})
    r.set(user=conn.login or "airflow", schema=conn.schema or x.get("dbt_schema") or "default")
    if conn.password:
        r.set(method="ldap", http_scheme="https")
        r.secret("password", conn.password)
    else:
        r.set(method="none", http_scheme=x.get("protocol", "http"))
    return r


def _sqlserver(conn: Any, x: dict[str, Any]) -> Rendered:
    host = _need(conn, "host", conn.host, "Set the SQL Server host as the connection's host.")
    r = Rendered({"type": "sqlserver", "driver": x.get("driver", "ODBC Driver 18 for SQL Server"), "server": host})
    r.set(port=int(conn.port or 1433), database=conn.schema or x.get("database"), schema=x.get("dbt_schema", "dbo"))
    r.set(user=conn.login, authentication=x.get("authentication", "sql"), encrypt=x.get("encrypt"))
    r.set(trust_cert=x.get("trust_server_certificate"))
    r.secret("password", conn.password)
    return r


def _clickhouse(conn: Any, x: dict[str, Any]) -> Rendered:
    r = Rendered({"type": "clickhouse", "host": conn.host or "localhost", "port": int(conn.port or 8123)})
    r.set(user=conn.login or "default", schema=conn.schema or x.get("dbt_schema") or "default", secure=x.get("secure"))
    r.output["password"] = ""
    r.secret("password", conn.password)
    return r


def _spark(conn: Any, x: dict[str, Any]) -> Rendered:
    host = _need(conn, "host", conn.host, "Set the Spark Thrift server or cluster host as the connection's host.")
    method = x.get("method", "thrift")
    r = Rendered(
        {"type": "spark", "method": method, "host": host, "schema": conn.schema or x.get("dbt_schema") or "default"}
    )
    r.set(port=int(conn.port or (443 if method == "http" else 10001)), user=conn.login, cluster=x.get("cluster"))
    r.set(endpoint=x.get("endpoint"), organization=x.get("organization"))
    r.secret("token", x.get("token") or (conn.password if method == "http" else None))
    return r


def _athena(conn: Any, x: dict[str, Any]) -> Rendered:
    region = _need(conn, "region_name", _get(x, "region_name", "region"), 'Set extra {"region_name": "eu-west-1"}.')
    staging = _need(
        conn, "s3_staging_dir", x.get("s3_staging_dir"), 'Set extra {"s3_staging_dir": "s3://bucket/tmp/"}.'
    )
    r = Rendered({"type": "athena", "region_name": region, "s3_staging_dir": staging})
    r.set(database=x.get("database", "awsdatacatalog"), schema=conn.schema or x.get("dbt_schema"))
    r.set(work_group=x.get("work_group"), aws_profile_name=x.get("profile_name"))
    if conn.login:
        r.set(aws_access_key_id=conn.login)
        r.secret("aws_secret_access_key", conn.password)
        r.secret("aws_session_token", x.get("aws_session_token"))
    return r


def _duckdb(conn: Any, x: dict[str, Any]) -> Rendered:
    path = _need(
        conn,
        "database file",
        x.get("path") or conn.host,
        'Put the file path (or md:<database> for MotherDuck) in the host, or extra {"path": ...}.',
    )
    r = Rendered({"type": "duckdb", "path": path, "schema": x.get("schema", "main")})
    token = x.get("motherduck_token") or (conn.password if str(path).startswith("md:") else None)
    if token:  # MotherDuck reads its token from the motherduck_token setting
        name = SECRET_PREFIX + "MOTHERDUCK_TOKEN"
        r.secrets[name] = str(token)
        r.output["settings"] = {"motherduck_token": f"{{{{ env_var('{name}') }}}}"}
    return r


#: Airflow connection type → rule. Aliases are the other names providers register for the same type.
RULES: dict[str, Callable[[Any, dict[str, Any]], Rendered]] = {
    "postgres": _postgres,
    "postgresql": _postgres,
    "redshift": _redshift,
    "snowflake": _snowflake,
    "google_cloud_platform": _bigquery,
    "gcpbigquery": _bigquery,
    "databricks": _databricks,
    "trino": _trino,
    "mssql": _sqlserver,
    "clickhouse": _clickhouse,
    "spark": _spark,
    "aws": _athena,
    "duckdb": _duckdb,
}


def _secret_keys(settings: Mapping[str, Any], prefix: str = "") -> set[str]:
    """The keys (nested ones as ``a.b``) that name a secret; paths to key files are not secrets."""
    found: set[str] = set()
    for key, value in settings.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            found |= _secret_keys(value, f"{name}.")
        elif str(key) in SECRET_SETTINGS or (is_secret_name(str(key)) and not str(key).endswith(("_path", "_file"))):
            found.add(name)
    return found


def parse_placeholders(secrets: Mapping[str, str]) -> dict[str, str]:
    """Stand-ins for the secrets while dbt only parses (it never connects then): empty, or an empty
    JSON object for a secret that is one (a BigQuery key), so the adapter's credentials still validate."""
    return {name: "{}" if name.endswith("_JSON") else "" for name in secrets}


def profile_outputs(
    conn: Any, threads: int | None, profile_args: Mapping[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, str]]:
    """The dbt output for a connection (no secret in it), and the secret environment it reads.

    Raises:
        ConfigurationError: an unsupported connection type, a field the warehouse needs is missing,
            or ``profile_args`` holds a secret.
    """
    kind = str(conn.conn_type or "").lower()
    rule = RULES.get(kind)
    if rule is None:
        raise ConfigurationError(
            f"connection {conn.conn_id!r} has type {conn.conn_type!r}; dbt-watcher renders profiles for "
            f"the connection types {', '.join(sorted(RULES))}.",
            "Use a connection of one of those types, or a profiles.yml (profiles_dir=).",
        )
    secret_args = sorted(_secret_keys(profile_args or {}))
    if secret_args:
        raise ConfigurationError(
            f"profile_args holds {', '.join(secret_args)}: a secret would be written into the profile.",
            "Keep secrets in the Airflow connection (password or extras); profile_args is for settings such as schema.",
        )
    rendered = rule(conn, _extra(conn))
    rendered.output.update(profile_args or {})
    if threads:
        rendered.output["threads"] = threads
    return rendered.output, rendered.secrets
