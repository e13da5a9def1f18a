"""End to end: the standard release and hotfix runbooks on the sandbox, judged by what users see.

`ansible-playbook playbooks/release.yml -e version=...` (and hotfix.yml) against the real demo stack, PostgreSQL,
moto S3 and the Statuspage/chat stand-ins. Each test asserts the served version, the deployment record's outcome,
what the status page and chat received, and that rows survived. The module starts from a freshly reset sandbox
(v1.2.2, schema V003) and resets it again at the end, so the tests after it find v1.2.2.

Order matters and is the file's order: the good release first (v1.2.3, which later tests roll back to).
"""

# pytest fixtures are parameters named like the module-level fixture functions.
# pylint: disable=redefined-outer-name

import json
import os
import signal
import time

import pytest

from runbook_e2e import (CHAT, ENV_FILE, HOME, LOCK, OPERATOR, RECORDS, STATUSPAGE, Load, ProcessArgs, chat_texts,
                         check_secrets_absent, flat, fresh_sandbox, items, last_seq, probe, psql, recap, record_of,
                         requests_of, run, served_version, start)

# fresh_sandbox (v1.2.2, schema V003 before and after the module) is a fixture: named, so the import is used.
pytestmark = pytest.mark.usefixtures(fresh_sandbox.__name__)

GOOD = "v1.2.3"
ARTIFACTS = HOME / "artifacts"


# --- helpers ------------------------------------------------------------------------------------------------------

def applied_migrations():
    return psql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'runbook_migrations'")


@pytest.fixture(scope="module")
def outputs():
    """Everything every run printed, for the secrets test at the end."""
    return []


# --- the good path ------------------------------------------------------------------------------------------------

def test_a_good_release(outputs):
    assert served_version() == "v1.2.2"
    rows = items()
    chat_from, page_from = last_seq(CHAT), last_seq(STATUSPAGE)
    proc, run_id, _wall = run("release.yml", "-e", f"version={GOOD}")
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert served_version() == GOOD
    record = record_of(run_id)
    assert record["outcome"] == "success"
    assert record["version"] == GOOD and record["previous_version"] == "v1.2.2"
    release = record["release"] if "release" in record else record
    assert json.dumps(release).count("backup") >= 1
    assert items() == rows
    texts = chat_texts(chat_from)
    assert any("Starting" in t or "STARTING" in t.upper() for t in texts), texts
    assert any("COMPLETE" in t.upper() for t in texts), texts
    assert requests_of(STATUSPAGE, since=page_from), "the status page heard nothing"

    again, _again_id, _wall = run("release.yml", "-e", f"version={GOOD}")
    outputs.append(again.stdout + again.stderr)
    assert again.returncode == 0, again.stdout[-5000:]
    assert recap(again.stdout)["changed"] == 0
    assert "already released" in flat(again)
    assert served_version() == GOOD


# --- faults during the rollout: rolled back by compose_rollout, 0 failed requests through the proxy ---------------

@pytest.mark.parametrize("bad", ["v1.2.4-unhealthy", "v1.2.4-crash"])
def test_a_bad_image_is_rolled_back_during_the_rollout(bad, tmp_path, outputs):
    rows = items()
    load = Load(tmp_path)
    page_from = last_seq(STATUSPAGE)
    proc, run_id, _wall = run("release.yml", "-e", f"version={bad}")
    totals = load.finish()
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert "FAILED in phase rollout" in flat(proc), proc.stdout[-4000:]
    assert served_version() == GOOD
    assert totals["requests"] > 50 and totals["failed"] == 0, totals
    record = record_of(run_id)
    assert record["outcome"] == "rolled_back"
    assert record["rollback"]["trigger"] == "rollout" and record["rollback"]["rolled_back_to"] == GOOD
    assert items() == rows
    incidents = [r for r in requests_of(STATUSPAGE, since=page_from) if r["path"].endswith("/incidents")
                 and r["method"] == "POST"]
    assert incidents, "no status page incident was opened"
    assert list(RECORDS.glob(f"{run_id}_*.diagnostics.txt")), "no diagnostics were saved"


# --- faults seen only under traffic: rolled back by the monitoring window ----------------------------------------

@pytest.mark.parametrize("bad", ["v1.2.4-errors", "v1.2.4-slow"])
def test_a_bad_release_is_rolled_back_by_the_monitor(bad, outputs):
    proc, run_id, _wall = run("release.yml", "-e", f"version={bad}", "-e", "release_monitor_window_s=12")
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert "monitoring window recommended a rollback" in flat(proc), proc.stdout[-4000:]
    assert served_version() == GOOD
    record = record_of(run_id)
    assert record["outcome"] == "rolled_back" and record["rollback"]["trigger"] == "monitor"
    failed, total = probe(4)
    assert total > 10 and failed == 0, (failed, total)


# --- failures before the rollout: nothing changes on the stack ---------------------------------------------------

def test_a_failing_migration_stops_before_the_rollout(tmp_path, outputs):
    bad = tmp_path / "migrations"
    bad.mkdir()
    for path in (ARTIFACTS / GOOD / "migrations").iterdir():
        (bad / path.name).write_text(path.read_text())
    (bad / "V007__broken.sql").write_text("ALTER TABLE items ADD COLUMN broken integer REFERENCES nowhere (id);\n")
    rows = items()
    proc, run_id, _wall = run("release.yml", "-e", "version=v1.2.4-slow", "-e", f"release_migrations_path={bad}")
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    text = flat(proc)
    assert "FAILED in phase migrate" in text and "V007" in text, proc.stdout[-4000:]
    assert "Nothing had changed on the stack" in text
    assert served_version() == GOOD
    assert record_of(run_id)["outcome"] == "failed"
    assert items() == rows
    assert psql("SELECT count(*) FROM information_schema.columns WHERE table_name = 'items' "
                "AND column_name = 'broken'") == "0"


def test_an_unreachable_s3_stops_before_any_migration(tmp_path, outputs):
    extra = tmp_path / "migrations"
    extra.mkdir()
    for path in (ARTIFACTS / GOOD / "migrations").iterdir():
        (extra / path.name).write_text(path.read_text())
    (extra / "V007__notes.sql").write_text("CREATE TABLE release_notes (id serial PRIMARY KEY, body text);\n")
    proc, run_id, _wall = run("release.yml", "-e", "version=v1.2.4-slow", "-e", f"release_migrations_path={extra}",
                              "-e", "release_backup_s3_endpoint=http://127.0.0.1:9")
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    text = flat(proc)
    assert "FAILED in phase backup" in text, proc.stdout[-4000:]
    assert "127.0.0.1:9" in text
    assert served_version() == GOOD
    assert psql("SELECT count(*) FROM information_schema.tables WHERE table_name = 'release_notes'") == "0"
    assert record_of(run_id)["outcome"] == "failed"


# --- NO-GO: the gate stops the run before anything changes, naming every failed criterion ------------------------

def _nogo(outputs, *extra):
    env_before = ENV_FILE.read_text()
    chat_from = last_seq(CHAT)
    proc, run_id, _wall = run("release.yml", "-e", "version=v1.2.4-slow", *extra)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert ENV_FILE.read_text() == env_before
    assert served_version() == GOOD
    assert not any("Starting" in t for t in chat_texts(chat_from)), "a NO-GO release was announced"
    record = record_of(run_id)
    assert record.get("gate", {}).get("go") is False or (record.get("release") or {}).get("gate", {}).get("go") is False
    return flat(proc)


def test_nogo_missing_approval(tmp_path, outputs):
    empty = tmp_path / "approvals.yml"
    empty.write_text("approvals: []\n")
    text = _nogo(outputs, "-e", f"release_approvals_file={empty}")
    assert "approvals" in text and "team_lead" in text


def test_nogo_operator_approving_themself(outputs):
    text = _nogo(outputs, "-e", "release_operator=sandbox-lead")
    assert "sandbox-lead" in text and "operator" in text


def test_nogo_test_evidence_below_threshold(tmp_path, outputs):
    junit = tmp_path / "junit.xml"
    junit.write_text('<testsuite name="e2e" tests="100" failures="9" errors="0" skipped="0"/>\n')
    text = _nogo(outputs, "-e", json.dumps({"release_test_reports": [str(junit)]}))
    assert "test_evidence" in text and "91" in text


def test_nogo_outside_the_change_window(outputs):
    closed = {"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start_utc": "00:00", "end_utc": "00:01"}
    now = time.gmtime()
    if now.tm_hour == 0 and now.tm_min < 2:
        time.sleep(120)
    text = _nogo(outputs, "-e", json.dumps({"release_change_window": closed}))
    assert "change_window" in text


def test_nogo_production_without_a_staging_soak(outputs):
    text = _nogo(outputs, "-e", "release_environment=production", "-e", "release_soak_s=14400")
    assert "soak" in text and "staging" in text


# --- concurrency and crashes --------------------------------------------------------------------------------------

def test_a_second_release_while_one_runs_is_refused(outputs):
    first, first_id = start("release.yml", "-e", "version=v1.2.4-slow", "-e", "release_monitor_window_s=20",
                            "-e", "release_monitor_max_p95_ms=5000")
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and not (LOCK.exists() and first_id in LOCK.read_text()):
        time.sleep(0.5)
    try:
        assert LOCK.exists(), "the first release never took the lock"
        second, _second_id, _wall = run("release.yml", "-e", "version=v1.2.4-errors")
        outputs.append(second.stdout + second.stderr)
        assert second.returncode != 0
        text = flat(second)
        assert OPERATOR in text and first_id in text, second.stdout[-4000:]
    finally:
        out, _err = first.communicate(timeout=600)
        outputs.append(out)
    assert first.returncode == 0, out[-4000:]
    assert served_version() == "v1.2.4-slow"


def test_a_release_killed_with_sigkill_converges_on_rerun(outputs):
    assert served_version() == "v1.2.4-slow"
    # A 10 s ttl for the run that dies (the inventory's is 30 s): its lock goes stale sooner, the rerun waits less.
    proc, run_id = start("release.yml", "-e", f"version={GOOD}", "-e", "release_monitor_window_s=0",
                         "-e", "release_lock_ttl=10")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and GOOD not in ENV_FILE.read_text():
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert LOCK.exists() and run_id in LOCK.read_text(), "the killed run left no lock to detect"

    again, _again_id, _wall = run("release.yml", "-e", f"version={GOOD}", "-e", "release_lock_timeout=90")
    outputs.append(again.stdout + again.stderr)
    assert again.returncode == 0, again.stdout[-5000:]
    assert "stale" in flat(again).lower()
    assert served_version() == GOOD
    assert GOOD in ENV_FILE.read_text()


# --- input validation ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("playbook, extra, message", [
    ("release.yml", (), "version is required: pass -e version=v1.2.3"),
    ("release.yml", ("-e", '{"version": "v1.2.3; touch /tmp/pwned"}'), 'version "v1.2.3; touch /tmp/pwned" is not valid'),
    ("release.yml", ("-e", "version=" + "v" * 129), "is not valid: use 1 to 128 letters"),
    ("release.yml", ("-e", "version=v1.2.3", "-e", "release_environment=moon"), 'environment "moon" is unknown'),
    ("release.yml", ("-e", "version=v1.2.3", "-e", "target_environment=production"), "pick the inventory"),
    ("hotfix.yml", ("-e", "version=v1.2.3", "-e", "hotfix_ticket=INC-1"), "a hotfix needs a reason"),
    ("hotfix.yml", ("-e", "version=v1.2.3", "-e", '{"hotfix_reason": "login fails for every user"}'), "a ticket"),
])
def test_bad_input_stops_before_anything_changes(playbook, extra, message, outputs):
    before = ENV_FILE.read_text()
    chat_from = last_seq(CHAT)
    proc, _run_id, _wall = run(playbook, *extra)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert message in flat(proc), proc.stdout[-3000:]
    assert "Nothing was changed." in flat(proc)
    assert recap(proc.stdout)["changed"] == 0
    assert ENV_FILE.read_text() == before
    assert not chat_texts(chat_from)


# --- the hotfix path and the SSH path -----------------------------------------------------------------------------

def test_a_hotfix_follows_the_hotfix_policy(outputs):
    proc, run_id, _wall = run("hotfix.yml", "-e", "version=v1.2.4-slow", "-e", "hotfix_ticket=INC-42",
                              "-e", '{"hotfix_reason": "items export times out for large accounts"}', "-e",
                              "release_monitor_max_p95_ms=5000")
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert served_version() == "v1.2.4-slow"
    record = record_of(run_id)
    assert record["runbook"] == "hotfix" and record["outcome"] == "success"
    assert record.get("hotfix", {}).get("ticket") == "INC-42" or "INC-42" in json.dumps(record)
    assert "hotfix" in json.dumps(record.get("gate", {})) or "hotfix" in flat(proc)


def test_a_release_through_ssh_as_an_unprivileged_user_with_become(outputs):
    # Also the path without a monitoring window (window 0: no error rate or p95 to announce).
    proc, run_id, _wall = run("release.yml", "-e", f"version={GOOD}", "-e", "release_monitor_window_s=0",
                              inventory="local-ssh")
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert served_version() == GOOD
    record = record_of(run_id)
    assert record["outcome"] == "success" and record["environment"] == "local-ssh"
    assert "sandbox-ssh" in json.dumps(record)


# --- secrets ------------------------------------------------------------------------------------------------------

def test_secrets_are_absent_from_output_records_reports_and_process_arguments(outputs, secret_of):
    with ProcessArgs() as seen:
        proc, _run_id, _wall = run("release.yml", "-e", "version=v1.2.4-errors", "-e", "release_monitor_window_s=6")
    outputs.append(proc.stdout + proc.stderr)
    files = [p.read_text(errors="replace") for p in RECORDS.iterdir() if p.is_file()]
    check_secrets_absent(outputs + files + seen.args, secret_of)
