"""End to end: the emergency rollback runbook on the sandbox, judged by what users see.

`ansible-playbook playbooks/rollback.yml` against the real demo stack, PostgreSQL, moto S3 and the Statuspage/chat
stand-ins. Every scenario releases v1.2.3 first with playbooks/release.yml (V004-V006, V006 marked breaks-previous:
v1.2.2 cannot run after it), then rolls back: refused across breaks-previous with the options listed; with the down
scripts; with a restore of the pre-release backup; after a release that crossed no breaks-previous migration, under
load. Bad input is refused before any change. The module starts from a freshly reset sandbox (v1.2.2, schema V003)
and resets it again at the end, so the tests after it find v1.2.2. It runs after test_release_runbooks.py.

Order matters and is the file's order.
"""

# pytest fixtures are parameters named like the module-level fixture functions.
# pylint: disable=redefined-outer-name

import json
import re
import stat
import threading
import time
from pathlib import Path

import pytest
import requests

from runbook_e2e import (BASE, CHAT, ENV_FILE, FLAG, HOME, LOCK, RECORDS, STANDIN, STATUSPAGE, STATUSPAGE_STATE, Load,
                         ProcessArgs, admin_vars_file, chat_bodies, check_secrets_absent, flat, fresh_sandbox,
                         item_columns, items, last_seq, psql, recap, record_file_of, record_of, requests_of, run,
                         served_version)

# fresh_sandbox (v1.2.2, schema V003 before and after the module) is a fixture: named, so the import is used.
pytestmark = pytest.mark.usefixtures(fresh_sandbox.__name__)

OLD, GOOD, SLOW = "v1.2.2", "v1.2.3", "v1.2.4-slow"
MARKER = "rollback-e2e-marker"


# --- helpers ------------------------------------------------------------------------------------------------------

def chat_messages(since):
    """Every chat message posted after `since`, its whole body as JSON: `text` is only the headline, the severity,
    progress and data-loss window are in `blocks` (roles/announce/tasks/chat.yml)."""
    return [json.dumps(body) for body in chat_bodies(since)]


def rollback_incident(run_id):
    """The status page incident of a rollback run (change id <run>-rollback), or None."""
    for incident in requests.get(STATUSPAGE_STATE, timeout=5).json()["incidents"]:
        change = ((incident.get("metadata") or {}).get("runbook_release") or {}).get("change_id")
        if change == f"{run_id}-rollback":
            return incident
    return None


def resolve_incident(run_id):
    """Resolve the incident a failed rollback leaves open (rightly), so later releases are not NO-GO for it."""
    incident = rollback_incident(run_id)
    if incident and incident["status"] != "resolved":
        key = (HOME / "secrets" / "statuspage_api_key").read_text().strip()
        requests.patch(f"{STANDIN}/v1/pages/{incident['page_id']}/incidents/{incident['id']}",
                       json={"incident": {"status": "resolved", "body": "Resolved by the e2e clean-up."}},
                       headers={"Authorization": "OAuth " + key}, timeout=10).raise_for_status()


def items_work():
    """What a user does with items: log in, list them. v1.2.2 on a schema it cannot run with answers 500."""
    session = requests.Session()
    login = session.post(f"{BASE}/api/login", json={"username": "demo", "password": "demo-password"}, timeout=5)
    login.raise_for_status()
    answer = session.get(f"{BASE}/api/items?limit=5",
                         headers={"Authorization": "Bearer " + login.json()["token"]}, timeout=10)
    return answer.status_code


def release(version, outputs, *extra):
    """Release a version with release.yml (the scenarios' set-up)."""
    proc, _run_id, _wall = run("release.yml", "-e", f"version={version}", *extra)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert served_version() == version


def diagnostics_dir(proc):
    match = re.search(r"Diagnostics taken before anything was undone are in\s+([^\s\"',]+)", proc.stdout)
    assert match, "the diagnostics directory is not named in the output"
    return Path(match.group(1))


def lock_is_free():
    return not LOCK.exists() or "heartbeat" not in LOCK.read_text()


class Watch:
    """Bounded loopback requests during a database rollback, keeping what each answer was: the status, and for a 503
    whether it carried Retry-After (the maintenance page), or the connection error."""

    def __init__(self, seconds=600):
        self.answers = []
        self.stopped = threading.Event()
        self.deadline = time.monotonic() + seconds
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()
        time.sleep(0.3)

    def _loop(self):
        while not self.stopped.is_set() and time.monotonic() < self.deadline:
            for path in ("/api/version", "/api/db"):
                try:
                    answer = requests.get(BASE + path, timeout=10)
                    self.answers.append((answer.status_code, answer.headers.get("Retry-After"), None))
                except requests.RequestException as exc:
                    self.answers.append((None, None, type(exc).__name__))
            time.sleep(0.02)

    def finish(self):
        self.stopped.set()
        self.thread.join(timeout=30)
        counts = {}
        for status, retry_after, error in self.answers:
            key = error or (f"{status}+Retry-After" if status == 503 and retry_after else str(status))
            counts[key] = counts.get(key, 0) + 1
        return counts


@pytest.fixture(scope="module")
def outputs():
    """Everything every run printed, for the secrets test at the end."""
    return []


@pytest.fixture(scope="module")
def bundles():
    """Diagnostics directories and records the rollbacks wrote, for the secrets test at the end."""
    return []


@pytest.fixture(scope="module")
def admin_vars(tmp_path_factory):
    """The database admin a restore needs (drops and recreates appdb), as the inventory would give it: a lookup of
    the sandbox's 0600 secret file, never the secret itself (0600 anyway)."""
    return admin_vars_file(tmp_path_factory.mktemp("rollback"))


# --- bad input: refused before anything changes ------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    (("-e", '{"rollback_to": "v1.2.2; touch /tmp/pwned"}'), 'rollback_to "v1.2.2; touch /tmp/pwned" is not valid'),
    (("-e", "severity=P9"), 'severity "P9" is not valid: use P0, P1'),
    (("-e", "rollback_database=maybe"), 'rollback_database "maybe" is not valid'),
    (("-e", "rollback_database=down", "-e", "rollback_override=true"), "pass one of them"),
    (("-e", "version=v1.2.2"), "a rollback takes -e rollback_to=v1.2.2"),
])
def test_bad_input_is_refused_before_any_change(extra, message, outputs):
    before = ENV_FILE.read_text()
    chat_from = last_seq(CHAT)
    diagnostics_before = set((RECORDS / "diagnostics").glob("*")) if (RECORDS / "diagnostics").exists() else set()
    proc, _run_id, _wall = run("rollback.yml", *extra)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    text = flat(proc)
    assert message in text, proc.stdout[-3000:]
    assert "Bad input" in text and "Nothing was changed." in text
    assert recap(proc.stdout)["changed"] == 0
    assert ENV_FILE.read_text() == before
    assert served_version() == OLD
    assert not chat_messages(chat_from), "bad input was announced"
    after = set((RECORDS / "diagnostics").glob("*")) if (RECORDS / "diagnostics").exists() else set()
    assert after == diagnostics_before, "bad input left a diagnostics bundle"


# --- (1) across breaks-previous: refused, options listed, nothing changed ------------------------------------------

def test_rollback_across_breaks_previous_is_refused_with_the_options(outputs, bundles):
    release(GOOD, outputs)
    assert "title" in item_columns() and "name" not in item_columns()
    before_env, rows = ENV_FILE.read_text(), items()
    chat_from = last_seq(CHAT)
    proc, run_id, _wall = run("rollback.yml")
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    text = flat(proc)
    assert "ROLLBACK REFUSED" in text, proc.stdout[-5000:]
    assert "V006 items_rename_name_to_title" in text and "breaks-previous" in text
    assert "-e rollback_database=down" in text and "down scripts of V006, V005, V004" in text
    assert "-e rollback_database=restore" in text and "DATA-LOSS WINDOW" in text
    assert "-e rollback_override=true" in text
    assert f"Nothing was changed; {GOOD} is still serving" in text
    # nothing changed: version, env file, schema, rows, no announcement, no maintenance page, no lock left
    assert served_version() == GOOD
    assert ENV_FILE.read_text() == before_env
    assert "title" in item_columns() and items() == rows
    assert not any("ROLLBACK" in t for t in chat_messages(chat_from)), "a refused rollback was announced"
    assert rollback_incident(run_id) is None
    assert not FLAG.exists() and lock_is_free()
    record, path = record_of(run_id), record_file_of(run_id)
    assert record["runbook"] == "rollback" and record["outcome"] == "failed"
    assert record["version"] == OLD and record["previous_version"] == GOOD
    bundle = diagnostics_dir(proc)
    assert bundle.is_dir(), "the refused run still keeps its diagnostics"
    bundles.extend([bundle, path])


# --- (2) the down scripts: v1.2.2 on V003, maintenance page instead of errors ------------------------------------

def test_rollback_with_the_down_scripts(outputs, bundles):
    release(GOOD, outputs)  # already serving: verifies only
    psql(f"INSERT INTO items (title, owner) VALUES ('{MARKER}-down', 'demo')")
    rows = items()
    chat_from = last_seq(CHAT)
    watch = Watch()
    proc, run_id, wall = run("rollback.yml", "-e", "rollback_database=down",
                             "-e", '{"rollback_reason": "items export broken since v1.2.3"}')
    counts = watch.finish()
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert served_version() == OLD
    columns = item_columns()
    assert "name" in columns and "title" not in columns and "slug" not in columns, columns
    assert psql("SELECT to_regclass('items_owner_idx') IS NULL") == "t", "V004's index is still there"
    assert items() == rows, "the down scripts lost rows"
    assert items_work() == 200, f"{OLD} cannot work with items on the rolled back schema"
    # Not zero-downtime, honestly: the maintenance page answered (503 + Retry-After) while the database and the
    # application switched; no connection error, no 5xx of the application.
    assert counts.get("503+Retry-After", 0) > 0, counts
    assert set(counts) <= {"200", "503+Retry-After"}, counts
    assert not FLAG.exists(), "the maintenance page was left on"
    assert lock_is_free()
    record, path = record_of(run_id), record_file_of(run_id)
    assert record["outcome"] == "success" and record["runbook"] == "rollback"
    assert record["rollback"] == {"trigger": "operator", "reason": "P1: items export broken since v1.2.3",
                                  "rolled_back_to": OLD}
    assert record["version"] == OLD and record["previous_version"] == GOOD
    texts = chat_messages(chat_from)
    assert any("ROLLBACK IN PROGRESS" in t and "P1" in t for t in texts), texts
    assert any("Progress Update" in t and "Database rolled back to V003" in t for t in texts), texts
    assert any("ROLLBACK COMPLETE" in t for t in texts), texts
    incident = rollback_incident(run_id)
    assert incident and incident["status"] == "resolved" and incident["impact_override"] == "major", incident
    bundles.extend([diagnostics_dir(proc), path])
    print(f"\nrollback with down scripts: {wall:.1f} s; answers during it: {counts}")


# --- (3) restore of the pre-release backup: v1.2.2 on the backup, data-loss window stated ------------------------

def test_rollback_with_a_restore_of_the_pre_release_backup(outputs, bundles, admin_vars):
    rows_before_release = items()
    release(GOOD, outputs)
    psql(f"INSERT INTO items (title, owner) VALUES ('{MARKER}-restore', 'demo')")
    chat_from = last_seq(CHAT)
    watch = Watch()
    with ProcessArgs() as seen:  # the restore's admin password and the diagnostics' app password: never in argv
        proc, run_id, wall = run("rollback.yml", "-e", "rollback_database=restore", "-e", "severity=P0",
                                 "-e", f"@{admin_vars}")
    counts = watch.finish()
    outputs.append(proc.stdout + proc.stderr)
    outputs.append("\n".join(seen.args))
    assert proc.returncode == 0, proc.stdout[-6000:]
    text = flat(proc)
    assert "DATA-LOSS WINDOW" in text, proc.stdout[-4000:]
    assert served_version() == OLD
    columns = item_columns()
    assert "name" in columns and "title" not in columns, columns
    # the backup taken before the release: the row written after it is gone, the rows before it are there
    assert psql(f"SELECT count(*) FROM items WHERE name = '{MARKER}-restore'") == "0"
    assert psql(f"SELECT count(*) FROM items WHERE name = '{MARKER}-down'") == "1"
    assert items() == rows_before_release
    assert items_work() == 200
    assert counts.get("503+Retry-After", 0) > 0, counts
    assert set(counts) <= {"200", "503+Retry-After"}, counts
    assert not FLAG.exists() and lock_is_free()
    record, path = record_of(run_id), record_file_of(run_id)
    assert record["outcome"] == "success" and record["rollback"]["rolled_back_to"] == OLD
    texts = chat_messages(chat_from)
    assert any("ROLLBACK IN PROGRESS" in t and "P0" in t for t in texts), texts
    assert any("ROLLBACK COMPLETE" in t and "data-loss window" in t for t in texts), texts
    incident = rollback_incident(run_id)
    assert incident and incident["impact_override"] == "critical", incident
    bundles.extend([diagnostics_dir(proc), path])
    print(f"\nrollback with restore: {wall:.1f} s; answers during it: {counts}")


# --- (4) after a good release that crossed no breaks-previous: 0 failed requests under load -----------------------

def test_rollback_after_a_release_without_breaking_migrations(tmp_path, outputs, bundles):
    release(GOOD, outputs)
    release(SLOW, outputs, "-e", "release_monitor_max_p95_ms=5000")
    page_from, chat_from = last_seq(STATUSPAGE), last_seq(CHAT)
    load = Load(tmp_path)
    proc, run_id, wall = run("rollback.yml", "-e", "severity=P2", "-e", '{"rollback_reason": "p95 latency above 1 s"}')
    totals = load.finish()
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-6000:]
    assert served_version() == GOOD
    assert totals["requests"] > 50 and totals["failed"] == 0, totals
    assert "application-only rollback is safe" in flat(proc) or "rolling back the application alone is safe" in flat(proc)
    assert "title" in item_columns() and items_work() == 200
    record, path = record_of(run_id), record_file_of(run_id)
    assert record["outcome"] == "success"
    assert record["rollback"] == {"trigger": "operator", "reason": "P2: p95 latency above 1 s", "rolled_back_to": GOOD}
    assert record["version"] == GOOD and record["previous_version"] == SLOW
    # the diagnostics, written before anything was undone: 0700 directory, 0600 files, the slow version's state
    bundle = diagnostics_dir(proc)
    assert stat.S_IMODE(bundle.stat().st_mode) == 0o700
    files = {p.name: p for p in bundle.iterdir()}
    assert {"pg_stat_activity.csv", "health-snapshot.json", "record-so-far.json"} <= set(files), files
    assert any(name.endswith(".diagnostics.txt") for name in files), files
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in files.values())
    assert files["pg_stat_activity.csv"].read_text().startswith("pid,datname,usename")
    snapshot = {r["name"]: r for r in json.loads(files["health-snapshot.json"].read_text())["results"]}
    assert snapshot["version"]["status"] == "passed" and snapshot["version"]["details"]["version"] == SLOW, snapshot
    assert snapshot["readiness"]["status"] == "passed", snapshot
    assert json.loads(files["record-so-far.json"].read_text())["rolling_back_to"] == GOOD
    # announcements: the status page incident with P2's impact, resolved; chat: start, progress, complete
    incident = rollback_incident(run_id)
    assert incident and incident["status"] == "resolved" and incident["impact_override"] == "minor", incident
    assert requests_of(STATUSPAGE, since=page_from), "status page heard nothing"
    texts = chat_messages(chat_from)
    assert any("ROLLBACK IN PROGRESS" in t for t in texts), texts
    assert any("ROLLBACK COMPLETE" in t for t in texts), texts
    bundles.extend([bundle, path])
    print(f"\napplication-only rollback: {wall:.1f} s; load: {totals}")


# --- a failure midway: the state is said, the maintenance page stays on over a rolled back database ---------------

def test_a_rollback_that_fails_midway_says_what_state_things_are_in(outputs, bundles):
    assert served_version() == GOOD
    chat_from = last_seq(CHAT)
    # v1.2.4-crash exits at start: the application rollback fails after the down scripts ran.
    proc, run_id, _wall = run("rollback.yml", "-e", "rollback_to=v1.2.4-crash", "-e", "rollback_database=down",
                              "-e", "rollback_target_schema=V003")
    outputs.append(proc.stdout + proc.stderr)
    try:
        assert proc.returncode != 0
        text = flat(proc)
        assert "FAILED in phase rollout" in text, proc.stdout[-6000:]
        assert f"Application: {GOOD} is pinned" in text
        assert "Database: rolled back to V003 (down scripts)" in text
        assert "The maintenance page stays ON" in text
        assert FLAG.exists(), "the maintenance page was switched off over a rolled back database"
        assert lock_is_free(), "the failed rollback kept the deploy lock"
        record, path = record_of(run_id), record_file_of(run_id)
        assert record["outcome"] == "failed" and record["rollback"]["rolled_back_to"] is None
        assert any("FAILED" in t for t in chat_messages(chat_from))
        bundles.extend([diagnostics_dir(proc), path])
        incident = rollback_incident(run_id)
        assert incident and incident["status"] != "resolved", "the failed rollback's incident was resolved"
    finally:
        FLAG.unlink(missing_ok=True)  # the module's last reset brings the schema back
        resolve_incident(run_id)


# --- secrets ------------------------------------------------------------------------------------------------------

def test_secrets_are_absent_from_output_records_and_diagnostics(outputs, bundles, secret_of):
    assert outputs and bundles
    texts = list(outputs)
    for item in bundles:
        paths = [item] if item.is_file() else [p for p in item.rglob("*") if p.is_file()]
        for path in paths:
            texts.append(path.read_text(errors="replace"))
            for sibling in path.parent.glob(path.name.replace(".json", ".*")) if path.suffix == ".json" else []:
                texts.append(sibling.read_text(errors="replace"))
    check_secrets_absent(texts, secret_of)
