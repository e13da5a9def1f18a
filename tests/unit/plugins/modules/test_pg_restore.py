"""runbook.release.pg_restore run as Ansible runs it, for what needs no server: it refuses bad input, a dump without
a manifest or sha256, and a damaged dump, before connecting anywhere. Restores into the real PostgreSQL and from the
real S3 are in tests/integration/targets/pg_restore."""

import hashlib
import json
import socket
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ansible_collections.runbook.release.plugins.module_utils import _pg_backup as bk

REPO = Path(__file__).resolve().parents[4]
MODULE = "ansible_collections.runbook.release.plugins.modules.pg_restore"
PASSWORD = "unit-secret-91ab03"


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(tmp_path, check=False, **args):
    module_args = dict({"login_host": "127.0.0.1", "login_port": closed_port(), "login_user": "app",
                        "login_password": PASSWORD, "database": "restored", "connect_timeout": 3,
                        "_ansible_check_mode": check}, **args)
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    proc = subprocess.run([sys.executable, "-m", MODULE, str(args_file)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "collections"), "PATH": "/usr/bin:/bin"}, timeout=60,
                          check=False)
    assert PASSWORD not in proc.stdout + proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture
def backup(tmp_path):
    """A dump with its manifest, as pg_backup leaves them (the content need not be a real archive here)."""
    directory = tmp_path / "backups"
    directory.mkdir()
    data = b"this is not really an archive"
    now = datetime.now(timezone.utc)
    manifest = bk.build_manifest("appdb-20240501T120000Z-aaaaaa", "appdb", "custom", None, now, now, len(data),
                                 hashlib.sha256(data).hexdigest(), 3, "15.20", 150020, "15.20")
    (directory / manifest["file"]).write_bytes(data)
    (directory / bk.manifest_name(manifest["backup_id"])).write_text(bk.manifest_json(manifest))
    return directory, manifest


def test_path_or_s3_uri_is_required(tmp_path):
    result = run(tmp_path)
    assert result["failed"] and "one of the following is required: path, s3_uri" in result["msg"]


@pytest.mark.parametrize("args, message", [
    ({"jobs": 2, "single_transaction": True}, "single_transaction needs jobs=1"),
    ({"database": "template1"}, "template database"),
    ({"sha256": "abc"}, "not 64 hex digits"),
])
def test_bad_input(tmp_path, backup, args, message):
    result = run(tmp_path, path=str(backup[0]), **args)
    assert result["failed"] and message in result["msg"] and result["commands"] == []


@pytest.mark.parametrize("check", [True, False])
def test_a_damaged_dump_is_refused_before_connecting(tmp_path, backup, check):
    directory, manifest = backup
    dump = directory / manifest["file"]
    dump.write_bytes(dump.read_bytes().replace(b"really", b"REALLY"))
    result = run(tmp_path, check=check, path=str(dump))
    assert result["failed"] and result["changed"] is False
    assert "refusing to restore %s: its sha256 is %s but the manifest says %s" % (
        dump, hashlib.sha256(dump.read_bytes()).hexdigest(), manifest["sha256"]) in result["msg"]
    assert result["commands"] == [] and result["checksum_verified"] is False


def test_a_dump_without_manifest_needs_its_sha256(tmp_path, backup):
    directory, manifest = backup
    (directory / bk.manifest_name(manifest["backup_id"])).unlink()
    result = run(tmp_path, path=str(directory / manifest["file"]))
    assert result["failed"] and "has no manifest beside it" in result["msg"] and "give its sha256" in result["msg"]
    result = run(tmp_path, path=str(directory / manifest["file"]), sha256="0" * 64)
    assert result["failed"] and "refusing to restore" in result["msg"] and "but sha256 says 000" in result["msg"]


def test_a_good_dump_gets_as_far_as_the_server(tmp_path, backup):
    directory, manifest = backup
    result = run(tmp_path, check=True, path=str(directory), source_database="appdb")
    assert result["checksum_verified"] is True and result["backup_id"] == manifest["backup_id"]
    assert result["data_loss_window_s"] >= 0
    # The checksum is right, so it went on: pg_restore --list refuses the stand-in archive.
    assert result["failed"] and "pg_restore failed" in result["msg"] and "valid archive" in result["msg"]
    assert result["cmd"][1:] == ["--list", str(directory / manifest["file"])]
