# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""PostgreSQL connections for runbook.release modules (migration_apply, pg_backup, pg_restore).

One place for the connection options (``connection_argument_spec()``, defined in ``_pg_options`` and documented by the
``runbook.release.postgres`` doc fragment, names as in community.postgresql), for connecting with psycopg2
(``connect()``), and for handing the same settings to client programs such as pg_dump (``pg_env()``: PG*
environment variables, so a password never reaches argv or a process listing).

Passwords never appear in messages: every error text goes through ``Secrets.scrub()``, and a wrong password,
an unreachable server or a missing database each get a message that says what to check.
"""

from __future__ import annotations

import re
import traceback
from urllib.parse import parse_qsl, unquote, urlsplit

from ansible.module_utils.basic import missing_required_lib

# Re-exported: the modules that always use PostgreSQL build their options as pg.connection_argument_spec().
from ansible_collections.runbook.release.plugins.module_utils._pg_options import (  # noqa: F401 pylint: disable=unused-import
    connection_argument_spec)

try:
    import psycopg2
    import psycopg2.extensions
    HAS_PSYCOPG2 = True
    PSYCOPG2_IMPORT_ERROR = None
except ImportError:
    psycopg2 = None
    HAS_PSYCOPG2 = False
    PSYCOPG2_IMPORT_ERROR = traceback.format_exc()


class _DriverMissing(Exception):
    """Stands in for psycopg2.Error when psycopg2 is missing, so ``except pg.Error`` clauses stay valid."""


Error = psycopg2.Error if HAS_PSYCOPG2 else _DriverMissing

MASK = "<hidden>"  # not Ansible's no_log mask, so a test can tell our scrubbing from Ansible's

# libpq connection keywords and the environment variables libpq reads for them (libpq docs, 34.15).
KEYWORD_ENV = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "dbname": "PGDATABASE",
    "user": "PGUSER",
    "password": "PGPASSWORD",
    "passfile": "PGPASSFILE",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslcrl": "PGSSLCRL",
    "sslpassword": None,  # libpq has no variable for it: pg_env() refuses it instead of dropping it silently
    "requiressl": None,
    "channel_binding": "PGCHANNELBINDING",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "client_encoding": "PGCLIENTENCODING",
}
URI_PREFIXES = ("postgresql://", "postgres://")


class PostgresError(Exception):
    """A connection or settings problem; ``msg`` says what is wrong and what to do, and never holds a secret."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


# --- connection strings --------------------------------------------------------------------------------------------

def _parse_uri(dsn):
    parts = urlsplit(dsn)
    out = {}
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, sep, password = userinfo.partition(":")
        if user:
            out["user"] = unquote(user)
        if sep:
            out["password"] = unquote(password)
    hosts, ports = [], []
    for item in netloc.split(",") if netloc else []:
        if item.startswith("["):
            host, _sep, rest = item[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _sep, port = item.partition(":")
        hosts.append(unquote(host))
        ports.append(port)
    if any(hosts):
        out["host"] = ",".join(hosts)
    if any(ports):
        out["port"] = ",".join(ports)
    if parts.path and parts.path != "/":
        out["dbname"] = unquote(parts.path[1:])
    for key, value in parse_qsl(parts.query, keep_blank_values=True):
        out[key] = value
    return out


_KV_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*=\s*")


def _parse_keywords(dsn):
    out = {}
    pos = 0
    text = dsn.strip()
    while pos < len(text):
        match = _KV_RE.match(text, pos)
        if not match:
            raise PostgresError("dsn is not a valid libpq connection string (keyword=value pairs or a postgresql:// "
                                "URI); the value is not shown")
        key = match.group(1)
        pos = match.end()
        value = []
        if pos < len(text) and text[pos] == "'":
            pos += 1
            while pos < len(text) and text[pos] != "'":
                if text[pos] == "\\" and pos + 1 < len(text):
                    pos += 1
                value.append(text[pos])
                pos += 1
            if pos >= len(text):
                raise PostgresError("dsn has an unterminated quoted value for %s; the value is not shown" % key)
            pos += 1
        else:
            while pos < len(text) and not text[pos].isspace():
                if text[pos] == "\\" and pos + 1 < len(text):
                    pos += 1
                value.append(text[pos])
                pos += 1
        out[key] = "".join(value)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


def parse_dsn(dsn):
    """A libpq connection string (``key=value ...`` or a ``postgresql://`` URI) as a dict of libpq keywords."""
    if not dsn:
        return {}
    if dsn.startswith(URI_PREFIXES):
        return _parse_uri(dsn)
    return _parse_keywords(dsn)


def conn_params(params, application_name=None):
    """The libpq keywords the module options ask for. Options left unset stay unset, so libpq's own defaults
    (PGHOST, PGUSER, ~/.pgpass, the local socket, ...) apply as they would for psql."""
    out = parse_dsn(params.get("dsn")) if params.get("dsn") else {}
    if not params.get("dsn"):
        pairs = (("host", params.get("login_unix_socket") or params.get("login_host")),
                 ("port", params.get("login_port")), ("user", params.get("login_user")),
                 ("password", params.get("login_password")), ("dbname", params.get("login_db")))
        out.update((key, str(value)) for key, value in pairs if value not in (None, ""))
    extra = (("sslmode", params.get("ssl_mode")), ("sslrootcert", params.get("ca_cert")),
             ("sslcert", params.get("ssl_cert")), ("sslkey", params.get("ssl_key")),
             ("connect_timeout", params.get("connect_timeout")), ("application_name", application_name))
    out.update((key, str(value)) for key, value in extra if value not in (None, ""))
    return out


def pg_env(params, application_name=None):
    """PG* environment variables for a client program (pg_dump, pg_restore, psql) run with
    ``module.run_command(argv, environ_update=pg_env(module.params))``: the password travels in PGPASSWORD,
    never in argv, where any user of the host could read it from the process list."""
    env = {}
    for key, value in conn_params(params, application_name).items():
        var = KEYWORD_ENV.get(key)
        if var is None:
            raise PostgresError("connection setting %r cannot be passed to client programs through the environment; "
                                "remove it from dsn (use a service file or ~/.pgpass instead)" % key)
        env[var] = value
    return env


def target_description(params):
    """Where the options point, for messages: ``user@host:port/db`` with libpq defaults spelled out."""
    kw = conn_params(params)
    host = kw.get("host") or "(PGHOST or the local socket)"
    port = kw.get("port") or "(PGPORT or 5432)"
    return "%s@%s:%s/%s" % (kw.get("user") or "(PGUSER or the OS user)", host, port,
                            kw.get("dbname") or "(PGDATABASE or the user name)")


class Secrets(object):
    """The secret values of a set of options, to mask wherever text leaves the module."""

    def __init__(self, params):
        values = [params.get("login_password"), params.get("dsn")]
        try:
            values.append(parse_dsn(params.get("dsn")).get("password"))
        except PostgresError:
            pass
        self.values = sorted({v for v in values if v}, key=len, reverse=True)

    def scrub(self, text):
        if text is None:
            return None
        text = str(text)
        for value in self.values:
            text = text.replace(value, MASK)
        # A URI with a password that was not one of ours (for example from a service file) is masked too.
        return re.sub(r"(postgres(?:ql)?://[^:/@\s]*:)[^@\s]*@", r"\1%s@" % MASK, text)


# --- connecting ------------------------------------------------------------------------------------------------------

def ensure_psycopg2(module):
    """Fail the module with Ansible's standard message when psycopg2 is not installed on the target."""
    if not HAS_PSYCOPG2:
        module.fail_json(msg=missing_required_lib("psycopg2 (Debian: python3-psycopg2; pip: psycopg2-binary)"),
                         exception=PSYCOPG2_IMPORT_ERROR)


def explain_connect_error(text, params):
    """A connection failure as a message that says what to check; ``text`` is libpq's own message."""
    target = target_description(params)
    low = (text or "").lower()
    if "password authentication failed" in low:
        return ("password authentication failed connecting to %s: the password is wrong for that user; check "
                "login_password (or the password in dsn, PGPASSWORD or ~/.pgpass)" % target)
    if "no password supplied" in low or "password is required" in low:
        return ("the server asks for a password connecting to %s and none was given: set login_password (or dsn, "
                "PGPASSWORD or ~/.pgpass)" % target)
    if "does not exist" in low and "database" in low:
        return "database does not exist connecting to %s: create it first, or set login_db" % target
    if "role" in low and "does not exist" in low:
        return "login role does not exist connecting to %s: check login_user" % target
    if "no pg_hba.conf entry" in low:
        return ("the server refuses %s by its pg_hba.conf (host, user, database or SSL not allowed): ask for an "
                "entry or change ssl_mode" % target)
    if "timeout expired" in low or "timed out" in low:
        return ("no answer from PostgreSQL at %s within connect_timeout: check login_host/login_port, firewalls, and "
                "that the server runs" % target)
    if "could not connect" in low or "connection refused" in low or "could not translate host name" in low or \
            "no such file or directory" in low:
        return ("cannot reach PostgreSQL at %s: check login_host/login_port (or login_unix_socket) and that the "
                "server runs" % target)
    if "invalid dsn" in low or "connection info string" in low or "invalid connection option" in low or \
            "invalid uri" in low or "invalid integer value" in low:
        return "the connection settings are not valid for libpq (the values are not shown): check dsn and login_*"
    return "cannot connect to PostgreSQL at %s" % target


def connect(params, application_name=None, autocommit=True):
    """An open psycopg2 connection for these options. The password goes to libpq inside this process (never
    argv). Raises PostgresError with a message that names the target and never holds the password."""
    secrets = Secrets(params)
    kwargs = conn_params(params, application_name)
    try:
        if params.get("dsn"):
            # libpq parses the DSN itself; options given beside it (ssl_mode, ...) override its keywords.
            overrides = ("sslmode", "sslrootcert", "sslcert", "sslkey", "connect_timeout", "application_name")
            extra = dict((k, v) for k, v in kwargs.items() if k in overrides)
            conn = psycopg2.connect(params["dsn"], **extra)
        else:
            conn = psycopg2.connect(**kwargs)
    except Error as exc:
        libpq = secrets.scrub(str(exc).strip())
        raise PostgresError("%s (server said: %s)" % (explain_connect_error(libpq, params), libpq.splitlines()[0]
                                                      if libpq else "nothing"), libpq_error=libpq)
    conn.autocommit = autocommit
    return conn


def server_version(conn):
    """``server_version_num`` as an int, for example 150004."""
    return int(conn.server_version)


def quote_ident(name):
    """An SQL identifier, always double-quoted (works without a connection, unlike psycopg2's quote_ident)."""
    return '"%s"' % name.replace('"', '""')
