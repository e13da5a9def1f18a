"""runbook.release.pg_backup run as Ansible runs it (a subprocess with its arguments file), for what needs no
server: bad input is refused before anything is written, and an unreachable server fails with a clear message that
never holds the password. Backups against the real PostgreSQL and S3 are in tests/integration/targets/pg_backup."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
MODULE = "ansible_collections.runbook.release.plugins.modules.pg_backup"
PASSWORD = "unit-secret-7c1e5b"


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run(tmp_path, **args):
    module_args = dict({"login_host": "127.0.0.1", "login_port": closed_port(), "login_user": "app",
                        "login_password": PASSWORD, "database": "appdb", "dest": str(tmp_path / "backups"),
                        "connect_timeout": 3}, **args)
    args_file = tmp_path / "args.json"
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
    proc = subprocess.run([sys.executable, "-m", MODULE, str(args_file)], capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO / "collections"), "PATH": "/usr/bin:/bin"}, timeout=60,
                          check=False)
    output = proc.stdout + proc.stderr
    assert PASSWORD not in output, "the password leaked into the module's output"
    return json.loads(proc.stdout)


@pytest.mark.parametrize("args, message", [
    ({"jobs": 2}, "jobs 2 needs format=directory"),
    ({"keep_last": 0}, "keep_last 0 is not valid: use 1 or more"),
    ({"compression": 12}, "compression 12 is not valid"),
    ({"s3_kms_key_id": "alias/x", "s3_sse": "AES256"}, "set s3_sse=aws:kms"),
    ({"s3_multipart_chunk_mb": 1}, "at least 5"),
    ({"keep_days": -1}, "keep_days -1 is negative"),
])
def test_bad_input_is_refused_before_anything_is_written(tmp_path, args, message):
    result = run(tmp_path, **args)
    assert result["failed"] and message in result["msg"]
    assert result["changed"] is False and result["commands"] == []
    assert not (tmp_path / "backups").exists()


def test_unreachable_server_fails_naming_the_target_without_the_password(tmp_path):
    result = run(tmp_path)
    assert result["failed"]
    assert result["msg"].startswith("cannot reach PostgreSQL at app@127.0.0.1:")
    assert "check login_host/login_port" in result["msg"]
    assert not (tmp_path / "backups").exists()
    assert "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER" not in json.dumps({k: v for k, v in result.items()
                                                                    if k != "invocation"})
