"""runbook.release.deployment_record on real local playbooks: success, failure, rollback, SIGTERM, secrets,
the PostgreSQL history table (sandbox), a broken record directory, and the HTML handoff in headless Chromium.

Each test runs ansible-playbook from the repository root (its ansible.cfg) with the callback enabled through the
environment and the record directory in tmp_path.
"""

import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import time
import uuid
import zlib
from pathlib import Path

import pytest

from ansible_collections.runbook.release.plugins.module_utils._release_data import FIELDS

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
CALLBACK = "runbook.release.deployment_record"
RUN_ID = uuid.uuid4().hex

INVENTORY = """
all:
  hosts:
    localhost:
      ansible_connection: local
      ansible_python_interpreter: "{{ ansible_playbook_python }}"
  vars:
    release_environment: itest
    release_service: demo
    release_handoff_watch_for:
      - error rate of /api/items
    release_escalation_contacts:
      - {role: Primary on-call, name: Dana, contact: "+1 555 0100"}
    release_changelog_file: "%(changelog)s"
"""

CHANGELOG = "# Changelog\n\n## v1.2.3\n- items export\n- faster search\n\n## v1.2.2\n- older\n"

OPEN = """
    - name: Open the release record
      ansible.builtin.set_stats:
        data:
          runbook_release:
            schema_version: 1
            run_id: "%s"
            runbook: release
            environment: itest
            service: demo
            operator: tester
            started_at: "{{ now(utc=true).strftime('%%Y-%%m-%%dT%%H:%%M:%%SZ') }}"
            version: v1.2.3
            previous_version: v1.2.2
        aggregate: true
      run_once: true
""" % RUN_ID

ROLE_TASKS = """
- name: Take the backup
  ansible.builtin.command: sleep 0.3
  changed_when: true

- name: Report the backup
  ansible.builtin.set_stats:
    data:
      runbook_release:
        backup: {id: appdb-1, location: /var/backups/appdb-1.dump, verified: true}
    aggregate: true
"""

SUCCESS = """
- name: Callback integration release
  hosts: all
  gather_facts: false
  pre_tasks:
%(open)s
  roles:
    - db_backup
  tasks:
    - name: Roll the stack
      ansible.builtin.debug:
        msg: RESULT-CONTENT-MARKER
      tags: [phase_deploy]
  post_tasks:
    - name: Close the release record
      ansible.builtin.set_stats:
        data: {runbook_release: {outcome: success}}
        aggregate: true
      run_once: true
""" % {"open": OPEN}


def write_project(tmp_path, playbook, inventory=None):
    (tmp_path / "CHANGELOG.md").write_text(CHANGELOG)
    (tmp_path / "inventory.yml").write_text(inventory or INVENTORY % {"changelog": tmp_path / "CHANGELOG.md"})
    role = tmp_path / "roles" / "db_backup" / "tasks"
    role.mkdir(parents=True, exist_ok=True)
    (role / "main.yml").write_text(ROLE_TASKS)
    path = tmp_path / "playbook.yml"
    path.write_text(playbook)
    return path


def env_for(tmp_path, **extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "RUNBOOK_RELEASE_"))}
    env.update({"ANSIBLE_CONFIG": str(REPO / "ansible.cfg"), "ANSIBLE_CALLBACKS_ENABLED": CALLBACK,
                "RUNBOOK_RELEASE_RECORD_DIR": str(tmp_path / "records"), "ANSIBLE_ROLES_PATH": str(tmp_path / "roles"),
                "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(tmp_path / "tmp")})
    env.update(extra)
    return env


def command(tmp_path, playbook, *args, inventory=None):
    path = write_project(tmp_path, playbook, inventory)
    return [str(PLAYBOOK), "-i", str(tmp_path / "inventory.yml"), str(path), *args]


def run(tmp_path, playbook, *args, inventory=None, **env):
    proc = subprocess.run(command(tmp_path, playbook, *args, inventory=inventory), cwd=REPO,
                          env=env_for(tmp_path, **env), capture_output=True, text=True, timeout=300, check=False)
    return proc


def only(tmp_path, suffix):
    found = sorted((tmp_path / "records").glob("*" + suffix))
    assert len(found) == 1, (suffix, found)
    return found[0]


def load(tmp_path):
    return json.loads(only(tmp_path, ".json").read_text())


def journal(tmp_path):
    return [json.loads(line) for line in only(tmp_path, ".journal.jsonl").read_text().splitlines()]


def test_a_successful_release_is_recorded(tmp_path):
    proc = run(tmp_path, SUCCESS, "-e", "version=v1.2.3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    records = tmp_path / "records"
    assert stat.S_IMODE(records.stat().st_mode) == 0o700
    files = sorted(p.name for p in records.iterdir())
    assert len(files) == 4 and all(stat.S_IMODE((records / f).stat().st_mode) == 0o600 for f in files)
    assert {f.split(".", 1)[1] for f in files} == {"json", "journal.jsonl", "handoff.md", "handoff.html"}
    stem = files[0].split(".", 1)[0]
    assert f"_{socket.gethostname()}_" in stem

    record = load(tmp_path)
    assert record["outcome"] == "success" and record["complete"] is True
    assert record["run_id"] == RUN_ID and record["record_id"] != RUN_ID
    assert (record["runbook"], record["environment"], record["service"]) == ("release", "itest", "demo")
    assert (record["version"], record["previous_version"], record["operator"]) == ("v1.2.3", "v1.2.2", "tester")
    assert record["controller"] == socket.gethostname()
    core = subprocess.run([str(REPO / ".venv" / "bin" / "python"), "-c", "import ansible.release as r; print(r.__version__)"],
                          capture_output=True, text=True, check=True).stdout.strip()
    assert record["ansible_core"] == core
    assert record["collection"]["name"] == "runbook.release" and record["collection"]["version"]
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert record["project"]["commit"] == head.stdout.strip() and record["project"]["committed_at"]
    assert record["check_mode"] is False and record["tags"] == ["all"] and record["limit"] is None
    assert record["extra_vars"] == {"version": "v1.2.3"}

    assert [p["name"] for p in record["phases"]] == ["pre_tasks", "db_backup", "deploy", "post_tasks"]
    backup = record["phases"][1]
    assert backup["duration_s"] >= 0.3 and backup["status"] == "changed" and backup["tasks"] == 2
    assert abs(sum(p["duration_s"] for p in record["phases"]) - record["duration_s"]) < 0.5
    assert [(t["name"], t["status"]) for t in record["tasks"]] == [
        ("Open the release record", "ok"), ("Take the backup", "changed"), ("Report the backup", "ok"),
        ("Roll the stack", "ok"), ("Close the release record", "ok")]
    assert record["hosts"]["localhost"]["changed"] == 1
    assert record["release"]["backup"]["id"] == "appdb-1" and record["release_warnings"] == []
    assert record["handoff"]["watch_for"] == ["error rate of /api/items"]
    assert record["handoff"]["changes"] == ["items export", "faster search"]
    for path in records.iterdir():
        assert "RESULT-CONTENT-MARKER" not in path.read_text()  # results are not recorded

    events = journal(tmp_path)
    assert events[0]["ev"] == "start" and events[-1] == dict(events[-1], ev="end", outcome="success")
    assert [e["name"] for e in events if e["ev"] == "task"] == [t["name"] for t in record["tasks"]]
    assert any(e["ev"] == "release" and e["data"].get("run_id") == RUN_ID for e in events)

    assert "DEPLOYMENT RECORD: release demo (itest): v1.2.2 -> v1.2.3: SUCCESS" in proc.stdout
    assert "db_backup" in proc.stdout.split("DEPLOYMENT RECORD")[1]
    # The handoff renders again, identically, from the stored record.
    again = subprocess.run([sys.executable, str(REPO / "scripts" / "release-report"), str(only(tmp_path, ".json"))],
                           capture_output=True, text=True, check=True)
    assert again.stdout == only(tmp_path, ".handoff.md").read_text()
    assert "- items export" in again.stdout and "Primary on-call: Dana, +1 555 0100" in again.stdout


FAILING = SUCCESS.replace("""      ansible.builtin.debug:
        msg: RESULT-CONTENT-MARKER""", """      ansible.builtin.command: /bin/false""")


def test_a_failing_task_makes_the_outcome_failed(tmp_path):
    proc = run(tmp_path, FAILING)
    assert proc.returncode == 2, proc.stdout
    record = load(tmp_path)
    assert record["outcome"] == "failed" and record["complete"] is True
    assert record["first_failure"]["task"] == "Roll the stack"
    assert record["first_failure"]["phase"] == "deploy" and record["first_failure"]["host"] == "localhost"
    assert "message" not in record["first_failure"]  # results are not kept by default
    assert record["phases"][-1]["name"] == "deploy" and record["phases"][-1]["status"] == "failed"
    assert record["hosts"]["localhost"]["failures"] == 1
    assert ": FAILED in" in proc.stdout and "failed at 'Roll the stack' on localhost" in proc.stdout


ROLLED_BACK = """
- name: Callback integration rollback
  hosts: all
  gather_facts: false
  pre_tasks:
%(open)s
  tasks:
    - name: Release and roll back when smoke fails
      tags: [phase_deploy]
      block:
        - name: Smoke check
          ansible.builtin.command: /bin/false
      rescue:
        - name: Roll back to the previous version
          ansible.builtin.set_stats:
            data:
              runbook_release:
                outcome: rolled_back
                rollback: {trigger: smoke, reason: "GET /api/items answered 500", rolled_back_to: v1.2.2}
                ticket: INC-42
            aggregate: true
""" % {"open": OPEN}


def test_a_rolled_back_release(tmp_path):
    proc = run(tmp_path, ROLLED_BACK)
    assert proc.returncode == 0, proc.stdout
    record = load(tmp_path)
    assert record["outcome"] == "rolled_back"
    assert record["rollback"] == {"trigger": "smoke", "reason": "GET /api/items answered 500", "rolled_back_to": "v1.2.2"}
    assert record["hosts"]["localhost"]["rescued"] == 1
    # A field outside the contract is a warning, recorded as it is; it changes nothing else.
    assert record["release"]["ticket"] == "INC-42"
    assert record["release_warnings"] == ["ticket: unknown key (allowed: %s)" % ", ".join(sorted(FIELDS))]
    assert "does not follow the release data contract" in proc.stdout + proc.stderr
    assert ": ROLLED_BACK in" in proc.stdout
    assert "rolled back to v1.2.2 (trigger smoke): GET /api/items answered 500" in proc.stdout
    handoff = only(tmp_path, ".handoff.md").read_text()
    assert "| Serving now | v1.2.2 |" in handoff
    assert "Already rolled back to v1.2.2 (trigger: smoke): GET /api/items answered 500" in handoff


def _processes_with(marker):
    found = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if marker in Path("/proc", pid, "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(pid))
            except OSError:
                continue
    return found


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_run_killed_with_a_signal_is_recorded_as_aborted(tmp_path, signum):
    marker = "47.%d%d" % (os.getpid() % 1000, signum)
    playbook = SUCCESS.replace("""      ansible.builtin.debug:
        msg: RESULT-CONTENT-MARKER""", """      ansible.builtin.command: sleep %s""" % marker)
    proc = subprocess.Popen(command(tmp_path, playbook), cwd=REPO, env=env_for(tmp_path), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            journals = list((tmp_path / "records").glob("*.journal.jsonl"))
            if journals and '"name":"Roll the stack"' in journals[0].read_text() and _processes_with("sleep " + marker):
                break
            time.sleep(0.2)
        else:
            raise AssertionError("the playbook never reached its long task")
        os.kill(proc.pid, signum)
        out, _err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    # SIGTERM ends ansible-playbook by the signal; SIGINT becomes "User interrupted execution" (rc 99).
    expected = (-signal.SIGTERM, 128 + signal.SIGTERM) if signum == signal.SIGTERM else (99,)
    assert proc.returncode in expected, (proc.returncode, out)
    name = signal.Signals(signum).name
    record = load(tmp_path)
    assert record["outcome"] == "aborted" and record["complete"] is False
    assert record["aborted"]["signal"] == name
    assert record["tasks"][-1]["name"] == "Roll the stack" and record["tasks"][-1]["status"] == "interrupted"
    assert record["release"]["backup"]["id"] == "appdb-1"  # release data seen before the signal is kept
    events = journal(tmp_path)
    assert any(e["ev"] == "signal" and e["signal"] == name for e in events)
    assert sum(1 for e in events if e["ev"] == "result") >= 3
    assert "the run was interrupted (%s)" % name in only(tmp_path, ".handoff.md").read_text()
    time.sleep(1)
    assert not _processes_with("sleep " + marker), "the task's process outlived the run"


SECRET = "S" + uuid.uuid4().hex[:14]
SECRET2 = "T" + uuid.uuid4().hex[:14]
SECRET3 = "U" + uuid.uuid4().hex[:14]
SECRET4 = "V" + uuid.uuid4().hex[:14]
SECRETS = (SECRET, SECRET2, SECRET3, SECRET4)

QUIET = """
- name: Callback integration secrets
  hosts: all
  gather_facts: false
  pre_tasks:
%(open)s
  tasks:
    - name: Use the secret quietly
      ansible.builtin.debug:
        msg: "{{ db_password }}"
      no_log: true
    - name: Keep the secret in a fact
      ansible.builtin.set_fact:
        app_secret_copy: "{{ db_password }}"
      no_log: true
    - name: Fail quietly with the secret
      ansible.builtin.command: "false {{ db_password }}"
      no_log: true
      ignore_errors: true
    - name: Report release data that breaks the contract's no-secrets rule
      ansible.builtin.set_stats:
        data:
          runbook_release:
            backup: {id: b1, location: "postgresql://app:{{ db_password }}@db/appdb"}
        aggregate: true
""" % {"open": OPEN}

NAMED = QUIET + """
    - name: "Connect with {{ db_password }}"
      ansible.builtin.fail:
        msg: "cannot reach postgresql://app:{{ db_password }}@db/appdb (token {{ db_password }})"
"""


def _secret_args():
    return ["-e", "db_password=" + SECRET, "-e", "backup_url=s3://AKIA:%s@minio.internal/backups" % SECRET2,
            "-e", json.dumps({"nested": {"headers": {"Authorization": "Bearer " + SECRET4}}})]


def _assert_no_secret(tmp_path, *texts):
    written = [p for p in (tmp_path / "records").rglob("*") if p.is_file()]
    assert len(written) == 4
    for path in written:
        content = path.read_text()
        for secret in SECRETS:
            assert secret not in content, (secret, path.name)
    for text in texts:
        for secret in SECRETS:
            assert secret not in text, secret


def test_secrets_never_reach_the_record_the_reports_or_the_output(tmp_path):
    dsn = "postgresql://recorder:%s@127.0.0.1:9/history" % SECRET3  # nothing listens: the write fails
    proc = run(tmp_path, QUIET, *_secret_args(), RUNBOOK_RELEASE_RECORD_DSN=dsn)
    assert proc.returncode == 0, proc.stdout
    assert "history table failed" in proc.stdout + proc.stderr  # the DSN was used, and failed as a warning
    _assert_no_secret(tmp_path, proc.stdout, proc.stderr)
    record = load(tmp_path)
    # What was captured is masked, not missing.
    assert record["extra_vars"]["db_password"] == "********"
    assert record["extra_vars"]["backup_url"] == "s3://AKIA:********@minio.internal/backups"
    assert record["extra_vars"]["nested"]["headers"]["Authorization"] == "********"
    assert record["release"]["backup"]["location"] == "postgresql://app:********@db/appdb"
    assert [t["status"] for t in record["tasks"][1:4]] == ["ok", "ok", "ignored"]


def test_secrets_in_task_names_and_failure_messages_stay_out_of_the_files(tmp_path):
    proc = run(tmp_path, NAMED, *_secret_args(), RUNBOOK_RELEASE_RECORD_INCLUDE_RESULTS="true")
    assert proc.returncode == 2
    _assert_no_secret(tmp_path)
    failure = load(tmp_path)["first_failure"]
    assert failure["message"] == "cannot reach postgresql://app:********@db/appdb (token ********)"


def test_the_history_table_in_postgresql(tmp_path, sandbox_status, secret_of):
    psycopg2 = pytest.importorskip("psycopg2")
    pg = sandbox_status["postgres"]
    password = secret_of("postgres_password")
    dbname = "it_deployment_record_%s" % uuid.uuid4().hex[:8]
    admin = dict(host=pg["host"], port=pg["port"], user="postgres", password=password, dbname="postgres")
    conn = psycopg2.connect(**admin)
    conn.autocommit = True
    conn.cursor().execute("CREATE DATABASE %s" % dbname)
    conn.close()
    try:
        dsn = "postgresql://postgres:%s@%s:%s/%s" % (password, pg["host"], pg["port"], dbname)
        for _attempt in range(2):  # the second run of another record: one row each
            proc = run(tmp_path, SUCCESS, RUNBOOK_RELEASE_RECORD_DSN=dsn, RUNBOOK_RELEASE_RECORD_TABLE="release_history")
            assert proc.returncode == 0, proc.stdout
            assert "history table failed" not in proc.stdout
            assert password not in proc.stdout + proc.stderr
            shutil.rmtree(tmp_path / "records")
        with psycopg2.connect(**dict(admin, dbname=dbname)) as check:
            with check.cursor() as cur:
                cur.execute("SELECT run_id, outcome, environment, service, version, record->>'runbook' "
                            "FROM release_history")
                rows = cur.fetchall()
        assert rows == [(RUN_ID, "success", "itest", "demo", "v1.2.3", "release")] * 2
    finally:
        conn = psycopg2.connect(**admin)
        conn.autocommit = True
        conn.cursor().execute("DROP DATABASE IF EXISTS %s WITH (FORCE)" % dbname)
        conn.close()


def test_a_broken_record_directory_never_fails_the_run(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where the record directory should be")
    proc = run(tmp_path, SUCCESS, RUNBOOK_RELEASE_RECORD_DIR=str(blocker / "records"))
    assert proc.returncode == 0, proc.stdout
    assert "Roll the stack" in proc.stdout and "ok=5" in proc.stdout
    output = proc.stdout + proc.stderr
    assert output.count("v2_playbook_on_start failed") == 1
    assert "the record goes on without it" in output


def test_a_failing_hook_is_one_warning_and_the_record_goes_on(tmp_path):
    inventory = (INVENTORY % {"changelog": tmp_path / "no-such-changelog.md"}).replace(
        "      - error rate of /api/items", "      - \"{{ no_such_variable.attribute }}\"")
    proc = run(tmp_path, SUCCESS, inventory=inventory)
    assert proc.returncode == 0, proc.stdout
    output = proc.stdout + proc.stderr
    assert output.count("template release_handoff_watch_for failed") == 1
    assert output.count("changelog failed") == 1
    record = load(tmp_path)
    assert record["outcome"] == "success" and record["complete"] is True
    assert len(record["callback_warnings"]) == 2
    assert "watch_for" not in record["handoff"] and record["handoff"]["escalation_contacts"]
    assert len(list((tmp_path / "records").iterdir())) == 4


def _png_pixels(path):
    """(width, height, rows of RGB(A) bytes) of an 8-bit RGB/RGBA PNG, decoded with zlib only."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, header = 8, b"", None
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    width, height, depth, colour = header[:4]
    assert depth == 8 and colour in (2, 6), header
    bpp = 3 if colour == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), width * bpp, [], bytearray(width * bpp)
    for y in range(height):
        kind, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up, corner = prev[i], prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 255
            elif kind == 2:
                line[i] = (line[i] + up) & 255
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 255
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, bpp, rows


def test_the_html_handoff_shows_the_timeline_in_headless_chromium(tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: run scripts/bootstrap (it installs the Debian package chromium)"
    proc = run(tmp_path, SUCCESS)
    assert proc.returncode == 0, proc.stdout
    html = only(tmp_path, ".handoff.html")
    png = tmp_path / "handoff.png"
    shot = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           "--user-data-dir=%s" % (tmp_path / "chromium"), "--screenshot=%s" % png,
                           "--window-size=1200,900", "file://%s" % html], capture_output=True, text=True, timeout=120,
                          check=False)
    assert png.exists() and png.stat().st_size > 10000, shot.stderr[-2000:]
    if os.environ.get("RUNBOOK_KEEP_SCREENSHOT"):
        shutil.copy(png, os.environ["RUNBOOK_KEEP_SCREENSHOT"])
    width, height, bpp, rows = _png_pixels(png)
    assert (width, height) == (1200, 900)
    colours = set()
    for row in rows[::3]:
        colours.update(row[i:i + 3] for i in range(0, len(row), bpp * 3))
    assert len(colours) > 20, "the screenshot is blank"
    # The timeline's bars are drawn: the 'changed' blue of db_backup and the 'ok' green of the other phases.
    assert bytes.fromhex("1565c0") in colours and bytes.fromhex("2e7d32") in colours


def test_the_handoff_takes_its_changes_from_git_log_when_given_a_range(tmp_path):
    repo = tmp_path / "app"
    repo.mkdir()
    git_env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid", GIT_COMMITTER_NAME="t",
                   GIT_COMMITTER_EMAIL="t@example.invalid")
    steps = [("init", "-q"), ("commit", "-q", "--allow-empty", "-m", "older"), ("tag", "v1.2.2"),
             ("commit", "-q", "--allow-empty", "-m", "items export via git"), ("tag", "v1.2.3")]
    for step in steps:
        subprocess.run(["git", "-C", str(repo), *step], check=True, capture_output=True, env=git_env)
    without_changelog = INVENTORY.replace('    release_changelog_file: "%(changelog)s"\n',
                                          '    release_changes_git_range: "{{ git_range }}"\n'
                                          '    release_changes_git_dir: "%s"\n' % repo)

    proc = run(tmp_path, SUCCESS, "-e", "version=v1.2.3", "-e", "git_range=v1.2.2..v1.2.3",
               inventory=without_changelog)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load(tmp_path)["handoff"]["changes"] == ["items export via git"]
    assert "- items export via git" in only(tmp_path, ".handoff.md").read_text()

    # A range git cannot read is a warning naming it; the run and its record go on.
    for path in (tmp_path / "records").iterdir():
        path.unlink()
    proc = run(tmp_path, SUCCESS, "-e", "version=v1.2.3", "-e", "git_range=v0.0.0..v1.2.3",
               inventory=without_changelog)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "release_changes_git_range" in proc.stdout + proc.stderr
    assert "changes" not in load(tmp_path)["handoff"]


def test_an_awx_job_id_is_recorded(tmp_path):
    proc = run(tmp_path, SUCCESS, "-e", "version=v1.2.3", JOB_ID="4242")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert str(load(tmp_path)["job_id"]) == "4242"
