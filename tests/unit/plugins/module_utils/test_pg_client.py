"""How pg_backup/pg_restore hand connection settings to client programs: a real AnsibleModule runs a stand-in
pg_dump that records the argv and environment it received, so the test sees exactly what a process listing would."""

import json
import os
import signal
import time

import pytest
from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.testing import patch_module_args

from ansible_collections.runbook.release.plugins.module_utils import _pg_backup as bk
from ansible_collections.runbook.release.plugins.module_utils import _postgres as pg
from ansible_collections.runbook.release.plugins.module_utils._pg_client import (
    ClientError, PgClient, pgpass_line, with_database)

PASSWORD = "s3cr:et\\pa'ss word"
RECORDER = """#!/bin/sh
out="$RECORD_DIR"
printf '%s\\n' "$0" "$@" > "$out/argv"
env > "$out/env"
if [ -n "$PGPASSFILE" ]; then cat "$PGPASSFILE" > "$out/pgpass"; stat -c %a "$PGPASSFILE" > "$out/pgpass_mode";
  stat -c %a "$(dirname "$PGPASSFILE")" > "$out/pgpass_dir_mode"; fi
echo "pg_dump: error: connection to server at \\"127.0.0.1\\", port 1 failed: FATAL:  password authentication failed \
for user \\"app\\" (password was $PGPASSWORD)" >&2
exit "${RECORD_RC:-0}"
"""


@pytest.fixture
def recorder(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name in ("pg_dump", "pg_restore"):
        script = bindir / name
        script.write_text(RECORDER)
        script.chmod(0o755)
    out = tmp_path / "out"
    out.mkdir()
    monkeypatch.setenv("RECORD_DIR", str(out))
    monkeypatch.delenv("PGPASSWORD", raising=False)
    return bindir, out


def make_client(bindir, password_via="env", **params):
    spec = pg.connection_argument_spec()
    args = dict({"login_host": "127.0.0.1", "login_port": 1, "login_user": "app", "login_password": PASSWORD,
                 "login_db": "ignored"}, **params)
    with patch_module_args(args):
        module = AnsibleModule(**spec)
    return PgClient(module, module.params, pg.Secrets(module.params), bin_dir=str(bindir), password_via=password_via,
                    application_name="unit test")


def recorded(out):
    argv = (out / "argv").read_text().splitlines()
    env = dict(line.split("=", 1) for line in (out / "env").read_text().splitlines() if "=" in line)
    return argv, env


def test_password_travels_in_the_environment_only(recorder):
    bindir, out = recorder
    client = make_client(bindir)
    argv = bk.pg_dump_argv(client.program("pg_dump"), "custom", "/tmp/x.dump")
    client.run(argv, "appdb")
    seen_argv, env = recorded(out)
    assert seen_argv == argv
    assert all(PASSWORD not in arg for arg in seen_argv)
    assert env["PGPASSWORD"] == PASSWORD
    assert (env["PGHOST"], env["PGPORT"], env["PGUSER"], env["PGDATABASE"]) == ("127.0.0.1", "1", "app", "appdb")
    assert env["PGAPPNAME"] == "unit test" and env["LC_ALL"] == "C"
    assert PASSWORD not in " ".join(client.commands)


def test_pgpass_mode_keeps_the_password_out_of_the_environment_too(recorder):
    bindir, out = recorder
    client = make_client(bindir, password_via="pgpass")
    client.run(bk.pg_dump_argv(client.program("pg_dump"), "custom", "/tmp/x.dump"), "appdb")
    seen_argv, env = recorded(out)
    assert PASSWORD not in "\n".join(seen_argv) and PASSWORD not in (out / "env").read_text()
    assert env["PGPASSWORD"] == ""
    assert (out / "pgpass").read_text() == pgpass_line(PASSWORD)
    assert (out / "pgpass_mode").read_text().strip() == "600"
    assert (out / "pgpass_dir_mode").read_text().strip() == "700"
    passfile = env["PGPASSFILE"]
    assert os.path.exists(passfile)
    client.cleanup()
    assert not os.path.exists(passfile) and not os.path.exists(os.path.dirname(passfile))


def test_pgpass_line_escapes_separators():
    assert pgpass_line("a:b\\c") == "*:*:*:*:a\\:b\\\\c\n"


def test_a_failure_is_explained_and_scrubbed(recorder, monkeypatch):
    bindir, out = recorder
    monkeypatch.setenv("RECORD_RC", "1")
    client = make_client(bindir)
    with pytest.raises(ClientError) as caught:
        client.run(bk.pg_dump_argv(client.program("pg_dump"), "custom", "/tmp/x.dump"), "appdb")
    err = caught.value
    assert err.rc == 1 and err.cmd[0].endswith("pg_dump")
    assert "password authentication failed connecting to app@127.0.0.1:1/appdb" in err.msg
    everything = json.dumps([err.msg, err.as_result()])
    assert PASSWORD not in everything and pg.MASK in err.stderr


def test_missing_program_says_what_to_install(tmp_path):
    client = make_client(tmp_path)
    with pytest.raises(ClientError, match="pg_dump is not in pg_bin_dir"):
        client.program("pg_dump")


@pytest.mark.parametrize("dsn", [
    "host=db1 port=5433 user=app password='pa ss' dbname=appdb sslmode=require",
    "postgresql://app:pa%20ss@db1:5433/appdb?sslmode=require",
])
def test_with_database_keeps_every_setting_but_the_database(dsn):
    moved = with_database({"dsn": dsn, "login_db": None}, "other db")
    assert pg.parse_dsn(moved["dsn"]) == {"host": "db1", "port": "5433", "user": "app", "password": "pa ss",
                                          "dbname": "other db", "sslmode": "require"}
    assert with_database({"login_db": "a", "dsn": None}, "b")["login_db"] == "b"


def test_dsn_environment_carries_the_new_database(recorder):
    bindir, out = recorder
    spec = pg.connection_argument_spec()
    with patch_module_args({"dsn": "host=127.0.0.1 port=1 user=app password=%s dbname=x" % "pw1"}):
        module = AnsibleModule(**spec)
    client = PgClient(module, module.params, pg.Secrets(module.params), bin_dir=str(bindir))
    client.run(["%s/pg_dump" % bindir, "--version-ish"], "target")
    _argv, env = recorded(out)
    assert env["PGDATABASE"] == "target" and env["PGPASSWORD"] == "pw1"


def test_an_interrupted_run_stops_the_program_before_the_exception_goes_on(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "pg_dump"
    script.write_text('#!/bin/sh\necho $$ > "%s/pid"\nexec sleep 30\n' % tmp_path)
    script.chmod(0o755)
    client = make_client(bindir)

    def interrupt(signum, frame):
        raise RuntimeError("interrupted")

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, 0.5)
    started = time.monotonic()
    try:
        with pytest.raises(RuntimeError, match="interrupted"):
            client.run([str(script), "--format=custom"], "appdb")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
    assert time.monotonic() - started < 10
    pid = int((tmp_path / "pid").read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
