"""runbook.release.statuspage_update, run as Ansible runs it (a subprocess with its arguments file) against a real
process of the Statuspage stand-in (sandbox/fakes/saas.py) on ephemeral ports. No HTTP is mocked: what the
module sent is read back from the stand-in's /_sandbox/requests.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[4]
SERVER = REPO / "sandbox" / "fakes" / "saas.py"
MODULE = "ansible_collections.runbook.release.plugins.modules.statuspage_update"
PAGE_ID = "rbsbx0000001"
API_KEY = "sbx-unit-key-4c1f9e7a2b3d5e6f7a8b"
KEY_SHA = hashlib.sha256(API_KEY.encode()).hexdigest()
# The stand-in's component ids: the first 12 hex digits of sha1(name).
API_ID = hashlib.sha1(b"API").hexdigest()[:12]
WORKER_ID = hashlib.sha1(b"Worker").hexdigest()[:12]
INCIDENTS = f"/v1/pages/{PAGE_ID}/incidents"


class Fake:
    """A running saas.py process; ``run()`` runs the module against it."""

    def __init__(self, workdir: Path, rate: float, window: float = 60.0):
        self.workdir = workdir
        (workdir / "keys").write_text(API_KEY + "\n")
        self.log = open(workdir / "fake.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--host", "127.0.0.1", "--statuspage-port", "0", "--webhook-port", "0",
             "--keys-file", str(workdir / "keys"), "--page-id", PAGE_ID, "--rate-limit-per-s", str(rate),
             "--rate-limit-window-s", str(window)],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        ports = json.loads(self.proc.stdout.readline())
        self.base = f"http://127.0.0.1:{ports['statuspage_port']}"
        self.api_url = self.base + "/v1"
        # Pacing files go here, not in the machine's /tmp.
        self.tmpdir = workdir / "tmp"
        self.tmpdir.mkdir()
        self.output = ""

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.proc.stdout.close()
        self.log.close()

    def reset(self):
        assert requests.post(self.base + "/_sandbox/reset", timeout=5).json() == {"reset": True}

    def records(self):
        return requests.get(self.base + "/_sandbox/requests", timeout=5).json()

    def clear_records(self):
        requests.delete(self.base + "/_sandbox/requests", timeout=5)

    def state(self):
        return requests.get(self.base + "/_sandbox/state", timeout=5).json()

    def fault(self, status, count, path_prefix=None):
        spec = {"status": status, "count": count, "path_prefix": path_prefix}
        assert requests.post(self.base + "/_sandbox/faults", json=spec, timeout=5).status_code == 201

    def run(self, check=False, diff=False, env=None, with_key=True, rps=1000, **args):
        """Run the module like Ansible does; return its result. ``self.output`` keeps all it printed."""
        module_args = {"page_id": PAGE_ID, "api_url": self.api_url, "requests_per_second": rps,
                       "_ansible_check_mode": check, "_ansible_diff": diff, **args}
        if with_key:
            module_args.setdefault("api_key", API_KEY)
        args_file = self.workdir / f"args-{time.monotonic_ns()}.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": module_args}))
        environ = {k: v for k, v in os.environ.items() if k != "STATUSPAGE_API_KEY"}
        environ.update(PYTHONPATH=str(REPO / "collections"), TMPDIR=str(self.tmpdir), **(env or {}))
        proc = subprocess.run([sys.executable, "-m", MODULE, str(args_file)], capture_output=True, text=True,
                              env=environ, cwd=self.workdir, timeout=120, check=False)
        self.output = proc.stdout + proc.stderr
        try:
            result = json.loads(proc.stdout)
        except ValueError:
            pytest.fail(f"module printed no JSON (rc={proc.returncode}):\n{self.output}")
        assert API_KEY not in self.output, "the API key leaked into the module's output"
        return result


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    fake = Fake(tmp_path_factory.mktemp("statuspage"), rate=1000)
    yield fake
    fake.stop()


@pytest.fixture
def fake(server):
    server.reset()
    return server


def writes(records):
    return [(r["method"], r["path"]) for r in records if r["method"] != "GET"]


def window(hours_from_now=1, length_h=1):
    start = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=hours_from_now)
    return start.strftime("%Y-%m-%dT%H:%M:%SZ"), (start + timedelta(hours=length_h)).strftime("%Y-%m-%dT%H:%M:%SZ")


OPEN = {"state": "incident_open", "change_id": "run-7f3a-incident", "name": "Release v1.2.3",
        "body": "Deploying v1.2.3", "components": {"API": "degraded_performance"}}


# ------------------------------------------------------------------------------------------------ incidents


def test_incident_open_rerun_update_resolve_rerun(fake):
    opened = fake.run(**OPEN)
    assert opened["changed"] is True and opened["status"] == "investigating"
    assert opened["components"] == {"API": "degraded_performance"}
    incident_id = opened["incident_id"]
    assert opened["release_data"] == {"statuspage": {"incident_ids": [incident_id]}}
    assert opened["shortlink"].startswith("http://stspg.io/")
    post = fake.records()[-1]
    assert (post["method"], post["path"], post["status"]) == ("POST", INCIDENTS, 201)
    assert post["body"] == {"incident": {
        "name": "Release v1.2.3", "status": "investigating", "body": "Deploying v1.2.3",
        "components": {API_ID: "degraded_performance"}, "deliver_notifications": True,
        "metadata": {"runbook_release": {"change_id": "run-7f3a-incident"}}}}
    assert post["headers"]["authorization"] == "OAuth ***" and post["key_sha256"] == KEY_SHA
    assert post["headers"]["content-type"] == "application/json"
    assert post["headers"]["user-agent"].startswith("runbook.release-statuspage/")

    fake.clear_records()
    again = fake.run(**OPEN)
    assert again["changed"] is False and again["incident_id"] == incident_id
    assert writes(fake.records()) == []
    assert again["api_requests"] == [f"GET /v1/pages/{PAGE_ID}/components -> 200",
                                     f"GET {INCIDENTS}/unresolved -> 200"]

    update = {"state": "incident_update", "change_id": "run-7f3a-incident", "incident_status": "identified",
              "body": "Rolling back to v1.2.2\n", "impact": "major", "components": {"API": "partial_outage"}}
    fake.clear_records()
    updated = fake.run(**update)
    assert updated["changed"] is True and updated["status"] == "identified"
    assert writes(fake.records()) == [("PATCH", f"{INCIDENTS}/{incident_id}")]
    assert fake.records()[-1]["body"] == {"incident": {
        "status": "identified", "body": "Rolling back to v1.2.2\n", "impact_override": "major",
        "components": {API_ID: "partial_outage"}, "deliver_notifications": True}}
    fake.clear_records()
    assert fake.run(**update)["changed"] is False  # the trailing newline the API keeps or drops is not a change
    assert writes(fake.records()) == []

    resolve = {"state": "incident_resolved", "change_id": "run-7f3a-incident", "body": "Rolled back; all good.",
               "components": {"API": "operational"}}
    resolved = fake.run(**resolve)
    assert resolved["changed"] is True and resolved["status"] == "resolved"
    assert resolved["components"] == {"API": "operational"}
    assert resolved["release_data"] == {"statuspage": {"incident_ids": [incident_id]}}
    fake.clear_records()
    again = fake.run(**resolve)
    assert again["changed"] is False and again["incident_id"] == incident_id and again["status"] == "resolved"
    # A resolved incident gets no new message, whatever the text (a cleanup task may carry another one).
    assert fake.run(**dict(resolve, body="Cleanup"))["changed"] is False
    assert [r["path"] for r in fake.records()][:3] == [f"/v1/pages/{PAGE_ID}/components", f"{INCIDENTS}/unresolved",
                                                       INCIDENTS]
    assert writes(fake.records()) == []
    [incident] = fake.state()["incidents"]
    assert [u["status"] for u in incident["incident_updates"]] == ["resolved", "identified", "investigating"]


def test_open_keeps_a_later_status_and_updates_only_what_differs(fake):
    opened = fake.run(**OPEN)
    fake.run(state="incident_update", change_id=OPEN["change_id"], incident_status="monitoring")
    # Rerunning the opening task must not move the incident back to investigating.
    assert fake.run(**OPEN)["changed"] is False
    renamed = fake.run(**dict(OPEN, name="Release v1.2.3 (retry)"))
    assert renamed["changed"] is True and renamed["status"] == "monitoring"
    assert fake.records()[-1]["body"] == {"incident": {"name": "Release v1.2.3 (retry)", "deliver_notifications": True}}
    assert len(fake.state()["incidents"]) == 1 and renamed["incident_id"] == opened["incident_id"]


def test_update_and_resolve_need_an_incident(fake):
    result = fake.run(state="incident_update", change_id="nope", body="x")
    assert result["failed"] and "no open incident carries change_id 'nope'" in result["msg"]
    assert "state=incident_open" in result["msg"]
    result = fake.run(state="incident_resolved", change_id="nope")
    assert result["failed"] and "nothing to resolve" in result["msg"]
    fake.run(**OPEN)
    fake.run(state="incident_resolved", change_id=OPEN["change_id"])
    result = fake.run(state="incident_update", change_id=OPEN["change_id"], body="late")
    assert result["failed"] and "is already resolved" in result["msg"]
    assert writes(fake.records()) == [("POST", INCIDENTS), ("PATCH", f"{INCIDENTS}/{fake.state()['incidents'][0]['id']}")]


# ------------------------------------------------------------------------------------------------ maintenance


def test_maintenance_scheduled_in_progress_completed(fake):
    starts, ends = window()
    schedule = {"state": "maintenance_scheduled", "change_id": "run-7f3a-maintenance", "name": "Release v1.2.3",
                "body": "Deploying v1.2.3", "scheduled_for": starts, "scheduled_until": ends,
                "components": {"API": "operational", "Worker": "operational"}}
    scheduled = fake.run(**schedule)
    assert scheduled["changed"] is True and scheduled["status"] == "scheduled"
    post = fake.records()[-1]["body"]["incident"]
    assert post["status"] == "scheduled" and post["scheduled_for"] == starts.replace("Z", ".000Z")
    assert post["scheduled_until"] == ends.replace("Z", ".000Z")
    maintenance_id = scheduled["incident_id"]
    # The same window written with an offset is the same window.
    offset = (datetime.fromisoformat(starts.replace("Z", "+00:00")).astimezone(timezone(timedelta(hours=2)))).isoformat()
    fake.clear_records()
    assert fake.run(**dict(schedule, scheduled_for=offset))["changed"] is False
    assert [r["path"] for r in fake.records()] == [f"/v1/pages/{PAGE_ID}/components", f"{INCIDENTS}/scheduled",
                                                   f"{INCIDENTS}/active_maintenance"]

    start = {"state": "maintenance_in_progress", "change_id": "run-7f3a-maintenance", "body": "Started",
             "components": {"API": "under_maintenance"}}
    started = fake.run(**start)
    assert started["changed"] is True and started["status"] == "in_progress"
    assert started["components"] == {"API": "under_maintenance", "Worker": "operational"}
    assert fake.run(**start)["changed"] is False
    # Rerunning the scheduling task does not move it back (and says so).
    rescheduled = fake.run(**schedule)
    assert rescheduled["changed"] is False and rescheduled["status"] == "in_progress"
    assert "does not move it or its components back" in json.dumps(rescheduled["warnings"])
    assert rescheduled["components"] == {"API": "under_maintenance", "Worker": "operational"}

    complete = {"state": "maintenance_completed", "change_id": "run-7f3a-maintenance", "body": "Done",
                "components": {"API": "operational"}}
    completed = fake.run(**complete)
    assert completed["changed"] is True and completed["status"] == "completed"
    assert completed["incident_id"] == maintenance_id
    assert fake.run(**complete)["changed"] is False
    state = fake.state()
    assert [i["status"] for i in state["incidents"]] == ["completed"]
    assert {c["name"]: c["status"] for c in state["components"]}["API"] == "operational"


def test_maintenance_in_progress_can_start_a_new_one_or_fails_clearly(fake):
    result = fake.run(state="maintenance_in_progress", change_id="m-1")
    assert result["failed"] and "schedule it first with state=maintenance_scheduled" in result["msg"]
    starts, ends = window(hours_from_now=0)
    started = fake.run(state="maintenance_in_progress", change_id="m-1", name="Emergency maintenance",
                       scheduled_for=starts, scheduled_until=ends)
    assert started["changed"] is True and started["status"] == "in_progress"
    fake.run(state="maintenance_completed", change_id="m-1")
    again = fake.run(state="maintenance_in_progress", change_id="m-1", name="Emergency maintenance",
                     scheduled_for=starts, scheduled_until=ends)
    assert again["failed"] and "is already completed" in again["msg"]
    assert len(fake.state()["incidents"]) == 1


# ------------------------------------------------------------------------------------------------ components


def test_component_state(fake):
    wanted = {"state": "component", "components": {"Worker": "degraded_performance", "API": "operational"}}
    result = fake.run(diff=True, **wanted)
    assert result["changed"] is True and result["incident_id"] is None and result["status"] is None
    assert result["components"] == {"Worker": "degraded_performance", "API": "operational"}
    assert result["release_data"] == {"statuspage": {"incident_ids": []}}
    assert result["diff"] == {"before": {"components": {"Worker": "operational", "API": "operational"}},
                              "after": {"components": {"Worker": "degraded_performance", "API": "operational"}}}
    assert writes(fake.records()) == [("PATCH", f"/v1/pages/{PAGE_ID}/components/{WORKER_ID}")]
    assert fake.records()[-1]["body"] == {"component": {"status": "degraded_performance"}}
    fake.clear_records()
    assert fake.run(**wanted)["changed"] is False
    assert writes(fake.records()) == []


# ------------------------------------------------------------------------------------------------ check and diff


def test_check_mode_sends_only_gets(fake):
    predicted = fake.run(check=True, diff=True, **OPEN)
    assert predicted["changed"] is True and predicted["incident_id"] is None
    assert predicted["status"] == "investigating" and predicted["components"] == {"API": "degraded_performance"}
    assert predicted["release_data"] == {"statuspage": {"incident_ids": []}}
    assert predicted["diff"]["before"] == {}
    assert predicted["diff"]["after"]["status"] == "investigating"
    opened = fake.run(**OPEN)
    fake.clear_records()
    for args in ({"state": "incident_update", "change_id": OPEN["change_id"], "incident_status": "identified"},
                 {"state": "incident_resolved", "change_id": OPEN["change_id"]},
                 {"state": "component", "components": {"Database": "major_outage"}}):
        result = fake.run(check=True, **args)
        assert result["changed"] is True
    assert {r["method"] for r in fake.records()} == {"GET"}
    state = fake.state()
    assert [i["status"] for i in state["incidents"]] == ["investigating"]
    assert {c["status"] for c in state["components"] if c["name"] != "API"} == {"operational"}
    assert fake.run(check=True, **OPEN)["changed"] is False
    assert opened["incident_id"] == state["incidents"][0]["id"]


def test_diff_shows_status_body_impact_and_components(fake):
    fake.run(**OPEN)
    result = fake.run(check=True, diff=True, state="incident_update", change_id=OPEN["change_id"],
                      incident_status="monitoring", body="A fix is out", impact="minor",
                      components={"API": "operational", "Web App": "degraded_performance"})
    assert result["diff"] == {
        "before": {"name": "Release v1.2.3", "status": "investigating", "body": "Deploying v1.2.3", "impact": None,
                   "components": {"API": "degraded_performance"}},
        "after": {"name": "Release v1.2.3", "status": "monitoring", "body": "A fix is out", "impact": "minor",
                  "components": {"API": "operational", "Web App": "degraded_performance"}},
    }
    real = fake.run(diff=True, state="incident_update", change_id=OPEN["change_id"], incident_status="monitoring",
                    body="A fix is out", impact="minor",
                    components={"API": "operational", "Web App": "degraded_performance"})
    assert real["diff"] == result["diff"]
    assert real["status"] == "monitoring"


# ------------------------------------------------------------------------------------------------ retries


def test_429_is_retried_after_retry_after(fake):
    fake.fault(429, 2)
    started = time.monotonic()
    result = fake.run(**OPEN)
    assert result["changed"] is True
    assert time.monotonic() - started >= 2.0  # Retry-After: 1, twice
    assert [(r["status"], r["fault_injected"]) for r in fake.records()] == [
        (429, True), (429, True), (200, False), (200, False), (201, False)]
    assert result["api_requests"][:3] == [f"GET /v1/pages/{PAGE_ID}/components -> 429"] * 2 + [
        f"GET /v1/pages/{PAGE_ID}/components -> 200"]


def test_5xx_exhausting_retries_fails_with_status_path_and_body(fake):
    fake.fault(500, 10, path_prefix=f"{INCIDENTS}/unresolved")
    result = fake.run(retries=2, **OPEN)
    assert result["failed"] is True and result["changed"] is False
    assert result["msg"].startswith(f"Statuspage API GET {INCIDENTS}/unresolved answered HTTP 500 after 3 attempts: ")
    assert '{"error": "Internal Server Error"}' in result["msg"]
    assert result["http_status"] == 500 and result["path"] == f"{INCIDENTS}/unresolved"
    assert result["response_body"] == '{"error": "Internal Server Error"}'
    assert writes(fake.records()) == []
    assert API_KEY not in fake.output


def test_a_wrong_key_fails_without_showing_it(fake):
    wrong = "sbx-wrong-key-0000111122223333"
    result = fake.run(api_key=wrong, **OPEN)
    assert result["failed"] and result["http_status"] == 401 and "check api_key" in result["msg"]
    assert wrong not in fake.output
    assert fake.records()[0]["key_sha256"] == hashlib.sha256(wrong.encode()).hexdigest()


# ------------------------------------------------------------------------------------------------ bad input


def test_unknown_component_fails_before_any_write(fake):
    result = fake.run(**dict(OPEN, components={"API": "operational", "Payments": "major_outage"}))
    assert result["failed"] is True
    assert result["msg"] == ("components: unknown component name(s) 'Payments' on this page; known names: 'API', "
                             "'Database', 'Web App', 'Worker' (names are case-sensitive)")
    assert [r["method"] for r in fake.records()] == ["GET"]


def test_missing_api_key_fails_clearly_and_env_fallback_works(fake):
    result = fake.run(with_key=False, **OPEN)
    assert result["failed"] is True and "api_key is not set" in result["msg"] and "STATUSPAGE_API_KEY" in result["msg"]
    assert fake.records() == []
    from_env = fake.run(with_key=False, env={"STATUSPAGE_API_KEY": API_KEY}, **OPEN)
    assert from_env["changed"] is True


@pytest.mark.parametrize("args, expected", [
    ({"state": "incident_open", "change_id": "c1"}, "state=incident_open needs name (got None)"),
    ({"state": "incident_update"}, "state=incident_update needs change_id"),
    ({"state": "maintenance_scheduled", "change_id": "c1", "name": "M", "scheduled_for": "2031-03-01T01:00:00Z"},
     "state=maintenance_scheduled needs scheduled_until"),
    ({"state": "maintenance_scheduled", "change_id": "c1", "name": "M", "scheduled_for": "2031-03-01T02:00:00Z",
      "scheduled_until": "2031-03-01T01:00:00Z"},
     "scheduled_until (2031-03-01T01:00:00.000Z) must be after scheduled_for (2031-03-01T02:00:00.000Z)"),
    ({"state": "maintenance_scheduled", "change_id": "c1", "name": "M", "scheduled_for": "2031-03-01 01:00",
      "scheduled_until": "2031-03-01T02:00:00Z"}, "scheduled_for='2031-03-01 01:00' is not a usable time (no time zone)"),
    ({"state": "maintenance_scheduled", "change_id": "c1", "name": "M", "scheduled_for": "tomorrow",
      "scheduled_until": "2031-03-01T02:00:00Z"}, "scheduled_for='tomorrow' is not a usable time"),
    ({"state": "incident_open", "change_id": "c1", "name": "I", "incident_status": "resolved"},
     "value of incident_status must be one of: investigating, identified, monitoring, got: resolved"),
    ({"state": "incident_open", "change_id": "c1", "name": "I", "components": {"API": "down"}},
     "components: 'API' has status 'down', which is not a component status; use one of operational"),
    ({"state": "maintenance_completed", "change_id": "c1", "incident_status": "identified"},
     "incident_status='identified' does not apply to state=maintenance_completed"),
    ({"state": "component", "components": {}}, "state=component needs components"),
    ({"state": "component", "components": {"API": "operational"}, "body": "x"}, "body='x' does not apply to state=component"),
    ({"state": "incident_open", "change_id": "c1", "name": "x" * 256}, "name is 256 characters long"),
])
def test_bad_input_fails_before_any_request(fake, args, expected):
    result = fake.run(**args)
    assert result["failed"] is True
    assert expected in result["msg"]
    assert fake.records() == []


def test_window_reversed_against_the_existing_maintenance_fails_before_writing(fake):
    starts, ends = window()
    fake.run(state="maintenance_scheduled", change_id="m-2", name="M", scheduled_for=starts, scheduled_until=ends)
    fake.clear_records()
    early = (datetime.fromisoformat(starts.replace("Z", "+00:00")) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    result = fake.run(state="maintenance_in_progress", change_id="m-2", scheduled_until=early)
    assert result["failed"] and "must be after scheduled_for" in result["msg"]
    assert writes(fake.records()) == []


# ------------------------------------------------------------------------------------------------ secrets, pacing


def test_the_key_is_in_no_output_no_record_and_no_pacing_file(fake):
    outputs = []
    for args in (dict(diff=True, **OPEN), dict(check=True, diff=True, **OPEN), dict(retries=1, **OPEN),
                 dict(OPEN, components={"Nope": "operational"})):
        if args.get("retries") == 1:
            fake.fault(503, 2)
        fake.run(**args)
        outputs.append(fake.output)
    assert all(API_KEY not in text for text in outputs)
    assert API_KEY not in requests.get(fake.base + "/_sandbox/requests", timeout=5).text
    pace_files = list(fake.tmpdir.glob("runbook-release-statuspage-*.pace"))
    assert pace_files
    for pace_file in pace_files:
        assert API_KEY[:8] not in pace_file.name
        [float(line) for line in pace_file.read_text().split()]  # only the times of the last window's requests
        assert oct(pace_file.stat().st_mode & 0o777) == "0o600"


def test_pacing_keeps_the_rolling_window_across_processes(tmp_path):
    """The stand-in enforces the rate over a rolling window, as Statuspage does (here 2 per 1 s): parallel tasks
    may burst up to the window's budget, and must queue beyond it instead of meeting 429s."""
    limited = Fake(tmp_path, rate=2.0, window=1.0)
    try:
        args_files, procs = [], []
        started = time.monotonic()
        for number in range(4):
            args_file = tmp_path / f"args{number}.json"
            args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {
                "api_key": API_KEY, "page_id": PAGE_ID, "api_url": limited.api_url, "retries": 0,
                "requests_per_second": 2, "rate_limit_window": 1,
                "state": "component", "components": {"API": "operational"}}}))
            args_files.append(args_file)
        environ = dict(os.environ, PYTHONPATH=str(REPO / "collections"), TMPDIR=str(limited.tmpdir))
        for args_file in args_files:
            procs.append(subprocess.Popen([sys.executable, "-m", MODULE, str(args_file)], stdout=subprocess.PIPE,
                                          stderr=subprocess.STDOUT, text=True, env=environ))
        results = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
        elapsed = time.monotonic() - started
        assert [r.get("failed", False) for r in results] == [False] * 4, results
        records = limited.records()
        assert len(records) >= 4
        assert [r["status"] for r in records] == [200] * len(records)  # retries=0: a 429 would have failed a task
        times = [datetime.fromisoformat(r["time"].replace("Z", "+00:00")) for r in records]
        # Any request is at least a window after the one two before it; two in a row may come at once.
        spans = [(later - earlier).total_seconds() for earlier, later in zip(times, times[2:])]
        assert min(spans) >= 0.99, spans
        assert elapsed >= (len(records) - 2) / 2 * 0.99
    finally:
        limited.stop()
