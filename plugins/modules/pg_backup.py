#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_backup
short_description: Verified PostgreSQL backup with pg_dump, a sha256 manifest, optional S3 upload and retention
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Takes the pre-change backup of a release, or a scheduled one, with C(pg_dump) in custom format (one file), or in
    directory format with parallel O(jobs).
  - 'Preflight, before anything is written: C(pg_dump) must not be older than the server (major versions of
    C(pg_dump --version) and C(server_version_num)), and the destination must have room for an estimate of the dump
    (C(pg_database_size) times O(space_factor)); each failure names the versions, or the sizes and the path.'
  - The dump is written under a temporary name in O(dest), mode 0600 (directories 0700), verified, and only then
    renamed to C(<backup_id>.dump) (or C(<backup_id>.dir)). If anything fails before that, the partial dump is
    removed.
  - 'Verified means: C(pg_restore --list) reads the archive, the dump is at least O(min_size_bytes), and the archive
    lists at least O(min_objects) objects. A manifest beside it, C(<backup_id>.manifest.json), records the database,
    server and C(pg_dump) versions, the time (UTC), size, sha256, format and object count; C(pg_restore) checks the
    sha256 against it before restoring.'
  - The password reaches C(pg_dump) only through the environment (E(PGPASSWORD)) or, with O(password_via=pgpass), a
    0600 pgpass file that is removed afterwards; never on its command line, so never in a process listing or in
    C(cmd).
  - With O(s3_bucket), the dump and its manifest are uploaded (multipart above O(s3_multipart_threshold_mb),
    server-side encryption, storage class) and read back (HEAD; size, the sha256 stored in the object's metadata,
    encryption and storage class must match). A failed upload leaves no object and no unfinished multipart upload
    behind, keeps the verified local dump, and fails naming where it is.
  - Retention (O(keep_last), O(keep_days)) runs only after a new backup was verified (and uploaded, with
    O(s3_bucket)), locally and in S3, and never removes the newest verified backup.
extends_documentation_fragment:
  - runbook.release.attributes
  - runbook.release.postgres
  - runbook.release.pg_s3
options:
  database:
    description:
      - Database to back up. Default is the database the connection options name (O(login_db), the C(dbname) of
        O(dsn), else libpq's default).
    type: str
  dest:
    description:
      - Directory for the backups on the host the task runs on. Created (mode 0700) when missing.
      - Retention and O(reuse_within_s) look at the manifests in this directory.
    type: path
    required: true
  format:
    description:
      - V(custom) writes one compressed file (C(pg_dump -Fc)); V(directory) writes one file per table and can dump in
        parallel with O(jobs).
    type: str
    choices: [custom, directory]
    default: custom
  jobs:
    description:
      - Tables dumped at once (C(pg_dump --jobs)); needs O(format=directory). Each job is one more connection.
    type: int
    default: 1
  compression:
    description:
      - Compression level, 0 (none) to 9. Default is C(pg_dump)'s (zlib's default level).
    type: int
  lock_wait_timeout:
    description:
      - Seconds C(pg_dump) waits for a table lock (for example behind a migration) before it fails, instead of waiting
        indefinitely.
    type: int
  pg_bin_dir:
    description:
      - Directory of the PostgreSQL client programs to use, for example C(/usr/lib/postgresql/16/bin) when the server
        is newer than the C(pg_dump) on PATH.
    type: path
  password_via:
    description:
      - How the password reaches C(pg_dump) and C(pg_restore). V(env) sets E(PGPASSWORD) in their environment only.
        V(pgpass) writes it to a 0600 pgpass file in a private temporary directory (E(PGPASSFILE)), removed at the
        end, for hosts where other processes of the same user must not see it in the environment either.
    type: str
    choices: [env, pgpass]
    default: env
  space_factor:
    description:
      - The free space needed in O(dest) is C(pg_database_size) times this factor. C(pg_database_size) counts indexes
        and dead rows that a dump does not hold, and compressed dumps are usually 10 to 40 % of it, so 1.0 is
        conservative; lower it for a tight disk when you know your ratio.
    type: float
    default: 1.0
  min_size_bytes:
    description:
      - A dump smaller than this fails verification (and is removed).
    type: int
    default: 1
  min_objects:
    description:
      - A dump whose archive lists fewer objects (tables, sequences, data, indexes, constraints, ...) fails
        verification (and is removed). Set V(0) to back up an empty database.
    type: int
    default: 1
  reuse_within_s:
    description:
      - When the newest verified backup of the database in O(dest), of the same O(format), is at most this many
        seconds old and its sha256 still matches its manifest, return it instead of dumping again (C(changed=false)).
        With O(s3_bucket), a reused backup not yet in that bucket and prefix is uploaded (C(changed=true)), which also
        completes a backup whose upload failed.
      - For reruns of a release after a later step failed, so that each attempt does not take another backup. Without
        it, every run takes a new backup.
    type: int
  keep_last:
    description:
      - Retention. Keep the newest this many verified backups of the database, locally and in S3. At least 1.
      - With O(keep_days) too, a backup is removed only when neither rule keeps it.
    type: int
  keep_days:
    description:
      - Retention. Keep verified backups of the database younger than this many days, locally and in S3.
      - The newest verified backup is kept whatever its age.
    type: int
  s3_bucket:
    description:
      - Upload the backup and its manifest to this bucket.
    type: str
  s3_prefix:
    description:
      - Key prefix in O(s3_bucket) (a "folder"), for example C(prod/appdb).
    type: str
    default: ''
  s3_sse:
    description:
      - Server-side encryption of the uploaded objects.
    type: str
    choices: [AES256, aws:kms]
  s3_kms_key_id:
    description:
      - KMS key id or ARN for O(s3_sse=aws:kms). Default is the account's S3 key.
    type: str
  s3_storage_class:
    description:
      - Storage class of the uploaded objects, for example V(STANDARD_IA). Default is the bucket's (V(STANDARD)).
    type: str
  s3_multipart_threshold_mb:
    description:
      - Dumps of at least this many MiB are uploaded in parts.
    type: int
    default: 64
  s3_multipart_chunk_mb:
    description:
      - Size of each part in MiB (at least 5; raised automatically when a dump would need more than 9000 parts).
    type: int
    default: 64
attributes:
  check_mode:
    support: full
    details:
      - Runs the whole preflight (connection, versions, space, and with O(s3_bucket) a HEAD of the bucket), reports the
        backup it would take and the backups retention would remove, and writes nothing.
  diff_mode:
    support: none
  idempotent:
    support: partial
    details:
      - A backup is a new fact each time, so by default every run takes a new one (C(changed=true)).
      - With O(reuse_within_s), a rerun within that window returns the existing verified backup with
        C(changed=false).
notes:
  - The connection is made, and C(pg_dump) runs, on the host the task runs on; O(dest) is on that host.
  - Retention only touches backups whose manifest this module wrote for the same database; other files in O(dest)
    or under O(s3_prefix) are never removed.
  - In check mode an unreachable bucket fails the task; in a real run the dump is taken first, so that an S3 outage
    still leaves a verified local backup, and the upload failure then fails the task naming it.
seealso:
  - module: runbook.release.pg_restore
  - module: community.postgresql.postgresql_db
    description: C(state=dump) runs pg_dump through a shell string, without verification or manifest.
"""

EXAMPLES = r"""
- name: Back up the application database before the release
  runbook.release.pg_backup:
    login_host: db1.internal
    login_user: backup
    login_password: "{{ vault_backup_password }}"
    database: appdb
    dest: /var/backups/postgres/appdb
    keep_last: 7
  register: db_backup_result

- name: Report the backup to the deployment record
  ansible.builtin.set_stats:
    data:
      runbook_release: "{{ db_backup_result.release_data }}"
    aggregate: true

- name: Parallel dump uploaded to S3 with KMS encryption, kept 14 days, not repeated when a release is rerun
  runbook.release.pg_backup:
    dsn: "{{ vault_appdb_dsn }}"
    dest: /srv/backups
    format: directory
    jobs: 4
    reuse_within_s: 3600
    s3_bucket: acme-db-backups
    s3_prefix: prod/appdb
    s3_sse: aws:kms
    s3_kms_key_id: alias/db-backups
    s3_storage_class: STANDARD_IA
    keep_days: 14

- name: What would be backed up and pruned
  runbook.release.pg_backup:
    login_db: appdb
    dest: /var/backups/postgres/appdb
    keep_last: 3
  check_mode: true
"""

RETURN = r"""
backup_id:
  description: Id of the backup (also the stem of its file names). In check mode, the id it would get.
  returned: always
  type: str
  sample: appdb-20240501T120000Z-3f9a1c
path:
  description: Path of the verified dump (a file, or a directory for O(format=directory)). In check mode, the path
    it would get.
  returned: always
  type: str
  sample: /var/backups/postgres/appdb/appdb-20240501T120000Z-3f9a1c.dump
size_bytes:
  description: Size of the dump (for a directory, of all its files). Null in check mode.
  returned: always
  type: int
sha256:
  description: Hex sha256 of the dump (for a directory, of the C(sha256sum)-style listing of its files). Null in
    check mode.
  returned: always
  type: str
s3_uri:
  description: Where the dump was uploaded (C(s3://bucket/key)), or null.
  returned: always
  type: str
duration_s:
  description: Seconds the module took.
  returned: always
  type: float
verified:
  description: Whether the dump passed verification (always true in a successful real run; false in check mode).
  returned: always
  type: bool
reused:
  description: Whether an existing backup was returned (O(reuse_within_s)) instead of taking a new one.
  returned: always
  type: bool
database:
  description: The database backed up.
  returned: always
  type: str
object_count:
  description: Objects the archive lists.
  returned: success
  type: int
server_version:
  description: The server's version.
  returned: success
  type: str
pg_dump_version:
  description: Version of the C(pg_dump) used.
  returned: success
  type: str
estimated_size_bytes:
  description: The space the preflight required (C(pg_database_size) times O(space_factor)).
  returned: success
  type: int
manifest:
  description: The manifest written beside the dump (null in check mode).
  returned: always
  type: dict
  contains:
    backup_id: {description: Backup id., type: str, returned: always}
    database: {description: Database., type: str, returned: always}
    format: {description: V(custom) or V(directory)., type: str, returned: always}
    file: {description: Name of the dump beside the manifest., type: str, returned: always}
    created_at: {description: When the dump finished (UTC)., type: str, returned: always}
    server_version: {description: Server version., type: str, returned: always}
    pg_dump_version: {description: pg_dump version., type: str, returned: always}
    size_bytes: {description: Size of the dump., type: int, returned: always}
    sha256: {description: Its checksum., type: str, returned: always}
    object_count: {description: Objects listed., type: int, returned: always}
    verified: {description: Verified., type: bool, returned: always}
    files: {description: "For a directory dump, name, size_bytes and sha256 of each file.", type: list, returned: always}
    s3: {description: "Bucket, key and uri of the uploaded dump, or null.", type: dict, returned: always}
manifest_path:
  description: Path of the manifest.
  returned: always
  type: str
pruned:
  description: Backups retention removed (in check mode, would remove), locally and in S3.
  returned: always
  type: dict
  contains:
    local:
      description: One entry per backup, with C(backup_id), C(created_at) and the C(paths) removed.
      type: list
      elements: dict
      returned: always
    s3:
      description: One entry per backup, with C(backup_id), C(created_at) and the C(keys) removed.
      type: list
      elements: dict
      returned: always
release_data:
  description: The run's part of the release data contract (docs/release-data-contract.md); empty in check mode.
  returned: always
  type: dict
  sample: {backup: {id: appdb-20240501T120000Z-3f9a1c, location: /var/backups/appdb-20240501T120000Z-3f9a1c.dump,
           s3_uri: null, sha256: 9f86d0..., size_bytes: 81234, verified: true, created_at: "2024-05-01T12:00:04Z"}}
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
import shutil
import signal
import time
import uuid

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.release.plugins.module_utils import _pg_backup as bk
from ansible_collections.runbook.release.plugins.module_utils import _pg_s3 as s3
from ansible_collections.runbook.release.plugins.module_utils import _postgres as pg
from ansible_collections.runbook.release.plugins.module_utils._pg_client import ClientError, PgClient, with_database

APPLICATION_NAME = "runbook.release pg_backup"

PREFLIGHT_SQL = """
SELECT current_database(), current_setting('server_version'), current_setting('server_version_num')::int,
       pg_database_size(current_database()), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype
FROM pg_database d WHERE d.datname = current_database()
"""


class PgBackup(object):

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.started = time.monotonic()
        self.secrets = pg.Secrets(self.p)
        self.client = PgClient(module, self.p, self.secrets, bin_dir=self.p["pg_bin_dir"],
                               password_via=self.p["password_via"], application_name=APPLICATION_NAME)
        self.partial = None
        self.store = None
        self.result = {"changed": False, "backup_id": None, "path": None, "size_bytes": None, "sha256": None,
                       "s3_uri": None, "verified": False, "reused": False, "database": self.p["database"],
                       "manifest": None, "manifest_path": None, "pruned": {"local": [], "s3": []},
                       "release_data": {}, "commands": self.client.commands}

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
        if self.partial and os.path.lexists(self.partial):
            if os.path.isdir(self.partial):
                shutil.rmtree(self.partial, ignore_errors=True)
            else:
                os.unlink(self.partial)
        self.partial = None
        self.client.cleanup()

    def terminated(self, signum, _frame):
        raise bk.BackupError("pg_backup was stopped by signal %d (for example a task timeout); pg_dump was stopped "
                             "and a partial dump removed" % signum)

    def run(self):
        os.umask(0o077)  # everything this module writes (dumps, manifests, atomic_move's result) is private
        signal.signal(signal.SIGTERM, self.terminated)
        try:
            self.validate()
            self.preflight()
            self.existing = bk.local_backups(self.p["dest"], self.database)
            if self.p["reuse_within_s"] is not None and self.try_reuse():
                return self.finish()
            if self.module.check_mode:
                self.plan()
            else:
                self.backup()
                self.upload()
                self.retention()
        except (bk.BackupError, pg.PostgresError) as exc:
            self.fail(exc.msg, **exc.details)
        except ClientError as exc:
            self.fail(exc.msg, **exc.as_result())
        except s3.MissingBoto3 as exc:
            self.fail(missing_required_lib("boto3 (Debian: python3-boto3; pip: boto3)"),
                      exception=exc.import_traceback)
        except pg.Error as exc:
            self.fail("PostgreSQL error during the preflight: %s" % str(exc).strip())
        except OSError as exc:
            self.fail("cannot write the backup in %s: %s; check that dest is writable by the user the task runs as"
                      % (self.p["dest"], exc))
        return self.finish()

    def finish(self):
        self.cleanup()
        self.result["duration_s"] = round(time.monotonic() - self.started, 3)
        self.module.exit_json(**self.result)

    # --- checks ---------------------------------------------------------------------------------------------------

    def validate(self):
        p = self.p
        if p["jobs"] < 1:
            raise bk.BackupError("jobs %d is not valid: use 1 or more" % p["jobs"])
        if p["jobs"] > 1 and p["format"] != "directory":
            raise bk.BackupError("jobs %d needs format=directory: pg_dump writes a custom-format archive with one "
                                 "job only" % p["jobs"])
        if p["compression"] is not None and not 0 <= p["compression"] <= 9:
            raise bk.BackupError("compression %d is not valid: use 0 (none) to 9" % p["compression"])
        if p["keep_last"] is not None and p["keep_last"] < 1:
            raise bk.BackupError("keep_last %d is not valid: use 1 or more (the newest verified backup is always "
                                 "kept)" % p["keep_last"])
        for key in ("keep_days", "reuse_within_s", "min_size_bytes", "min_objects", "lock_wait_timeout"):
            if p[key] is not None and p[key] < 0:
                raise bk.BackupError("%s %d is negative: use 0 or more" % (key, p[key]))
        if p["space_factor"] < 0:
            raise bk.BackupError("space_factor %s is negative: use 0 or more (0 skips the space check)"
                                 % p["space_factor"])
        if p["s3_multipart_chunk_mb"] < 5 or p["s3_multipart_threshold_mb"] < 5:
            raise bk.BackupError("s3_multipart_chunk_mb and s3_multipart_threshold_mb must be at least 5 (S3's "
                                 "smallest part), not %d and %d" % (p["s3_multipart_chunk_mb"],
                                                                    p["s3_multipart_threshold_mb"]))
        if p["s3_kms_key_id"] and p["s3_sse"] != "aws:kms":
            raise bk.BackupError("s3_kms_key_id is set but s3_sse is %r: set s3_sse=aws:kms" % p["s3_sse"])
        if os.path.exists(p["dest"]) and not os.path.isdir(p["dest"]):
            raise bk.BackupError("dest %s exists and is not a directory: point dest at a directory for the backups"
                                 % p["dest"])

    def preflight(self):
        pg.ensure_psycopg2(self.module)
        params = with_database(self.p, self.p["database"]) if self.p["database"] else self.p
        conn = pg.connect(params, application_name=APPLICATION_NAME)
        try:
            with conn.cursor() as cur:
                cur.execute(PREFLIGHT_SQL)
                (self.database, self.server_version, self.server_num, self.db_size, encoding, collate,
                 ctype) = cur.fetchone()
        finally:
            conn.close()
        self.db_settings = {"encoding": encoding, "lc_collate": collate, "lc_ctype": ctype}
        self.result.update(database=self.database, server_version=self.server_version)
        self.pg_dump = self.client.program("pg_dump")
        self.pg_restore = self.client.program("pg_restore")
        dump_num, self.pg_dump_version = self.client.version("pg_dump")
        self.result["pg_dump_version"] = self.pg_dump_version
        problem = bk.client_too_old(self.pg_dump, dump_num, self.server_num)
        if problem:
            raise bk.BackupError(problem, server_version_num=self.server_num)
        dest = self.p["dest"]
        probe = dest
        while not os.path.isdir(probe):
            probe = os.path.dirname(probe) or "/"
        self.result["estimated_size_bytes"] = int(self.db_size * self.p["space_factor"])
        problem = bk.space_problem(dest, bk.free_bytes(probe), self.database, self.db_size, self.p["space_factor"])
        if problem:
            raise bk.BackupError(problem, database_size_bytes=self.db_size, free_bytes=bk.free_bytes(probe))
        if self.p["s3_bucket"]:
            self.store = s3.store_from_params(
                self.p, self.p["s3_bucket"], self.p["s3_prefix"], threshold_mb=self.p["s3_multipart_threshold_mb"],
                chunk_mb=self.p["s3_multipart_chunk_mb"], sse=self.p["s3_sse"], kms_key_id=self.p["s3_kms_key_id"],
                storage_class=self.p["s3_storage_class"])
            if self.module.check_mode:
                self.s3_call(self.store.check_bucket)

    def s3_call(self, function, *args):
        try:
            return function(*args)
        except s3.S3Error as exc:
            raise bk.BackupError(exc.msg, **exc.details)

    # --- check mode and reuse -------------------------------------------------------------------------------------

    def plan(self):
        now = bk.utc_now()
        backup_id = bk.new_backup_id(self.database, now, "<new>")
        planned = {"backup_id": backup_id, "created_at": bk.iso(now), "verified": True, "format": self.p["format"]}
        self.result.update(changed=True, backup_id=backup_id,
                           path=os.path.join(self.p["dest"], bk.dump_name(backup_id, self.p["format"])),
                           manifest_path=os.path.join(self.p["dest"], bk.manifest_name(backup_id)))
        if self.store:
            key = self.store.key(bk.dump_name(backup_id, self.p["format"]))
            self.result["s3_uri"] = s3.uri(self.store.bucket, key)
        self.result["pruned"]["local"] = [self.local_entry(b) for b in self.prune_selection(self.existing + [planned])]
        if self.store:
            remote = self.s3_call(self.store.backups, self.database)
            self.result["pruned"]["s3"] = [self.s3_entry(b, None) for b in self.prune_selection(remote + [planned])]

    def try_reuse(self):
        candidate = bk.reusable(self.existing, self.p["format"], self.p["reuse_within_s"])
        if candidate is None or not os.path.exists(candidate["_dump_path"]):
            return False
        digest, size, _files = bk.checksum(candidate["_dump_path"], candidate["format"])
        if digest != candidate["sha256"] or size != candidate["size_bytes"]:
            self.module.warn("backup %s changed since it was verified (sha256 differs from its manifest): not reused, "
                             "a new backup is taken" % candidate["backup_id"])
            return False
        self.manifest = {k: v for k, v in candidate.items() if not k.startswith("_")}
        self.final = candidate["_dump_path"]
        self.manifest_path = candidate["_manifest_path"]
        self.result["reused"] = True
        self.publish()
        if self.store and not self.uploaded_here(self.manifest):
            if self.module.check_mode:
                self.result["changed"] = True
                self.result["s3_uri"] = s3.uri(self.store.bucket, self.store.key(self.manifest["file"]))
            else:
                self.upload()
        return True

    def uploaded_here(self, manifest):
        where = manifest.get("s3") or {}
        return where.get("bucket") == self.store.bucket and where.get("key", "").rstrip("/") == \
            self.store.key(manifest["file"])

    # --- the backup -----------------------------------------------------------------------------------------------

    def backup(self):
        dest = self.p["dest"]
        if not os.path.isdir(dest):
            os.makedirs(dest, 0o700)
        started = bk.utc_now()
        backup_id = bk.new_backup_id(self.database, started, uuid.uuid4().hex[:6])
        fmt = self.p["format"]
        self.partial = os.path.join(dest, ".%s.partial" % bk.dump_name(backup_id, fmt))
        if fmt == "directory":
            os.mkdir(self.partial, 0o700)  # pg_dump fills an existing empty directory
        else:
            os.close(os.open(self.partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        argv = bk.pg_dump_argv(self.pg_dump, fmt, self.partial, self.p["compression"], self.p["jobs"],
                               self.p["lock_wait_timeout"])
        self.client.run(argv, self.database)
        created = bk.utc_now()
        _rc, listing, _err = self.client.run(bk.pg_restore_list_argv(self.pg_restore, self.partial), self.database)
        try:
            toc = bk.parse_toc(listing)
        except ValueError as exc:
            raise bk.BackupError("the dump of %s does not verify: pg_restore --list output is not an archive listing "
                                 "(%s); the partial dump was removed" % (self.database, exc))
        digest, size, files = bk.checksum(self.partial, fmt)
        problems = bk.minimum_problems(size, toc["objects"], self.p["min_size_bytes"], self.p["min_objects"])
        if problems:
            raise bk.BackupError("the dump of %s does not verify: %s; the dump was removed. Check that database is "
                                 "the right one, or lower the minimums" % (self.database, "; ".join(problems)),
                                 size_bytes=size, object_count=toc["objects"])
        self.final = os.path.join(dest, bk.dump_name(backup_id, fmt))
        if fmt == "directory":
            os.rename(self.partial, self.final)  # atomic on one filesystem; atomic_move handles files only
        else:
            self.module.atomic_move(self.partial, self.final)
            os.chmod(self.final, 0o600)
        self.partial = None
        self.result["changed"] = True
        self.manifest = bk.build_manifest(backup_id, self.database, fmt, self.p["compression"], started, created, size,
                                          digest, toc["objects"], self.server_version, self.server_num,
                                          self.pg_dump_version, files=files, database_settings=self.db_settings)
        self.manifest_path = os.path.join(dest, bk.manifest_name(backup_id))
        self.write_manifest()
        self.publish()

    def write_manifest(self):
        tmp = os.path.join(os.path.dirname(self.manifest_path), ".%s.tmp" % os.path.basename(self.manifest_path))
        with open(tmp, "w") as handle:
            handle.write(bk.manifest_json(self.manifest))
        self.module.atomic_move(tmp, self.manifest_path)
        os.chmod(self.manifest_path, 0o600)

    def publish(self):
        m = self.manifest
        s3_uri = (m.get("s3") or {}).get("uri")
        self.result.update(backup_id=m["backup_id"], path=self.final, size_bytes=m["size_bytes"], sha256=m["sha256"],
                           s3_uri=s3_uri, verified=True, manifest=m, manifest_path=self.manifest_path,
                           object_count=m["object_count"], database=m["database"])
        self.result["release_data"] = {"backup": {
            "id": m["backup_id"], "location": self.final, "s3_uri": s3_uri, "sha256": m["sha256"],
            "size_bytes": m["size_bytes"], "verified": True, "created_at": m["created_at"]}}

    def upload(self):
        if not self.store:
            return
        before = self.manifest.get("s3")
        try:
            facts, _keys = self.store.upload_backup(self.manifest, os.path.dirname(self.final))
            self.manifest["s3"] = {"bucket": facts["bucket"], "key": facts["key"], "uri": facts["uri"],
                                   "server_side_encryption": facts.get("server_side_encryption"),
                                   "storage_class": facts.get("storage_class")}
            self.write_manifest()
            self.store.put_manifest(self.manifest)
        except s3.S3Error as exc:
            self.manifest["s3"] = before
            self.write_manifest()
            self.publish()
            raise bk.BackupError(
                "%s. The verified dump is kept at %s (sha256 %s, manifest %s); upload it by rerunning with "
                "reuse_within_s, or restore from it as it is. Retention was not applied."
                % (exc.msg.rstrip("."), self.final, self.manifest["sha256"], self.manifest_path), **exc.details)
        self.result["changed"] = True
        self.publish()

    # --- retention ------------------------------------------------------------------------------------------------

    def prune_selection(self, backups):
        if self.p["keep_last"] is None and self.p["keep_days"] is None:
            return []
        _keep, prune = bk.select_prune(backups, self.p["keep_last"], self.p["keep_days"])
        newest = self.result["backup_id"]
        return [b for b in prune if b["backup_id"] != newest]

    @staticmethod
    def local_entry(backup):
        paths = [p for p in (backup.get("_dump_path"), backup.get("_manifest_path")) if p]
        return {"backup_id": backup["backup_id"], "created_at": backup["created_at"], "paths": paths}

    def s3_entry(self, backup, keys):
        if keys is None:
            keys = [self.store.key(backup["file"]) + ("/" if backup["format"] == "directory" else ""),
                    backup["_manifest_key"]]
        return {"backup_id": backup["backup_id"], "created_at": backup["created_at"], "keys": keys}

    def retention(self):
        for backup in self.prune_selection(bk.local_backups(self.p["dest"], self.database)):
            dump = backup["_dump_path"]
            if os.path.isdir(dump):
                shutil.rmtree(dump)
            elif os.path.lexists(dump):
                os.unlink(dump)
            os.unlink(backup["_manifest_path"])
            self.result["pruned"]["local"].append(self.local_entry(backup))
        if self.store:
            for backup in self.prune_selection(self.s3_call(self.store.backups, self.database)):
                keys = self.s3_call(self.store.backup_keys, backup)
                self.s3_call(self.store.delete_keys, keys)
                self.result["pruned"]["s3"].append(self.s3_entry(backup, keys))


def argument_spec():
    spec = pg.connection_argument_spec()
    spec["argument_spec"].update(s3.connection_argument_spec())
    spec["argument_spec"].update(
        database=dict(type="str"),
        dest=dict(type="path", required=True),
        format=dict(type="str", default="custom", choices=["custom", "directory"]),
        jobs=dict(type="int", default=1),
        compression=dict(type="int"),
        lock_wait_timeout=dict(type="int"),
        pg_bin_dir=dict(type="path"),
        password_via=dict(type="str", default="env", choices=["env", "pgpass"], no_log=False),
        space_factor=dict(type="float", default=1.0),
        min_size_bytes=dict(type="int", default=1),
        min_objects=dict(type="int", default=1),
        reuse_within_s=dict(type="int"),
        keep_last=dict(type="int"),
        keep_days=dict(type="int"),
        s3_bucket=dict(type="str"),
        s3_prefix=dict(type="str", default=""),
        s3_sse=dict(type="str", choices=["AES256", "aws:kms"]),
        s3_kms_key_id=dict(type="str"),
        s3_storage_class=dict(type="str"),
        s3_multipart_threshold_mb=dict(type="int", default=64),
        s3_multipart_chunk_mb=dict(type="int", default=64),
    )
    return spec


def main():
    module = AnsibleModule(supports_check_mode=True, **argument_spec())
    PgBackup(module).run()


if __name__ == "__main__":
    main()
