#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: pg_backup_info
short_description: List the backups pg_backup made, in a directory or under an S3 prefix, and pick the one to restore
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Reads the manifests that M(runbook.release.pg_backup) writes beside each dump (C(<backup_id>.manifest.json)), in a
    directory on the host (O(path)) or under an S3 prefix (O(s3_uri)), newest first, without downloading any dump.
  - Picks the backup a restore would use, C(backup), the newest verified one (of O(database) when given), or the
    one named by O(backup_id). With O(backup_id), a backup that is not there is an error that lists the newest ones,
    so a disaster recovery refuses a wrong id before anything changes.
  - Only reads; the dump's checksum is checked by M(runbook.release.pg_restore) when it restores it.
extends_documentation_fragment:
  - runbook.release.attributes
  - runbook.release.pg_s3
options:
  path:
    description:
      - Directory of backups on the host the task runs on. Mutually exclusive with O(s3_uri); one of them is required.
    type: path
  s3_uri:
    description:
      - C(s3://bucket/prefix/) under which the backups are (one level, as pg_backup's C(s3_prefix) puts them).
    type: str
  database:
    description:
      - Consider only backups of this database.
    type: str
  backup_id:
    description:
      - Pick this backup instead of the newest verified one. Fails when no manifest of that id is there.
    type: str
  limit:
    description:
      - At most this many backups in C(backups) (newest first). The pick is made from all of them.
    type: int
    default: 20
attributes:
  check_mode:
    support: full
    details:
      - Reads only; runs the same in check mode.
  diff_mode:
    support: none
  idempotent:
    support: full
seealso:
  - module: runbook.release.pg_backup
  - module: runbook.release.pg_restore
"""

EXAMPLES = r"""
- name: Find the newest verified backup of appdb in S3
  runbook.release.pg_backup_info:
    s3_uri: s3://acme-db-backups/production/appdb/
    database: appdb
    s3_region: eu-west-1
  register: backups

- name: Restore exactly that backup
  runbook.release.pg_restore:
    s3_uri: "{{ backups.backup.source }}"
    sha256: "{{ backups.backup.sha256 }}"
    database: appdb
    clean: true
    create: true
    force_disconnect: true

- name: Check that the backup the operator named exists
  runbook.release.pg_backup_info:
    path: /var/backups/runbook-release
    backup_id: appdb-20240501T120000Z-a1b2c3
"""

RETURN = r"""
backup:
  description: The backup a restore would use (O(backup_id), else the newest verified one); null when there is none.
  returned: always
  type: dict
  contains:
    backup_id:
      description: Its id (also the file name stem).
      type: str
    database:
      description: The database it holds.
      type: str
    created_at:
      description: When the dump finished (UTC ISO-8601).
      type: str
    sha256:
      description: The dump's sha256, as its manifest records it.
      type: str
    size_bytes:
      description: Size of the dump.
      type: int
    object_count:
      description: Objects the archive listed when it was verified.
      type: int
    verified:
      description: Whether pg_backup verified it.
      type: bool
    format:
      description: V(custom) or V(directory).
      type: str
    source:
      description: The dump, a local path or an S3 URI, to hand to M(runbook.release.pg_restore).
      type: str
    manifest:
      description: Where its manifest is (path or S3 URI).
      type: str
    age_s:
      description: Seconds since it was taken, the data-loss window of restoring it now.
      type: float
backups:
  description: Backups found, newest first (at most O(limit)), each with the keys of RV(backup).
  returned: always
  type: list
  elements: dict
count:
  description: How many backups were found (all of them, not only those in RV(backups)).
  returned: always
  type: int
location:
  description: Where the backups were looked for.
  returned: always
  type: str
release_data:
  description: The picked backup as the release data contract's C(backup) (id, location, s3_uri, sha256, size_bytes,
    verified, created_at); empty when there is none.
  returned: always
  type: dict
"""

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.runbook.release.plugins.module_utils import _pg_backup as bk
from ansible_collections.runbook.release.plugins.module_utils import _pg_s3 as s3


def describe(manifest, source, where, now=None):
    """A manifest as this module returns it: the facts a restore and its report need, nothing private."""
    return {
        "backup_id": manifest["backup_id"],
        "database": manifest["database"],
        "created_at": manifest["created_at"],
        "sha256": manifest["sha256"],
        "size_bytes": manifest["size_bytes"],
        "object_count": manifest["object_count"],
        "verified": manifest.get("verified") is True,
        "format": manifest["format"],
        "source": source,
        "manifest": where,
        "age_s": bk.data_loss_window_s(manifest["created_at"], now=now),
    }


def pick(backups, backup_id, location):
    """The backup to restore: the one named, else the newest verified one (None when there is none)."""
    if backup_id:
        named = [b for b in backups if b["backup_id"] == backup_id]
        if not named:
            newest = ", ".join(b["backup_id"] for b in backups[:5]) or "none"
            raise bk.BackupError("backup %s is not in %s (newest there: %s): check backup_id, or leave it empty for "
                                 "the newest verified backup" % (backup_id, location, newest))
        if not named[0]["verified"]:
            raise bk.BackupError("backup %s in %s was never verified by pg_backup: restore a verified backup"
                                 % (backup_id, location))
        return named[0]
    verified = [b for b in backups if b["verified"]]
    return verified[0] if verified else None


def release_data(backup):
    if not backup:
        return {}
    remote = backup["source"].startswith("s3://")
    return {"backup": {"id": backup["backup_id"], "location": "" if remote else backup["source"],
                       "s3_uri": backup["source"] if remote else None, "sha256": backup["sha256"],
                       "size_bytes": backup["size_bytes"], "verified": backup["verified"],
                       "created_at": backup["created_at"]}}


class BackupInfo(object):

    def __init__(self, module):
        self.module = module
        self.p = module.params

    def local(self):
        directory = self.p["path"]
        found = []
        for data in bk.local_backups(directory, self.p["database"]):
            found.append(describe(data, data["_dump_path"], data["_manifest_path"]))
        return directory, found

    def remote(self):
        bucket, key = s3.parse_s3_uri(self.p["s3_uri"])
        prefix = key.strip("/")
        store = s3.store_from_params(self.p, bucket, prefix)
        found = []
        for data in store.backups(self.p["database"]):
            dump = s3.uri(bucket, store.key(data["file"])) + ("/" if data["format"] == "directory" else "")
            found.append(describe(data, dump, s3.uri(bucket, data["_manifest_key"])))
        return s3.uri(bucket, prefix + "/" if prefix else ""), found

    def run(self):
        if self.p["limit"] < 1:
            self.module.fail_json(msg="limit %d is not valid: use 1 or more" % self.p["limit"])
        try:
            location, found = self.local() if self.p["path"] else self.remote()
            chosen = pick(found, self.p["backup_id"], location)
        except bk.BackupError as exc:
            self.module.fail_json(msg=exc.msg, **exc.details)
        except s3.S3Error as exc:
            self.module.fail_json(msg=self.scrub(exc.msg), **exc.details)
        except s3.MissingBoto3 as exc:
            self.module.fail_json(msg=missing_required_lib("boto3 (Debian: python3-boto3; pip: boto3)"),
                                  exception=exc.import_traceback)
        self.module.exit_json(changed=False, backup=chosen, backups=found[:self.p["limit"]], count=len(found),
                              location=location, release_data=release_data(chosen))

    def scrub(self, text):
        for value in s3.secret_values(self.p):
            text = text.replace(value, "********")
        return text


def argument_spec():
    spec = s3.connection_argument_spec()
    spec.update(
        path=dict(type="path"),
        s3_uri=dict(type="str"),
        database=dict(type="str"),
        backup_id=dict(type="str"),
        limit=dict(type="int", default=20),
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True,
                           mutually_exclusive=[["path", "s3_uri"]], required_one_of=[["path", "s3_uri"]])
    BackupInfo(module).run()


if __name__ == "__main__":
    main()
