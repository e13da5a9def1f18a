"""runbook.release.pg_backup_info run as Ansible runs it, on a directory of backups as pg_backup leaves them: the
newest verified backup is picked, a named one is found or refused with the newest listed, unverified and foreign
manifests are never picked. S3 listing is exercised end to end by tests/e2e/test_disaster_recovery.py."""

import hashlib
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ansible_collections.runbook.release.plugins.module_utils import _pg_backup as bk
from ansible_collections.runbook.release.plugins.modules import pg_backup_info

REPO = Path(__file__).resolve().parents[4]
MODULE = "ansible_collections.runbook.release.plugins.modules.pg_backup_info"


def run(tmp_path, **args):
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
    proc = subprocess.run([sys.executable, "-m", MODULE, str(args_file)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "collections"), "PATH": "/usr/bin:/bin"}, timeout=60,
                          check=False)
    return json.loads(proc.stdout)


def add_backup(directory, database, hours_ago, token, verified=True):
    data = ("dump of %s %s" % (database, token)).encode()
    when = datetime.now(timezone.utc) - timedelta(hours=hours_ago)
    backup_id = bk.new_backup_id(database, when, token)
    manifest = bk.build_manifest(backup_id, database, "custom", None, when, when, len(data),
                                 hashlib.sha256(data).hexdigest(), 7, "15.20", 150020, "15.20")
    manifest["verified"] = verified
    (directory / manifest["file"]).write_bytes(data)
    (directory / bk.manifest_name(backup_id)).write_text(bk.manifest_json(manifest))
    return manifest


@pytest.fixture
def backups(tmp_path):
    directory = tmp_path / "backups"
    directory.mkdir()
    made = {
        "old": add_backup(directory, "appdb", 30, "aaaaaa"),
        "newest_verified": add_backup(directory, "appdb", 2, "bbbbbb"),
        "unverified": add_backup(directory, "appdb", 1, "cccccc", verified=False),
        "other_db": add_backup(directory, "otherdb", 0.5, "dddddd"),
    }
    (directory / "foreign.manifest.json").write_text('{"tool": "someone else"}')
    return directory, made


def test_the_newest_verified_backup_of_the_database_is_picked(tmp_path, backups):
    directory, made = backups
    result = run(tmp_path, path=str(directory), database="appdb")
    assert result["changed"] is False and result["count"] == 3
    assert [b["backup_id"] for b in result["backups"]] == [made[k]["backup_id"]
                                                           for k in ("unverified", "newest_verified", "old")]
    chosen = result["backup"]
    assert chosen["backup_id"] == made["newest_verified"]["backup_id"]
    assert chosen["sha256"] == made["newest_verified"]["sha256"] and chosen["object_count"] == 7
    assert chosen["source"] == str(directory / made["newest_verified"]["file"])
    assert 7100 < chosen["age_s"] < 7300
    assert result["release_data"]["backup"] == {
        "id": chosen["backup_id"], "location": chosen["source"], "s3_uri": None, "sha256": chosen["sha256"],
        "size_bytes": chosen["size_bytes"], "verified": True, "created_at": chosen["created_at"]}


def test_without_a_database_every_database_counts(tmp_path, backups):
    directory, made = backups
    result = run(tmp_path, path=str(directory), limit=1)
    assert result["count"] == 4 and len(result["backups"]) == 1
    assert result["backup"]["backup_id"] == made["other_db"]["backup_id"]


def test_a_named_backup_is_found(tmp_path, backups):
    directory, made = backups
    result = run(tmp_path, path=str(directory), database="appdb", backup_id=made["old"]["backup_id"])
    assert result["backup"]["backup_id"] == made["old"]["backup_id"]


def test_an_unknown_backup_is_refused_naming_the_newest(tmp_path, backups):
    directory, made = backups
    result = run(tmp_path, path=str(directory), database="appdb", backup_id="appdb-19990101T000000Z-zzzzzz")
    assert result["failed"]
    assert "backup appdb-19990101T000000Z-zzzzzz is not in %s" % directory in result["msg"]
    assert made["newest_verified"]["backup_id"] in result["msg"]


def test_an_unverified_backup_is_refused(tmp_path, backups):
    directory, made = backups
    result = run(tmp_path, path=str(directory), backup_id=made["unverified"]["backup_id"])
    assert result["failed"] and "was never verified" in result["msg"]


def test_no_backup_at_all_is_not_an_error(tmp_path):
    result = run(tmp_path, path=str(tmp_path))
    assert result["backup"] is None and result["count"] == 0 and result["release_data"] == {}


def test_path_or_s3_uri_is_required(tmp_path):
    result = run(tmp_path)
    assert result["failed"] and "one of the following is required: path, s3_uri" in result["msg"]


def test_pick_and_release_data_of_an_s3_backup():
    entry = {"backup_id": "appdb-x", "verified": True, "source": "s3://b/p/appdb-x.dump", "sha256": "0" * 64,
             "size_bytes": 3, "created_at": "2031-03-01T00:00:00Z"}
    assert pg_backup_info.pick([entry], None, "s3://b/p/") is entry
    assert pg_backup_info.release_data(entry)["backup"]["s3_uri"] == "s3://b/p/appdb-x.dump"
    assert pg_backup_info.release_data(entry)["backup"]["location"] == ""
