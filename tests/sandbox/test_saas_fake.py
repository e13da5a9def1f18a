"""Tests for sandbox/fakes/saas.py: the local Statuspage + Slack webhook stand-in.

Every test talks real HTTP over 127.0.0.1 to a real server process.
"""

from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO_ROOT = Path(__file__).resolve().parents[2]
SERVER = REPO_ROOT / "sandbox" / "fakes" / "saas.py"
PAGE_ID = "rbsbx0000001"
API_KEY = "sbx-key-7f3a9c2e51d84b06a1"
OTHER_KEY = "sbx-key-second-0c1d2e3f4a5b"
TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ID12 = re.compile(r"^[a-z0-9]{12}$")


def component_id(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:12]


API_ID, WEB_ID, WORKER_ID, DB_ID = (component_id(n) for n in ("API", "Web App", "Worker", "Database"))


class Fake:
    """A running server process plus convenience URLs and an authed session."""

    def __init__(self, workdir: Path, rate: float = 1000.0, state_file: Path | None = None,
                 sig: int = signal.SIGTERM, window: float | None = None):
        keys = workdir / "keys.txt"
        keys.write_text(f"{API_KEY}\n\n{OTHER_KEY}\n")
        cmd = [sys.executable, str(SERVER.relative_to(REPO_ROOT)),
               "--statuspage-port", "0", "--webhook-port", "0", "--host", "127.0.0.1",
               "--keys-file", str(keys), "--page-id", PAGE_ID, "--rate-limit-per-s", str(rate)]
        if state_file is not None:
            cmd += ["--state-file", str(state_file)]
        if window is not None:
            cmd += ["--rate-limit-window-s", str(window)]
        self.stop_signal = sig
        self.stderr = open(workdir / f"stderr-{time.monotonic_ns()}.log", "w")
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=self.stderr, text=True)
        line = self.proc.stdout.readline()
        assert line, f"server printed no ports line (exit code {self.proc.poll()})"
        ports = json.loads(line)
        assert set(ports) == {"statuspage_port", "webhook_port"}
        self.sp = f"http://127.0.0.1:{ports['statuspage_port']}"
        self.wh = f"http://127.0.0.1:{ports['webhook_port']}"
        self.v1 = f"{self.sp}/v1/pages/{PAGE_ID}"
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"OAuth {API_KEY}"

    def stop(self) -> int:
        self.http.close()
        self.proc.send_signal(self.stop_signal)
        try:
            code = self.proc.wait(timeout=5)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.stdout.close()
            self.stderr.close()
        assert code == 0, f"server exited with {code} after signal {self.stop_signal}"
        return code

    def records(self, base: str | None = None) -> list:
        resp = requests.get(f"{base or self.sp}/_sandbox/requests", timeout=5)
        assert resp.status_code == 200
        return resp.json()

    def create(self, **fields):
        resp = self.http.post(f"{self.v1}/incidents", json={"incident": fields}, timeout=5)
        assert resp.status_code == 201, resp.text
        return resp.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    fake = Fake(tmp_path_factory.mktemp("saas"))
    yield fake
    fake.stop()


@pytest.fixture
def fake(server):
    resp = requests.post(f"{server.sp}/_sandbox/reset", timeout=5)
    assert resp.json() == {"reset": True}
    return server


# ---------------------------------------------------------------- CLI


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "localhost"])
def test_refuses_non_loopback_host(tmp_path, host):
    keys = tmp_path / "keys"
    keys.write_text(API_KEY + "\n")
    proc = subprocess.run(
        [sys.executable, str(SERVER), "--statuspage-port", "0", "--webhook-port", "0", "--host", host,
         "--keys-file", str(keys), "--page-id", PAGE_ID],
        capture_output=True, text=True, timeout=10, check=False)
    assert proc.returncode == 2
    assert "loopback" in proc.stderr and host in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("content", [None, "\n   \n"])
def test_refuses_missing_or_empty_keys_file(tmp_path, content):
    keys = tmp_path / "keys"
    if content is not None:
        keys.write_text(content)
    proc = subprocess.run(
        [sys.executable, str(SERVER), "--statuspage-port", "0", "--webhook-port", "0",
         "--keys-file", str(keys), "--page-id", PAGE_ID],
        capture_output=True, text=True, timeout=10, check=False)
    assert proc.returncode == 2
    assert str(keys) in proc.stderr


@pytest.mark.parametrize("option", ["--rate-limit-per-s", "--rate-limit-window-s"])
def test_refuses_a_rate_limit_that_is_not_positive(tmp_path, option):
    keys = tmp_path / "keys"
    keys.write_text(API_KEY + "\n")
    proc = subprocess.run(
        [sys.executable, str(SERVER), "--statuspage-port", "0", "--webhook-port", "0",
         "--keys-file", str(keys), "--page-id", PAGE_ID, option, "0"],
        capture_output=True, text=True, timeout=10, check=False)
    assert proc.returncode == 2
    assert option + " must be positive" in proc.stderr


def test_health_on_both_ports(fake):
    for base in (fake.sp, fake.wh):
        resp = requests.get(f"{base}/_sandbox/health", timeout=5)
        assert resp.status_code == 200 and resp.json() == {"status": "ok"}


# ---------------------------------------------------------------- auth and routing


def test_auth_missing_wrong_and_query_param(fake):
    url = f"{fake.v1}/components"
    missing = requests.get(url, timeout=5)
    assert missing.status_code == 401 and missing.json() == {"error": "Could not authenticate"}
    wrong = requests.get(url, headers={"Authorization": "OAuth not-a-key"}, timeout=5)
    assert wrong.status_code == 401 and wrong.json() == {"error": "Could not authenticate"}
    wrong_scheme = requests.get(url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    assert wrong_scheme.status_code == 401
    by_query = requests.get(url, params={"api_key": API_KEY}, timeout=5)
    assert by_query.status_code == 200 and len(by_query.json()) == 4
    by_header = fake.http.get(url, timeout=5)
    assert by_header.status_code == 200

    records = fake.records()
    assert [r["status"] for r in records] == [401, 401, 401, 200, 200]
    assert [r["auth_ok"] for r in records] == [False, False, False, True, True]
    assert records[0]["key_sha256"] is None
    assert records[1]["key_sha256"] == hashlib.sha256(b"not-a-key").hexdigest()
    assert records[2]["headers"]["authorization"] == "Bearer ***"
    assert records[3]["query"] == {"api_key": ["***"]}
    assert records[3]["key_sha256"] == hashlib.sha256(API_KEY.encode()).hexdigest()
    assert records[4]["headers"]["authorization"] == "OAuth ***"
    assert [r["seq"] for r in records] == [1, 2, 3, 4, 5]


def test_routing_errors(fake):
    other_page = fake.http.get(f"{fake.sp}/v1/pages/zzzz00000000/incidents", timeout=5)
    assert other_page.status_code == 404 and other_page.json() == {"error": "Not found"}
    unknown = fake.http.get(f"{fake.v1}/subscribers", timeout=5)
    assert unknown.status_code == 404 and unknown.json() == {"error": "Not found"}
    unknown_incident = fake.http.get(f"{fake.v1}/incidents/aaaaaaaaaaaa", timeout=5)
    assert unknown_incident.status_code == 404
    wrong_method = fake.http.delete(f"{fake.v1}/components", timeout=5)
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()
    assert "GET" in wrong_method.headers["Allow"]
    options = fake.http.options(f"{fake.v1}/incidents", timeout=5)
    assert options.status_code == 405 and set(options.headers["Allow"].split(", ")) == {"GET", "POST"}
    malformed = fake.http.post(f"{fake.v1}/incidents", data="{not json",
                               headers={"Content-Type": "application/json"}, timeout=5)
    assert malformed.status_code == 400 and malformed.json()["error"].startswith("Malformed JSON")
    unwrapped = fake.http.post(f"{fake.v1}/incidents", json={"name": "no wrapper"}, timeout=5)
    assert unwrapped.status_code == 400
    assert unwrapped.json() == {"error": "param is missing or the value is empty: incident"}


def test_get_page_and_seeded_components(fake):
    page = fake.http.get(fake.v1, timeout=5)
    assert page.status_code == 200
    body = page.json()
    assert body["id"] == PAGE_ID and body["time_zone"] == "Etc/UTC"
    assert body["name"] and body["url"].startswith("https://")
    assert TIMESTAMP.match(body["updated_at"])

    components = fake.http.get(f"{fake.v1}/components", timeout=5).json()
    assert [c["name"] for c in components] == ["API", "Web App", "Worker", "Database"]
    assert [c["id"] for c in components] == [API_ID, WEB_ID, WORKER_ID, DB_ID]
    for position, comp in enumerate(components, start=1):
        assert ID12.match(comp["id"])
        assert comp["status"] == "operational" and comp["page_id"] == PAGE_ID
        assert comp["position"] == position and comp["group_id"] is None
        assert set(comp) >= {"description", "showcase", "created_at", "updated_at", "only_show_if_degraded",
                             "automation_email", "start_date"}


def test_json_body_with_wrong_content_type_is_accepted(fake):
    resp = fake.http.post(f"{fake.v1}/incidents", data=json.dumps({"incident": {"name": "text/plain body"}}),
                          headers={"Content-Type": "text/plain"}, timeout=5)
    assert resp.status_code == 201 and resp.json()["name"] == "text/plain body"


def test_form_encoded_incident(fake):
    resp = fake.http.post(f"{fake.v1}/incidents", data={
        "incident[name]": "Form incident", "incident[status]": "identified",
        "incident[component_ids][]": [API_ID, DB_ID], f"incident[components][{DB_ID}]": "partial_outage",
        "incident[deliver_notifications]": "false"}, timeout=5)
    assert resp.status_code == 201, resp.text
    body = resp.json()
    assert body["status"] == "identified" and body["impact"] == "major"
    assert [c["id"] for c in body["components"]] == [API_ID, DB_ID]
    assert body["incident_updates"][0]["deliver_notifications"] is False


# ---------------------------------------------------------------- incidents


def test_create_incident_full_shape(fake):
    metadata = {"runbook": {"change_id": "CHG-1042", "release": "2.4.0"}}
    resp = fake.http.post(f"{fake.v1}/incidents", json={"incident": {
        "name": "Release 2.4.0 degraded API", "status": "investigating", "body": "Looking into it.",
        "component_ids": [API_ID], "components": {API_ID: "degraded_performance", WORKER_ID: "partial_outage"},
        "metadata": metadata, "deliver_notifications": True}}, timeout=5)
    assert resp.status_code == 201
    inc = resp.json()
    assert ID12.match(inc["id"])
    assert inc["name"] == "Release 2.4.0 degraded API"
    assert inc["status"] == "investigating"
    assert inc["impact"] == "major"  # worst component is partial_outage
    assert inc["impact_override"] is None
    assert inc["page_id"] == PAGE_ID
    assert inc["metadata"] == metadata
    assert re.fullmatch(r"http://stspg\.io/\w+", inc["shortlink"])
    for name in ("created_at", "updated_at", "started_at"):
        assert TIMESTAMP.match(inc[name]), name
    assert inc["monitoring_at"] is None and inc["resolved_at"] is None
    assert inc["scheduled_for"] is None and inc["scheduled_until"] is None
    assert {c["id"]: c["status"] for c in inc["components"]} == {
        API_ID: "degraded_performance", WORKER_ID: "partial_outage"}

    assert len(inc["incident_updates"]) == 1
    update = inc["incident_updates"][0]
    assert ID12.match(update["id"]) and update["incident_id"] == inc["id"]
    assert update["status"] == "investigating" and update["body"] == "Looking into it."
    assert update["deliver_notifications"] is True
    assert update["tweet_id"] is None and update["twitter_updated_at"] is None
    assert update["custom_tweet"] is None and update["wants_twitter_update"] is False
    assert TIMESTAMP.match(update["display_at"]) and update["created_at"] == update["updated_at"]
    assert {a["code"]: (a["old_status"], a["new_status"]) for a in update["affected_components"]} == {
        API_ID: ("operational", "degraded_performance"), WORKER_ID: ("operational", "partial_outage")}

    # The component statuses really changed on the page.
    api = fake.http.get(f"{fake.v1}/components/{API_ID}", timeout=5).json()
    assert api["status"] == "degraded_performance"
    again = fake.http.get(f"{fake.v1}/incidents/{inc['id']}", timeout=5).json()
    assert again == inc


def test_impact_override(fake):
    inc = fake.create(name="Override", impact_override="critical")
    assert inc["impact"] == "critical" and inc["impact_override"] == "critical"
    assert inc["components"] == [] and inc["metadata"] == {}


def test_unresolved_scheduled_and_search(fake):
    open_inc = fake.create(name="Open one", body="alpha")
    resolved = fake.create(name="Closed one", status="resolved")
    maint = fake.create(name="DB upgrade", status="scheduled", scheduled_for="2031-01-01T02:00:00Z",
                        scheduled_until="2031-01-01T03:00:00Z")

    def ids(resp):
        return [i["id"] for i in resp.json()]

    assert ids(fake.http.get(f"{fake.v1}/incidents/unresolved", timeout=5)) == [open_inc["id"]]
    assert ids(fake.http.get(f"{fake.v1}/incidents/scheduled", timeout=5)) == [maint["id"]]
    assert ids(fake.http.get(f"{fake.v1}/incidents/upcoming", timeout=5)) == [maint["id"]]
    assert ids(fake.http.get(f"{fake.v1}/incidents/active_maintenance", timeout=5)) == []
    assert ids(fake.http.get(f"{fake.v1}/incidents", timeout=5)) == [maint["id"], resolved["id"], open_inc["id"]]
    assert ids(fake.http.get(f"{fake.v1}/incidents", params={"q": "ALPHA"}, timeout=5)) == [open_inc["id"]]
    assert ids(fake.http.get(f"{fake.v1}/incidents", params={"limit": 1, "page": 2}, timeout=5)) == [resolved["id"]]
    assert resolved["resolved_at"] is not None and TIMESTAMP.match(resolved["resolved_at"])


def test_update_adds_incident_update_and_resolve(fake):
    inc = fake.create(name="Deploy failing", body="Investigating", components={WEB_ID: "major_outage"})
    assert inc["impact"] == "critical"

    ident = fake.http.patch(f"{fake.v1}/incidents/{inc['id']}",
                            json={"incident": {"status": "identified", "body": "Bad config found"}}, timeout=5)
    assert ident.status_code == 200
    assert [u["status"] for u in ident.json()["incident_updates"]] == ["identified", "investigating"]
    assert ident.json()["incident_updates"][0]["body"] == "Bad config found"

    renamed = fake.http.patch(f"{fake.v1}/incidents/{inc['id']}", json={"incident": {"name": "Deploy 2.4 failing"}},
                              timeout=5).json()
    assert renamed["name"] == "Deploy 2.4 failing" and len(renamed["incident_updates"]) == 2

    monitoring = fake.http.put(f"{fake.v1}/incidents/{inc['id']}",
                               json={"incident": {"status": "monitoring", "components": {WEB_ID: "operational"}}},
                               timeout=5).json()
    assert monitoring["status"] == "monitoring" and TIMESTAMP.match(monitoring["monitoring_at"])
    assert monitoring["impact"] == "none"
    assert monitoring["incident_updates"][0]["affected_components"] == [
        {"code": WEB_ID, "name": "Web App", "old_status": "major_outage", "new_status": "operational"}]
    assert monitoring["resolved_at"] is None

    resolved = fake.http.patch(f"{fake.v1}/incidents/{inc['id']}",
                               json={"incident": {"status": "resolved", "body": "Fixed"}}, timeout=5).json()
    assert resolved["status"] == "resolved" and TIMESTAMP.match(resolved["resolved_at"])
    assert [u["status"] for u in resolved["incident_updates"]] == ["resolved", "monitoring", "identified",
                                                                   "investigating"]
    assert resolved["metadata"] == {}
    unresolved = fake.http.get(f"{fake.v1}/incidents/unresolved", timeout=5).json()
    assert unresolved == []


def test_edit_incident_update_and_delete(fake):
    inc = fake.create(name="Typo", body="Teh API is down")
    update_id = inc["incident_updates"][0]["id"]
    edited = fake.http.patch(f"{fake.v1}/incidents/{inc['id']}/incident_updates/{update_id}",
                             json={"incident_update": {"body": "The API is down", "deliver_notifications": False}},
                             timeout=5)
    assert edited.status_code == 200
    assert edited.json()["id"] == update_id and edited.json()["body"] == "The API is down"
    assert edited.json()["deliver_notifications"] is False
    current = fake.http.get(f"{fake.v1}/incidents/{inc['id']}", timeout=5).json()
    assert current["incident_updates"][0]["body"] == "The API is down"

    missing = fake.http.patch(f"{fake.v1}/incidents/{inc['id']}/incident_updates/zzzzzzzzzzzz",
                              json={"incident_update": {"body": "x"}}, timeout=5)
    assert missing.status_code == 404

    deleted = fake.http.delete(f"{fake.v1}/incidents/{inc['id']}", timeout=5)
    assert deleted.status_code == 200 and deleted.json()["id"] == inc["id"]
    assert fake.http.get(f"{fake.v1}/incidents/{inc['id']}", timeout=5).status_code == 404


def test_scheduled_maintenance_lifecycle(fake):
    maint = fake.create(name="Database maintenance", status="scheduled", body="Planned upgrade",
                        scheduled_for="2031-03-01T01:00:00+00:00", scheduled_until="2031-03-01T02:30:00Z",
                        scheduled_remind_prior=True, scheduled_auto_in_progress=False,
                        auto_transition_to_maintenance_state=True, auto_transition_to_operational_state=True,
                        component_ids=[DB_ID], metadata={"runbook": {"change_id": "CHG-7"}})
    assert maint["impact"] == "maintenance"
    assert maint["scheduled_for"] == "2031-03-01T01:00:00.000Z"
    assert maint["scheduled_until"] == "2031-03-01T02:30:00.000Z"
    assert maint["scheduled_remind_prior"] is True
    assert maint["components"][0]["status"] == "operational"

    started = fake.http.patch(f"{fake.v1}/incidents/{maint['id']}",
                              json={"incident": {"status": "in_progress", "body": "Started"}}, timeout=5).json()
    assert started["status"] == "in_progress" and started["resolved_at"] is None
    assert started["components"][0]["status"] == "under_maintenance"  # auto_transition_to_maintenance_state
    active = fake.http.get(f"{fake.v1}/incidents/active_maintenance", timeout=5).json()
    assert [i["id"] for i in active] == [maint["id"]]
    assert fake.http.get(f"{fake.v1}/incidents/scheduled", timeout=5).json() == []

    realtime_status = fake.http.patch(f"{fake.v1}/incidents/{maint['id']}",
                                      json={"incident": {"status": "resolved"}}, timeout=5)
    assert realtime_status.status_code == 422 and "status" in realtime_status.json()["error"]

    done = fake.http.patch(f"{fake.v1}/incidents/{maint['id']}",
                           json={"incident": {"status": "completed", "body": "Done"}}, timeout=5).json()
    assert done["status"] == "completed" and TIMESTAMP.match(done["resolved_at"])
    assert done["components"][0]["status"] == "operational"
    assert [u["status"] for u in done["incident_updates"]] == ["completed", "in_progress", "scheduled"]
    assert done["metadata"] == {"runbook": {"change_id": "CHG-7"}}
    assert fake.http.get(f"{fake.v1}/incidents/active_maintenance", timeout=5).json() == []


def test_component_patch_and_put(fake):
    patched = fake.http.patch(f"{fake.v1}/components/{WORKER_ID}",
                              json={"component": {"status": "partial_outage", "description": "Queue workers"}},
                              timeout=5)
    assert patched.status_code == 200
    assert patched.json()["status"] == "partial_outage" and patched.json()["description"] == "Queue workers"
    assert patched.json()["id"] == WORKER_ID and patched.json()["name"] == "Worker"
    put = fake.http.put(f"{fake.v1}/components/{WORKER_ID}", json={"component": {"status": "operational"}}, timeout=5)
    assert put.status_code == 200 and put.json()["status"] == "operational"
    assert put.json()["description"] == "Queue workers"

    bad = fake.http.patch(f"{fake.v1}/components/{WORKER_ID}", json={"component": {"status": "broken"}}, timeout=5)
    assert bad.status_code == 422 and "status" in bad.json()["error"]
    missing = fake.http.patch(f"{fake.v1}/components/zzzzzzzzzzzz", json={"component": {"status": "operational"}},
                              timeout=5)
    assert missing.status_code == 404

    fake.http.patch(f"{fake.v1}/components/{API_ID}", json={"component": {"status": "major_outage"}}, timeout=5)
    requests.post(f"{fake.sp}/_sandbox/reset", timeout=5)
    state = requests.get(f"{fake.sp}/_sandbox/state", timeout=5).json()
    assert {c["status"] for c in state["components"]} == {"operational"}
    assert state["incidents"] == []


@pytest.mark.parametrize(("fields", "needle"), [
    ({"status": "investigating"}, "name can't be blank"),
    ({"name": "   "}, "name can't be blank"),
    ({"name": "x", "status": "exploded"}, "status"),
    ({"name": "x", "impact_override": "catastrophic"}, "impact_override"),
    ({"name": "x", "component_ids": ["nope00000000"]}, "component_ids"),
    ({"name": "x", "components": {"nope00000000": "major_outage"}}, "components"),
    ({"name": "x", "components": {API_ID: "on_fire"}}, "status"),
    ({"name": "x", "metadata": ["not", "an", "object"]}, "metadata"),
    ({"name": "x", "status": "scheduled"}, "scheduled_for"),
    ({"name": "x", "status": "scheduled", "scheduled_for": "2031-01-01T02:00:00Z",
      "scheduled_until": "2031-01-01T01:00:00Z"}, "scheduled_until"),
])
def test_create_validation_422(fake, fields, needle):
    resp = fake.http.post(f"{fake.v1}/incidents", json={"incident": fields}, timeout=5)
    assert resp.status_code == 422
    assert needle in resp.json()["error"]
    assert fake.http.get(f"{fake.v1}/incidents", timeout=5).json() == []
    statuses = {c["status"] for c in fake.http.get(f"{fake.v1}/components", timeout=5).json()}
    assert statuses == {"operational"}  # a rejected request changes nothing


# ---------------------------------------------------------------- rate limit and faults


def test_rate_limit_one_per_second_over_a_rolling_window(tmp_path):
    """Statuspage's contract: 1 request/s per key "as measured on a 60 second rolling window" (here 3 s)."""
    limited = Fake(tmp_path, rate=1.0, window=3)
    try:
        url = f"{limited.v1}/incidents"
        burst = [limited.http.get(url, timeout=5) for _i in range(3)]
        over = limited.http.get(url, timeout=5)
        other_key = requests.get(url, headers={"Authorization": f"OAuth {OTHER_KEY}"}, timeout=5)
        assert [r.status_code for r in burst] == [200, 200, 200]  # a burst within the window's budget
        assert over.status_code == 429
        assert over.headers["Retry-After"] == "3"  # whole seconds until the oldest request leaves the window
        assert over.json() == {"error": "Rate limit exceeded"}
        assert other_key.status_code == 200  # limits are per key
        time.sleep(1.0)
        assert limited.http.get(url, timeout=5).status_code == 429  # rejected requests are not counted ...
        time.sleep(2.1)
        assert limited.http.get(url, timeout=5).status_code == 200  # ... and the window moves on
        assert [r["status"] for r in limited.records()] == [200, 200, 200, 429, 200, 429, 200]
    finally:
        limited.stop()


def test_rate_limit_without_bursts(tmp_path):
    """A window of 1 s at 1 request/s: every request one second after the last accepted one."""
    limited = Fake(tmp_path, rate=1.0, window=1)
    try:
        url = f"{limited.v1}/incidents"
        first, second = limited.http.get(url, timeout=5), limited.http.get(url, timeout=5)
        assert (first.status_code, second.status_code) == (200, 429)
        assert second.headers["Retry-After"] == "1"
        time.sleep(1.05)
        assert limited.http.get(url, timeout=5).status_code == 200
    finally:
        limited.stop()


def test_injected_faults(fake):
    added = requests.post(f"{fake.sp}/_sandbox/faults", json={"status": 500, "count": 2}, timeout=5)
    assert added.status_code == 201
    assert requests.get(f"{fake.sp}/_sandbox/faults", timeout=5).json() == [
        {"status": 500, "remaining": 2, "path_prefix": None}]
    url = f"{fake.v1}/incidents/unresolved"
    codes = [fake.http.get(url, timeout=5).status_code for _i in range(3)]
    assert codes == [500, 500, 200]
    assert requests.get(f"{fake.sp}/_sandbox/faults", timeout=5).json() == []
    records = fake.records()
    assert [(r["status"], r["fault_injected"]) for r in records] == [(500, True), (500, True), (200, False)]

    # path_prefix limits the fault; 429 faults carry Retry-After.
    requests.post(f"{fake.sp}/_sandbox/faults",
                  json={"status": 429, "count": 1, "path_prefix": f"/v1/pages/{PAGE_ID}/components"}, timeout=5)
    assert fake.http.get(f"{fake.v1}/incidents", timeout=5).status_code == 200
    throttled = fake.http.get(f"{fake.v1}/components", timeout=5)
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "1"
    assert fake.http.get(f"{fake.v1}/components", timeout=5).status_code == 200

    requests.post(f"{fake.wh}/_sandbox/faults", json={"status": 503, "count": 1}, timeout=5)
    assert requests.post(f"{fake.wh}/hooks/releases", json={"text": "x"}, timeout=5).status_code == 503
    assert requests.post(f"{fake.wh}/hooks/releases", json={"text": "x"}, timeout=5).status_code == 200

    bad = requests.post(f"{fake.sp}/_sandbox/faults", json={"status": 200, "count": 1}, timeout=5)
    assert bad.status_code == 400


# ---------------------------------------------------------------- webhook


def test_webhook_contract(fake):
    hook = f"{fake.wh}/hooks/release-notes_1"
    ok = requests.post(hook, json={"text": "Release 2.4.0 started"}, timeout=5)
    assert ok.status_code == 200 and ok.text == "ok"
    assert ok.headers["Content-Type"].startswith("text/plain")
    blocks = requests.post(hook, json={"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "*hi*"}}]},
                           timeout=5)
    assert blocks.status_code == 200 and blocks.text == "ok"
    empty = requests.post(hook, json={"username": "bot"}, timeout=5)
    assert empty.status_code == 400 and empty.text == "invalid_payload"
    malformed = requests.post(hook, data="{oops", headers={"Content-Type": "application/json"}, timeout=5)
    assert malformed.status_code == 400 and malformed.text == "invalid_payload"
    no_service = requests.post(f"{fake.wh}/services/T000/B000/XXX", json={"text": "x"}, timeout=5)
    assert no_service.status_code == 404 and no_service.text == "no_service"
    bad_name = requests.post(f"{fake.wh}/hooks/bad.name", json={"text": "x"}, timeout=5)
    assert bad_name.status_code == 404 and bad_name.text == "no_service"

    records = fake.records(fake.wh)
    assert [(r["path"], r["status"]) for r in records] == [
        ("/hooks/release-notes_1", 200), ("/hooks/release-notes_1", 200), ("/hooks/release-notes_1", 400),
        ("/hooks/release-notes_1", 400), ("/services/T000/B000/XXX", 404), ("/hooks/bad.name", 404)]
    assert records[0]["body"] == {"text": "Release 2.4.0 started"}
    assert records[0]["headers"]["content-type"] == "application/json"
    assert records[3]["body"] == "{oops"
    # Ports keep separate records.
    assert fake.records(fake.sp) == []
    assert requests.delete(f"{fake.wh}/_sandbox/requests", timeout=5).status_code == 200
    assert fake.records(fake.wh) == []
    wrong_method = requests.get(hook, timeout=5)
    assert wrong_method.status_code == 405 and wrong_method.text == "invalid_method"
    form = requests.post(hook, data={"payload": json.dumps({"text": "form post"})}, timeout=5)
    assert form.status_code == 200 and form.text == "ok"
    assert [r["status"] for r in fake.records(fake.wh)] == [405, 200]


# ---------------------------------------------------------------- secrets and persistence


def test_records_never_contain_the_key(fake):
    fake.http.get(f"{fake.v1}/incidents", timeout=5)
    requests.get(f"{fake.v1}/incidents", params={"api_key": API_KEY, "q": "x"}, timeout=5)
    # Even a key pasted into a body is masked in the record.
    fake.http.post(f"{fake.v1}/incidents", json={"incident": {"name": f"leak {API_KEY}"}}, timeout=5)
    requests.post(f"{fake.wh}/hooks/ops", json={"text": f"key={API_KEY}"},
                  headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)

    sp_text = requests.get(f"{fake.sp}/_sandbox/requests", timeout=5).text
    wh_text = requests.get(f"{fake.wh}/_sandbox/requests", timeout=5).text
    assert API_KEY not in sp_text and API_KEY not in wh_text
    digest = hashlib.sha256(API_KEY.encode()).hexdigest()
    sp_records, wh_records = json.loads(sp_text), json.loads(wh_text)
    assert [r["key_sha256"] for r in sp_records] == [digest] * 3
    assert sp_records[0]["headers"]["authorization"] == "OAuth ***"
    assert sp_records[1]["query"] == {"api_key": ["***"], "q": ["x"]}
    assert sp_records[2]["body"] == {"incident": {"name": "leak ***"}}
    assert wh_records[0]["headers"]["authorization"] == "Bearer ***"
    assert wh_records[0]["body"] == {"text": "key=***"}
    assert sp_records[0]["headers"]["host"] == fake.sp.removeprefix("http://")


def test_state_persists_across_restart(tmp_path):
    state_file = tmp_path / "state.json"
    first = Fake(tmp_path, state_file=state_file, sig=signal.SIGINT)
    try:
        inc = first.create(name="Survives restart", body="still here", components={API_ID: "partial_outage"},
                           metadata={"runbook": {"change_id": "CHG-9"}})
        requests.post(f"{first.wh}/hooks/ops", json={"text": "persist me"}, timeout=5)
        requests.get(f"{first.v1}/incidents", params={"api_key": API_KEY}, timeout=5)
        first_sp_records = first.records()
    finally:
        first.stop()  # SIGINT must also exit cleanly

    text = state_file.read_text()
    assert API_KEY not in text and OTHER_KEY not in text
    saved = json.loads(text)
    assert [i["id"] for i in saved["incidents"]] == [inc["id"]]
    assert not list(tmp_path.glob(".saas-state-*"))  # no temp files left behind

    second = Fake(tmp_path, state_file=state_file)
    try:
        again = second.http.get(f"{second.v1}/incidents/{inc['id']}", timeout=5)
        assert again.status_code == 200
        assert again.json() == inc
        api = second.http.get(f"{second.v1}/components/{API_ID}", timeout=5).json()
        assert api["status"] == "partial_outage"
        sp_records = second.records()
        assert sp_records[:len(first_sp_records)] == first_sp_records
        # Numbering continues after the restart instead of starting again at 1.
        assert [r["seq"] for r in sp_records] == [1, 2, 3, 4]
        assert [r["body"] for r in second.records(second.wh)] == [{"text": "persist me"}]
    finally:
        second.stop()
