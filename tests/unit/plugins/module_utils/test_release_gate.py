"""The go/no-go criteria, one by one, with every NO-GO case of issue 7, and the verdict over all of them.

Pure: the clock is an argument and the evidence is written to tmp_path.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest

from ansible_collections.runbook.release.plugins.module_utils import _deployment_record as dr
from ansible_collections.runbook.release.plugins.module_utils import _release_data as rd
from ansible_collections.runbook.release.plugins.module_utils import _release_gate as gate
from ansible_collections.runbook.release.plugins.module_utils._gate_evidence import GateInputError
from ansible_collections.runbook.release.plugins.modules.release_gate import argument_spec

NOW = datetime(2031, 3, 6, 16, 0, tzinfo=timezone.utc)  # a Thursday
WINDOW = {"days": ["tue", "wed", "thu"], "start_utc": "15:00", "end_utc": "18:00"}
APPROVERS = {"engineering_manager": ["maria"], "product_owner": ["sam"], "team_lead": ["dana", "lee"],
             "on_call": ["kim", "noor"]}
DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


def at(hours_ago):
    return (NOW - timedelta(hours=hours_ago)).strftime("%Y-%m-%dT%H:%M:%SZ")


def params(**overrides):
    """The module's options with their defaults, as AnsibleModule hands them over."""
    values = {name: spec.get("default") for name, spec in argument_spec().items()}
    values.update(version="v1.3.0", previous_version="v1.2.3", environment="production", operator="alice",
                  approvers=APPROVERS, change_window=WINDOW)
    values.update(overrides)
    return values


def approval(approver, role, version="v1.3.0", hours_ago=2):
    return {"approver": approver, "role": role, "version": version, "approved_at": at(hours_ago), "source": "approvals"}


def approvals_check(approvals, release_type="minor", operator="alice", **overrides):
    policy = gate.check_policy(params(**overrides))
    return gate.check_approvals(approvals, release_type, policy, operator, NOW, 72, overrides.get("approvals_distinct", True))


def junit(tmp_path, tests, failures=0, errors=0, skipped=0, name="junit.xml"):
    path = tmp_path / name
    path.write_text('<testsuites><testsuite name="e2e" tests="%d" failures="%d" errors="%d" skipped="%d"/></testsuites>'
                    % (tests, failures, errors, skipped))
    return str(path)


def trivy(tmp_path, *scores, name="trivy.json"):
    vulns = [{"VulnerabilityID": "CVE-2031-%04d" % i, "PkgName": "pkg%d" % i, "Severity": severity,
              "CVSS": {"nvd": {"V3Score": score}} if score is not None else {}}
             for i, (score, severity) in enumerate(scores, 1)]
    path = tmp_path / name
    path.write_text(json.dumps({"SchemaVersion": 2, "Results": [{"Target": "img", "Vulnerabilities": vulns}]}))
    return str(path)


def staging(version, hours_ago, outcome="success", **extra):
    return dict({"environment": "staging", "version": version, "outcome": outcome, "finished_at": at(hours_ago)}, **extra)


def soak(records, version="v1.3.0", required_s=14400, images=None):
    from ansible_collections.runbook.release.plugins.module_utils._gate_evidence import normalize_record
    normalized = [normalize_record(r, "evidence #%d" % i) for i, r in enumerate(records, 1)]
    return gate.check_soak(normalized, version, "staging", required_s, NOW, images=images)


def callback_record(environment, version, finished_at):
    """A record built by the deployment_record callback's own builder, finishing at ``finished_at``."""
    builder = dr.RecordBuilder("rec-" + version)
    release = {"schema_version": 1, "run_id": "f" * 32, "runbook": "release", "environment": environment,
               "service": "app", "operator": "ci", "started_at": finished_at, "version": version, "outcome": "success"}
    record = dr.plain(builder.build(host_stats={"app-01": {"ok": 3, "failures": 0, "unreachable": 0}},
                                    custom={"_run": {"runbook_release": release}}))
    record["finished_at"] = finished_at
    return record


# ---------------------------------------------------------------------------------------------- input

@pytest.mark.parametrize("version, previous, expected", [
    ("v2.0.0", "v1.9.9", "major"),
    ("v1.3.0", "v1.2.3", "minor"),
    ("v1.2.4", "v1.2.3", "patch"),
    ("1.3.0-rc.1", "v1.2.3", "minor"),
    ("v1.2.4+build.7", "v1.2.3", "patch"),
])
def test_auto_release_type_from_semver(version, previous, expected):
    assert gate.derive_release_type("auto", version, previous) == (expected, None)


def test_auto_never_guesses_a_hotfix_and_notes_oddities():
    assert gate.derive_release_type("hotfix", "v1.2.4", None) == ("hotfix", None)
    kind, note = gate.derive_release_type("auto", "v1.2.3", "v1.2.3")
    assert kind == "patch" and "a rerun?" in note
    kind, note = gate.derive_release_type("auto", "v1.2.0", "v2.0.0")
    assert kind == "major" and "older than previous_version" in note


@pytest.mark.parametrize("version, previous, message", [
    ("v1.3.0", None, "release_type=auto needs previous_version"),
    ("release-42", "v1.2.3", "cannot read 'release-42' as a semantic version"),
])
def test_auto_release_type_bad_input(version, previous, message):
    with pytest.raises(GateInputError, match=message):
        gate.derive_release_type("auto", version, previous)


def test_window_parsing():
    assert gate.parse_window(WINDOW) == ({1, 2, 3}, 900, 1080)
    assert gate.parse_window({"days": ["Monday", "SUN"], "start_utc": "22:00", "end_utc": "2:00"}) == ({0, 6}, 1320, 120)
    assert gate.parse_window({"days": ["mon"], "start_utc": "00:00", "end_utc": "24:00"}) == ({0}, 0, 1440)
    assert gate.parse_window(None) is None and gate.parse_window({}) is None


@pytest.mark.parametrize("window, message", [
    ({"days": ["tue", "caturday"], "start_utc": "10:00", "end_utc": "14:00"}, "'caturday' is not a day"),
    ({"days": [], "start_utc": "10:00", "end_utc": "14:00"}, "days must be a non-empty list"),
    ({"days": ["tue"], "start_utc": "10am", "end_utc": "14:00"}, "start_utc='10am' is not a time of day"),
    ({"days": ["tue"], "start_utc": "10:00", "end_utc": "25:00"}, "end_utc='25:00'"),
    ({"days": ["tue"], "start_utc": "10:00"}, "end_utc=None"),
    ({"days": ["tue"], "start_utc": "00:00", "end_utc": "00:00"}, "are the same time"),
    ({"days": ["tue"], "start_utc": "24:00", "end_utc": "02:00"}, "a window cannot open at 24:00"),
    ({"days": ["tue"], "start": "10:00", "end_utc": "14:00"}, "unknown key(s) start"),
    ("tue 10-14", "change_window must be a dict"),
])
def test_malformed_change_window_is_bad_input(window, message):
    with pytest.raises(GateInputError) as caught:
        gate.check_policy(params(change_window=window))
    assert message in str(caught.value)


@pytest.mark.parametrize("overrides, message", [
    ({"version": "v1;rm -rf /"}, "version 'v1;rm -rf /' is not a release version"),
    ({"operator": " "}, "operator is empty"),
    ({"approvals_required": {"emergency": ["cto"]}}, "unknown release type 'emergency'"),
    ({"approvals_required": {"major": "maria"}}, "approvals_required.major must be a list of role names"),
    ({"approvers": {"team_lead": [1, 2]}}, "approvers.team_lead must be a list of names"),
    ({"change_window_applies_to": ["hotfixes"]}, "change_window_applies_to: unknown release type(s) hotfixes"),
    ({"min_pass_rate": 95}, "min_pass_rate=95 must be between 0 and 1"),
    ({"max_cvss": 11}, "max_cvss=11 must be between 0 and 10"),
    ({"soak_s": -1}, "soak_s=-1 must not be negative"),
    ({"promotion_environments": {"production": None}}, "promotion_environments must map"),
    ({"promotion_evidence": [{"environment": "staging", "version": "v1.3.0"}]}, "promotion_evidence #1"),
])
def test_bad_policy_is_refused_before_evaluating(overrides, message):
    with pytest.raises(GateInputError) as caught:
        gate.check_policy(params(**overrides))
    assert message in str(caught.value)


def test_now_override():
    assert gate.parse_now("2031-03-06T16:00:00Z") == NOW
    assert gate.parse_now("2031-03-06T17:00:00+01:00") == NOW
    with pytest.raises(GateInputError, match="now='tomorrow' is not usable"):
        gate.parse_now("tomorrow")
    with pytest.raises(GateInputError, match="no time zone"):
        gate.parse_now("2031-03-06T16:00:00")


# ---------------------------------------------------------------------------------------------- approvals

def test_approvals_pass_for_the_major_roles_of_seed_000():
    got = approvals_check([approval("maria", "engineering_manager"), approval("sam", "product_owner")], "major")
    assert got["passed"], got["reason"]
    assert got["reason"] == "maria (engineering_manager), sam (product_owner) approved v1.3.0 (major release)"
    assert got["evidence"]["approved"]["product_owner"]["approver"] == "sam"


def test_missing_approval_is_no_go():
    got = approvals_check([approval("maria", "engineering_manager")], "major")
    assert not got["passed"]
    assert got["reason"] == "1 of 2 required approvals missing for v1.3.0 (major release): product_owner: no approval"


def test_operator_approving_themself_is_refused_and_named():
    got = approvals_check([approval("Maria", "engineering_manager")], "minor", operator="maria")
    assert not got["passed"]
    assert "engineering_manager: Maria is the operator of this release and cannot approve it (self-approval)" in got["reason"]
    assert got["evidence"]["refused"][0]["approver"] == "Maria"


@pytest.mark.parametrize("entry, message", [
    (approval("bob", "engineering_manager"), "bob is not an approver for engineering_manager (approvers."
                                             "engineering_manager: maria)"),
    (approval("maria", "engineering_manager", version="v1.2.9"), "maria approved v1.2.9, not v1.3.0"),
    (approval("maria", "engineering_manager", hours_ago=80),
     "maria's approval is 3d 8h old (2031-03-03T08:00:00Z), older than 72 h"),
    (approval("maria", "engineering_manager", hours_ago=-3), "maria's approval is dated in the future"),
    (dict(approval("maria", "engineering_manager"), approved_at="yesterday"), "maria's approved_at 'yesterday' is not usable"),
])
def test_invalid_approvals_say_why(entry, message):
    got = approvals_check([entry])
    assert not got["passed"] and message in got["reason"], got["reason"]


def test_approval_matching_ignores_case_and_the_v_prefix():
    got = approvals_check([approval("MARIA", "Engineering_Manager", version="1.3.0")])
    assert got["passed"], got["reason"]


def test_a_role_nobody_is_listed_for_cannot_be_approved():
    got = approvals_check([approval("maria", "engineering_manager")], approvers={})
    assert not got["passed"]
    assert "maria approved as engineering_manager, but approvers lists nobody for engineering_manager" in got["reason"]


def test_one_person_cannot_fill_two_roles_unless_allowed():
    approvers = {"on_call": ["kim"], "team_lead": ["kim", "dana"]}
    both = [approval("kim", "on_call"), approval("kim", "team_lead")]
    got = approvals_check(both, "hotfix", approvers=approvers)
    assert not got["passed"]
    assert "team_lead: kim already approved for another role" in got["reason"]
    assert got["evidence"]["approved"] == {"on_call": {"approver": "kim", "approved_at": at(2)}}
    assert approvals_check(both, "hotfix", approvers=approvers, approvals_distinct=False)["passed"]
    # With a second person the assignment is found whatever the order of the approvals.
    got = approvals_check([approval("kim", "team_lead"), approval("kim", "on_call"), approval("dana", "team_lead")],
                          "hotfix", approvers=approvers)
    assert got["passed"] and got["evidence"]["approved"]["team_lead"]["approver"] == "dana"


def test_no_required_roles_passes():
    got = approvals_check([], "patch", approvals_required={"patch": []})
    assert got["passed"] and got["reason"] == "no approval is required for a patch release"


# ---------------------------------------------------------------------------------------------- tests

def test_evidence_below_threshold_is_no_go(tmp_path):
    got = gate.check_test_evidence([junit(tmp_path, 100, failures=5, errors=1)], 0.95)
    assert not got["passed"]
    assert got["reason"] == "94 of 100 tests passed (94.0 %; 5 failed, 1 errors, 0 skipped), below the required 95 %"


def test_exactly_the_threshold_passes_and_skipped_tests_do_not_count(tmp_path):
    got = gate.check_test_evidence([junit(tmp_path, 110, failures=5, skipped=10)], 0.95)
    assert got["passed"], got["reason"]
    assert got["evidence"]["pass_rate"] == 0.95 and got["evidence"]["passed"] == 95


def test_reports_are_summed_and_a_missing_one_fails_by_name(tmp_path):
    good = junit(tmp_path, 50, name="api.xml")
    assert gate.check_test_evidence([good, junit(tmp_path, 50, failures=4, name="e2e.xml")], 0.95)["passed"]
    got = gate.check_test_evidence([good, str(tmp_path / "e2e-missing.xml")], 0.95)
    assert not got["passed"]
    assert got["reason"] == "unusable test evidence: test report %s does not exist" % (tmp_path / "e2e-missing.xml")


def test_no_report_or_no_executed_test_fails(tmp_path):
    assert "no test report given" in gate.check_test_evidence([], 0.95)["reason"]
    got = gate.check_test_evidence([junit(tmp_path, 3, skipped=3)], 0.95)
    assert not got["passed"] and got["reason"] == "the test reports hold no executed test (3 tests, 3 skipped)"


# ---------------------------------------------------------------------------------------------- vulnerabilities

def test_findings_above_max_cvss_are_listed(tmp_path):
    got = gate.check_vulnerabilities([trivy(tmp_path, (9.8, "CRITICAL"), (7.0, "HIGH"), (7.1, "HIGH"))], 7.0,
                                     ["CRITICAL", "HIGH"])
    assert not got["passed"]
    assert got["reason"] == "2 above CVSS 7: CVE-2031-0001 (9.8, pkg1); CVE-2031-0003 (7.1, pkg3)"
    assert [f["id"] for f in got["evidence"]["above"]] == ["CVE-2031-0001", "CVE-2031-0003"]


def test_seven_point_zero_is_not_above_seven(tmp_path):
    got = gate.check_vulnerabilities([trivy(tmp_path, (7.0, "HIGH"), (None, "LOW"))], 7.0, ["CRITICAL", "HIGH"])
    assert got["passed"] and got["reason"] == "2 findings, none above CVSS 7"


def test_unscored_critical_blocks(tmp_path):
    got = gate.check_vulnerabilities([trivy(tmp_path, (None, "CRITICAL"))], 7.0, ["critical"])
    assert not got["passed"]
    assert got["reason"] == "1 without a CVSS score but of severity CRITICAL: CVE-2031-0001"
    assert gate.check_vulnerabilities([trivy(tmp_path, (None, "CRITICAL"))], 7.0, [])["passed"]


def test_the_same_finding_in_several_reports_counts_once(tmp_path):
    one = trivy(tmp_path, (8.0, "HIGH"), name="api.json")
    two = trivy(tmp_path, (9.0, "HIGH"), name="web.json")
    got = gate.check_vulnerabilities([one, two], 7.0, [])
    assert got["reason"] == "1 above CVSS 7: CVE-2031-0001 (9, pkg1)"


def test_unusable_vulnerability_report_fails(tmp_path):
    assert "no vulnerability report given" in gate.check_vulnerabilities([], 7.0, [])["reason"]
    got = gate.check_vulnerabilities([str(tmp_path / "nope.json")], 7.0, [])
    assert not got["passed"] and "vulnerability report %s does not exist" % (tmp_path / "nope.json") in got["reason"]


def test_many_findings_are_cut_in_the_reason_not_in_the_evidence(tmp_path):
    got = gate.check_vulnerabilities([trivy(tmp_path, *[(9.0, "HIGH")] * 14)], 7.0, [])
    assert got["reason"].endswith("; and 4 more") and len(got["evidence"]["above"]) == 14


# ---------------------------------------------------------------------------------------------- change window

def test_inside_the_change_window():
    got = gate.check_change_window(gate.parse_window(WINDOW), NOW)
    assert got["passed"] and got["reason"] == "thu 16:00 UTC is inside the change window (tue, wed, thu 15:00-18:00 UTC)"


def test_outside_the_change_window_is_no_go_and_says_when_it_opens():
    got = gate.check_change_window(gate.parse_window(WINDOW), NOW + timedelta(hours=2))
    assert not got["passed"]
    assert got["reason"] == ("thu 18:00 UTC is outside the change window (tue, wed, thu 15:00-18:00 UTC); it next opens "
                             "tue 2031-03-11 15:00 UTC")
    assert got["evidence"]["next_opening"] == "2031-03-11T15:00:00Z"
    early = gate.check_change_window(gate.parse_window(WINDOW), NOW.replace(hour=9))
    assert "next opens thu 2031-03-06 15:00 UTC" in early["reason"]


@pytest.mark.parametrize("moment, inside", [
    (datetime(2031, 3, 8, 23, 0, tzinfo=timezone.utc), True),   # Saturday night, the window opened Saturday
    (datetime(2031, 3, 9, 1, 59, tzinfo=timezone.utc), True),   # Sunday early morning, still Saturday's window
    (datetime(2031, 3, 9, 2, 0, tzinfo=timezone.utc), False),
    (datetime(2031, 3, 9, 23, 0, tzinfo=timezone.utc), False),  # Sunday night: no window opens on Sunday
    (datetime(2031, 3, 8, 21, 59, tzinfo=timezone.utc), False),
])
def test_window_over_midnight(moment, inside):
    window = gate.parse_window({"days": ["sat"], "start_utc": "22:00", "end_utc": "02:00"})
    assert gate.check_change_window(window, moment)["passed"] is inside


def test_window_to_midnight_and_none():
    window = gate.parse_window({"days": ["thu"], "start_utc": "00:00", "end_utc": "24:00"})
    assert gate.check_change_window(window, NOW.replace(hour=23, minute=59))["passed"]
    assert gate.check_change_window(None, NOW)["reason"] == "no change window is configured"


# ---------------------------------------------------------------------------------------------- freeze

def test_freeze_file_blocks_with_its_content(tmp_path):
    path = tmp_path / "freeze"
    assert gate.check_freeze(str(path))["passed"]
    path.write_text("Quarter-end freeze until 2031-04-02 (CHG-1234)\n")
    got = gate.check_freeze(str(path))
    assert not got["passed"]
    assert got["reason"] == "deployments are frozen (%s): Quarter-end freeze until 2031-04-02 (CHG-1234)" % path
    assert gate.check_freeze(None)["reason"] == "no freeze file is configured"


# ---------------------------------------------------------------------------------------------- incidents

INCIDENTS = [
    {"id": "inc1", "name": "Checkout errors", "status": "investigating", "impact": "major"},
    {"id": "inc2", "name": "Slow search", "status": "monitoring", "impact": "minor"},
    {"id": "inc3", "name": "Old outage", "status": "resolved", "impact": "critical"},
    {"id": "inc4", "name": "Mystery", "impact": "catastrophic"},
]


def test_open_incidents_at_or_above_the_impact_block():
    got = gate.check_open_incidents(INCIDENTS, "major", "open_incidents")
    assert not got["passed"]
    assert got["reason"] == ("2 unresolved incident(s) at or above major impact: 'Checkout errors' (inc1, major, "
                             "investigating); 'Mystery' (inc4, catastrophic, unresolved)")
    assert [i["id"] for i in got["evidence"]["unresolved"]] == ["inc1", "inc2", "inc4"]


def test_minor_incidents_pass_a_major_threshold():
    got = gate.check_open_incidents(INCIDENTS[1:3], "major", "open_incidents")
    assert got["passed"] and got["reason"] == "1 unresolved incident(s), none at or above major impact (open_incidents)"
    assert not gate.check_open_incidents(INCIDENTS[1:3], "minor", "open_incidents")["passed"]


# ---------------------------------------------------------------------------------------------- soak

def test_production_without_a_staging_soak_is_no_go():
    got = soak([])
    assert not got["passed"]
    assert got["reason"] == ("no deployment to staging in the promotion evidence: v1.3.0 must run successfully on "
                             "staging for 4h first")


def test_a_short_soak_says_how_long_and_how_long_is_required():
    got = soak([staging("v1.2.3", 50), staging("v1.3.0", 1.5)])
    assert not got["passed"]
    assert got["reason"] == ("v1.3.0 has soaked on staging for 1h 30m (since 2031-03-06T14:30:00Z); 4h required, "
                             "2h 30m to go")
    assert got["evidence"]["soaked_s"] == 5400


def test_a_long_enough_soak_passes_and_a_major_needs_a_day():
    records = [staging("v1.2.3", 50), staging("v1.3.0", 5)]
    got = soak(records)
    assert got["passed"] and got["reason"] == "v1.3.0 has soaked on staging for 5h (since 2031-03-06T11:00:00Z), at least 4h"
    major = soak(records, required_s=86400)
    assert not major["passed"] and "1d required, 19h to go" in major["reason"]


def test_staging_moved_on_or_failed():
    moved = soak([staging("v1.3.0", 30), staging("v1.3.1", 10)])
    assert not moved["passed"]
    assert moved["reason"].startswith("v1.3.0 is not what staging runs: its latest deployment is v1.3.1 (success")
    failed = soak([staging("v1.3.0", 30), staging("v1.3.0", 10, outcome="rolled_back")])
    assert not failed["passed"]
    assert failed["reason"].startswith("the latest staging run of v1.3.0 ended rolled_back")


def test_soak_counts_from_the_first_success_in_a_row():
    got = soak([staging("v1.3.0", 40, outcome="failed"), staging("v1.3.0", 6), staging("v1.3.0", 1)])
    assert got["passed"] and got["evidence"]["since"] == at(6)


def test_check_mode_runs_runs_stopped_by_the_gate_and_other_environments_are_not_deployments():
    records = [staging("v1.3.0", 6),
               staging("v1.3.1", 2, check_mode=True),
               {"environment": "staging", "version": "v1.3.1", "outcome": "failed", "finished_at": at(1),
                "release": {"gate": {"go": False, "failed": ["x"], "evaluated_at": at(1)}}},
               dict(staging("v1.4.0", 0.5), environment="production")]
    assert soak(records)["passed"]


def test_same_image_digests(tmp_path):
    record = staging("v1.3.0", 6, images={"api": "registry/app/api@" + DIGEST_A, "web": DIGEST_B})
    assert soak([record], images={"api": DIGEST_A, "web": "registry/app/web:v1.3.0@" + DIGEST_B})["passed"]
    wrong = soak([record], images={"api": DIGEST_B})
    assert not wrong["passed"] and "api: staging ran %s, not %s" % (DIGEST_A, DIGEST_B) in wrong["reason"]
    missing = soak([staging("v1.3.0", 6)], images={"api": DIGEST_A})
    assert not missing["passed"] and "carries no image digests" in missing["reason"]


# ---------------------------------------------------------------------------------------------- all together

def good_params(tmp_path, **overrides):
    values = params(
        approvals=[], test_reports=[junit(tmp_path, 200, failures=2)],
        vulnerability_report=[trivy(tmp_path, (5.3, "MEDIUM"))], freeze_file=str(tmp_path / "freeze"),
        open_incidents=[], promotion_evidence=[staging("v1.3.0", 6)])
    values.update(overrides)
    return values


def run(values, approvals, now=NOW):
    policy = gate.check_policy(values)
    release_type, _note = gate.derive_release_type(values["release_type"], values["version"], values["previous_version"])
    criteria = gate.evaluate(values, policy, release_type, approvals, now)
    return release_type, criteria, gate.verdict(values["version"], values["environment"], criteria)


def test_go_when_everything_holds(tmp_path):
    release_type, criteria, (go, failed, msg) = run(good_params(tmp_path), [approval("maria", "engineering_manager")])
    assert release_type == "minor"
    assert [c["name"] for c in criteria] == list(gate.CRITERIA)
    assert go and failed == [] and msg == "GO for v1.3.0 to production: all 7 criteria passed"


def test_no_go_lists_every_failed_criterion(tmp_path):
    (tmp_path / "freeze").write_text("Quarter-end freeze\n")
    values = good_params(tmp_path, test_reports=[junit(tmp_path, 100, failures=10, name="e2e.xml")],
                         open_incidents=INCIDENTS[:1], promotion_evidence=[staging("v1.3.0", 0.5)])
    _type, criteria, (go, failed, msg) = run(values, [approval("alice", "engineering_manager")],
                                             now=NOW + timedelta(hours=3))
    assert not go
    assert [f.split(":")[0] for f in failed] == ["approvals", "test_evidence", "change_window", "freeze",
                                                 "open_incidents", "soak"]
    assert msg.startswith("NO-GO for v1.3.0 to production: 6 of 7 criteria failed:\n- approvals: 1 of 1 required")
    assert msg.endswith("\n- soak: v1.3.0 has soaked on staging for 3h 30m (since 2031-03-06T15:30:00Z); 4h required, "
                        "30m to go")
    assert msg.count("\n- ") == 6
    assert [c["passed"] for c in criteria].count(True) == 1


def test_hotfix_bypasses_window_freeze_incidents_and_soak(tmp_path):
    (tmp_path / "freeze").write_text("frozen\n")
    values = good_params(tmp_path, version="v1.2.4", release_type="hotfix", open_incidents=INCIDENTS,
                         promotion_evidence=[])
    hotfix_approvals = [approval("kim", "on_call", "v1.2.4", hours_ago=14), approval("dana", "team_lead", "v1.2.4", 14)]
    _type, criteria, (go, failed, _msg) = run(values, hotfix_approvals, now=NOW.replace(hour=3))
    assert go, failed
    skipped = {c["name"]: c["reason"] for c in criteria if c["evidence"].get("applies") is False}
    assert sorted(skipped) == ["change_window", "freeze", "open_incidents", "soak"]
    assert skipped["change_window"].startswith("does not apply: a hotfix release bypasses the change window")
    # The policy can hold hotfixes too.
    values["change_window_applies_to"] = list(gate.RELEASE_TYPES)
    assert not run(values, hotfix_approvals, now=NOW.replace(hour=3))[2][0]


def test_soak_only_for_promotion_environments(tmp_path):
    values = good_params(tmp_path, environment="staging", promotion_evidence=[])
    _type, criteria, (go, _failed, _msg) = run(values, [approval("maria", "engineering_manager")])
    assert go
    assert criteria[-1]["reason"] == ("does not apply: staging is not promoted from another environment "
                                      "(promotion_environments: production <- staging)")
    values = good_params(tmp_path, promotion_evidence=None)
    assert "no promotion evidence given" in run(values, [approval("maria", "engineering_manager")])[1][-1]["reason"]


def test_major_release_needs_the_long_soak(tmp_path):
    values = good_params(tmp_path, version="v2.0.0", previous_version="v1.9.0",
                         promotion_evidence=[staging("v2.0.0", 6)])
    release_type, criteria, (go, failed, _msg) = run(values, [approval("maria", "engineering_manager", "v2.0.0"),
                                                              approval("sam", "product_owner", "v2.0.0")])
    assert release_type == "major" and not go
    assert failed == ["soak: v2.0.0 has soaked on staging for 6h (since 2031-03-06T10:00:00Z); 1d required, 18h to go"]
    assert criteria[0]["passed"]


def test_criteria_can_be_left_out_explicitly(tmp_path):
    values = good_params(tmp_path, criteria=["freeze", "test_evidence"])
    _type, criteria, (go, _failed, msg) = run(values, [])
    assert go and [c["name"] for c in criteria] == ["test_evidence", "freeze"]
    assert msg == "GO for v1.3.0 to production: all 2 criteria passed"


def test_records_dir_with_callback_records(tmp_path):
    records = tmp_path / "records"
    records.mkdir()
    record = callback_record("staging", "v1.3.0", at(5))
    (records / "a.json").write_text(json.dumps(record))
    values = good_params(tmp_path, promotion_evidence=None, promotion_records_dir=str(records))
    soak_result = run(values, [approval("maria", "engineering_manager")])[1][-1]
    assert soak_result["passed"], soak_result["reason"]
    assert soak_result["evidence"]["latest"]["source"] == str(records / "a.json")
    values["promotion_records_dir"] = str(tmp_path / "missing")
    soak_result = run(values, [approval("maria", "engineering_manager")])[1][-1]
    assert not soak_result["passed"] and "cannot read the promotion evidence" in soak_result["reason"]


def test_incident_reader_failure_fails_the_criterion(tmp_path):
    from ansible_collections.runbook.release.plugins.module_utils._gate_evidence import EvidenceError

    def broken():
        raise EvidenceError("Statuspage API GET /v1/pages/p/incidents/unresolved answered HTTP 503")

    values = good_params(tmp_path, open_incidents=None)
    policy = gate.check_policy(values)
    criteria = gate.evaluate(values, policy, "minor", [], NOW, incident_reader=broken)
    incidents = [c for c in criteria if c["name"] == "open_incidents"][0]
    assert not incidents["passed"] and incidents["reason"].startswith("cannot tell whether incidents are open: ")
    assert gate.evaluate(values, policy, "minor", [], NOW, incident_reader=lambda: (INCIDENTS[1:2], "page p"))[5]["passed"]


def test_gate_release_data_fits_the_contract():
    fragment = {"gate": {"go": False, "failed": ["soak: ..."], "evaluated_at": gate.iso(NOW)}}
    assert rd.validate(fragment, partial=True) == []
    assert rd.stats_payload(fragment) == {"runbook_release": fragment}
    assert rd.validate({"gate": {"go": "yes"}}, partial=True) == ["gate.go: expected bool, got str"]


@pytest.mark.parametrize("seconds, text", [(0, "0s"), (59, "59s"), (60, "1m"), (3725, "1h 2m"), (86400, "1d"),
                                           (90000, "1d 1h"), (-5, "0s")])
def test_duration_words(seconds, text):
    assert gate.duration(seconds) == text
