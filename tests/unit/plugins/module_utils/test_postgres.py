"""The shared PostgreSQL connection layer: options, connection strings, client environment, secret scrubbing and
the messages for connection failures; plus the pure helpers of the migration database layer."""

import psycopg2.extensions
import pytest

from ansible_collections.runbook.release.plugins.module_utils import _migration_db as db
from ansible_collections.runbook.release.plugins.module_utils import _postgres as pg
from ansible_collections.runbook.release.plugins.module_utils._migrations import split_statements

SECRET = "s3cr3t pa'ss@word"


def params(**kw):
    base = dict((key, None) for key in pg.connection_argument_spec()["argument_spec"])
    base["connect_timeout"] = 10
    base.update(kw)
    return base


def test_argument_spec_names_and_constraints():
    spec = pg.connection_argument_spec()
    options = spec["argument_spec"]
    assert {"login_host", "login_port", "login_user", "login_password", "login_db", "connect_timeout", "dsn",
            "ssl_mode"} <= set(options)
    assert options["login_password"]["no_log"] and options["dsn"]["no_log"]
    for option in ("login_host", "login_port", "login_user", "login_password", "login_db"):
        assert ["dsn", option] in spec["mutually_exclusive"]
    assert options["ssl_mode"]["choices"] == ["disable", "allow", "prefer", "require", "verify-ca", "verify-full"]


@pytest.mark.parametrize("dsn", [
    "host=db1 port=5433 dbname=app user=deploy password=pw",
    "host='db 1' password='it\\'s \\\\ here' sslmode=verify-full",
    "  dbname = app   user=u\\ ser ",
    "postgresql://deploy:p%40ss%3Aword@db1:5433/app?sslmode=require&application_name=x",
    "postgres://db1/app",
    "postgresql://u@h1:1,h2:2/d",
    "postgresql://[::1]:5432/app",
    "postgresql://",
])
def test_parse_dsn_agrees_with_libpq(dsn):
    assert pg.parse_dsn(dsn) == psycopg2.extensions.parse_dsn(dsn)


def test_bad_dsn_is_refused_without_echoing_it():
    for dsn in ("host=db password='hunter2", "host=db password=x hunter2", "host=db pass word=hunter2"):
        with pytest.raises(pg.PostgresError) as info:
            pg.parse_dsn(dsn)
        assert "hunter2" not in info.value.msg and "not shown" in info.value.msg


def test_conn_params_leave_unset_options_to_libpq():
    assert pg.conn_params(params()) == {"connect_timeout": "10"}
    kw = pg.conn_params(params(login_host="db", login_port=5433, login_user="u", login_password=SECRET, login_db="app",
                               ssl_mode="verify-full", ca_cert="/ca.pem"), application_name="runbook")
    assert kw == {"host": "db", "port": "5433", "user": "u", "password": SECRET, "dbname": "app",
                  "sslmode": "verify-full", "sslrootcert": "/ca.pem", "connect_timeout": "10",
                  "application_name": "runbook"}
    assert pg.conn_params(params(login_unix_socket="/run/postgresql"))["host"] == "/run/postgresql"


def test_pg_env_carries_the_password_in_the_environment():
    env = pg.pg_env(params(login_host="db", login_port=5433, login_user="u", login_password=SECRET, login_db="app",
                           ssl_mode="require"))
    assert env == {"PGHOST": "db", "PGPORT": "5433", "PGUSER": "u", "PGPASSWORD": SECRET, "PGDATABASE": "app",
                   "PGSSLMODE": "require", "PGCONNECT_TIMEOUT": "10"}
    from_dsn = pg.pg_env(params(dsn="postgresql://u:%s@db:5433/app?sslmode=verify-ca" % "p%40ss", ssl_mode="require"))
    assert from_dsn["PGPASSWORD"] == "p@ss" and from_dsn["PGSSLMODE"] == "require" and from_dsn["PGDATABASE"] == "app"
    with pytest.raises(pg.PostgresError, match="'sslpassword' cannot be passed to client programs"):
        pg.pg_env(params(dsn="host=db sslpassword=x"))


def test_secrets_are_scrubbed_everywhere():
    p = params(dsn="postgresql://u:%s@db/app" % "hunter2")
    secrets = pg.Secrets(p)
    assert secrets.scrub("failed for postgresql://u:hunter2@db/app") == "failed for %s" % pg.MASK
    assert "hunter2" not in secrets.scrub("password hunter2 was wrong")
    assert pg.Secrets(params(login_password=SECRET)).scrub("x %s y" % SECRET) == "x %s y" % pg.MASK
    assert pg.Secrets(params()).scrub("see postgresql://a:other@h/d") == "see postgresql://a:%s@h/d" % pg.MASK


@pytest.mark.parametrize("libpq,expected", [
    ('connection to server at "127.0.0.1", port 55432 failed: FATAL:  password authentication failed for user "app"',
     "password authentication failed connecting to app@127.0.0.1:55432/appdb: the password is wrong"),
    ("fe_sendauth: no password supplied", "the server asks for a password"),
    ('FATAL:  database "appdb" does not exist', "database does not exist"),
    ('FATAL:  role "app" does not exist', "login role does not exist"),
    ("Connection refused\n\tIs the server running on that host", "cannot reach PostgreSQL at"),
    ("timeout expired", "no answer from PostgreSQL"),
    ('invalid dsn: missing "=" after "x" in connection info string', "not valid for libpq"),
])
def test_connection_failures_say_what_to_check(libpq, expected):
    p = params(login_host="127.0.0.1", login_port=55432, login_user="app", login_db="appdb", login_password=SECRET)
    msg = pg.explain_connect_error(libpq, p)
    assert expected in msg and SECRET not in msg


def test_missing_psycopg2_fails_with_the_standard_message(monkeypatch):
    class Module(object):
        def fail_json(self, **kw):
            raise RuntimeError(kw)

    monkeypatch.setattr(pg, "HAS_PSYCOPG2", False)
    with pytest.raises(RuntimeError) as info:
        pg.ensure_psycopg2(Module())
    assert "Failed to import the required Python library (psycopg2" in info.value.args[0]["msg"]


def test_quote_ident():
    assert pg.quote_ident('we"ird') == '"we""ird"'


# --- migration database helpers --------------------------------------------------------------------------------------

def test_history_table_names():
    assert db.split_table_name("runbook_release.schema_history") == ("runbook_release", "schema_history")
    assert db.split_table_name("history") == ("runbook_release", "history")
    for bad in ("a.b.c", "x;drop", '"q".t', "1abc.t"):
        with pytest.raises(ValueError, match="is not schema.table"):
            db.split_table_name(bad)


def test_lock_key_is_a_stable_signed_bigint_per_table():
    key = db.lock_key("runbook_release.schema_history")
    assert key == db.lock_key("runbook_release.schema_history") != db.lock_key("other.history")
    assert -2 ** 63 <= key < 2 ** 63


def test_sql_error_details_map_the_position_to_a_line():
    class Diag(object):
        message_primary = 'column "nope" does not exist'
        message_detail = None
        message_hint = None
        context = None
        statement_position = None

    class Err(Exception):
        pgcode = "42703"
        diag = Diag()

    s = split_statements("\n-- c\nINSERT INTO t (id)\nVALUES (nope);")[0]
    Err.diag.statement_position = str(s.text.index("nope") + 1)
    details = db.sql_error_details(Err("x"), s)
    assert details["sqlstate"] == "42703" and details["line"] == 4 and details["statement_line"] == 3


def test_timeouts_accepted():
    assert all(db.TIMEOUT_RE.match(v) for v in ("5s", "0", "500ms", "15min", "2h", "1d", "30"))
    assert not any(db.TIMEOUT_RE.match(v) for v in ("5 sec", "-1", "1s; DROP TABLE x", ""))
