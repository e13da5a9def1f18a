#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_restore
short_description: Restore a verified pg_backup backup into a PostgreSQL database, for disaster recovery and rollback
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Restores a backup made by M(runbook.release.pg_backup), given by O(path) or O(s3_uri), or the newest verified one
    in a directory or under an S3 prefix (chosen by the C(created_at) of the manifests).
  - The dump's sha256 is checked against its manifest (and O(sha256) when given) before anything else; a mismatch is
    refused. A dump without a manifest needs O(sha256).
  - A target database that holds any table, view, sequence, function, extension or schema of its own is refused
    unless O(clean=true), which drops and recreates it (refused while other sessions use it, unless
    O(force_disconnect=true)). A missing target is created with O(create=true), with the encoding and locale the
    source database had.
  - C(pg_restore --exit-on-error) stops at the first error (ON_ERROR_STOP semantics) and the task fails naming it; a
    partially restored database is then reported as such. O(jobs) restores in parallel, O(single_transaction) all or
    nothing.
  - The password reaches C(pg_restore) only through the environment or a 0600 pgpass file (O(password_via)), never
    its command line.
  - Returns what was restored and C(data_loss_window_s), how much time of changes the restore loses at most (now minus
    the backup's time).
extends_documentation_fragment:
  - runbook.release.attributes
  - runbook.release.postgres
  - runbook.release.pg_s3
options:
  database:
    description:
      - The database to restore into.
    type: str
    required: true
  maintenance_db:
    description:
      - Database this module connects to for inspecting, creating and dropping O(database). O(login_db) and the
        C(dbname) of O(dsn) are not used; O(database) and this option say where to connect.
    type: str
    default: postgres
  path:
    description:
      - On the host the task runs on, a backup (a C(.dump) file, a C(.dir) directory-format dump, or a
        C(.manifest.json)), or a directory of backups, of which the newest verified one is restored (see
        O(source_database), O(backup_id)).
      - Mutually exclusive with O(s3_uri); one of them is required.
    type: path
  s3_uri:
    description:
      - C(s3://bucket/key) of a backup (its C(.dump), C(.dir/) or C(.manifest.json)), or C(s3://bucket/prefix/), whose
        newest verified backup is restored. The dump is downloaded to O(download_dir), checked, restored and removed.
    type: str
  backup_id:
    description:
      - With a directory or prefix, restore this backup instead of the newest.
    type: str
  source_database:
    description:
      - With a directory or prefix, consider only backups of this database.
    type: str
  sha256:
    description:
      - Expected sha256 of the dump (for a directory dump, of the C(sha256sum)-style listing of its files). Needed for a
        dump without a manifest; with a manifest, both must match.
    type: str
  create:
    description:
      - Create O(database) when it does not exist.
    type: bool
    default: false
  clean:
    description:
      - When O(database) is not empty, drop and recreate it before restoring. Everything in it is lost.
    type: bool
    default: false
  force_disconnect:
    description:
      - With O(clean), end other sessions of O(database) (C(DROP DATABASE ... WITH (FORCE))) instead of refusing.
    type: bool
    default: false
  owner:
    description:
      - Owner of a database this module creates. With O(no_owner), the restore runs as this role (C(--role)), so it
        owns the restored objects.
    type: str
  no_owner:
    description:
      - Do not restore the original owners of objects (C(--no-owner)); the connecting user, or O(owner), owns them.
        Needed when the original owner roles do not exist on the target server.
    type: bool
    default: false
  no_privileges:
    description:
      - Do not restore grants (C(--no-privileges)).
    type: bool
    default: false
  jobs:
    description:
      - Objects restored at once (C(pg_restore --jobs)). Each job is one more connection.
    type: int
    default: 1
  single_transaction:
    description:
      - Restore in one transaction, so an error leaves the database as it was before the restore started (a database
        created by this run stays, empty). Needs O(jobs=1).
    type: bool
    default: false
  analyze:
    description:
      - Run C(ANALYZE) on the restored database, so the planner has statistics before the application uses it.
    type: bool
    default: true
  download_dir:
    description:
      - Directory for the dump downloaded from S3 (a private subdirectory, removed at the end). Default is the system's
        temporary directory. Must have room for the dump.
    type: path
  pg_bin_dir:
    description:
      - Directory of the PostgreSQL client programs to use, for example C(/usr/lib/postgresql/16/bin).
    type: path
  password_via:
    description:
      - How the password reaches C(pg_restore). V(env) sets E(PGPASSWORD) in its environment only; V(pgpass) writes a
        0600 pgpass file in a private temporary directory, removed at the end.
    type: str
    choices: [env, pgpass]
    default: env
attributes:
  check_mode:
    support: full
    details:
      - Checks the dump's sha256 (an S3 object is read as a stream, nothing is written), inspects the target, and
        returns the plan (C(actions)), failing where a real run would refuse; changes nothing.
  diff_mode:
    support: none
  idempotent:
    support: none
    details:
      - A restore replaces data each time. Rerunning into the now non-empty database is refused unless O(clean=true),
        which restores again.
notes:
  - Connections are made, and C(pg_restore) runs, on the host the task runs on.
  - Objects the restore cannot create (for example an extension missing on the target server) stop it at that point.
seealso:
  - module: runbook.release.pg_backup
"""

EXAMPLES = r"""
- name: Disaster recovery - restore the newest verified backup of appdb from S3 into a new database
  runbook.release.pg_restore:
    login_host: db2.internal
    login_user: postgres
    login_password: "{{ vault_postgres_password }}"
    s3_uri: s3://acme-db-backups/prod/appdb/
    source_database: appdb
    database: appdb
    create: true
    jobs: 4
  register: db_restore_result

- name: Roll the database back to the backup taken before the release
  runbook.release.pg_restore:
    login_user: postgres
    path: "{{ db_backup_result.path }}"
    database: appdb
    clean: true
    force_disconnect: true

- name: Rehearse the migrations on a scratch copy
  runbook.release.pg_restore:
    path: /var/backups/postgres/appdb
    source_database: appdb
    database: appdb_rehearsal
    create: true
    clean: true
    no_owner: true
    owner: app

- name: What would a rollback do
  runbook.release.pg_restore:
    path: "{{ db_backup_result.path }}"
    database: appdb
    clean: true
  check_mode: true
"""

RETURN = r"""
backup_id:
  description: Id of the backup restored (null for a dump without a manifest).
  returned: always
  type: str
database:
  description: The database restored into.
  returned: always
  type: str
source:
  description: The dump restored, a local path or an S3 URI.
  returned: always
  type: str
sha256:
  description: The dump's checksum, as checked.
  returned: always
  type: str
checksum_verified:
  description: Whether the sha256 matched.
  returned: always
  type: bool
object_count:
  description: Objects in the archive (restored, in a successful real run).
  returned: always
  type: int
actions:
  description: What the run does (or would do) to the target, in order, from V(drop), V(create), V(restore).
  returned: always
  type: list
  elements: str
backup_created_at:
  description: When the backup was taken (from the manifest).
  returned: always
  type: str
data_loss_window_s:
  description: Seconds between the backup and now (null without a manifest).
  returned: always
  type: float
duration_s:
  description: Seconds the module took.
  returned: always
  type: float
partially_restored:
  description: On a failure during C(pg_restore), whether the target may hold part of the backup.
  returned: failure
  type: bool
commands:
  description: Every command run, as the argv joined by spaces (never with a password).
  returned: always
  type: list
  elements: str
cmd:
  description: The argv of the command that failed.
  returned: failure
  type: list
"""

import os
import re
import shutil
import signal
import tempfile
import time

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.release.plugins.module_utils import _pg_backup as bk
from ansible_collections.runbook.release.plugins.module_utils import _pg_s3 as s3
from ansible_collections.runbook.release.plugins.module_utils import _postgres as pg
from ansible_collections.runbook.release.plugins.module_utils._pg_client import ClientError, PgClient, with_database

APPLICATION_NAME = "runbook.release pg_restore"

TARGET_SQL = """
SELECT (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_(toast|temp)'),
       (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema')),
       (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'),
       (SELECT count(*) FROM pg_namespace WHERE nspname <> 'public' AND nspname <> 'information_schema'
        AND nspname !~ '^pg_')
"""
SESSIONS_SQL = """
SELECT count(*), string_agg(DISTINCT coalesce(nullif(application_name, ''), usename::text), ', ')
FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()
"""


class PgRestore(object):

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.started = time.monotonic()
        self.secrets = pg.Secrets(self.p)
        self.client = PgClient(module, self.p, self.secrets, bin_dir=self.p["pg_bin_dir"],
                               password_via=self.p["password_via"], application_name=APPLICATION_NAME)
        self.store = None
        self.workdir = None
        self.manifest = None
        self.maint = None
        self.result = {"changed": False, "backup_id": None, "database": self.p["database"], "source": None,
                       "sha256": None, "checksum_verified": False, "object_count": None, "actions": [],
                       "backup_created_at": None, "data_loss_window_s": None, "commands": self.client.commands}

    # --- entry ----------------------------------------------------------------------------------------------------

    def scrub(self, text):
        text = self.secrets.scrub(text)
        for value in s3.secret_values(self.p):
            text = text.replace(value, pg.MASK)
        return text

    def fail(self, msg, **extra):
        self.cleanup()
        self.result["duration_s"] = round(time.monotonic() - self.started, 3)
        result = dict(self.result, **extra)
        for key in ("stdout", "stderr"):
            if result.get(key):
                result[key] = self.scrub(result[key])
        self.module.fail_json(msg=self.scrub(msg), **result)

    def cleanup(self):
        if self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None
        if self.maint is not None and not self.maint.closed:
            self.maint.close()
        self.client.cleanup()

    def terminated(self, signum, _frame):
        raise bk.BackupError("pg_restore was stopped by signal %d (for example a task timeout); database %s may be "
                             "partially restored" % (signum, self.p["database"]))

    def run(self):
        os.umask(0o077)  # downloads and pgpass files are private
        signal.signal(signal.SIGTERM, self.terminated)
        try:
            self.validate()
            self.locate()
            self.verify_checksum()
            self.read_archive()
            self.inspect_target()
            if not self.module.check_mode:
                self.execute()
        except (bk.BackupError, pg.PostgresError) as exc:
            self.fail(exc.msg, **exc.details)
        except s3.S3Error as exc:
            self.fail(exc.msg, **exc.details)
        except ClientError as exc:
            self.fail(exc.msg, **exc.as_result())
        except s3.MissingBoto3 as exc:
            self.fail(missing_required_lib("boto3 (Debian: python3-boto3; pip: boto3)"),
                      exception=exc.import_traceback)
        except pg.Error as exc:
            self.fail("PostgreSQL error: %s" % str(exc).strip())
        except OSError as exc:
            self.fail("cannot read or write a file of the restore: %s" % exc)
        self.cleanup()
        self.result["duration_s"] = round(time.monotonic() - self.started, 3)
        self.module.exit_json(**self.result)

    def validate(self):
        p = self.p
        if p["jobs"] < 1:
            raise bk.BackupError("jobs %d is not valid: use 1 or more" % p["jobs"])
        if p["single_transaction"] and p["jobs"] > 1:
            raise bk.BackupError("single_transaction needs jobs=1 (pg_restore cannot restore in parallel inside one "
                                 "transaction), not jobs=%d" % p["jobs"])
        if p["database"] in ("template0", "template1"):
            raise bk.BackupError("database %s is a template database: restore into another database" % p["database"])
        if p["sha256"] is not None and not re.match(r"^[0-9a-fA-F]{64}$", p["sha256"]):
            raise bk.BackupError("sha256 %r is not 64 hex digits" % p["sha256"])
        if p["download_dir"] and not os.path.isdir(p["download_dir"]):
            raise bk.BackupError("download_dir %s is not a directory: create it or leave it unset" % p["download_dir"])

    # --- which backup ---------------------------------------------------------------------------------------------

    def locate(self):
        if self.p["path"]:
            self.manifest, self.dump, self.fmt = bk.locate_local(self.p["path"], self.p["backup_id"],
                                                                 self.p["source_database"])
            self.result["source"] = self.dump
        else:
            self.locate_s3()
        if self.manifest is None and not self.p["sha256"]:
            raise bk.BackupError("%s has no manifest beside it (%s), so its checksum cannot be checked: give its sha256, "
                                 "or restore a backup made by runbook.release.pg_backup"
                                 % (self.result["source"], bk.MANIFEST_SUFFIX))
        if self.manifest:
            self.result.update(backup_id=self.manifest["backup_id"], backup_created_at=self.manifest["created_at"],
                               data_loss_window_s=bk.data_loss_window_s(self.manifest["created_at"]))

    def locate_s3(self):
        bucket, key = s3.parse_s3_uri(self.p["s3_uri"])
        prefix, backup_id = bk.s3_target(key)
        self.store = s3.store_from_params(self.p, bucket, prefix)
        backup_id = backup_id or self.p["backup_id"]
        if backup_id:
            self.manifest = self.store.manifest_for(backup_id)
        else:
            backups = [b for b in self.store.backups(self.p["source_database"]) if b.get("verified") is True]
            if not backups:
                raise bk.BackupError("no verified backup%s under s3://%s/%s: check s3_uri and source_database"
                                     % (" of %s" % self.p["source_database"] if self.p["source_database"] else "",
                                        bucket, prefix))
            self.manifest = backups[0]
        self.fmt = self.manifest["format"]
        self.dump_key = self.store.key(self.manifest["file"])
        self.result["source"] = s3.uri(bucket, self.dump_key + ("/" if self.fmt == "directory" else ""))

    # --- checks ---------------------------------------------------------------------------------------------------

    def expected_sha256(self):
        expected = [v.lower() for v in ((self.manifest or {}).get("sha256"), self.p["sha256"]) if v]
        if len(set(expected)) > 1:
            raise bk.BackupError("the sha256 given (%s) differs from the manifest's (%s) for %s: refusing to restore; "
                                 "check which backup you mean" % (self.p["sha256"], self.manifest["sha256"],
                                                                  self.result["source"]))
        return expected[0]

    def verify_checksum(self):
        expected = self.expected_sha256()
        if self.store and self.module.check_mode:
            actual = self.stream_checksum()
        else:
            if self.store:
                self.download()
            if not os.path.exists(self.dump):
                raise bk.BackupError("the dump %s named by the manifest does not exist" % self.dump)
            actual, _size, _files = bk.checksum(self.dump, self.fmt)
        self.result["sha256"] = actual
        if actual != expected:
            raise bk.BackupError("refusing to restore %s: its sha256 is %s but %s says %s; the dump is damaged or was "
                                 "changed after it was verified. Restore another backup"
                                 % (self.result["source"], actual, "the manifest" if self.manifest else "sha256",
                                    expected))
        self.result["checksum_verified"] = True

    def stream_checksum(self):
        if self.fmt != "directory":
            digest, _size = self.store.stream_sha256(self.dump_key)
            return digest
        files = []
        for entry in self.manifest["files"]:
            digest, size = self.store.stream_sha256("%s/%s" % (self.dump_key, entry["name"]))
            files.append({"name": entry["name"], "sha256": digest, "size_bytes": size})
        return bk.tree_listing_sha256(files)

    def download(self):
        base = self.p["download_dir"] or tempfile.gettempdir()
        need = self.manifest["size_bytes"]
        if bk.free_bytes(base) < need:
            raise bk.BackupError("not enough space in %s to download %s: %s free, %s needed; set download_dir to a "
                                 "larger filesystem" % (base, self.result["source"], bk.format_bytes(bk.free_bytes(base)),
                                                        bk.format_bytes(need)))
        self.workdir = tempfile.mkdtemp(prefix="pg_restore.", dir=base)
        self.dump = os.path.join(self.workdir, self.manifest["file"])
        if self.fmt == "directory":
            os.mkdir(self.dump, 0o700)
            for entry in self.manifest["files"]:
                self.store.download_file("%s/%s" % (self.dump_key, entry["name"]),
                                         os.path.join(self.dump, entry["name"]), entry["size_bytes"])
        else:
            self.store.download_file(self.dump_key, self.dump, need)

    def read_archive(self):
        self.pg_restore = self.client.program("pg_restore")
        num, text = self.client.version("pg_restore")
        made_by = (self.manifest or {}).get("pg_dump_version")
        parsed = bk.parse_client_version("(PostgreSQL) %s" % made_by) if made_by else None
        if parsed and bk.major_of(parsed[0]) > bk.major_of(num):
            raise bk.BackupError("the backup was made by pg_dump %s but pg_restore is %s, which cannot read it: "
                                 "install newer client programs and set pg_bin_dir" % (made_by, text))
        if self.store and self.module.check_mode:
            self.result["object_count"] = self.manifest["object_count"]
            return
        _rc, listing, _err = self.client.run(bk.pg_restore_list_argv(self.pg_restore, self.dump), self.p["database"])
        try:
            self.result["object_count"] = bk.parse_toc(listing)["objects"]
        except ValueError as exc:
            raise bk.BackupError("pg_restore cannot read %s as an archive: %s" % (self.dump, exc))

    # --- the target -----------------------------------------------------------------------------------------------

    def connect(self, database):
        pg.ensure_psycopg2(self.module)
        return pg.connect(with_database(self.p, database), application_name=APPLICATION_NAME)

    def inspect_target(self):
        database = self.p["database"]
        self.maint = self.connect(self.p["maintenance_db"])
        with self.maint.cursor() as cur:  # closed by cleanup() whatever happens
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,))
            exists = cur.fetchone() is not None
            self.server_num = pg.server_version(self.maint)
            sessions = None
            if exists:
                cur.execute(SESSIONS_SQL, (database,))
                count, names = cur.fetchone()
                sessions = "%d: %s" % (count, names) if count else None
        objects = self.target_objects(database) if exists else None
        self.result["actions"] = bk.restore_plan(
            database, exists, objects, None if self.p["force_disconnect"] else sessions, self.p["clean"],
            self.p["create"], self.p["maintenance_db"])
        self.result["changed"] = True

    def target_objects(self, database):
        conn = self.connect(database)
        try:
            with conn.cursor() as cur:
                cur.execute(TARGET_SQL)
                relations, functions, extensions, schemas = cur.fetchone()
        finally:
            conn.close()
        parts = [(relations, "tables, views, sequences or indexes"), (functions, "functions"),
                 (extensions, "extensions"), (schemas, "schemas")]
        return ", ".join("%d %s" % (n, what) for n, what in parts if n)

    # --- the restore ----------------------------------------------------------------------------------------------

    def execute(self):
        database = self.p["database"]
        quoted = pg.quote_ident(database)
        try:
            with self.maint.cursor() as cur:
                if "drop" in self.result["actions"]:
                    force = " WITH (FORCE)" if self.p["force_disconnect"] and self.server_num >= 130000 else ""
                    cur.execute("DROP DATABASE %s%s" % (quoted, force))
                if "create" in self.result["actions"]:
                    cur.execute(self.create_sql(quoted))
        finally:
            self.maint.close()
        argv = bk.pg_restore_argv(self.pg_restore, self.dump, database, jobs=self.p["jobs"],
                                  no_owner=self.p["no_owner"], role=self.p["owner"] if self.p["no_owner"] else None,
                                  no_privileges=self.p["no_privileges"],
                                  single_transaction=self.p["single_transaction"])
        rc, out, err = self.client.run(argv, database, check=False)
        if rc != 0:
            error = bk.restore_error(err)
            hint = ""
            if "role" in error and "does not exist" in error:
                hint = "; the backup's object owners do not exist here: set no_owner: true (and owner) to restore " \
                       "without them"
            partial = not self.p["single_transaction"]
            raise bk.BackupError(
                "pg_restore stopped at the first error restoring %s into %s: %s%s. %s" % (
                    self.result["source"], database, error, hint,
                    "Database %s is partially restored: fix the cause and rerun with clean: true" % database
                    if partial else "The single transaction was rolled back"),
                cmd=argv, rc=rc, stdout=out, stderr=err, partially_restored=partial)
        if self.p["analyze"]:
            conn = self.connect(database)
            try:
                with conn.cursor() as cur:
                    cur.execute("ANALYZE")
            finally:
                conn.close()
        if self.manifest:
            self.result["data_loss_window_s"] = bk.data_loss_window_s(self.manifest["created_at"])

    def create_sql(self, quoted):
        sql = "CREATE DATABASE %s TEMPLATE template0" % quoted
        settings = (self.manifest or {}).get("database_settings") or {}
        literal = self.maint.cursor().mogrify
        if settings.get("encoding"):
            sql += " ENCODING %s" % literal("%s", (settings["encoding"],)).decode()
        for key, option in (("lc_collate", "LC_COLLATE"), ("lc_ctype", "LC_CTYPE")):
            if settings.get(key):
                sql += " %s %s" % (option, literal("%s", (settings[key],)).decode())
        if self.p["owner"]:
            sql += " OWNER %s" % pg.quote_ident(self.p["owner"])
        return sql


def argument_spec():
    spec = pg.connection_argument_spec()
    spec["argument_spec"].update(s3.connection_argument_spec())
    spec["argument_spec"].update(
        database=dict(type="str", required=True),
        maintenance_db=dict(type="str", default="postgres"),
        path=dict(type="path"),
        s3_uri=dict(type="str"),
        backup_id=dict(type="str"),
        source_database=dict(type="str"),
        sha256=dict(type="str"),
        create=dict(type="bool", default=False),
        clean=dict(type="bool", default=False),
        force_disconnect=dict(type="bool", default=False),
        owner=dict(type="str"),
        no_owner=dict(type="bool", default=False),
        no_privileges=dict(type="bool", default=False),
        jobs=dict(type="int", default=1),
        single_transaction=dict(type="bool", default=False),
        analyze=dict(type="bool", default=True),
        download_dir=dict(type="path"),
        pg_bin_dir=dict(type="path"),
        password_via=dict(type="str", default="env", choices=["env", "pgpass"], no_log=False),
    )
    spec["mutually_exclusive"] = spec.get("mutually_exclusive", []) + [["path", "s3_uri"]]
    spec["required_one_of"] = [["path", "s3_uri"]]
    return spec


def main():
    module = AnsibleModule(supports_check_mode=True, **argument_spec())
    PgRestore(module).run()


if __name__ == "__main__":
    main()
