"""Demo application deployed by the runbook.release sandbox.

One code base runs as three services, chosen by SERVICE_NAME:
  api, web  JSON over HTTP with identical endpoints; two services give the
            orchestrator two independently deployable units behind a proxy
  worker    a background loop without HTTP, whose liveness is a heartbeat file

The app exists to exercise release automation, so it has switches for
misbehaviour (APP_FAULT) and for schema compatibility (APP_SCHEMA); README.md
describes them. Only the standard library and psycopg2 are used, because the
image is a Debian minbase with python3-psycopg2 and no network at build time.
"""

from __future__ import annotations

import csv
import hashlib
import hmac
import html
import io
import json
import os
import random
import re
import secrets
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs

try:
    import psycopg2
except ImportError:  # the image always has it; this keeps the pure helpers importable for checks
    psycopg2 = None

SERVICES = ("api", "web", "worker")
FAULTS = ("", "unhealthy", "crash", "errors", "slow")
SCHEMAS = (1, 2)
PROBE_PATHS = frozenset({"/health", "/readiness"})  # exempt from injected faults

HEARTBEAT_FILE = "/tmp/worker-heartbeat"
WORKER_INTERVAL_SECONDS = 2.0
INFLIGHT_GRACE_SECONDS = 5.0  # drain + this stays inside Docker's default 10 s stop timeout
STATEMENT_TIMEOUT_MS = 5000  # a query stuck behind a migration lock must not hang a request forever
MAX_BODY_BYTES = 64 * 1024
SESSION_TTL_SECONDS = 3600
DEFAULT_LIMIT, MAX_LIMIT = 20, 100
MAX_TEXT_LEN = 200
MAX_BIGINT = 2**63 - 1
UNDEFINED_COLUMN = "42703"
# Same expression as the V005 backfill, so rows inserted by the app get identical slugs.
SLUG_SQL = "regexp_replace(lower(%s), '[^a-z0-9]+', '-', 'g')"
# Checked when the user does not exist, so unknown users cost as much time as wrong passwords.
DUMMY_HASH = "pbkdf2_sha256$100000$" + "00" * 16 + "$" + "00" * 32

if psycopg2 is not None:
    DriverError = psycopg2.Error
    ConnectionErrors = (psycopg2.OperationalError, psycopg2.InterfaceError)
else:

    class DriverError(Exception):
        pgcode = None

    ConnectionErrors = ()


# --------------------------------------------------------------------------- configuration


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Config:
    service: str
    version: str
    commit: str
    port: int
    fault: str
    schema: int
    drain_seconds: float
    started_at: datetime


def _parse_number(env, name: str, default: str, kind):
    raw = (env.get(name) or "").strip() or default
    try:
        return kind(raw)
    except ValueError:
        raise ConfigError(f"{name} must be {'an integer' if kind is int else 'a number'} (got {raw!r})") from None


def load_config(env) -> Config:
    service = (env.get("SERVICE_NAME") or "").strip()
    if service not in SERVICES:
        raise ConfigError(f"SERVICE_NAME must be one of {', '.join(SERVICES)} (got {service!r})")
    fault = (env.get("APP_FAULT") or "").strip()
    if fault not in FAULTS:
        raise ConfigError(f"APP_FAULT must be empty or one of {', '.join(FAULTS[1:])} (got {fault!r})")
    schema = _parse_number(env, "APP_SCHEMA", "1", int)
    if schema not in SCHEMAS:
        raise ConfigError(f"APP_SCHEMA must be 1 or 2 (got {schema})")
    port = _parse_number(env, "APP_PORT", "8000", int)
    if not 1 <= port <= 65535:
        raise ConfigError(f"APP_PORT must be between 1 and 65535 (got {port})")
    drain = _parse_number(env, "APP_DRAIN_SECONDS", "1", float)
    if not 0 <= drain <= 60:  # also rejects nan
        raise ConfigError(f"APP_DRAIN_SECONDS must be between 0 and 60 (got {drain})")
    version, commit = env.get("APP_VERSION") or "unknown", env.get("APP_COMMIT") or "unknown"
    return Config(service, version, commit, port, fault, schema, drain, datetime.now(timezone.utc))


# --------------------------------------------------------------------------- logging and small helpers

LOG_CONTEXT: dict = {}  # service and version, set once at start-up
# Re-entrant because signal handlers log on the main thread, possibly while it holds the lock.
_log_lock = threading.RLock()


def log(event: str, level: str = "info", **fields) -> None:
    """Write one JSON object per line to stdout, the format the sandbox's log checks parse."""
    record = {"ts": utc_iso(datetime.now(timezone.utc)), "level": level, **LOG_CONTEXT, "event": event, **fields}
    line = json.dumps(record, default=str, separators=(",", ":"))
    with _log_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


def utc_iso(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def hash_password(password: str, salt: bytes, iterations: int = 100_000) -> str:
    digest = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8", "surrogatepass"), salt, iterations)
    return f"pbkdf2_sha256${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, encoded: str) -> bool:
    try:
        algorithm, iterations, salt_hex, hash_hex = encoded.split("$")
        rounds, salt, expected = int(iterations), bytes.fromhex(salt_hex), bytes.fromhex(hash_hex)
    except (AttributeError, ValueError):
        return False
    # The iteration bound stops a corrupted row from turning one login into minutes of CPU.
    if algorithm != "pbkdf2_sha256" or not 1 <= rounds <= 10_000_000 or not expected:
        return False
    actual = hashlib.pbkdf2_hmac(
        "sha256", password.encode("utf-8", "surrogatepass"), salt, rounds, dklen=len(expected)
    )
    return hmac.compare_digest(actual, expected)


def db_error_fields(exc: Exception) -> dict:
    """SQLSTATE and the primary message only: enough to diagnose, without query text."""
    diag = getattr(exc, "diag", None)
    lines = str(exc).strip().splitlines()
    message = getattr(diag, "message_primary", None) or (lines[0] if lines else type(exc).__name__)
    return {"sqlstate": getattr(exc, "pgcode", None), "message": message}


# --------------------------------------------------------------------------- HTTP primitives


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict = field(default_factory=dict)


def json_response(status: int, payload, headers: dict | None = None) -> Response:
    body = json.dumps(payload, default=str, separators=(",", ":")).encode()
    return Response(status, body, "application/json", headers or {})


class HttpError(Exception):
    """Raised anywhere below a handler to answer with a JSON error."""

    def __init__(self, status: int, message: str, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}

    def response(self) -> Response:
        return json_response(self.status, {"error": self.message}, self.headers)


@dataclass
class Request:
    method: str
    path: str
    query: dict
    headers: object  # an email.message.Message: case-insensitive .get()
    body: bytes = b""
    params: dict = field(default_factory=dict)

    def json(self) -> dict:
        try:
            payload = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError):
            raise HttpError(400, "request body must be valid JSON") from None
        if not isinstance(payload, dict):
            raise HttpError(400, "request body must be a JSON object")
        return payload


def clean_text(value, field_name: str, max_len: int = MAX_TEXT_LEN) -> str:
    """Reject what PostgreSQL would refuse (NUL, unencodable text) as a 400, not a 500."""
    if not isinstance(value, str) or not 1 <= len(value) <= max_len or "\x00" in value:
        raise HttpError(400, f"{field_name} must be a string of 1..{max_len} characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise HttpError(400, f"{field_name} must be valid Unicode text") from None
    return value


def bearer_token(header: str | None) -> str | None:
    scheme, _sep, token = (header or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token or len(token) > 200 or " " in token:
        return None
    return token


def parse_limit(query: dict) -> int:
    values = query.get("limit")
    if not values:
        return DEFAULT_LIMIT
    try:
        limit = int(values[0])
    except ValueError:
        raise HttpError(400, "limit must be an integer") from None
    if limit < 1:
        raise HttpError(400, "limit must be at least 1")
    return min(limit, MAX_LIMIT)


def parse_new_item(body: dict) -> tuple[str, str | None]:
    name = clean_text(body.get("name"), "name")
    owner = body.get("owner")
    return name, (None if owner is None else clean_text(owner, "owner"))


ITEM_FIELDS = ("id", "name", "owner", "status", "created_at")


def item_to_json(row) -> dict:
    item = dict(zip(ITEM_FIELDS, row))
    item["created_at"] = utc_iso(item["created_at"])
    return item


def items_csv(items) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(ITEM_FIELDS)
    for item in items:
        writer.writerow([item[name] for name in ITEM_FIELDS])
    return buffer.getvalue()


# --------------------------------------------------------------------------- schema compatibility


@dataclass(frozen=True)
class ItemColumns:
    """Which of the items columns this connection's schema has (expand/contract)."""

    name: str  # "name" or "title"; interpolated into SQL, so only ever one of those constants
    slug: bool


LEGACY_ITEM_COLUMNS = ItemColumns(name="name", slug=False)  # what v1.2.2 (APP_SCHEMA=1) assumes

ITEM_COLUMNS_SQL = (
    "SELECT column_name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND table_name = 'items'"
)


def detect_item_columns(cur) -> ItemColumns:
    cur.execute(ITEM_COLUMNS_SQL)
    present = {row[0] for row in cur.fetchall()}
    return ItemColumns(name="title" if "title" in present else "name", slug="slug" in present)


def select_items_sql(cols: ItemColumns) -> str:
    return f"SELECT id, {cols.name}, owner, status, created_at FROM items"


def insert_item_sql(cols: ItemColumns, name: str, owner: str | None) -> tuple[str, list]:
    columns, values, params = [cols.name], ["%s"], [name]
    if owner is not None:  # omitted owner falls back to the column default
        columns.append("owner")
        values.append("%s")
        params.append(owner)
    if cols.slug:  # the column is nullable for v1.2.2's sake, but v1.2.3 keeps it filled
        columns.append("slug")
        values.append(SLUG_SQL)
        params.append(name)
    sql = (
        f"INSERT INTO items ({', '.join(columns)}) VALUES ({', '.join(values)}) "
        f"RETURNING id, {cols.name}, owner, status, created_at"
    )
    return sql, params


# --------------------------------------------------------------------------- database


class _PooledConnection:
    __slots__ = ("conn", "item_columns")

    def __init__(self, conn):
        self.conn = conn
        self.item_columns: ItemColumns | None = None  # detected lazily, once per connection

    def close(self) -> None:
        try:
            self.conn.close()
        except Exception:  # closing a broken connection must not mask the original error
            pass


class Database:
    """One connection per thread, kept in a threading.local for the whole request.

    ThreadingHTTPServer starts a new thread for every request, so a bare
    threading.local would open and leak a connection per request. A thread
    therefore checks a connection out of a small LIFO pool on first use and
    hands it back in release(); a connection is never used by two threads.
    """

    MAX_IDLE = 8

    def __init__(self, config: Config):
        self._config = config
        self._local = threading.local()
        self._idle: list[_PooledConnection] = []
        self._lock = threading.Lock()
        self._closed = False

    def _connect(self) -> _PooledConnection:
        # Empty DSN: libpq reads PGHOST, PGPORT, PGDATABASE, PGUSER and PGPASSWORD itself,
        # so the password never passes through this program.
        conn = psycopg2.connect(
            "",
            connect_timeout=3,
            application_name=f"demo-{self._config.service}",
            options=f"-c statement_timeout={STATEMENT_TIMEOUT_MS}",
        )
        conn.autocommit = True
        return _PooledConnection(conn)

    def _acquire(self) -> _PooledConnection:
        held = getattr(self._local, "held", None)
        if held is None:
            with self._lock:
                held = self._idle.pop() if self._idle else None
            self._local.held = held = held or self._connect()
        return held

    def release(self) -> None:
        held = getattr(self._local, "held", None)
        if held is None:
            return
        self._local.held = None
        with self._lock:
            if not self._closed and not held.conn.closed and len(self._idle) < self.MAX_IDLE:
                self._idle.append(held)
                return
        held.close()

    def _discard_all(self) -> None:
        # A dead connection usually means the server restarted, so the idle ones are dead too.
        held = getattr(self._local, "held", None)
        self._local.held = None
        with self._lock:
            stale, self._idle = self._idle, []
        for pooled in stale + ([held] if held else []):
            pooled.close()

    def close_all(self) -> None:
        with self._lock:
            self._closed = True
        self._discard_all()

    def item_columns(self, cur) -> ItemColumns:
        if self._config.schema == 1:
            return LEGACY_ITEM_COLUMNS
        held = self._local.held
        if held.item_columns is None:
            held.item_columns = detect_item_columns(cur)
        return held.item_columns

    def run(self, work: Callable):
        """Run work(cursor), retrying once after a lost connection or a stale column cache.

        Callers put everything a request needs into one work() so the single retry
        covers the whole request. A retried INSERT could duplicate a row if the
        connection died after the commit; acceptable for a demo.
        """
        for attempt in (1, 2):
            held = self._acquire()
            try:
                with held.conn.cursor() as cur:
                    return work(cur)
            except ConnectionErrors as exc:
                lost = isinstance(exc, psycopg2.InterfaceError) or held.conn.closed or exc.pgcode is None
                if attempt == 2 or not lost:
                    raise
                log("db_reconnect", level="warning", **db_error_fields(exc))
                self._discard_all()
            except DriverError as exc:
                # A migration (V006) renamed a column under a long-lived connection: re-detect.
                if attempt == 2 or exc.pgcode != UNDEFINED_COLUMN or held.item_columns is None:
                    raise
                held.item_columns = None
        raise AssertionError("unreachable")


def fetch_one(cur, sql: str, params=None):
    cur.execute(sql, params)
    return cur.fetchone()


# --------------------------------------------------------------------------- request handlers


class App:
    """What the handlers share: configuration, the database and the draining flag."""

    def __init__(self, config: Config, db):
        self.config = config
        self.db = db
        self.draining = threading.Event()


def authenticate(cur, req: Request) -> str:
    token = bearer_token(req.headers.get("Authorization"))
    row = None
    if token:
        row = fetch_one(
            cur,
            "SELECT username FROM sessions WHERE token = %s AND created_at > now() - make_interval(secs => %s)",
            (token, SESSION_TTL_SECONDS),
        )
    if row is None:
        raise HttpError(401, "missing, invalid or expired bearer token", {"WWW-Authenticate": "Bearer"})
    return row[0]


def run_authenticated(app: App, req: Request, work: Callable):
    """Authenticate and run work(cur, item_columns) in one DB unit, so one retry covers both."""

    def unit(cur):
        authenticate(cur, req)
        return work(cur, app.db.item_columns(cur))

    return app.db.run(unit)


def handle_index(app: App, req: Request) -> Response:
    cfg = app.config
    title = html.escape(f"Demo {cfg.service} {cfg.version}")
    details = html.escape(f"commit {cfg.commit}, schema {cfg.schema}, started {utc_iso(cfg.started_at)}")
    page = (
        f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>"
        f"<body><h1>{title}</h1><p>{details}</p></body></html>\n"
    )
    return Response(200, page.encode(), "text/html; charset=utf-8")


def handle_health(app: App, req: Request) -> Response:
    cfg = app.config
    identity = {"service": cfg.service, "version": cfg.version}
    if cfg.fault == "unhealthy":
        return json_response(503, {"status": "unhealthy", **identity})
    if app.draining.is_set():
        return json_response(503, {"status": "draining", **identity})
    return json_response(200, {"status": "ok", **identity})


def handle_readiness(app: App, req: Request) -> Response:
    if app.config.fault == "unhealthy":
        return json_response(503, {"status": "unhealthy"})
    if app.draining.is_set():
        return json_response(503, {"status": "draining"})
    try:
        app.db.run(lambda cur: fetch_one(cur, "SELECT 1"))
    except DriverError as exc:
        log("readiness_failed", level="warning", **db_error_fields(exc))
        return json_response(503, {"status": "not_ready", "database": "unavailable"})
    return json_response(200, {"status": "ready", "database": "connected"})


def handle_version(app: App, req: Request) -> Response:
    cfg = app.config
    return json_response(200, {
        "service": cfg.service,
        "version": cfg.version,
        "commit": cfg.commit,
        "deployed_at": utc_iso(cfg.started_at),
        "schema": cfg.schema,
    })


def handle_db(app: App, req: Request) -> Response:
    def work(cur):
        items = fetch_one(cur, "SELECT count(*) FROM items")[0]
        version = None
        if fetch_one(cur, "SELECT to_regclass('schema_migrations') IS NOT NULL")[0]:
            version = fetch_one(cur, "SELECT max(version) FROM schema_migrations")[0]
        return items, version

    started = time.monotonic()
    try:
        items, version = app.db.run(work)
    except DriverError as exc:
        return json_response(503, {"database": "unavailable", **db_error_fields(exc)})
    latency_ms = round((time.monotonic() - started) * 1000, 2)
    return json_response(200, {
        "database": "connected", "items": items, "schema_version": version, "latency_ms": latency_ms,
    })


def handle_login(app: App, req: Request) -> Response:
    body = req.json()
    username = clean_text(body.get("username"), "username")
    password = clean_text(body.get("password"), "password", max_len=1024)

    def work(cur):
        row = fetch_one(cur, "SELECT password_hash FROM users WHERE username = %s", (username,))
        valid = verify_password(password, row[0] if row else DUMMY_HASH)
        if not (row and valid):
            raise HttpError(401, "invalid credentials")
        token = secrets.token_hex(20)
        cur.execute("INSERT INTO sessions (token, username) VALUES (%s, %s)", (token, username))
        return token

    return json_response(200, {"token": app.db.run(work), "expires_in": SESSION_TTL_SECONDS})


def handle_create_item(app: App, req: Request) -> Response:
    def work(cur, cols):
        name, owner = parse_new_item(req.json())  # after authentication: 401 beats 400
        sql, params = insert_item_sql(cols, name, owner)
        return fetch_one(cur, sql, params)

    item = item_to_json(run_authenticated(app, req, work))
    return json_response(201, item, {"Location": f"/api/items/{item['id']}"})


def handle_list_items(app: App, req: Request) -> Response:
    def work(cur, cols):
        cur.execute(select_items_sql(cols) + " ORDER BY id DESC LIMIT %s", (parse_limit(req.query),))
        return cur.fetchall()

    items = [item_to_json(row) for row in run_authenticated(app, req, work)]
    return json_response(200, {"items": items, "count": len(items)})


def handle_export_items(app: App, req: Request) -> Response:
    def work(cur, cols):
        cur.execute(select_items_sql(cols) + " ORDER BY id")
        return cur.fetchall()

    body = items_csv(item_to_json(row) for row in run_authenticated(app, req, work))
    return Response(200, body.encode(), "text/csv; charset=utf-8",
                    {"Content-Disposition": 'attachment; filename="items.csv"'})


def handle_get_item(app: App, req: Request) -> Response:
    item_id = int(req.params["item_id"])

    def work(cur, cols):
        return fetch_one(cur, select_items_sql(cols) + " WHERE id = %s", (item_id,)) if item_id <= MAX_BIGINT else None

    row = run_authenticated(app, req, work)
    if row is None:
        raise HttpError(404, "item not found")
    return json_response(200, item_to_json(row))


def handle_delete_item(app: App, req: Request) -> Response:
    item_id = int(req.params["item_id"])

    def work(cur, _cols):
        if item_id > MAX_BIGINT:
            return 0
        cur.execute("DELETE FROM items WHERE id = %s", (item_id,))
        return cur.rowcount

    if run_authenticated(app, req, work) == 0:
        raise HttpError(404, "item not found")
    return Response(204)


# (method, path pattern, handler); patterns must match the whole path.
ROUTES = tuple((method, re.compile(pattern), handler) for method, pattern, handler in (
    ("GET", "/", handle_index),
    ("GET", "/health", handle_health),
    ("GET", "/readiness", handle_readiness),
    ("GET", "/api/version", handle_version),
    ("GET", "/api/db", handle_db),
    ("POST", "/api/login", handle_login),
    ("GET", "/api/items", handle_list_items),
    ("POST", "/api/items", handle_create_item),
    ("GET", "/api/items/export", handle_export_items),
    ("GET", r"/api/items/(?P<item_id>[0-9]+)", handle_get_item),
    ("DELETE", r"/api/items/(?P<item_id>[0-9]+)", handle_delete_item),
))


def resolve(method: str, path: str) -> tuple[Callable, dict]:
    wanted = "GET" if method == "HEAD" else method  # HEAD is GET without the body
    allowed = set()
    for route_method, pattern, handler in ROUTES:
        match = pattern.fullmatch(path)
        if match is None:
            continue
        if route_method == wanted:
            return handler, match.groupdict()
        allowed.add(route_method)
    if not allowed:
        raise HttpError(404, "not found")
    if "GET" in allowed:
        allowed.add("HEAD")
    raise HttpError(405, "method not allowed", {"Allow": ", ".join(sorted(allowed))})


def inject_fault(fault: str) -> Response | None:
    """The APP_FAULT behaviour for one ordinary request; a response means answer with it now."""
    if fault == "errors" and random.random() < 0.05:
        return json_response(500, {"error": "simulated failure (APP_FAULT=errors)"})
    if fault == "slow" and random.random() < 0.10:
        time.sleep(1.5)
    return None


def handle_request(app: App, req: Request) -> Response:
    try:
        if req.path not in PROBE_PATHS:
            injected = inject_fault(app.config.fault)
            if injected is not None:
                return injected
        handler, req.params = resolve(req.method, req.path)
        return handler(app, req)
    except HttpError as exc:
        return exc.response()
    except DriverError as exc:
        # Connection trouble is the server being unavailable; anything else (such as
        # 42703 when v1.2.2 meets the renamed column) is this code failing.
        fields = db_error_fields(exc)
        log("db_error", level="error", path=req.path, **fields)
        status = 503 if isinstance(exc, ConnectionErrors) else 500
        return json_response(status, {"error": "database error", **fields})
    except Exception as exc:
        log("unhandled_error", level="error", path=req.path, error=type(exc).__name__, message=str(exc)[:200])
        return json_response(500, {"error": "internal error"})
    finally:
        app.db.release()


# --------------------------------------------------------------------------- HTTP transport


class DemoRequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.0"  # one request per connection: no idle keep-alives at shutdown
    timeout = 10  # a silent client must not pin a thread past shutdown
    server_version = "demo-app"

    def __getattr__(self, name: str):
        # The stdlib looks up do_<METHOD> and answers an HTML 501 when it is missing;
        # sending every method to one dispatcher lets the route table answer 405 in JSON.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)

    def _dispatch(self) -> None:
        app = self.server.app
        started = time.monotonic()
        path, _sep, query = self.path.partition("?")
        try:
            request = Request(self.command, path, parse_qs(query), self.headers, self._read_body())
            response = handle_request(app, request)
        except HttpError as exc:
            response = exc.response()
        self._send(app, response)
        # The query string is left out: it is the one place a client might put a secret.
        log("access", method=self.command, path=path[:200], status=response.status,
            ms=round((time.monotonic() - started) * 1000, 1))

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            raise HttpError(411, "send a Content-Length; chunked bodies are not supported")
        raw = self.headers.get("Content-Length")
        if not raw:
            return b""
        try:
            length = int(raw)
        except ValueError:
            raise HttpError(400, "invalid Content-Length") from None
        if length < 0:
            raise HttpError(400, "invalid Content-Length")
        if length > MAX_BODY_BYTES:
            raise HttpError(413, f"request body larger than {MAX_BODY_BYTES} bytes")
        return self.rfile.read(length)

    def _send(self, app: App, response: Response) -> None:
        try:
            self.send_response(response.status)
            if response.status != 204:
                self.send_header("Content-Type", response.content_type)
                self.send_header("Content-Length", str(len(response.body)))
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-App-Version", app.config.version)
            for name, value in response.headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD" and response.status != 204:
                self.wfile.write(response.body)
        except (ConnectionError, TimeoutError):
            log("client_disconnected", level="warning", path=self.path.partition("?")[0][:200])

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def log_request(self, code="-", size="-") -> None:
        pass  # _dispatch writes the access log, with timing

    def log_message(self, format: str, *args) -> None:
        # Reached only for requests the stdlib rejects itself (malformed request line, timeouts).
        log("http_error", level="warning", message=(format % args)[:300])


class DemoHTTPServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, app: App):
        super().__init__(address, DemoRequestHandler)
        self.app = app
        self._inflight = 0
        self._inflight_changed = threading.Condition()

    def process_request(self, request, client_address) -> None:
        # Counted here, on the accept loop, so nothing accepted before shutdown() returns
        # can be missed by wait_idle() (daemon threads are not joined by server_close()).
        with self._inflight_changed:
            self._inflight += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._request_done()
            raise

    def process_request_thread(self, request, client_address) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._request_done()

    def _request_done(self) -> None:
        with self._inflight_changed:
            self._inflight -= 1
            self._inflight_changed.notify_all()

    def wait_idle(self, timeout: float) -> int:
        """Wait for in-flight requests; returns how many are still running."""
        with self._inflight_changed:
            self._inflight_changed.wait_for(lambda: self._inflight == 0, timeout)
            return self._inflight


def serve(app: App) -> int:
    server = DemoHTTPServer(("0.0.0.0", app.config.port), app)

    def stop_after_drain() -> None:
        time.sleep(app.config.drain_seconds)  # probes answer 503 meanwhile, so the proxy moves away
        server.shutdown()

    def on_signal(signum, _frame) -> None:
        if app.draining.is_set():
            return
        app.draining.set()
        log("draining", signal=signal.Signals(signum).name, drain_seconds=app.config.drain_seconds)
        # shutdown() blocks until serve_forever() returns, and that runs on this thread.
        threading.Thread(target=stop_after_drain, name="drain", daemon=True).start()

    install_signal_handlers(on_signal)
    log("listening", port=app.config.port)
    server.serve_forever(poll_interval=0.25)
    server.server_close()
    unfinished = server.wait_idle(INFLIGHT_GRACE_SECONDS)
    if unfinished:
        log("shutdown_timeout", level="warning", inflight=unfinished)
    app.db.close_all()
    log("stopped")
    return 0


def install_signal_handlers(handler: Callable) -> None:
    # As PID 1 in the container the process has no default action for SIGTERM:
    # without a handler `docker stop` would wait for its timeout and SIGKILL.
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


# --------------------------------------------------------------------------- worker


def write_heartbeat() -> None:
    temporary = HEARTBEAT_FILE + ".tmp"
    try:
        with open(temporary, "w") as handle:
            handle.write(utc_iso(datetime.now(timezone.utc)) + "\n")
        os.replace(temporary, HEARTBEAT_FILE)  # healthcheck.py never sees a half-written file
    except OSError as exc:
        log("heartbeat_failed", level="error", message=str(exc))


def worker_tick(app: App, last_count):
    """One round: count items (tolerating DB errors), then prove liveness. Returns the count."""
    count = last_count
    try:
        count = app.db.run(lambda cur: fetch_one(cur, "SELECT count(*) FROM items")[0])
        if count != last_count:  # log changes only, not a line every two seconds
            log("items_counted", items=count)
    except DriverError as exc:
        log("db_error", level="error", **db_error_fields(exc))
    finally:
        app.db.release()
    if app.config.fault != "unhealthy":
        write_heartbeat()
    return count


def run_worker(app: App) -> int:
    install_signal_handlers(lambda signum, _frame: app.draining.set())
    try:
        os.remove(HEARTBEAT_FILE)  # a restarted container must earn its health again
    except FileNotFoundError:
        pass
    last_count = None
    while not app.draining.is_set():
        last_count = worker_tick(app, last_count)
        # Short naps rather than Event.wait(): the signal handler sets the event on this
        # same thread, and set() inside wait()'s bookkeeping could deadlock.
        deadline = time.monotonic() + WORKER_INTERVAL_SECONDS
        while not app.draining.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
    app.db.close_all()
    log("stopped")
    return 0


# --------------------------------------------------------------------------- entry point


def main() -> int:
    try:
        config = load_config(os.environ)
    except ConfigError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    if config.fault == "crash":
        print("simulated crash (APP_FAULT=crash)", file=sys.stderr)
        return 1
    if psycopg2 is None:
        print("psycopg2 is not installed (Debian package python3-psycopg2)", file=sys.stderr)
        return 2
    LOG_CONTEXT.update(service=config.service, version=config.version)
    log("starting", commit=config.commit, schema=config.schema, fault=config.fault or None,
        database={name: os.environ.get(name) for name in ("PGHOST", "PGPORT", "PGDATABASE", "PGUSER")})
    app = App(config, Database(config))
    return run_worker(app) if config.service == "worker" else serve(app)


if __name__ == "__main__":
    sys.exit(main())
