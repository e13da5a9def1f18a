"""runbook.release.release_gate run as Ansible runs it (a subprocess with its arguments file).

The open-incident criterion asks a real process of the Statuspage stand-in (sandbox/fakes/saas.py) on ephemeral
ports, so other engineers' incidents on the shared sandbox page cannot change the verdict. No HTTP is mocked.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[4]
SERVER = REPO / "sandbox" / "fakes" / "saas.py"
MODULE = "ansible_collections.runbook.release.plugins.modules.release_gate"
PAGE_ID = "rbgate0000001"
API_KEY = "sbx-gate-unit-key-9d2e4f6a8b0c1d3e"
NOW = "2031-03-06T16:00:00Z"  # a Thursday, inside the window below


class Gate:
    """Runs the module; ``output`` keeps everything it printed."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.output = ""

    def run(self, check=False, **args):
        args_file = self.workdir / ("args-%d.json" % time.monotonic_ns())
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check)}))
        environ = {k: v for k, v in os.environ.items() if k != "STATUSPAGE_API_KEY"}
        environ.update(PYTHONPATH=str(REPO / "collections"), TMPDIR=str(self.workdir))
        proc = subprocess.run([sys.executable, "-m", MODULE, str(args_file)], capture_output=True, text=True,
                              env=environ, cwd=self.workdir, timeout=120, check=False)
        self.output = proc.stdout + proc.stderr
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return pytest.fail("module printed no JSON (rc=%d):\n%s" % (proc.returncode, self.output))


@pytest.fixture
def module(tmp_path):
    return Gate(tmp_path)


@pytest.fixture(scope="module")
def statuspage(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("statuspage")
    (workdir / "keys").write_text(API_KEY + "\n")
    with open(workdir / "fake.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, str(SERVER), "--host", "127.0.0.1", "--statuspage-port", "0", "--webhook-port", "0",
             "--keys-file", str(workdir / "keys"), "--page-id", PAGE_ID, "--rate-limit-per-s", "1000"],
            stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            ports = json.loads(proc.stdout.readline())
            yield "http://127.0.0.1:%d/v1" % ports["statuspage_port"]
        finally:
            proc.terminate()
            proc.wait(timeout=10)
            proc.stdout.close()


def evidence(tmp_path, pass_rate_failures=1, cvss=5.0):
    """Fixture files of a release that passes everything but what a test breaks on purpose."""
    (tmp_path / "junit.xml").write_text('<testsuite name="e2e" tests="100" failures="%d" errors="0" skipped="0"/>'
                                        % pass_rate_failures)
    (tmp_path / "grype.json").write_text(json.dumps({"matches": [
        {"vulnerability": {"id": "CVE-2031-1111", "severity": "Medium",
                           "cvss": [{"version": "3.1", "metrics": {"baseScore": cvss}}]},
         "artifact": {"name": "libexample"}}]}))
    (tmp_path / "approvals.yml").write_text(
        "approvals:\n"
        "  - {approver: maria, role: engineering_manager, version: v1.3.0, approved_at: '2031-03-06T09:00:00Z'}\n")
    return dict(
        version="v1.3.0", previous_version="v1.2.3", environment="production", operator="alice", now=NOW,
        approvals_file=str(tmp_path / "approvals.yml"), approvers={"engineering_manager": ["maria"]},
        test_reports=[str(tmp_path / "junit.xml")], vulnerability_report=[str(tmp_path / "grype.json")],
        change_window={"days": ["tue", "wed", "thu"], "start_utc": "15:00", "end_utc": "18:00"},
        freeze_file=str(tmp_path / "freeze"), open_incidents=[],
        promotion_evidence=[{"environment": "staging", "version": "v1.3.0", "outcome": "success",
                             "finished_at": "2031-03-06T08:00:00Z"}])


def test_go(module, tmp_path):
    result = module.run(**evidence(tmp_path))
    assert result.get("failed") is not True, result["msg"]
    assert result["go"] is True and result["changed"] is False and result["release_type"] == "minor"
    assert result["msg"] == "GO for v1.3.0 to production: all 7 criteria passed"
    assert [c["name"] for c in result["criteria"]] == [
        "approvals", "test_evidence", "vulnerabilities", "change_window", "freeze", "open_incidents", "soak"]
    assert result["release_data"] == {"gate": {"go": True, "failed": [], "evaluated_at": NOW}}
    assert "now=2031-03-06T16:00:00Z is set" in json.dumps(result["warnings"])
    assert "no_log" not in json.dumps(result["warnings"])


def test_no_go_fails_listing_every_failed_criterion(module, tmp_path):
    args = evidence(tmp_path, pass_rate_failures=10, cvss=9.1)
    args.update(operator="maria", now="2031-03-06T19:00:00Z")
    args["promotion_evidence"][0]["finished_at"] = "2031-03-06T17:00:00Z"
    (tmp_path / "freeze").write_text("Quarter-end freeze (CHG-1234)\n")
    result = module.run(**args)
    assert result["failed"] is True and result["go"] is False and result["changed"] is False
    lines = result["msg"].split("\n")
    assert lines[0] == "NO-GO for v1.3.0 to production: 6 of 7 criteria failed:"
    assert [line.split(":")[0] for line in lines[1:]] == [
        "- approvals", "- test_evidence", "- vulnerabilities", "- change_window", "- freeze", "- soak"]
    assert "maria is the operator of this release and cannot approve it (self-approval)" in lines[1]
    assert "90 of 100 tests passed" in lines[2] and "CVE-2031-1111 (9.1, libexample)" in lines[3]
    assert "Quarter-end freeze (CHG-1234)" in lines[5]
    assert lines[4] == ("- change_window: thu 19:00 UTC is outside the change window (tue, wed, thu 15:00-18:00 UTC); it "
                        "next opens tue 2031-03-11 15:00 UTC")
    assert lines[6] == ("- soak: v1.3.0 has soaked on staging for 2h (since 2031-03-06T17:00:00Z); 4h required, 2h to go")
    assert result["failed_criteria"] == result["release_data"]["gate"]["failed"] and len(result["failed_criteria"]) == 6


def test_no_go_reported_without_failing(module, tmp_path):
    args = evidence(tmp_path)
    args.update(fail_on_no_go=False, promotion_evidence=[], approvals_file=None)
    result = module.run(**args)
    assert "failed" not in result, "a NO-GO with fail_on_no_go=false must not fail the task"
    assert result["go"] is False
    assert result["failed_criteria"] == [
        "approvals: 1 of 1 required approvals missing for v1.3.0 (minor release): engineering_manager: no approval",
        "soak: no promotion evidence given: set promotion_records_dir (the deployment records) or promotion_evidence "
        "to prove v1.3.0 ran on staging"]


def test_check_mode_evaluates_the_same(module, tmp_path):
    args = evidence(tmp_path, pass_rate_failures=10)
    args["fail_on_no_go"] = False
    real, check = module.run(**args), module.run(check=True, **args)
    assert real["go"] is False and real["criteria"] == check["criteria"] and check["changed"] is False


@pytest.mark.parametrize("overrides, message", [
    ({"release_type": "emergency"}, "value of release_type must be one of: auto, major, minor, patch, hotfix, got: emergency"),
    ({"change_window": {"days": ["thu"], "start_utc": "3pm", "end_utc": "18:00"}},
     "change_window.start_utc='3pm' is not a time of day"),
    ({"approvals_file": "/nonexistent/approvals.yml"}, "approvals file /nonexistent/approvals.yml does not exist; "
                                                       "fix approvals_file"),
    ({"approvals": [{"approver": "maria", "role": "engineering_manager"}]}, "approvals: approval #1"),
    ({"release_type": "auto", "previous_version": None}, "release_type=auto needs previous_version"),
    ({"statuspage": {"page_id": PAGE_ID, "api_url": "http://127.0.0.1:9/v1"}, "open_incidents": None},
     "api_key is not set"),
])
def test_bad_input_fails_before_evaluating(module, tmp_path, overrides, message):
    args = evidence(tmp_path)
    args.update(overrides)
    result = module.run(**args)
    assert result["failed"] is True and message in result["msg"], result["msg"]
    assert "criteria" not in result and "go" not in result


def test_open_incident_on_statuspage_is_no_go_and_the_key_never_shows(module, tmp_path, statuspage):
    headers = {"Authorization": "OAuth " + API_KEY}
    incidents = "%s/pages/%s/incidents" % (statuspage, PAGE_ID)
    created = requests.post(incidents, headers=headers, timeout=5, json={"incident": {
        "name": "Checkout is down", "status": "investigating", "impact_override": "major"}})
    assert created.status_code == 201, created.text
    incident = created.json()
    minor = requests.post(incidents, headers=headers, timeout=5, json={"incident": {
        "name": "Search is slow", "status": "identified", "impact_override": "minor"}}).json()
    args = evidence(tmp_path)
    args.update(open_incidents=None, fail_on_no_go=False,
                statuspage={"api_url": statuspage, "page_id": PAGE_ID, "api_key": API_KEY, "requests_per_second": 1000})
    try:
        result = module.run(**args)
        assert API_KEY not in module.output
        assert result["go"] is False
        assert result["failed_criteria"] == [
            "open_incidents: 1 unresolved incident(s) at or above major impact: 'Checkout is down' (%s, major, "
            "investigating)" % incident["id"]]
        assert result["api_requests"] == ["GET /v1/pages/%s/incidents/unresolved -> 200" % PAGE_ID]
        assert {i["id"] for i in result["criteria"][5]["evidence"]["unresolved"]} == {incident["id"], minor["id"]}

        wrong_key = dict(args, statuspage=dict(args["statuspage"], api_key=API_KEY[::-1]))
        refused = module.run(**wrong_key)
        assert API_KEY[::-1] not in module.output
        assert refused["failed_criteria"][0].startswith(
            "open_incidents: cannot tell whether incidents are open: Statuspage API GET /v1/pages/%s/incidents/unresolved "
            "answered HTTP 401" % PAGE_ID)
    finally:
        for one in (incident, minor):
            requests.patch("%s/%s" % (incidents, one["id"]), headers=headers, timeout=5,
                           json={"incident": {"status": "resolved"}})
    result = module.run(**args)
    assert result["go"] is True, result["failed_criteria"]
    assert result["criteria"][5]["reason"] == ("0 unresolved incident(s), none at or above major impact (statuspage "
                                               "page %s)" % PAGE_ID)
