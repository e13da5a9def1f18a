"""Readers of the go/no-go gate's evidence: approvals files, JUnit XML, Trivy/Grype reports, deployment records."""

from __future__ import annotations

import json

import pytest

from ansible_collections.runbook.release.plugins.module_utils import _deployment_record as dr
from ansible_collections.runbook.release.plugins.module_utils import _gate_evidence as ev
from ansible_collections.runbook.release.plugins.module_utils._gate_evidence import EvidenceError, GateInputError

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def write(path, text):
    path.write_text(text)
    return str(path)


# ---------------------------------------------------------------------------------------------- approvals

def test_approvals_file_yaml_json_and_bare_list(tmp_path):
    yaml_file = write(tmp_path / "a.yml", "approvals:\n  - approver: maria\n    role: engineering_manager\n"
                                          "    version: v1.3.0\n    approved_at: 2031-03-06T10:00:00Z\n")
    json_file = write(tmp_path / "a.json", json.dumps({"approvals": [
        {"approver": "sam", "role": "product_owner", "version": "v1.3.0", "approved_at": "2031-03-06T10:00:00Z"}]}))
    bare = write(tmp_path / "bare.yml", "- {approver: lee, role: team_lead, version: v1.3.0, "
                                        "approved_at: '2031-03-06T10:00:00Z'}\n")
    empty = write(tmp_path / "empty.yml", "approvals:\n")
    from_yaml = ev.load_approvals_file(yaml_file)
    assert from_yaml[0]["approver"] == "maria" and from_yaml[0]["role"] == "engineering_manager"
    # YAML reads an unquoted timestamp as a datetime; it comes back as text the gate can parse.
    assert from_yaml[0]["approved_at"].startswith("2031-03-06")
    assert from_yaml[0]["source"] == "approvals file %s" % yaml_file
    assert ev.load_approvals_file(json_file)[0]["approver"] == "sam"
    assert ev.load_approvals_file(bare)[0]["role"] == "team_lead"
    assert ev.load_approvals_file(empty) == []


@pytest.mark.parametrize("name, text, message", [
    ("missing.yml", None, "does not exist; fix approvals_file"),
    ("broken.yml", "approvals: [unclosed\n", "is not valid YAML"),
    ("nokey.yml", "approved: []\n", "has no 'approvals' key (keys: approved)"),
    ("notlist.yml", "approvals: maria\n", "approvals must be a list"),
    ("short.yml", "approvals:\n  - {approver: maria, role: engineering_manager}\n", "approval #1"),
    ("scalar.yml", "approvals:\n  - maria\n", "approval #1 is a str"),
])
def test_unreadable_approvals_files_are_bad_input(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(GateInputError) as caught:
        ev.load_approvals_file(str(path))
    assert message in str(caught.value)
    assert str(path) in str(caught.value)


def test_an_approval_without_a_field_names_what_is_missing():
    with pytest.raises(GateInputError, match=r"approvals: approval #2 .* lacks version, approved_at"):
        ev.check_approval_entries([
            {"approver": "a", "role": "r", "version": "v1", "approved_at": "2031-01-01T00:00:00Z"},
            {"approver": "b", "role": "r"}], "approvals")


# ---------------------------------------------------------------------------------------------- JUnit

NESTED = """<?xml version="1.0" encoding="UTF-8"?>
<testsuites tests="40" failures="2" errors="1" skipped="3">
  <testsuite name="e2e" tests="30" failures="2" errors="0" skipped="3">
    <testsuite name="login" tests="10" failures="1" errors="0" skipped="0"/>
    <testsuite name="search" tests="20" failures="1" errors="0" skipped="3"/>
  </testsuite>
  <testsuite name="api" tests="10" failures="0" errors="1" skipped="0"/>
</testsuites>
"""

CASES_ONLY = """<testsuite name="smoke">
  <testcase name="a"/>
  <testcase name="b"><failure message="boom"/></testcase>
  <testcase name="c"><error message="crash"/></testcase>
  <testcase name="d"><skipped/></testcase>
  <testcase name="e"/>
</testsuite>
"""


def test_junit_counts_leaf_suites_once(tmp_path):
    assert ev.read_junit(write(tmp_path / "nested.xml", NESTED)) == {
        "tests": 40, "failures": 2, "errors": 1, "skipped": 3}


def test_junit_without_totals_counts_testcases(tmp_path):
    assert ev.read_junit(write(tmp_path / "cases.xml", CASES_ONLY)) == {
        "tests": 5, "failures": 1, "errors": 1, "skipped": 1}


def test_junit_from_pytest(tmp_path):
    text = ('<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" '
            'skipped="2" tests="20" time="1.2" timestamp="2031-03-05T10:00:00" hostname="ci"><testcase classname="t" '
            'name="x"/></testsuite></testsuites>')
    assert ev.read_junit(write(tmp_path / "pytest.xml", text)) == {"tests": 20, "failures": 1, "errors": 0, "skipped": 2}


@pytest.mark.parametrize("text, message", [
    (None, "does not exist"),
    ("<testsuite tests='3'", "is not well-formed XML"),
    ("<html><body>502</body></html>", "root element is <html>"),
    ("<testsuite tests='many'/>", "tests='many'> is not a number"),
    ("<testsuite tests='2' failures='3'/>", "inconsistent counts"),
])
def test_unusable_junit_names_the_file(tmp_path, text, message):
    path = tmp_path / "report.xml"
    if text is not None:
        path.write_text(text)
    with pytest.raises(EvidenceError) as caught:
        ev.read_junit(str(path))
    assert message in str(caught.value) and str(path) in str(caught.value)


def test_junit_directory_is_named(tmp_path):
    with pytest.raises(EvidenceError, match="is a directory"):
        ev.read_junit(str(tmp_path))


# ---------------------------------------------------------------------------------------------- vulnerabilities

def trivy(*vulns):
    return {"SchemaVersion": 2, "ArtifactName": "registry/app/api:v1.3.0",
            "Results": [{"Target": "app (debian 12)", "Class": "os-pkgs", "Vulnerabilities": list(vulns)},
                        {"Target": "requirements.txt", "Class": "lang-pkgs", "Vulnerabilities": None}]}


def test_trivy_takes_the_highest_v3_score_over_sources(tmp_path):
    path = write(tmp_path / "trivy.json", json.dumps(trivy(
        {"VulnerabilityID": "CVE-2031-0001", "PkgName": "openssl", "Severity": "HIGH",
         "CVSS": {"nvd": {"V2Score": 10.0, "V3Score": 7.5}, "redhat": {"V3Score": 8.1}}},
        {"VulnerabilityID": "CVE-2031-0002", "PkgName": "zlib", "Severity": "CRITICAL"})))
    kind, findings = ev.read_vulnerabilities(path)
    assert kind == "trivy"
    assert [(f["id"], f["cvss"], f["package"]) for f in findings] == [
        ("CVE-2031-0001", 8.1, "openssl"), ("CVE-2031-0002", None, "zlib")]


def test_trivy_with_nothing_found(tmp_path):
    path = write(tmp_path / "clean.json", json.dumps({"SchemaVersion": 2, "Results": None}))
    assert ev.read_vulnerabilities(path) == ("trivy", [])


def test_grype_uses_v3_scores_and_related_advisories(tmp_path):
    report = {"matches": [
        {"vulnerability": {"id": "GHSA-xxxx", "severity": "High",
                           "cvss": [{"version": "2.0", "metrics": {"baseScore": 9.3}}]},
         "relatedVulnerabilities": [{"id": "CVE-2031-0003", "cvss": [
             {"version": "3.1", "vector": "CVSS:3.1/AV:N", "metrics": {"baseScore": 7.2}}]}],
         "artifact": {"name": "requests", "version": "2.0.0"}},
        {"vulnerability": {"id": "CVE-2031-0004", "severity": "Low",
                           "cvss": [{"version": "2.0", "metrics": {"baseScore": 8.0}}]},
         "artifact": {"name": "libfoo"}},
    ], "source": {"type": "image"}}
    kind, findings = ev.read_vulnerabilities(write(tmp_path / "grype.json", json.dumps(report)))
    assert kind == "grype"
    # A CVSS v2 score is not compared with a v3 threshold: CVE-2031-0004 is unscored.
    assert [(f["id"], f["cvss"], f["severity"]) for f in findings] == [
        ("GHSA-xxxx", 7.2, "High"), ("CVE-2031-0004", None, "Low")]


def test_plain_list_and_its_errors(tmp_path):
    path = write(tmp_path / "plain.json", json.dumps([{"id": "CVE-1", "cvss": 9.8}, {"id": "CVE-2", "cvss": "4.0"},
                                                      {"id": "CVE-3", "cvss": None}]))
    assert [(f["id"], f["cvss"]) for f in ev.read_vulnerabilities(path)[1]] == [
        ("CVE-1", 9.8), ("CVE-2", 4.0), ("CVE-3", None)]
    with pytest.raises(EvidenceError, match="CVE-9 has cvss 'high', not a number"):
        ev.read_vulnerabilities(write(tmp_path / "bad.json", json.dumps([{"id": "CVE-9", "cvss": "high"}])))
    with pytest.raises(EvidenceError, match="entry #1 is not"):
        ev.read_vulnerabilities(write(tmp_path / "bad2.json", json.dumps([{"cvss": 3}])))


@pytest.mark.parametrize("text, message", [
    ("{\"vulns\": []}", "is not a Trivy (Results), Grype (matches) or [{id, cvss}] report (found: vulns)"),
    ("not json", "is not valid JSON"),
    ("42", "(found: int)"),
])
def test_unknown_vulnerability_formats(tmp_path, text, message):
    with pytest.raises(EvidenceError) as caught:
        ev.read_vulnerabilities(write(tmp_path / "v.json", text))
    assert message in str(caught.value)


# ---------------------------------------------------------------------------------------------- records

def callback_record(environment, version, outcome="success", check_mode=False, gate=None, digests=None):
    """A record as the deployment_record callback builds it (its own builder, not a hand-made copy)."""
    builder = dr.RecordBuilder("rec-" + version)
    builder.meta = {"check_mode": check_mode, "operator": "ci"}
    release = {"schema_version": 1, "run_id": "f" * 32, "runbook": "release", "environment": environment,
               "service": "app", "operator": "ci", "started_at": "2031-03-05T09:00:00.000000Z",
               "version": version, "previous_version": "v1.2.3", "outcome": outcome}
    if gate is not None:
        release["gate"] = gate
    if digests is not None:
        release["preflight"] = {"passed": True, "problems": [], "checked_at": "2031-03-05T08:55:00Z", "digests": digests}
    return dr.plain(builder.build(host_stats={"app-01": {"ok": 3, "failures": 0, "unreachable": 0}},
                                  custom={"_run": {"runbook_release": release}}))


def test_normalize_reads_the_callback_layout():
    gate = {"go": False, "failed": ["x"], "evaluated_at": "2031-03-05T09:00:00Z"}
    record = callback_record("staging", "v1.3.0", check_mode=True, gate=gate)
    assert "release" in record and record["release"]["version"] == "v1.3.0"
    got = ev.normalize_record(record, "r.json")
    assert got["environment"] == "staging" and got["version"] == "v1.3.0" and got["outcome"] == "success"
    assert got["finished_at"] == record["finished_at"] and got["check_mode"] is True
    assert got["stopped_by_gate"] is True and got["images"] is None and got["source"] == "r.json"


def test_callback_records_take_digests_from_the_preflight():
    record = callback_record("staging", "v1.3.0", digests={"api": DIGEST_A, "web": "registry/app/web@" + DIGEST_B})
    assert ev.normalize_record(record, "r.json")["images"] == {"api": {DIGEST_A}, "web": {DIGEST_B}}


def test_normalize_reads_the_plain_contract_layout_with_images():
    got = ev.normalize_record({"environment": "staging", "version": "v1.3.0", "outcome": "success",
                               "finished_at": "2031-03-05T09:00:00Z",
                               "images": {"api": "registry/app/api@" + DIGEST_A, "web": {"repo_digests": [
                                   "registry/app/web@" + DIGEST_B]}}}, "evidence #1")
    assert got["images"] == {"api": {DIGEST_A}, "web": {DIGEST_B}}
    assert got["stopped_by_gate"] is False
    assert ev.normalize_record({"outcome": "success"}, "x") is None
    assert ev.normalize_record(["not", "a", "dict"], "x") is None


def test_records_dir_skips_journals_reports_and_non_records(tmp_path):
    (tmp_path / "20310305T090000_ctl_a.json").write_text(json.dumps(callback_record("staging", "v1.3.0")))
    (tmp_path / "20310305T090000_ctl_a.journal.jsonl").write_text("{}\n")
    (tmp_path / "20310305T090000_ctl_a.handoff.md").write_text("# handoff\n")
    (tmp_path / "metrics.json").write_text(json.dumps({"deployments": []}))
    (tmp_path / "torn.json").write_text("{\"environment\": ")
    records, notes = ev.read_records_dir(str(tmp_path))
    assert [r["version"] for r in records] == ["v1.3.0"]
    assert len(notes) == 2
    assert any("metrics.json is not a deployment record" in n for n in notes)
    assert any("torn.json is not valid JSON" in n for n in notes)
    with pytest.raises(EvidenceError, match="cannot be listed"):
        ev.read_records_dir(str(tmp_path / "nowhere"))


# ---------------------------------------------------------------------------------------------- freeze

def test_freeze_file_first_lines(tmp_path):
    path = tmp_path / "freeze"
    assert ev.read_freeze(str(path)) is None
    path.write_text("\nQuarter-end freeze until 2031-04-02 (CHG-1234)\nAsk maria before releasing\n" + "x\n" * 50)
    text = ev.read_freeze(str(path))
    assert text.startswith("Quarter-end freeze until 2031-04-02 (CHG-1234) / Ask maria before releasing")
    assert text.count(" / ") == ev.FREEZE_LINES - 1
    path.write_text("")
    assert ev.read_freeze(str(path)) == "(empty)"
    assert ev.read_freeze(str(tmp_path)) == "(a directory)"
