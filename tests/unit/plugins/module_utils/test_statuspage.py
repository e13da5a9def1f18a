"""module_utils/_statuspage: the client against a real process of the Statuspage stand-in, and the planning
functions on their own. Sleeps of the retry loop are recorded instead of slept, so backoff is checked exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import requests

from ansible_collections.runbook.release.plugins.module_utils import _statuspage as sp

REPO = Path(__file__).resolve().parents[4]
PAGE_ID = "rbsbx0000001"
API_KEY = "sbx-utils-key-0a1b2c3d4e5f60718293"
API_ID = hashlib.sha1(b"API").hexdigest()[:12]
INCIDENTS = f"/v1/pages/{PAGE_ID}/incidents"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("statuspage-utils")
    (workdir / "keys").write_text(API_KEY + "\n")
    with open(workdir / "fake.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(REPO / "sandbox" / "fakes" / "saas.py"), "--host", "127.0.0.1",
             "--statuspage-port", "0", "--webhook-port", "0", "--keys-file", str(workdir / "keys"),
             "--page-id", PAGE_ID, "--rate-limit-per-s", "1000"],
            stdout=subprocess.PIPE, stderr=log, text=True)
        base = "http://127.0.0.1:%d" % json.loads(proc.stdout.readline())["statuspage_port"]
        yield base
        proc.terminate()
        proc.wait(timeout=10)
        proc.stdout.close()


@pytest.fixture
def base(server):
    requests.post(server + "/_sandbox/reset", timeout=5)
    return server


def client(base, tmp_path, delays, **kwargs):
    pacer = sp.Pacer(API_KEY, base + "/v1", 1000, directory=str(tmp_path))
    return sp.StatuspageClient(API_KEY, PAGE_ID, api_url=base + "/v1", pacer=pacer, sleep=delays.append, **kwargs)


def records(base):
    return [(r["method"], r["path"], r["status"]) for r in requests.get(base + "/_sandbox/requests", timeout=5).json()]


def fault(base, status, count, path_prefix=None):
    requests.post(base + "/_sandbox/faults", json={"status": status, "count": count, "path_prefix": path_prefix}, timeout=5)


# ------------------------------------------------------------------------------------------------ client


def test_backoff_is_exponential_and_retry_after_wins(base, tmp_path):
    delays = []
    fault(base, 500, 3)
    assert len(client(base, tmp_path, delays).list_components()) == 4
    assert delays == [1.0, 2.0, 4.0]
    delays.clear()
    fault(base, 429, 2)
    client(base, tmp_path, delays).list_components()
    assert delays == [1.0, 1.0]  # Retry-After: 1, not the backoff


def test_a_create_that_failed_with_5xx_is_checked_before_it_is_sent_again(base, tmp_path):
    delays = []
    api = client(base, tmp_path, delays)
    fault(base, 503, 1, path_prefix=INCIDENTS)
    created = api.create_incident({"name": "R", "status": "investigating", "metadata": sp.change_metadata("c-9")},
                                  "c-9", "realtime")
    assert sp.change_id_of(created) == "c-9"
    assert records(base) == [("POST", INCIDENTS, 503), ("GET", INCIDENTS + "/unresolved", 200), ("POST", INCIDENTS, 201)]
    assert len(requests.get(base + "/_sandbox/state", timeout=5).json()["incidents"]) == 1


def test_an_update_that_failed_with_5xx_is_checked_and_posted_once(base, tmp_path):
    delays = []
    api = client(base, tmp_path, delays)
    incident = api.create_incident({"name": "R", "status": "investigating", "body": "first",
                                    "metadata": sp.change_metadata("c-10")}, "c-10", "realtime")
    path = f"{INCIDENTS}/{incident['id']}"
    fault(base, 500, 1, path_prefix=path)
    desired = {"status": "identified", "body": "second"}
    fields = sp.plan_incident(incident, desired, {})[0]
    updated = api.update_incident(incident["id"], fields, desired, {})
    assert updated["status"] == "identified"
    assert records(base)[1:] == [("PATCH", path, 500), ("GET", path, 200), ("PATCH", path, 200)]
    assert [u["body"] for u in updated["incident_updates"]] == ["second", "first"]


def test_connection_errors_are_retried_then_reported(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed_port = sock.getsockname()[1]  # nothing listens once the socket is closed
    delays = []
    api = client("http://127.0.0.1:%d" % closed_port, tmp_path, delays, retries=2)
    with pytest.raises(sp.StatuspageError) as failure:
        api.list_components()
    assert failure.value.msg.startswith(f"Statuspage API GET /v1/pages/{PAGE_ID}/components failed after 3 attempts: ")
    assert "check api_url" in failure.value.msg and API_KEY not in failure.value.msg
    assert failure.value.details["http_status"] is None and delays == [1.0, 2.0]
    assert api.calls == [f"GET /v1/pages/{PAGE_ID}/components -> no answer"] * 3


def test_client_errors_are_not_retried(base, tmp_path):
    delays = []
    api = client(base, tmp_path, delays)
    with pytest.raises(sp.StatuspageError) as failure:
        api.create_incident({"status": "investigating"}, "c-11", "realtime")
    assert failure.value.details == {"http_status": 422, "path": INCIDENTS, "response_body": '{"error": "name can\'t be blank"}',
                                     "attempts": 1}
    assert "the API rejected the request as invalid" in failure.value.msg and delays == []


def test_find_incident_takes_the_newest_and_counts_duplicates(base, tmp_path):
    api = client(base, tmp_path, [])
    first = api.create_incident({"name": "A", "metadata": sp.change_metadata("dup")}, "dup", "realtime")
    time.sleep(0.01)
    second = api.create_incident({"name": "B", "metadata": sp.change_metadata("dup")}, "dup", "realtime")
    api.create_incident({"name": "C", "metadata": {"other": {"change_id": "dup"}}}, "x", "realtime")
    found, count = api.find_incident("dup", "realtime")
    assert (found["id"], count) == (second["id"], 2) and first["id"] != second["id"]
    assert api.find_incident("dup", "maintenance") == (None, 0)


def test_client_from_params_checks_connection_options():
    good = {"api_key": " k3y-value\n", "page_id": PAGE_ID, "api_url": sp.DEFAULT_API_URL, "timeout": 30,
            "validate_certs": True, "retries": 5, "requests_per_second": 1.0, "rate_limit_window": 60.0}
    built = sp.client_from_params(good)
    assert built.base == sp.DEFAULT_API_URL
    assert (built.pacer.budget, built.pacer.window) == (60, 60.0)
    for change, expected in [({"api_key": None}, "api_key is not set"),
                             ({"api_key": "two words"}, "api_key contains whitespace"),
                             ({"page_id": "a/b"}, "page_id 'a/b' is not a Statuspage page id"),
                             ({"api_url": "ftp://x/v1"}, "api_url 'ftp://x/v1' is not an http(s) base URL"),
                             ({"api_url": "https://user:pw@x/v1"}, "is not an http(s) base URL"),
                             ({"timeout": 0}, "timeout=0 is too small"),
                             ({"retries": -1}, "retries=-1 is too small"),
                             ({"rate_limit_window": 0.5}, "rate_limit_window=0.5 is too small")]:
        with pytest.raises(sp.StatuspageError) as failure:
            sp.client_from_params(dict(good, **change))
        assert expected in failure.value.msg
        assert "two words" not in failure.value.msg


# ------------------------------------------------------------------------------------------------ pacing


def test_pacer_allows_a_burst_as_large_as_the_window_then_waits(tmp_path):
    """Statuspage: 1 request/s "as measured on a 60 second rolling window" - 60 at once, the 61st waits."""
    delays = []
    pacer = sp.Pacer(API_KEY, sp.DEFAULT_API_URL, 1.0, directory=str(tmp_path), sleep=delays.append)
    assert (pacer.budget, pacer.window) == (60, 60.0)
    started = time.time()
    for _i in range(60):
        with pacer.slot():
            pass
    assert delays == []  # the whole burst went out at once
    with pacer.slot():
        pass
    assert len(delays) == 1 and 59.0 <= delays[0] <= 60.0  # until the first request is a minute old
    assert delays[0] == pytest.approx(60.0 - (time.time() - started), abs=1.0)


def test_pacer_shares_its_window_across_instances_and_hides_the_key(tmp_path):
    one = sp.Pacer(API_KEY, "https://api.statuspage.io/v1", 2.0, window=1.0, directory=str(tmp_path))
    other = sp.Pacer(API_KEY, "https://api.statuspage.io/v1/", 2.0, window=1.0, directory=str(tmp_path))
    elsewhere = sp.Pacer(API_KEY, "http://127.0.0.1:1/v1", 2.0, window=1.0, directory=str(tmp_path))
    assert one.path == other.path != elsewhere.path
    assert API_KEY[:8] not in one.path
    stamps = []

    def use(pacer):
        with pacer.slot():
            stamps.append(time.monotonic())

    threads = [threading.Thread(target=use, args=(p,)) for p in (one, other, one, other, one)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    stamps.sort()
    # Two per second: any request is at least a window after the one two before it.
    assert all(later - earlier >= 0.99 for earlier, later in zip(stamps, stamps[2:])), stamps
    assert stamps[1] - stamps[0] < 0.5  # a burst of two is allowed
    written = [float(line) for line in Path(one.path).read_text().split()]
    # Only the window's requests are kept (all five without pruning): the 4th too, unless a busy machine delayed the
    # 5th until the 4th was a window old.
    assert 1 <= len(written) <= 2 and written[-1] - written[0] < 1.0, written
    assert written[-1] == pytest.approx(time.time(), abs=2)
    assert oct(Path(one.path).stat().st_mode & 0o777) == "0o600"


def test_pacer_with_a_window_of_one_request_spaces_every_request(tmp_path):
    pacer = sp.Pacer(API_KEY, sp.DEFAULT_API_URL, 2.5, window=0.4, directory=str(tmp_path))
    assert (pacer.budget, pacer.window) == (1, 0.4)
    started = time.monotonic()
    for _i in range(3):
        with pacer.slot():
            pass
    assert time.monotonic() - started >= 0.79
    slow = sp.Pacer(API_KEY, sp.DEFAULT_API_URL, 0.01, directory=str(tmp_path))
    assert (slow.budget, slow.window) == (1, 100.0)  # below one request per window: 1/rate apart


def test_pacer_survives_a_damaged_file_and_a_clock_that_jumped_back(tmp_path):
    pacer = sp.Pacer(API_KEY, sp.DEFAULT_API_URL, 1.0, window=2.0, directory=str(tmp_path))
    future = time.time() + 3600
    Path(pacer.path).write_text("garbage\n%.6f\n%.6f\n" % (future, future))
    assert pacer.wait_for(sp.Pacer._read(os.open(pacer.path, os.O_RDONLY)), time.time()) <= 2.0
    delays = []
    pacer._sleep = delays.append
    with pacer.slot():
        pass
    assert len(delays) == 1 and delays[0] <= 2.0  # at most one window, never an hour


def test_pacer_without_a_usable_directory_paces_in_process(tmp_path):
    pacer = sp.Pacer(API_KEY, sp.DEFAULT_API_URL, 1 / 0.3, window=0.3, directory=str(tmp_path / "missing"))
    started = time.monotonic()
    for _i in range(2):
        with pacer.slot():
            pass
    assert time.monotonic() - started >= 0.29
    assert "pacing file" in pacer.warning and "within this task only" in pacer.warning


# ------------------------------------------------------------------------------------------------ planning


def incident(**fields):
    base = {"id": "i1", "name": "Release", "status": "investigating", "impact_override": None, "components": [],
            "incident_updates": [{"body": "newest", "created_at": "2031-01-01T00:00:02.000Z"},
                                 {"body": "older", "created_at": "2031-01-01T00:00:01.000Z"}]}
    base.update(fields)
    return base


PAGE = {API_ID: {"id": API_ID, "name": "API", "status": "operational"}}


@pytest.mark.parametrize("desired, fields", [
    ({"body": "newest\n"}, {}),
    ({"body": "older"}, {"body": "older"}),
    ({"body": "older", "body_once": True}, {}),
    ({"status": "investigating", "body": "newest"}, {}),
    ({"status": "identified"}, {"status": "identified"}),
    ({"status": "identified", "body": "newest"}, {"status": "identified", "body": "newest"}),
    ({"impact": "minor"}, {"impact_override": "minor"}),
    ({"components": {API_ID: "operational"}}, {"components": {API_ID: "operational"}}),  # not attached yet
])
def test_plan_incident(desired, fields):
    assert sp.plan_incident(incident(), desired, PAGE)[0] == fields


def test_plan_incident_for_a_new_one_and_attached_components():
    fields, before, after = sp.plan_incident(None, {"name": "N", "status": "investigating",
                                                    "components": {API_ID: "major_outage"}}, PAGE)
    assert fields == {"name": "N", "status": "investigating", "components": {API_ID: "major_outage"}}
    assert before == {} and after["components"] == {"API": "major_outage"} and after["status"] == "investigating"
    attached = incident(components=[{"id": API_ID, "name": "API", "status": "operational"}])
    assert sp.plan_incident(attached, {"components": {API_ID: "operational"}}, PAGE)[0] == {}


def test_times_parse_with_zones_and_refuse_naive_ones():
    utc = datetime(2031, 3, 1, 1, 0, tzinfo=timezone.utc)
    for text in ("2031-03-01T01:00:00Z", "2031-03-01T01:00Z", "2031-03-01T03:00:00+02:00", "2031-02-28T20:00:00-0500",
                 "2031-03-01 01:00:00.000000Z"):
        assert sp.parse_time(text) == utc, text
    assert sp.format_time(sp.parse_time("2031-03-01T01:00:00.123456Z")) == "2031-03-01T01:00:00.123Z"
    for text in ("2031-03-01T01:00:00", "tomorrow", "2031-13-01T01:00:00Z"):
        with pytest.raises(ValueError):
            sp.parse_time(text)


def test_component_names_resolve_and_unknown_ones_list_the_known():
    page = [{"id": "a1", "name": "API", "group": False}, {"id": "g1", "name": "Backend", "group": True}]
    assert sp.resolve_components({"API": "operational"}, page) == {"a1": "operational"}
    with pytest.raises(sp.StatuspageError) as failure:
        sp.resolve_components({"Backend": "operational", "api": "operational"}, page)
    assert failure.value.msg == ("components: unknown component name(s) 'Backend', 'api' on this page; known names: 'API' "
                                 "(names are case-sensitive)")
