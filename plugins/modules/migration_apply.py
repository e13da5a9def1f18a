#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: migration_apply
short_description: Apply or revert versioned SQL migrations on PostgreSQL, tracked, locked, gated and verified
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Applies the migrations of a release from a directory of C(V<version>__<name>.sql) files, in version order,
    over one connection, and records each one in a history table (version, name, sha256, applied_at, applied_by,
    duration_ms, success). Beside each file, C(V<version>__<name>.down.sql) reverts it and
    C(V<version>__<name>.verify.sql) checks it (one row whose first column is true).
  - 'Each migration runs in its own transaction, with its verify script inside that transaction, so a failing
    statement or verify leaves nothing of it behind. Statements PostgreSQL refuses in a transaction block
    (C(CREATE/DROP INDEX CONCURRENTLY), C(REINDEX CONCURRENTLY), C(VACUUM), C(ALTER SYSTEM), C(CREATE/DROP DATABASE),
    C(ALTER TYPE ... ADD VALUE) before PostgreSQL 12, ...) are detected, or the file says
    C(-- runbook: no-transaction); such a file runs one statement at a time in autocommit. An invalid index that a
    failed C(CONCURRENTLY) build left behind is dropped before the build runs again.'
  - Every migration runs with O(lock_timeout) and O(statement_timeout) set. A session advisory lock keeps two runs
    on the same database apart; the second waits up to O(lock_wait_timeout), then fails naming the holder.
  - 'A destructive-operation gate refuses, before anything runs, statements that lose data or block the application
    (C(DROP TABLE/SCHEMA/DATABASE), C(DROP COLUMN), C(TRUNCATE), C(DELETE) or C(UPDATE) without C(WHERE),
    C(ALTER COLUMN ... TYPE), C(SET NOT NULL), C(CREATE INDEX) without C(CONCURRENTLY) on an existing table, C(RENAME) of a
    table or column), naming the file, line and rule. A file allows them with C(-- runbook: allow-destructive) at its
    top, a run with O(allow_destructive=true). A rename is also allowed by C(-- runbook: breaks-previous): a rename
    loses no data, and its hazard, that the previous application version breaks, is what that directive declares.'
  - An applied file that was edited since (its sha256 differs from the history) fails the run by default
    (O(on_drift)).
  - 'Going down needs an explicit O(target) below the current version; the down scripts then run newest first. There
    is no "revert everything" default; a migration marked C(-- runbook: irreversible) or without a down script stops
    the plan before anything runs.'
  - O(baseline) adopts a database that was migrated another way (Supabase's C(schema_migrations), Prisma's
    C(_prisma_migrations), or by hand), recording every version up to the baseline as applied without running it.
  - A failure rolls back that migration, records the failure in the history and fails the task naming the file,
    the statement, its line, the SQLSTATE and the message; the next run continues with that migration.
  - Statements are split the way psql splits them (quotes, dollar quoting, comments, parentheses, C(BEGIN ATOMIC)
    bodies). psql meta-commands (backslash commands) are refused. Percent signs need no escaping.
extends_documentation_fragment:
  - runbook.release.attributes
  - runbook.release.postgres
options:
  path:
    description:
      - Directory of the migrations on the host the task runs on, for example a release's
        C(artifacts/v1.2.3/migrations).
      - C(.sql) files must be named C(V<version>__<name>.sql) (version digits, optionally with C(.) or C(_) parts),
        C(V<version>__<name>.down.sql) or C(V<version>__<name>.verify.sql); any other C(.sql) name, two files with
        the same version, or a down or verify script without its migration is an error that lists them.
      - "Directives are comment lines at the top of a file: C(-- runbook: no-transaction), C(breaks-previous),
        C(irreversible), C(allow-destructive) (several may share a line, separated by commas or spaces)."
    type: path
    required: true
  target:
    description:
      - Version to migrate to (for example V(V005), V(005) or V(5)). Default is the newest file in O(path).
      - Above the current version, pending migrations up to and including it are applied. Below it, the down
        scripts of every applied version above it run, newest first; V(0) reverts everything and must be said.
    type: str
  baseline:
    description:
      - Adopt an existing database by recording every migration up to this version as applied, without running it.
        Only on a database whose history is empty; when the history already reaches the baseline it changes nothing,
        so the task can stay in a playbook.
      - V(auto) reads the versions another tool recorded (Supabase's C(supabase_migrations.schema_migrations) or a
        C(schema_migrations) table with a C(version) column, or Prisma's C(_prisma_migrations), matched by the
        number at the start of each id) and baselines at the highest, after checking that every file version up to it
        is among them. On an empty database it does nothing; on a database with tables but no migration table it
        fails and asks for an explicit version.
    type: str
  history_table:
    description:
      - "History table, C(schema.table). It is created (with its schema) on the first run that changes something.
        Columns: id, version, name, kind (V(up), V(down), V(baseline)), sha256 (of the up script), applied_at,
        applied_by, duration_ms, success, error. Rows are only appended: the latest successful row of a version says
        whether it is applied."
    type: str
    default: runbook_release.schema_history
  lock_wait_timeout:
    description:
      - Seconds to wait for the migration lock held by another run on the same database before failing with the
        holder's pid, user, application and client address. V(0) fails at once.
    type: int
    default: 120
  lock_timeout:
    description:
      - PostgreSQL C(lock_timeout) for every migration (for example V(5s), V(500ms)); a statement waiting longer for
        a table lock fails instead of queueing the application's queries behind it. V(0) disables it.
    type: str
    default: 5s
  statement_timeout:
    description:
      - PostgreSQL C(statement_timeout) for every migration statement (for example V(15min), V(2h)). V(0) disables it.
    type: str
    default: 15min
  allow_destructive:
    description:
      - 'Allow every destructive operation the gate finds, in every file of the run. Prefer the per-file C(--
        runbook: allow-destructive) directive, which is reviewed with the file.'
    type: bool
    default: false
  on_drift:
    description:
      - What to do when an applied migration's file changed since it was applied. V(fail) stops before running
        anything; V(warn) warns and goes on.
    type: str
    choices: [fail, warn]
    default: fail
  out_of_order:
    description:
      - Apply pending migrations whose version is below the highest applied one (for example a hotfix migration
        merged late). By default that is an error, because their order against the applied ones was never tested.
    type: bool
    default: false
  applied_by:
    description:
      - Recorded in the history's applied_by column, for example the AWX user or the release's run id.
      - Default is C(<user>@<host>) of the process running the task.
    type: str
attributes:
  check_mode:
    support: full
    details: Returns the plan (pending or to-revert migrations with their transaction mode, gate findings and
      markers, drift, what a baseline would record, invalid indexes that would be dropped) after reading the
      history, and runs no migration SQL, creates nothing and takes no lock. What makes a real run fail (drift,
      a refused statement, an impossible revert) makes check mode fail the same way.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: With nothing pending (and the baseline already recorded) the result is C(changed=false).
notes:
  - The connection is made from the host the task runs on; the files are read there too.
  - A no-transaction file that fails keeps its statements that ran before the failure; the next run runs the whole
    file again, so write such files to be repeatable (C(IF NOT EXISTS)).
  - Every migration starts from the session's defaults (C(RESET ALL)), as if each had its own psql session.
seealso:
  - module: community.postgresql.postgresql_script
    description: Runs one SQL script, with no tracking, lock or gate.
"""

EXAMPLES = r"""
- name: Apply the release's migrations
  runbook.release.migration_apply:
    path: /opt/app/releases/v1.2.3/migrations
    login_host: db.internal
    login_user: app
    login_password: "{{ app_db_password }}"
    login_db: appdb
  register: migrations

- name: Show what would run (plan only)
  runbook.release.migration_apply:
    path: /opt/app/releases/v1.2.3/migrations
    dsn: "{{ app_db_dsn }}"
  check_mode: true
  register: migration_plan

- name: Adopt a database migrated by hand or by Supabase, then apply the rest
  runbook.release.migration_apply:
    path: /opt/app/releases/v1.2.3/migrations
    baseline: auto
    login_host: db.internal
    login_user: app
    login_password: "{{ app_db_password }}"
    login_db: appdb

- name: Roll the schema back to V003 (runs V006, V005, V004 down scripts)
  runbook.release.migration_apply:
    path: /opt/app/releases/v1.2.3/migrations
    target: V003
    login_host: db.internal
    login_user: app
    login_password: "{{ app_db_password }}"
    login_db: appdb

- name: Report the migrations to the deployment record
  ansible.builtin.set_stats:
    data:
      runbook_release: "{{ migrations.release_data }}"
    aggregate: true
"""

RETURN = r"""
applied:
  description: Migrations applied by this run, in order.
  returned: always
  type: list
  elements: dict
  contains:
    version:
      description: Version as in the file name.
      type: str
      returned: always
      sample: V004
    name:
      description: Name part of the file name.
      type: str
      returned: always
      sample: items_owner_index
    duration_ms:
      description: Time the migration took, verify included.
      type: int
      returned: always
reverted:
  description: Migrations reverted by this run (down scripts), newest first.
  returned: always
  type: list
  elements: dict
pending:
  description: Versions in O(path) not applied after the run (in check mode, not applied now).
  returned: always
  type: list
  elements: str
  sample: [V005, V006]
plan:
  description: What the run does, or in check mode would do, per migration.
  returned: always
  type: list
  elements: dict
  contains:
    version:
      description: Version.
      type: str
      returned: always
    name:
      description: Name.
      type: str
      returned: always
    file:
      description: The script that runs (up or down).
      type: str
      returned: always
    action:
      description: V(apply) or V(revert).
      type: str
      returned: always
    transaction:
      description: V(transaction) (one per migration) or V(none) (autocommit, one statement at a time).
      type: str
      returned: always
    transaction_reason:
      description: Why that mode, for example C(detected CREATE INDEX CONCURRENTLY at line 6).
      type: str
      returned: always
    statements:
      description: Number of statements in the script.
      type: int
      returned: always
    verify:
      description: Verify script run after it, or null.
      type: str
      returned: always
    gate:
      description: "Gate findings: file, line, rule, detail, why, statement, allowed, allowed_by."
      type: list
      returned: always
    markers:
      description: C(breaks-previous) / C(irreversible) directives of the migration.
      type: list
      returned: always
    invalid_indexes:
      description: Invalid indexes from an earlier failed build that are dropped before it runs.
      type: list
      returned: always
    last_error:
      description: Error of the latest failed attempt, when the last attempt failed.
      type: str
      returned: when the previous attempt failed
baseline:
  description: Versions recorded (in check mode, to be recorded) as applied by O(baseline).
  returned: always
  type: list
  elements: str
baseline_source:
  description: The table of another tool that O(baseline=auto) read the applied versions from.
  returned: when O(baseline=auto) adopted a database
  type: str
  sample: supabase_migrations.schema_migrations
drift:
  description: Applied migrations whose file changed since (version, name, file, recorded_sha256, file_sha256).
  returned: always
  type: list
  elements: dict
missing:
  description: Applied versions with no file in O(path).
  returned: always
  type: list
  elements: str
schema_version:
  description: Highest applied version after the run (in check mode, now), or null.
  returned: always
  type: str
  sample: V006
markers:
  description:
    - Every migration in O(path) with a C(breaks-previous) or C(irreversible) directive, applied or pending, so a
      rollback runbook can tell whether rolling back only the application is safe.
  returned: always
  type: list
  elements: dict
  contains:
    version:
      description: Version.
      type: str
      returned: always
    name:
      description: Name.
      type: str
      returned: always
    markers:
      description: The directives.
      type: list
      returned: always
      sample: [breaks-previous]
    applied:
      description: Whether it is applied after the run.
      type: bool
      returned: always
    applied_at:
      description: When it was applied (UTC ISO-8601), or null.
      type: str
      returned: always
    applied_in_run:
      description: Whether this run applied it.
      type: bool
      returned: always
executed_statements:
  description: Migration and verify statements this run executed (bookkeeping queries not counted).
  returned: always
  type: int
dropped_invalid_indexes:
  description: Invalid indexes left by earlier failed CONCURRENTLY builds that this run dropped.
  returned: always
  type: list
  elements: str
history_table:
  description: The history table.
  returned: always
  type: str
  sample: runbook_release.schema_history
lock:
  description: The advisory lock key and how long the run waited for it (not taken in check mode).
  returned: always
  type: dict
server_version:
  description: The server's C(server_version_num).
  returned: always
  type: int
release_data:
  description: The run's part of the release data contract (docs/release-data-contract.md).
  returned: always
  type: dict
  sample: {migrations: {applied: [{version: V004, name: items_owner_index, duration_ms: 41}], pending: [],
                        schema_version: V006, breaks_previous: [V006]}}
file:
  description: The script that failed.
  returned: failure
  type: str
line:
  description: Line of the failing statement (or of the error inside it) in that script.
  returned: failure
  type: int
statement:
  description: The failing statement.
  returned: failure
  type: str
sqlstate:
  description: SQLSTATE of the error.
  returned: failure
  type: str
lock_holder:
  description: The session holding the migration lock (pid, user, application, client, since, state).
  returned: failure
  type: dict
"""

import getpass
import socket
from datetime import datetime, timezone

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.release.plugins.module_utils import _migration_db as db
from ansible_collections.runbook.release.plugins.module_utils import _migrations as mig
from ansible_collections.runbook.release.plugins.module_utils import _postgres as pg

APPLICATION_NAME = "runbook.release migration_apply"


class MigrationApply(object):

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.conn = None
        self.lock = None
        self.runner = None
        self.secrets = pg.Secrets(self.p)
        self.applied = []
        self.reverted = []
        self.wrote = False
        self.result = {"changed": False, "applied": self.applied, "reverted": self.reverted, "pending": [], "plan": [],
                       "baseline": [], "drift": [], "missing": [], "schema_version": None, "markers": [],
                       "executed_statements": 0, "dropped_invalid_indexes": [], "history_table": None, "lock": {},
                       "server_version": None}

    # --- entry ----------------------------------------------------------------------------------------------------

    def fail(self, msg, **extra):
        if self.runner is not None:
            self.result.update(executed_statements=self.runner.executed,
                               dropped_invalid_indexes=self.runner.dropped_invalid_indexes)
        self.result["release_data"] = self.release_data()
        self.cleanup()
        result = dict(self.result, **extra)
        result.pop("changed", None)
        # Changed when this run wrote anything: a migration, a baseline, or the record of the failure itself.
        self.module.fail_json(msg=self.secrets.scrub(msg), changed=self.wrote and not self.module.check_mode, **result)

    def cleanup(self):
        if self.conn is not None and not self.conn.closed:
            try:
                if self.lock is not None:
                    self.lock.release()
            except pg.Error:
                pass  # closing the connection releases a session lock too
            self.conn.close()

    def run(self):
        try:
            self.validate()
            self.migrations = mig.scan(self.p["path"])
            pg.ensure_psycopg2(self.module)
            self.conn = pg.connect(self.p, application_name=APPLICATION_NAME)
            self.result["server_version"] = pg.server_version(self.conn)
            self.history = db.HistoryTable(self.conn, self.p["history_table"])
            self.result["history_table"] = self.history.name
            if not self.module.check_mode:
                self.lock = db.MigrationLock(self.conn, self.history.name)
                self.lock.acquire(self.p["lock_wait_timeout"])
                self.result["lock"] = {"key": self.lock.key, "waited_s": self.lock.waited_s}
            self.plan_run()
            if not self.module.check_mode:
                self.execute()
            self.finish()
        except (mig.MigrationError, db.DatabaseError, pg.PostgresError) as exc:
            self.fail(exc.msg, **exc.details)
        except pg.Error as exc:
            details = db.sql_error_details(exc)
            self.fail("PostgreSQL error outside a migration: SQLSTATE %s: %s" % (details["sqlstate"], details["error"]),
                      **details)
        self.cleanup()
        self.module.exit_json(**self.result)

    # --- input and plan ---------------------------------------------------------------------------------------------

    def validate(self):
        p = self.p
        for key in ("lock_timeout", "statement_timeout"):
            if not db.TIMEOUT_RE.match(str(p[key]).strip()):
                raise mig.MigrationError("%s %r is not a PostgreSQL duration: use a number with ms, s, min, h or d (for "
                                         "example 5s or 15min), or 0 for none" % (key, p[key]))
        for key in ("target", "baseline"):
            if p[key] is not None and not (key == "baseline" and p[key] == "auto"):
                try:
                    mig.version_key(p[key])
                except ValueError as exc:
                    raise mig.MigrationError("%s: %s" % (key, exc))
        try:
            db.split_table_name(p["history_table"])
        except ValueError as exc:
            raise mig.MigrationError(str(exc))
        if p["lock_wait_timeout"] < 0:
            raise mig.MigrationError("lock_wait_timeout %d is negative: use 0 (fail at once) or more seconds"
                                     % p["lock_wait_timeout"])
        if not p["applied_by"]:
            try:
                user = getpass.getuser()
            except (KeyError, OSError):
                user = "unknown"
            p["applied_by"] = "%s@%s" % (user, socket.gethostname())

    def plan_run(self):
        self.rows = self.history.rows() if self.history.exists() else []
        self.state, failures = mig.fold_history(self.rows)
        baseline = self.resolve_baseline()
        self.runner = db.Runner(self.conn, self.history, self.p["applied_by"], self.p["lock_timeout"].strip(),
                                self.p["statement_timeout"].strip())
        self.plan = mig.make_plan(self.migrations, self.state, failures, target=self.p["target"], baseline=baseline,
                                  out_of_order=self.p["out_of_order"], allow_destructive=self.p["allow_destructive"],
                                  on_drift=self.p["on_drift"], server_version_num=self.result["server_version"])
        for (m, action), entry in zip(self.plan.steps, self.plan.entries):
            script = m.up if action == "apply" else m.down
            entry["invalid_indexes"] = self.runner.invalid_indexes(script) if entry.get("transaction") == "none" else []
        for warning in self.plan.warnings:
            self.module.warn(warning)
        self.result.update(plan=self.plan.entries, baseline=[m.version for m in self.plan.baseline],
                           drift=self.plan.drift, missing=self.plan.missing)
        if self.plan.errors:
            self.finish()
            raise mig.MigrationError("; ".join(self.plan.errors), plan_errors=self.plan.errors)
        self.result["changed"] = bool(self.plan.steps or self.plan.baseline)

    def resolve_baseline(self):
        value = self.p["baseline"]
        if value is None:
            return None
        if value != "auto":
            return mig.version_key(value)
        if self.rows:
            return None  # the history is in use: nothing to adopt
        found = db.detect_foreign_history(self.conn)
        if found is None:
            tables = db.count_user_tables(self.conn, self.history.schema)
            if tables:
                raise mig.MigrationError(
                    "baseline=auto: the database has %d table(s) but no migration history this module can read (%s, "
                    "supabase_migrations.schema_migrations, schema_migrations, _prisma_migrations): set baseline to "
                    "the version its schema is at" % (tables, self.history.name))
            return None
        table, ids = found[1], found[2]
        keys = set(k for k in (mig.leading_version_key(i) for i in ids) if k is not None)
        if not keys:
            return None
        top = max(keys)
        missing = [m.filename for m in self.migrations if m.key <= top and m.key not in keys]
        if missing:
            raise mig.MigrationError(
                "baseline=auto: %s records versions up to %s but not %s, so the database is not at a state the files "
                "describe: set baseline to a version explicitly after checking the schema"
                % (table, mig.format_version(top, self.migrations), ", ".join(missing)))
        unknown = sorted(i for i in ids if mig.leading_version_key(i) not in set(m.key for m in self.migrations))
        if unknown:
            self.module.warn("baseline=auto: %s lists versions with no file in path: %s" % (table, ", ".join(unknown)))
        self.result["baseline_source"] = table
        return top

    # --- execution ----------------------------------------------------------------------------------------------------

    def execute(self):
        if not (self.plan.steps or self.plan.baseline):
            return
        self.wrote = True
        self.history.ensure()
        if self.plan.baseline:
            self.history.record([(m.version, m.name, "baseline", m.up.sha256, self.p["applied_by"], 0, True, None)
                                 for m in self.plan.baseline])
            self.state.update(self.baseline_state())
        for (m, action), entry in zip(self.plan.steps, self.plan.entries):
            try:
                if action == "apply":
                    duration = self.runner.run(m, m.up, "up", entry["transaction"], verify=m.verify)
                    self.applied.append({"version": m.version, "name": m.name, "duration_ms": duration})
                    self.state[m.key] = {"version": m.version, "name": m.name, "kind": "up",
                                         "applied_at": datetime.now(timezone.utc)}
                else:
                    duration = self.runner.run(m, m.down, "down", entry["transaction"])
                    self.reverted.append({"version": m.version, "name": m.name, "duration_ms": duration})
                    self.state.pop(m.key, None)
            except db.StepFailed as exc:
                msg = exc.msg
                if exc.details.get("sqlstate") == db.DUPLICATE_TABLE and not self.rows and not self.plan.baseline:
                    msg += ("; the history was empty and the object already exists: if this database was migrated "
                            "another way, adopt it with baseline (auto or a version)")
                self.finish()
                raise db.DatabaseError(msg, **exc.details)

    def finish(self):
        if self.runner is not None:
            self.result.update(executed_statements=self.runner.executed,
                               dropped_invalid_indexes=self.runner.dropped_invalid_indexes)
        state = dict(getattr(self, "state", {}))
        if self.module.check_mode and getattr(self, "plan", None) is not None:
            state.update(self.baseline_state())  # check mode: counted as the baseline would record them
        self.result["pending"] = [m.version for m in self.migrations if m.key not in state]
        self.result["schema_version"] = mig.format_version(max(state), self.migrations, state) if state else None
        in_run = set(a["version"] for a in self.applied)
        self.result["markers"] = [
            {"version": m.version, "name": m.name, "markers": m.markers, "applied": m.key in state,
             "applied_at": _iso(state[m.key].get("applied_at")) if m.key in state else None,
             "applied_in_run": m.version in in_run}
            for m in self.migrations if m.markers]
        self.result["release_data"] = self.release_data()

    def baseline_state(self):
        now = datetime.now(timezone.utc)
        return dict((m.key, {"version": m.version, "name": m.name, "kind": "baseline", "applied_at": now})
                    for m in self.plan.baseline)

    def release_data(self):
        in_run = set(a["version"] for a in self.applied)
        breaks = [m.version for m in getattr(self, "migrations", []) if m.version in in_run and "breaks-previous" in m.markers]
        return mig.contract_fragment(self.applied, self.result["pending"], self.result["schema_version"], breaks)


def _iso(value):
    """A timestamptz from the history (or this run's clock) as the contract writes times."""
    if value is None:
        return None
    return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def argument_spec():
    spec = pg.connection_argument_spec()
    spec["argument_spec"].update(
        path=dict(type="path", required=True),
        target=dict(type="str"),
        baseline=dict(type="str"),
        history_table=dict(type="str", default="runbook_release.schema_history"),
        lock_wait_timeout=dict(type="int", default=120),
        lock_timeout=dict(type="str", default="5s"),
        statement_timeout=dict(type="str", default="15min"),
        allow_destructive=dict(type="bool", default=False),
        on_drift=dict(type="str", default="fail", choices=["fail", "warn"]),
        out_of_order=dict(type="bool", default=False),
        applied_by=dict(type="str"),
    )
    return spec


def main():
    module = AnsibleModule(supports_check_mode=True, **argument_spec())
    MigrationApply(module).run()


if __name__ == "__main__":
    main()
