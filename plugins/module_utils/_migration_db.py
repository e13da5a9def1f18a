# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""The database side of migration_apply, over one psycopg2 connection in autocommit mode (transactions are
opened and closed explicitly, so statements that refuse a transaction block can run too).

- ``HistoryTable``: the append-only history (one row per apply, revert, baseline or failure).
- ``MigrationLock``: a session advisory lock, waited for with the server's own lock_timeout.
- ``Runner``: runs a script in one transaction or one statement at a time, with its verify script, drops
  an invalid index a failed CONCURRENTLY build left behind, and records the outcome.
- ``detect_foreign_history()``: what Supabase's schema_migrations or Prisma's _prisma_migrations say was applied.
"""

from __future__ import annotations

import hashlib
import re
import struct
import time

from ansible_collections.runbook.release.plugins.module_utils import _postgres as pg
from ansible_collections.runbook.release.plugins.module_utils._migrations import index_target, mask_sql_secrets

IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]{0,62}$")
TIMEOUT_RE = re.compile(r"^\d+\s*(ms|s|min|h|d)?$")
LOCK_NOT_AVAILABLE = "55P03"
DUPLICATE_TABLE = "42P07"
# Every migration starts from the session's defaults, as if it had its own psql session (RESET ALL leaves the role).
RESET = "RESET ALL; RESET ROLE; "
HISTORY_COLUMNS = ("id", "version", "name", "kind", "sha256", "applied_at", "applied_by", "duration_ms", "success",
                   "error")


class DatabaseError(Exception):
    """A failure to report as is; ``details`` go into the module result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def split_table_name(name):
    """``schema.table`` (or ``table`` in the default schema runbook_release) as (schema, table)."""
    parts = name.split(".")
    if len(parts) == 1:
        parts = ["runbook_release"] + parts
    if len(parts) != 2 or not all(IDENT_RE.match(p) for p in parts):
        raise ValueError("history_table %r is not schema.table of plain identifiers (letters, digits, _ and $, not "
                         "starting with a digit), for example runbook_release.schema_history" % name)
    return parts[0], parts[1]


def lock_key(name):
    """A stable signed 64-bit advisory lock key for a history table (and so for one database's migrations)."""
    digest = hashlib.sha256(("runbook.release migration_apply " + name).encode("utf-8")).digest()
    return struct.unpack(">q", digest[:8])[0]


def sql_error_details(exc, stmt=None):
    """What an operator needs from a psycopg2 error: SQLSTATE, message, detail, hint, and the line."""
    diag = getattr(exc, "diag", None)
    message = (getattr(diag, "message_primary", None) or str(exc).strip().splitlines()[0]) if exc else ""
    details = {"sqlstate": getattr(exc, "pgcode", None), "error": message,
               "error_detail": getattr(diag, "message_detail", None), "error_hint": getattr(diag, "message_hint", None),
               "error_context": getattr(diag, "context", None)}
    if stmt is not None:
        position = getattr(diag, "statement_position", None)
        details["line"] = stmt.line_of(int(position)) if position else stmt.line
        details["statement_line"] = stmt.line
    return details


class HistoryTable(object):

    def __init__(self, conn, name):
        self.conn = conn
        self.schema, self.table = split_table_name(name)
        self.name = "%s.%s" % (self.schema, self.table)
        self.quoted = "%s.%s" % (pg.quote_ident(self.schema), pg.quote_ident(self.table))

    def exists(self):
        with self.conn.cursor() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (self.quoted,))
            return cur.fetchone()[0]

    def ensure(self):
        ddl = ("CREATE TABLE IF NOT EXISTS {table} ("
               " id bigserial PRIMARY KEY,"
               " version text NOT NULL,"
               " name text NOT NULL,"
               " kind text NOT NULL CHECK (kind IN ('up', 'down', 'baseline')),"
               " sha256 text,"
               " applied_at timestamptz NOT NULL DEFAULT now(),"
               " applied_by text NOT NULL,"
               " duration_ms integer NOT NULL DEFAULT 0,"
               " success boolean NOT NULL,"
               " error text)").format(table=self.quoted)
        comment = ("COMMENT ON TABLE {table} IS 'runbook.release.migration_apply history: one row per apply (up), "
                   "revert (down), baseline or failure; the latest successful row of a version says whether it is "
                   "applied'").format(table=self.quoted)
        if self.exists():
            return False
        try:
            with self.conn.cursor() as cur:
                # CREATE SCHEMA IF NOT EXISTS needs CREATE on the database even when the schema exists, so a schema
                # a DBA prepared is only looked up.
                cur.execute("SELECT to_regnamespace(%s) IS NULL", (pg.quote_ident(self.schema),))
                schema = "CREATE SCHEMA IF NOT EXISTS %s;" % pg.quote_ident(self.schema) if cur.fetchone()[0] else ""
                cur.execute("BEGIN;" + schema + ddl + ";" + comment + ";COMMIT")
        except pg.Error as exc:
            self.rollback()
            raise DatabaseError("cannot create the history table %s: %s (SQLSTATE %s): create it as a user allowed to, "
                                "or set history_table to a schema this user may create tables in"
                                % (self.name, sql_error_details(exc)["error"], exc.pgcode))
        return True

    def rows(self):
        with self.conn.cursor() as cur:
            cur.execute("SELECT %s FROM %s ORDER BY id" % (", ".join(HISTORY_COLUMNS), self.quoted))
            return [dict(zip(HISTORY_COLUMNS, row)) for row in cur.fetchall()]

    def insert_sql(self):
        return ("INSERT INTO %s (version, name, kind, sha256, applied_by, duration_ms, success, error) "
                "VALUES (%%s, %%s, %%s, %%s, %%s, %%s, %%s, %%s)" % self.quoted)

    def record(self, rows):
        """Insert rows (tuples in insert_sql() order) in one transaction."""
        with self.conn.cursor() as cur:
            cur.execute("BEGIN")
            cur.executemany(self.insert_sql(), rows)
            cur.execute("COMMIT")

    def rollback(self):
        if not self.conn.closed:
            try:
                self.conn.cursor().execute("ROLLBACK")
            except pg.Error:
                pass


class LockHeld(DatabaseError):
    pass


class MigrationLock(object):
    """A session-level advisory lock: released by unlock, or by the server when the connection ends (even when
    the controller dies), so a crashed run never leaves it behind."""

    def __init__(self, conn, name):
        self.conn = conn
        self.key = lock_key(name)
        self.held = False
        self.waited_s = 0.0

    def acquire(self, timeout_s):
        started = time.monotonic()
        with self.conn.cursor() as cur:
            try:
                if timeout_s <= 0:
                    cur.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                    got = cur.fetchone()[0]
                else:
                    cur.execute("SET lock_timeout = %s; SET statement_timeout = 0; SELECT pg_advisory_lock(%s)",
                                ("%dms" % int(timeout_s * 1000), self.key))
                    got = True
            except pg.Error as exc:
                if exc.pgcode != LOCK_NOT_AVAILABLE:
                    raise
                got = False
            finally:
                cur.execute("RESET lock_timeout; RESET statement_timeout")
        self.waited_s = round(time.monotonic() - started, 3)
        if not got:
            holder = self.holder()
            who = ("backend pid %(pid)s (user %(user)s, application %(application)s, client %(client)s, connected "
                   "since %(since)s)" % holder) if holder else "a session that ended just now"
            raise LockHeld("another migration run holds the migration lock of this database (advisory lock %d): %s; "
                           "waited %.1f s (lock_wait_timeout). Let it finish and run again, or raise lock_wait_timeout"
                           % (self.key, who, self.waited_s), lock_holder=holder, lock_key=self.key)
        self.held = True

    def holder(self):
        unsigned = self.key & 0xFFFFFFFFFFFFFFFF
        with self.conn.cursor() as cur:
            cur.execute(
                "SELECT a.pid, a.usename, a.application_name, coalesce(host(a.client_addr), 'local socket'), "
                "a.backend_start::text, a.state FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.classid = %s AND l.objid = %s "
                "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
                (unsigned >> 32, unsigned & 0xFFFFFFFF))
            row = cur.fetchone()
        if not row:
            return None
        return dict(zip(("pid", "user", "application", "client", "since", "state"), row))

    def release(self):
        if self.held and not self.conn.closed:
            with self.conn.cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        self.held = False


class StepFailed(DatabaseError):
    pass


class Runner(object):
    """Runs scripts over the connection with the run's timeouts, and records each outcome in the history."""

    def __init__(self, conn, history, applied_by, lock_timeout, statement_timeout):
        self.conn = conn
        self.history = history
        self.applied_by = applied_by
        self.settings = (lock_timeout, statement_timeout)
        self.executed = 0
        self.dropped_invalid_indexes = []

    # --- invalid indexes left by failed CONCURRENTLY builds -------------------------------------------------------------

    def invalid_index(self, stmt):
        """(schema, name) of an invalid index that this CREATE INDEX CONCURRENTLY statement would build again."""
        target = index_target(stmt)
        if not target or not target[3] or not target[0]:
            return None
        with self.conn.cursor() as cur:
            cur.execute("SELECT n.nspname, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                        "JOIN pg_namespace n ON n.oid = c.relnamespace "
                        "WHERE NOT i.indisvalid AND c.relname = %s AND i.indrelid = to_regclass(%s)",
                        (target[0], target[1]))
            row = cur.fetchone()
        return tuple(row) if row else None

    def invalid_indexes(self, script):
        found = []
        for stmt in script.statements:
            row = self.invalid_index(stmt)
            if row:
                found.append("%s.%s" % row)
        return found

    def _drop_invalid(self, cur, stmt):
        row = self.invalid_index(stmt)
        if row:
            cur.execute("DROP INDEX CONCURRENTLY IF EXISTS %s.%s" % (pg.quote_ident(row[0]), pg.quote_ident(row[1])))
            self.dropped_invalid_indexes.append("%s.%s" % row)

    # --- running ------------------------------------------------------------------------------------------------------

    def run(self, migration, script, kind, mode, verify=None):
        """Run ``script`` of ``migration`` (kind 'up' or 'down') and record it; returns duration in ms.
        Raises StepFailed after recording the failure."""
        started = time.monotonic()
        committed = 0
        stmt = None
        cur = self.conn.cursor()
        try:
            if mode == "transaction":
                cur.execute(RESET + "BEGIN; SET LOCAL lock_timeout = %s; SET LOCAL statement_timeout = %s",
                            self.settings)
            else:
                cur.execute(RESET + "SET lock_timeout = %s; SET statement_timeout = %s", self.settings)
            for stmt in script.statements:
                if mode != "transaction":
                    self._drop_invalid(cur, stmt)
                cur.execute(stmt.text)
                self.executed += 1
                if mode != "transaction":
                    committed += 1
            stmt = None
            if verify is not None:
                self._verify(cur, verify)
            duration = int((time.monotonic() - started) * 1000)
            row = (migration.version, migration.name, kind, migration.up.sha256, self.applied_by, duration, True, None)
            if mode == "transaction":
                cur.execute(self.history.insert_sql() + "; COMMIT", row)
            else:
                cur.execute(self.history.insert_sql(), row)
            return duration
        except pg.Error as exc:
            self._fail(migration, script, kind, mode, stmt, exc, committed, started)
        except StepFailed as exc:
            self._fail(migration, script, kind, mode, None, exc, committed, started)
        finally:
            if not self.conn.closed:
                cur.close()
        return None  # not reached: _fail raises

    def _verify(self, cur, verify):
        for stmt in verify.statements:
            try:
                cur.execute(stmt.text)
            except pg.Error as exc:
                raise StepFailed("verify script %s line %d failed: SQLSTATE %s: %s"
                                 % (verify.filename, stmt.line, exc.pgcode, sql_error_details(exc)["error"]),
                                 verify_file=verify.filename, **sql_error_details(exc, stmt))
            self.executed += 1
        rows = cur.fetchall() if cur.description else []
        if len(rows) != 1 or rows[0][0] is not True:
            got = "%d rows" % len(rows) if len(rows) != 1 else "first column %r" % (rows[0][0],)
            raise StepFailed("verify script %s failed: it must return exactly one row whose first column is true, "
                             "got %s" % (verify.filename, got), verify_file=verify.filename, sqlstate=None,
                             error="verify returned %s" % got)

    def _fail(self, migration, script, kind, mode, stmt, exc, committed, started):
        duration = int((time.monotonic() - started) * 1000)
        if isinstance(exc, StepFailed):
            details = dict(exc.details)
            text = exc.msg
        else:
            details = sql_error_details(exc, stmt)
            where = "line %s: %s" % (details.get("line"), stmt.summary(300)) if stmt is not None else "commit"
            text = "%s failed at %s: SQLSTATE %s: %s" % (script.filename, where, details["sqlstate"], details["error"])
            if details.get("error_detail"):
                text += " (%s)" % details["error_detail"]
        details.update(file=script.filename, version=migration.version, kind=kind, transaction=mode,
                       statement=mask_sql_secrets(stmt.text[:2000]) if stmt is not None else None, duration_ms=duration)
        broken = bool(self.conn.closed)
        notes = []
        if mode == "transaction":
            notes.append("the migration's transaction was rolled back, nothing of it stays")
        else:
            details["committed_statements"] = committed
            notes.append("no-transaction script: %d statement(s) before it stay committed; the next run runs the file "
                         "again from the top, so its statements must be safe to repeat (IF NOT EXISTS ...)" % committed)
            if stmt is not None and not broken:
                left = self.invalid_index(stmt)
                if left:
                    notes.append("the failed build left the invalid index %s.%s, which the next run drops before "
                                 "building it again" % left)
        if broken:
            notes.append("the connection to the server was lost, so the failure could not be recorded")
        else:
            if mode == "transaction":
                self.history.rollback()
            try:
                error = "%s%s" % ("SQLSTATE %s: " % details["sqlstate"] if details.get("sqlstate") else "",
                                  details.get("error"))
                if details.get("line"):
                    error = "%s line %s: %s" % (script.filename, details["line"], error)
                self.history.record([(migration.version, migration.name, kind, migration.up.sha256, self.applied_by,
                                      duration, False, error[:4000])])
                notes.append("the failure is recorded in %s" % self.history.name)
            except pg.Error as record_exc:
                notes.append("the failure could not be recorded: %s" % sql_error_details(record_exc)["error"])
        raise StepFailed("%s; %s" % (text, "; ".join(notes)), **details)


# --- adopting a database migrated by another tool ----------------------------------------------------------------------

FOREIGN_SOURCES = (
    ("supabase", "supabase_migrations.schema_migrations", "SELECT version::text FROM supabase_migrations.schema_migrations"),
    ("schema_migrations", "schema_migrations", "SELECT version::text FROM schema_migrations"),
    ("prisma", "_prisma_migrations", "SELECT migration_name FROM _prisma_migrations WHERE finished_at IS NOT NULL "
                                     "AND rolled_back_at IS NULL"),
)


def detect_foreign_history(conn):
    """(source, table, [version ids]) of the first migration table of another tool found, or None."""
    with conn.cursor() as cur:
        for source, table, query in FOREIGN_SOURCES:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
            if cur.fetchone()[0]:
                cur.execute(query)
                return source, table, [row[0] for row in cur.fetchall()]
    return None


def count_user_tables(conn, exclude_schema):
    with conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema', %s) "
                    "AND n.nspname NOT LIKE 'pg\\_%%'", (exclude_schema,))
        return cur.fetchone()[0]
