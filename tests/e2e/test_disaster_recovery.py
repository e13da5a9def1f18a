"""End to end: the disaster recovery runbook on the sandbox, judged by what users see.

Set-up takes a verified backup of appdb to S3 (moto) with the db_backup role under a prefix of this module's own,
writes a row after it (the data the disaster loses), and leaves a release history whose last successful rollout is
v1.2.2 while the env file pins a broken v1.2.4-crash. Then the disaster: appdb is dropped and the whole stack removed
(`docker compose down`: no container, no network).
`playbooks/disaster_recovery.yml` must refuse bad input (no confirmation, a wrong one, an unknown backup id) before
anything changes, then restore the backup and redeploy v1.2.2 behind the maintenance page, with the incident opened
(critical) and resolved on the status page stand-in, chat messages, and the data-loss window reported. Finally a
damaged backup must fail with the site left on the maintenance page and the incident open. The module fixture resets
the sandbox before and after (v1.2.2, schema V003), so the flag and the open incident of the last test go away.

Order matters and is the file's order. Run under the stack lock:
  flock /tmp/rb-stack.lock .venv/bin/pytest -p no:cacheprovider tests/e2e/test_disaster_recovery.py -x -q
"""

import json
import subprocess
import threading
import time
import uuid

import pytest
import requests

from runbook_e2e import (BASE, CHAT, DB, ENV_FILE, FLAG, HOME, LOCK, PROJECT, RECORDS, REPO, STACK, STATUSPAGE,
                         STATUSPAGE_STATE, VENV, ProcessArgs, chat_texts, check_secrets_absent, env, flat,
                         fresh_sandbox, inventory_args, items, last_seq, psql, record_file_of, record_of, requests_of,
                         run, served_version)

pytestmark = pytest.mark.usefixtures("fresh_sandbox")
assert fresh_sandbox  # a fixture, used by name

GOOD, BROKEN = "v1.2.2", "v1.2.4-crash"
BUCKET = "runbook-backups"
PREFIX = f"e2e-dr-{uuid.uuid4().hex[:8]}/{DB}"
DR_S3 = f"dr_s3_uri=s3://{BUCKET}/{PREFIX}/"
MARKER = "dr-e2e-written-after-the-backup"
HISTORY = STACK / ".runbook-release" / "history.json"
OUTPUTS = []
STATE = {}


# --- helpers (this module's own; tests/runbook_e2e.py is shared and not changed) ------------------------------------

def s3():
    import boto3
    return boto3.client("s3", endpoint_url="http://127.0.0.1:9000", aws_access_key_id="sandbox",
                        aws_secret_access_key="sandbox-secret", region_name="us-east-1")


def dr(*extra):
    with ProcessArgs() as seen:  # every command line on the host meanwhile: checked for secrets at the end
        proc, run_id, wall = run("disaster_recovery.yml", *extra, timeout=600)
    OUTPUTS.append(proc.stdout + proc.stderr)
    OUTPUTS.append("\n".join(seen.args))
    return proc, run_id, wall


def stack_containers():
    """Every container of the demo stack, running or not."""
    proc = subprocess.run(["docker", "ps", "--all", "--quiet", "--filter",
                           f"label=com.docker.compose.project={PROJECT}"], capture_output=True, text=True, check=True)
    return proc.stdout.split()


def users():
    return int(psql("SELECT count(*) FROM users"))


def dr_incident(run_id):
    for incident in requests.get(STATUSPAGE_STATE, timeout=5).json()["incidents"]:
        if ((incident.get("metadata") or {}).get("runbook_release") or {}).get("change_id") == f"{run_id}-dr":
            return incident
    return None


class MaintenanceWatcher:
    """Polls the site through the proxy while a run lasts (bounded: at most `seconds`, 5 requests a second) and
    counts the maintenance page's answers: 503 with Retry-After."""

    def __init__(self, seconds=300):
        self.deadline = time.monotonic() + seconds
        self.stop = threading.Event()
        self.maintenance = 0
        self.statuses = {}
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while not self.stop.is_set() and time.monotonic() < self.deadline:
            try:
                answer = requests.get(f"{BASE}/api/version", timeout=3)
                self.statuses[answer.status_code] = self.statuses.get(answer.status_code, 0) + 1
                self.maintenance += answer.status_code == 503 and "Retry-After" in answer.headers
            except requests.RequestException:
                self.statuses["error"] = self.statuses.get("error", 0) + 1
            self.stop.wait(0.2)

    def finish(self):
        self.stop.set()
        self.thread.join(timeout=10)
        return self


def nothing_changed(since, proc):
    """A refused run: no announcement, no maintenance page, no lock left, the stack and the database as they were."""
    assert requests_of(STATUSPAGE, since=since) == [], "the status page was called"
    assert not FLAG.exists() and not LOCK.exists()
    assert "Nothing was changed" in flat(proc)


# --- set-up ---------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module", autouse=True)
def own_s3_prefix():
    yield
    client = s3()
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix=PREFIX.split("/", maxsplit=1)[0] + "/").get("Contents") or []
    if listed:
        client.delete_objects(Bucket=BUCKET, Delete={"Objects": [{"Key": o["Key"]} for o in listed]})


def test_setup_a_verified_backup_then_a_disaster(tmp_path):
    playbook = tmp_path / "backup.yml"
    playbook.write_text("- name: Take a backup\n  hosts: app_servers\n  gather_facts: false\n  roles:\n"
                        "    - role: runbook.release.db_backup\n")
    proc = subprocess.run([str(VENV / "ansible-playbook"), *inventory_args(), str(playbook),
                           "-e", f"db_backup_s3_prefix={PREFIX}"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False, env=env())
    OUTPUTS.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-3000:]
    manifests = [o["Key"] for o in s3().list_objects_v2(Bucket=BUCKET, Prefix=PREFIX + "/")["Contents"]
                 if o["Key"].endswith(".manifest.json")]
    assert len(manifests) == 1
    STATE["backup_id"] = manifests[0].rsplit("/", 1)[1][:-len(".manifest.json")]
    STATE["items"], STATE["users"] = items(), users()
    assert STATE["items"] >= 1
    # Written after the backup: the data-loss window's victim.
    psql(f"INSERT INTO items (name, owner) VALUES ('{MARKER}', 'demo')")
    # The host's release history: v1.2.2 was the last good rollout, then a broken one was pinned.
    HISTORY.parent.mkdir(exist_ok=True)
    HISTORY.write_text(json.dumps({"schema": 1, "releases": [
        {"run_id": "e2e-good", "version": GOOD, "previous_version": "v1.2.1", "outcome": "success",
         "kind": "release", "started_at": "2031-03-01T00:00:00Z", "finished_at": "2031-03-01T00:05:00Z",
         "services": {}, "scale": {}, "snapshot": {"env": "", "files": {}}},
        {"run_id": "e2e-broken", "version": BROKEN, "previous_version": GOOD, "outcome": "failed",
         "kind": "release", "started_at": "2031-03-02T00:00:00Z", "finished_at": "2031-03-02T00:05:00Z",
         "services": {}, "scale": {}, "snapshot": {"env": "", "files": {}}}]}))
    HISTORY.chmod(0o600)
    ENV_FILE.write_text(ENV_FILE.read_text().replace(f"SERVICE_VERSION={GOOD}", f"SERVICE_VERSION={BROKEN}"))
    # The disaster: the database is gone and so is the whole stack (containers and network).
    subprocess.run(["docker", "compose", "--project-directory", str(STACK), "down", "--timeout", "5"],
                   check=True, capture_output=True)
    psql(f"DROP DATABASE {DB} WITH (FORCE)", database="postgres")
    assert stack_containers() == []
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{BASE}/api/version", timeout=5)


# --- bad input: refused before anything changes ---------------------------------------------------------------------

def test_without_the_confirmation_nothing_changes():
    since = last_seq(STATUSPAGE)
    proc, _run_id, _wall = dr("-e", DR_S3)
    assert proc.returncode != 0
    assert f"confirm with -e dr_confirm={DB}" in flat(proc)
    nothing_changed(since, proc)
    proc, _run_id, _wall = dr("-e", DR_S3, "-e", "dr_confirm=otherdb", "-e", "severity=P9")
    assert proc.returncode != 0
    assert f"dr_confirm \"otherdb\" does not name the database that is replaced: pass -e dr_confirm={DB}" in flat(proc)
    assert "severity \"P9\" is not valid" in flat(proc)
    nothing_changed(since, proc)


def test_an_unknown_backup_id_is_refused_before_anything_changes():
    since = last_seq(STATUSPAGE)
    proc, run_id, _wall = dr("-e", DR_S3, "-e", f"dr_confirm={DB}", "-e", "dr_backup_id=appdb-19990101T000000Z-nope")
    text = flat(proc)
    assert proc.returncode != 0
    assert "DISASTER RECOVERY REFUSED" in text and "backup appdb-19990101T000000Z-nope is not in" in text
    assert STATE["backup_id"] in text  # the newest ones are listed
    nothing_changed(since, proc)
    assert record_of(run_id)["outcome"] == "failed"


# --- the recovery ---------------------------------------------------------------------------------------------------

def test_recovery_restores_the_backup_and_redeploys_the_last_known_good_version():
    since_chat, since_page = last_seq(CHAT), last_seq(STATUSPAGE)
    watcher = MaintenanceWatcher()
    proc, run_id, wall = dr("-e", DR_S3, "-e", f"dr_confirm={DB}", "-e", f"dr_reason={DB} lost in the e2e test")
    watcher.finish()
    text = flat(proc)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert wall < 180

    # Users get the last known good version again, on the backup's data; what came after the backup is gone.
    assert served_version() == GOOD
    assert len(stack_containers()) == 4  # proxy, api, web, worker: the stack the disaster removed is back
    assert f"SERVICE_VERSION={GOOD}" in ENV_FILE.read_text()
    assert (items(), users()) == (STATE["items"], STATE["users"])
    assert psql(f"SELECT count(*) FROM items WHERE name = '{MARKER}'") == "0"
    assert not FLAG.exists() and not LOCK.exists()
    assert watcher.maintenance >= 1, f"the maintenance page was never served: {watcher.statuses}"

    # The plan named the history's version and the newest verified backup; the data-loss window is reported.
    assert f"Version to redeploy: {GOOD} (the last known good version of the release history" in text
    assert f"Backup to restore: {STATE['backup_id']}" in text
    assert "DATA-LOSS WINDOW:" in text and "DISASTER RECOVERY COMPLETE" in text

    # The status page: an incident opened with critical impact, updated with the window, resolved.
    incident = dr_incident(run_id)
    assert incident and incident["status"] == "resolved" and incident["impact"] == "critical"
    bodies = " ".join(u.get("body", "") for u in incident.get("incident_updates", []))
    assert "The database is restored from the backup taken" in bodies and "Services restored" in bodies
    calls = [r["method"] for r in requests_of(STATUSPAGE, since=since_page) if "/incidents" in r.get("path", "")]
    assert "POST" in calls and "PATCH" in calls

    # Chat: all hands, progress with the data-loss window, recovery complete; on-call handoff.
    chat = "\n".join(chat_texts(since_chat))
    assert "DISASTER RECOVERY - ALL HANDS" in chat
    assert "DATA-LOSS WINDOW" in chat and "RECOVERY COMPLETE" in chat

    record = record_of(run_id)
    release = record["release"]
    assert record["outcome"] == "success" and release["runbook"] == "disaster_recovery"
    assert release["version"] == GOOD and release["previous_version"] == BROKEN
    assert release["backup"]["id"] == STATE["backup_id"] and release["backup"]["verified"] is True
    assert release["backup"]["s3_uri"].startswith(f"s3://{BUCKET}/{PREFIX}/")
    assert incident["id"] in release["statuspage"]["incident_ids"]
    assert release["integrity"]["passed"] is True
    assert release["integrity"]["values"]["items"] == STATE["items"]
    recovery = release["disaster_recovery"]
    assert recovery["backup_id"] == STATE["backup_id"] and recovery["data_loss_window_s"] >= 0
    assert recovery["restored_objects"] > 0 and recovery["declared_at"].endswith("Z")
    assert not record.get("release_warnings"), record.get("release_warnings")
    STATE["record_files"] = [record_file_of(run_id)]


# --- a damaged backup -----------------------------------------------------------------------------------------------

def test_a_damaged_backup_fails_with_the_site_on_the_maintenance_page_and_the_incident_open():
    client = s3()
    key = f"{PREFIX}/{STATE['backup_id']}.dump"
    client.put_object(Bucket=BUCKET, Key=key, Body=b"not the dump that was verified")
    proc, run_id, _wall = dr("-e", DR_S3, "-e", f"dr_confirm={DB}", "-e", f"dr_backup_id={STATE['backup_id']}")
    text = flat(proc)
    assert proc.returncode != 0
    assert "FAILED in phase restore" in text and "refusing to restore" in text
    assert "was not touched" in text and "NEXT STEP: restore another backup" in text
    # The site stays on the maintenance page; the database was not dropped (checksum first).
    assert FLAG.exists()
    answer = requests.get(f"{BASE}/api/version", timeout=5)
    assert answer.status_code == 503 and "Retry-After" in answer.headers
    assert (items(), users()) == (STATE["items"], STATE["users"])
    incident = dr_incident(run_id)
    assert incident and incident["status"] != "resolved"
    assert "the restore step failed" in " ".join(u.get("body", "") for u in incident.get("incident_updates", []))
    assert record_of(run_id)["outcome"] == "failed"
    assert not LOCK.exists()
    STATE.setdefault("record_files", []).append(record_file_of(run_id))


def test_no_secret_in_output_or_records(secret_of):
    texts = OUTPUTS + [p.read_text() for p in STATE.get("record_files", [])]
    texts += [p.read_text() for p in sorted(RECORDS.glob("diagnostics/*_dr_*/*"))[-10:] if p.is_file()]
    check_secrets_absent(texts, secret_of)
    assert "sandbox-secret" not in "\n".join(OUTPUTS)
    assert HOME.exists()
