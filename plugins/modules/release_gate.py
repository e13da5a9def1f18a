#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: release_gate
short_description: Go/no-go gate of a release - evaluates every criterion and lists every one that failed
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Replaces the go/no-go meeting of the release runbooks (seed 002, "Success Metrics & Go/No-Go Criteria") with a
    gate that runs before anything changes. It judges seven criteria and never stops at the first failure, so a
    NO-GO lists every reason at once.
  - V(approvals) - each role the release type requires (seed 000's table, O(approvals_required)) has an approval by
    a person listed for that role in O(approvers), for this version, not older than O(approval_max_age_h), and not
    by the O(operator) (self-approval is refused and named).
  - V(test_evidence) - the JUnit XML reports in O(test_reports) pass at least O(min_pass_rate) (seed 002, 95 %).
  - V(vulnerabilities) - no finding in O(vulnerability_report) scores above O(max_cvss) (seed 002, CVSS 7.0).
  - V(change_window) - now is inside O(change_window).
  - V(freeze) - O(freeze_file) does not exist; its first lines are the reason when it does.
  - V(open_incidents) - no unresolved incident at or above O(block_on_incident_impact), from O(open_incidents) or
    queried from Statuspage with O(statuspage).
  - V(soak) - for an environment in O(promotion_environments), the same version (and with O(images), the same
    image digests) is the latest successful deployment of the environment it is promoted from, for at least
    O(soak_s) (O(soak_major_s) for a major release; seed 000, staging soak 4 h, 24 h for major).
  - Hotfixes bypass the change window, freezes, open incidents and the soak by default (seed 000, "Hotfix Process";
    seed 002, "no changes except critical bugs"); the C(*_applies_to) options change that.
  - Bad input (an unknown release type, a malformed change window, an unreadable approvals file, a malformed
    approval) fails before anything is evaluated.
  - Returns the verdict for the deployment record under the release data contract's C(gate) field.
extends_documentation_fragment:
  - runbook.release.attributes
options:
  version:
    description: Version to release, 1 to 128 of C([A-Za-z0-9_.-]), for example C(v1.2.3).
    type: str
    required: true
  previous_version:
    description: Version serving before the release; needed for O(release_type=auto).
    type: str
  release_type:
    description:
      - V(major), V(minor), V(patch) or V(hotfix); it picks the approvals, and a major release soaks longer.
      - V(auto) derives major, minor or patch from the first differing part of the semantic versions O(version) and
        O(previous_version) (C(vMAJOR.MINOR.PATCH)). A hotfix is never derived; state it.
    type: str
    default: auto
    choices: [auto, major, minor, patch, hotfix]
  environment:
    description: Inventory environment the release goes to, for example V(production).
    type: str
    required: true
  operator:
    description: Who runs the release (the AWX user, or C($USER)); they cannot approve it themselves.
    type: str
    required: true
  criteria:
    description:
      - The criteria to evaluate. Leaving one out is explicit and shows in RV(skipped_criteria).
    type: list
    elements: str
    choices: [approvals, test_evidence, vulnerabilities, change_window, freeze, open_incidents, soak]
    default: [approvals, test_evidence, vulnerabilities, change_window, freeze, open_incidents, soak]
  approvals:
    description:
      - Approvals, each C({approver, role, version, approved_at}) (C(approved_at) ISO-8601 with a zone).
      - An AWX workflow hands them over as the extra var C(approvals) in this shape, from the workflow's survey or from
        C(set_stats) of an earlier node (AWX passes a node's C(set_stats) data to the nodes after it as extra vars).
      - Added to those of O(approvals_file).
    type: list
    elements: dict
    default: []
  approvals_file:
    description: YAML or JSON file with the same list under C(approvals:).
    type: path
  approvals_required:
    description:
      - Release type to the roles that must approve it.
      - The default is seed 000's "Release Types" table - V(major) Engineering Manager and Product, V(minor)
        Engineering Manager, V(patch) Team Lead, V(hotfix) On-call and Team Lead.
    type: dict
    default:
      major: [engineering_manager, product_owner]
      minor: [engineering_manager]
      patch: [team_lead]
      hotfix: [on_call, team_lead]
  approvers:
    description:
      - "Role to the people allowed to approve for it, for example C({team_lead: [dana, lee]})."
      - A required role nobody is listed for cannot be approved.
    type: dict
    default: {}
  approval_max_age_h:
    description: Hours after which an approval no longer counts.
    type: float
    default: 72
  approvals_distinct:
    description: One person counts for one required role only (two roles need two people).
    type: bool
    default: true
  test_reports:
    description:
      - JUnit XML reports (C(<testsuites>) or C(<testsuite>) root). Counts are summed over the leaf suites of every
        report; the pass rate is passed over executed tests (skipped tests are not executed).
      - A missing or unparsable report fails the criterion, naming it.
    type: list
    elements: path
    default: []
  min_pass_rate:
    description: Lowest pass rate, 0 to 1 (seed 002 - "E2E test pass rate <95%" is NO-GO).
    type: float
    default: 0.95
  vulnerability_report:
    description:
      - Scanner reports in JSON - Trivy (C(Results[].Vulnerabilities[].CVSS.*.V3Score)), Grype
        (C(matches[].vulnerability.cvss[].metrics.baseScore), CVSS v3 and v4 entries) or a plain C([{id, cvss}]) list.
      - With several scores for one finding, the highest counts.
    type: list
    elements: path
    default: []
  max_cvss:
    description: Highest CVSS base score allowed (seed 002 - "Security vulnerability (CVSS >7.0) detected" is NO-GO).
    type: float
    default: 7.0
  block_unscored_severities:
    description:
      - Severities that block a finding that has no CVSS v3/v4 score (seed 002 - "no critical/high vulnerabilities").
    type: list
    elements: str
    default: [CRITICAL, HIGH]
  change_window:
    description:
      - "When releases may start, in UTC - C({days: [tue, wed, thu], start_utc: '15:00', end_utc: '18:00'}).
        C(end_utc) before C(start_utc) is a window over midnight, opened on the days listed; C('24:00') ends at
        midnight."
      - Not set - no window restricts the release.
    type: dict
  change_window_applies_to:
    description: Release types the change window holds.
    type: list
    elements: str
    default: [major, minor, patch]
  freeze_file:
    description: While this file exists (on the host the task runs on), releases are frozen; its first lines say why.
    type: path
  freeze_applies_to:
    description: Release types a freeze holds.
    type: list
    elements: str
    default: [major, minor, patch]
  open_incidents:
    description:
      - Incidents to judge, as Statuspage lists them (C({id, name, status, impact})). When given, O(statuspage) is
        not asked. An item without a status counts as unresolved; an impact the gate does not know blocks.
    type: list
    elements: dict
  statuspage:
    description:
      - Ask this Statuspage page for its unresolved incidents (C(GET /pages/{page_id}/incidents/unresolved)), paced
        and retried like M(runbook.release.statuspage_update). A failed query fails the criterion.
    type: dict
    suboptions:
      api_url:
        description: Base URL of the Statuspage REST API v1.
        type: str
        default: https://api.statuspage.io/v1
      page_id:
        description: Id of the status page.
        type: str
        required: true
      api_key:
        description: API key; default the E(STATUSPAGE_API_KEY) environment variable. Never shown.
        type: str
      timeout:
        description: Seconds to wait for each answer.
        type: int
        default: 30
      validate_certs:
        description: Verify the API's TLS certificate.
        type: bool
        default: true
      retries:
        description: Retries after 420, 429, 5xx answers and connection errors.
        type: int
        default: 5
      requests_per_second:
        description: Most requests per second with this key from this host, over O(statuspage.rate_limit_window).
        type: float
        default: 1.0
      rate_limit_window:
        description: The rolling window, in seconds, over which the API measures O(statuspage.requests_per_second).
        type: float
        default: 60
  block_on_incident_impact:
    description: Lowest impact of an unresolved incident that blocks the release.
    type: str
    default: major
    choices: [none, minor, major, critical]
  incidents_applies_to:
    description: Release types that open incidents hold (a hotfix is what fixes them).
    type: list
    elements: str
    default: [major, minor, patch]
  promotion_environments:
    description: Environment to the environment it is promoted from; only these need a soak.
    type: dict
    default:
      production: staging
  soak_s:
    description: Seconds the version must have run on the environment it is promoted from (seed 000 - 4 h).
    type: int
    default: 14400
  soak_major_s:
    description: The same for a major release (seed 000 - 24 h).
    type: int
    default: 86400
  soak_applies_to:
    description: Release types that need the soak (seed 000 - a hotfix skips it).
    type: list
    elements: str
    default: [major, minor, patch]
  promotion_evidence:
    description:
      - Past release records, each C({environment, version, outcome, finished_at}) with optional C(images)
        (service to digest), for example from a release history query.
    type: list
    elements: dict
  promotion_records_dir:
    description:
      - Directory of the deployment records the C(runbook.release.deployment_record) callback writes (C(*.json)); its
        layout (contract under C(release), the run's outcome and C(check_mode) at the top) and the plain contract
        layout are both read. Check-mode runs and runs this gate stopped are not deployments.
    type: path
  images:
    description:
      - Service to image digest (C(sha256:...), or an image reference holding one) of the build being promoted. When
        given, the latest staging record must carry the same digests - its C(images), or in a deployment record the
        C(preflight.digests) the preflight role verified for that run; a record without digests fails the soak.
    type: dict
  now:
    description:
      - The time to evaluate at (ISO-8601 with a zone), for tests. It moves the change window, approval ages and the
        soak; the module warns when it is set.
    type: str
  fail_on_no_go:
    description: Fail the task on NO-GO, with a message listing every failed criterion. With V(false), return the verdict.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Check mode evaluates exactly as a normal run does; the gate never changes anything.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Always C(changed=false). The verdict depends on the time (window, ages, soak) and on the evidence.
notes:
  - The files are read on the host the task runs on, usually the controller (C(delegate_to) C(localhost)).
  - Times are UTC. A window written in local time must allow for daylight saving time (see the role's README).
seealso:
  - module: runbook.release.statuspage_update
"""

EXAMPLES = r"""
- name: Go/no-go for a production release
  runbook.release.release_gate:
    version: v1.3.0
    previous_version: v1.2.3
    environment: production
    operator: "{{ awx_user_name | default(lookup('ansible.builtin.env', 'USER')) }}"
    approvals_file: /srv/releases/v1.3.0/approvals.yml
    approvers:
      engineering_manager: [maria]
      product_owner: [sam]
      team_lead: [dana, lee]
      on_call: [kim, noor]
    test_reports:
      - /srv/releases/v1.3.0/e2e-junit.xml
    vulnerability_report: /srv/releases/v1.3.0/trivy.json
    change_window: {days: [tue, wed, thu], start_utc: "15:00", end_utc: "18:00"}
    freeze_file: /etc/runbook-release/freeze
    statuspage:
      page_id: kctbh9vrtdwd
      api_key: "{{ statuspage_api_key }}"
    promotion_records_dir: /var/lib/runbook-release/records
  delegate_to: localhost
  run_once: true

- name: Hotfix approved in an AWX workflow (approvals arrive as an extra var)
  runbook.release.release_gate:
    version: v1.2.4
    release_type: hotfix
    environment: production
    operator: "{{ awx_user_name }}"
    approvals: "{{ approvals }}"
    approvers: "{{ release_approvers }}"
    test_reports: [/srv/releases/v1.2.4/junit.xml]
    vulnerability_report: /srv/releases/v1.2.4/grype.json

- name: Only report the verdict
  runbook.release.release_gate:
    version: v1.3.0
    previous_version: v1.2.3
    environment: staging
    operator: ci
    criteria: [test_evidence, vulnerabilities, freeze]
    test_reports: [junit.xml]
    vulnerability_report: trivy.json
    fail_on_no_go: false
  register: gate
"""

RETURN = r"""
go:
  description: Whether every evaluated criterion passed.
  returned: always
  type: bool
release_type:
  description: The release type judged (derived when O(release_type=auto)).
  returned: always
  type: str
  sample: minor
criteria:
  description: Every evaluated criterion, in a fixed order.
  returned: always
  type: list
  elements: dict
  contains:
    name:
      description: Criterion name.
      type: str
      returned: always
    passed:
      description: Whether it passed (also true when it does not apply).
      type: bool
      returned: always
    reason:
      description: Why, with the figures.
      type: str
      returned: always
    evidence:
      description: What it was judged on - counts, ids, times, files.
      type: dict
      returned: always
failed_criteria:
  description:
    - "C(<criterion>: <reason>) for every failed criterion (empty on GO)."
    - Not named C(failed), which Ansible reads as the task's own failure flag.
  returned: always
  type: list
  elements: str
  sample: ["approvals: 1 of 2 required approvals missing for v1.3.0 (major release): product_owner: no approval"]
skipped_criteria:
  description: Criteria left out with O(criteria).
  returned: always
  type: list
  elements: str
msg:
  description: The verdict in words, listing every failed criterion.
  returned: always
  type: str
  sample: "NO-GO for v1.2.3 to production: 2 of 7 criteria failed: ..."
release_data:
  description: The run's part of the release data contract (docs/release-data-contract.md).
  returned: always
  type: dict
  sample: {gate: {go: false, failed: ["soak: ..."], evaluated_at: "2031-03-06T15:30:00Z"}}
api_requests:
  description: Statuspage requests sent (C(METHOD path -> status)).
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.release.plugins.module_utils import _release_gate as gate
from ansible_collections.runbook.release.plugins.module_utils._gate_evidence import (
    EvidenceError, GateInputError, check_approval_entries, load_approvals_file)
from ansible_collections.runbook.release.plugins.module_utils._statuspage import (
    StatuspageError, client_from_params, connection_argument_spec)

TYPES = ["major", "minor", "patch"]


def argument_spec():
    statuspage = connection_argument_spec()["argument_spec"]
    return dict(
        version=dict(type="str", required=True),
        previous_version=dict(type="str"),
        release_type=dict(type="str", default="auto", choices=["auto"] + list(gate.RELEASE_TYPES)),
        environment=dict(type="str", required=True),
        operator=dict(type="str", required=True),
        criteria=dict(type="list", elements="str", choices=list(gate.CRITERIA), default=list(gate.CRITERIA)),
        approvals=dict(type="list", elements="dict", default=[]),
        approvals_file=dict(type="path"),
        approvals_required=dict(type="dict", default=gate.DEFAULT_APPROVALS_REQUIRED),
        approvers=dict(type="dict", default={}),
        approval_max_age_h=dict(type="float", default=72),
        approvals_distinct=dict(type="bool", default=True),
        test_reports=dict(type="list", elements="path", default=[]),
        min_pass_rate=dict(type="float", default=0.95, no_log=False),  # a rate, not a password
        vulnerability_report=dict(type="list", elements="path", default=[]),
        max_cvss=dict(type="float", default=7.0),
        block_unscored_severities=dict(type="list", elements="str", default=["CRITICAL", "HIGH"]),
        change_window=dict(type="dict"),
        change_window_applies_to=dict(type="list", elements="str", default=TYPES),
        freeze_file=dict(type="path"),
        freeze_applies_to=dict(type="list", elements="str", default=TYPES),
        open_incidents=dict(type="list", elements="dict"),
        statuspage=dict(type="dict", options=statuspage),
        block_on_incident_impact=dict(type="str", default="major", choices=["none", "minor", "major", "critical"]),
        incidents_applies_to=dict(type="list", elements="str", default=TYPES),
        promotion_environments=dict(type="dict", default={"production": "staging"}),
        soak_s=dict(type="int", default=14400),
        soak_major_s=dict(type="int", default=86400),
        soak_applies_to=dict(type="list", elements="str", default=TYPES),
        promotion_evidence=dict(type="list", elements="dict"),
        promotion_records_dir=dict(type="path"),
        images=dict(type="dict"),
        now=dict(type="str"),
        fail_on_no_go=dict(type="bool", default=True),
    )


class ReleaseGate(object):

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.client = None

    def fail(self, msg, **extra):
        calls = self.client.calls if self.client else []
        self.module.fail_json(msg=self.client.scrub(msg) if self.client else msg, changed=False, api_requests=calls, **extra)

    def inputs(self):
        """Everything checked before evaluating: (policy, release type, approvals, now)."""
        policy = gate.check_policy(self.params)
        release_type, note = gate.derive_release_type(self.params["release_type"], policy["version"],
                                                      policy["previous_version"])
        if note:
            self.module.warn(note)
        now = gate.parse_now(self.params["now"])
        if self.params["now"]:
            self.module.warn("now=%s is set: the gate judges the change window, approval ages and the soak at that time, "
                             "not the real one; use it for tests only" % self.params["now"])
        approvals = check_approval_entries(self.params["approvals"], "approvals")
        if self.params["approvals_file"]:
            approvals += load_approvals_file(self.params["approvals_file"])
        wants_statuspage = "open_incidents" in policy["criteria"] and self.params["open_incidents"] is None
        if self.params["statuspage"] and wants_statuspage:
            self.client = client_from_params(self.params["statuspage"])
        return policy, release_type, approvals, now

    def read_incidents(self):
        try:
            incidents = gate.fetch_open_incidents(self.client)
        except StatuspageError as exc:
            raise EvidenceError(self.client.scrub(exc.msg)) from None
        return incidents, "statuspage page %s" % self.client.page_id

    def run(self):
        try:
            policy, release_type, approvals, now = self.inputs()
        except (GateInputError, StatuspageError) as exc:
            return self.fail(getattr(exc, "msg", None) or str(exc))
        criteria = gate.evaluate(self.params, policy, release_type, approvals, now,
                                 incident_reader=self.read_incidents if self.client else None)
        go, failed, msg = gate.verdict(policy["version"], self.params["environment"], criteria)
        result = dict(
            changed=False, go=go, release_type=release_type, criteria=criteria, failed_criteria=failed, msg=msg,
            skipped_criteria=[c for c in gate.CRITERIA if c not in policy["criteria"]],
            release_data={"gate": {"go": go, "failed": failed, "evaluated_at": gate.iso(now)}},
            api_requests=self.client.calls if self.client else [],
        )
        if not go and self.params["fail_on_no_go"]:
            return self.module.fail_json(**result)
        return self.module.exit_json(**result)


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    ReleaseGate(module).run()


if __name__ == "__main__":
    main()
