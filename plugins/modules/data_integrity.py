#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: data_integrity
short_description: Data integrity checks of a release - record counts against a baseline, orphans, bounds
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Runs the data integrity checks of the release runbooks (seed 002, "Data Integrity Checks") on PostgreSQL - each
    check is a query that returns one number (a record count, a count of orphaned rows), judged against an absolute
    O(checks[].max) or O(checks[].min) and, given a O(baseline) from a run before the release, against that
    baseline within O(checks[].tolerance_pct) ("all data counts match pre-deployment baseline, ±5 %").
  - "Run it before the change (no baseline - only the bounds are judged) and keep RV(baseline); run it after the
    change with that baseline. Every violation is listed, worded as C(items: 1040 is +8.0 % from 963 (tolerance ±5 %))
    or C(orphans: 3 is above the maximum 0)."
  - Each query runs in its own C(READ ONLY) transaction with O(statement_timeout), and the session's transactions are
    read only too - a check cannot change data, whatever it says. A query must be one statement.
  - Bad input - a check without a name or query, two statements in a query, a query that returns no row, more than
    one row or column, NULL or something that is not a number, a query PostgreSQL refuses - fails the task with
    every problem, naming the check and the fix. These are not violations - the checks could not judge.
  - Returns its part of the release data contract (C(integrity)) in RV(release_data).
extends_documentation_fragment:
  - runbook.release.attributes
  - runbook.release.postgres
options:
  checks:
    description:
      - The checks, each a query that returns one row with one number.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description: Name of the check, unique in the task; the baseline, values and violations are keyed by it.
        type: str
        required: true
      query:
        description:
          - One SQL statement that returns one row with one number, for example C(SELECT count(*) FROM items) or,
            for orphans, C(SELECT count(*) FROM items i LEFT JOIN users u ON u.username = i.owner WHERE u.id IS NULL).
          - Percent signs need no escaping. A trailing semicolon is allowed.
        type: str
        required: true
      tolerance_pct:
        description:
          - How far, in percent of the baseline value, the value may be from it - V(5) allows 950 to 1050 for a
            baseline of 1000. V(0) means unchanged.
          - Default is O(tolerance_pct) for a check without O(checks[].max) and O(checks[].min); a check with a
            bound (an orphan count with C(max=0)) is compared with the baseline only when it sets its own.
          - A baseline of 0 allows only 0.
        type: float
      max:
        description: The value must be at most this (V(0) for orphans, whatever the baseline).
        type: float
      min:
        description: The value must be at least this.
        type: float
  baseline:
    description:
      - Check name to number, as RV(baseline) of an earlier run (before the release) returned it.
      - Without it, only O(checks[].max) and O(checks[].min) are judged. A check the baseline does not name is judged by
        its bounds only, with a warning.
    type: dict
  tolerance_pct:
    description: Tolerance of checks that set none (seed 002, ±5 %).
    type: float
    default: 5
  statement_timeout:
    description:
      - PostgreSQL C(statement_timeout) for each query (for example V(30s), V(2min)); a query that runs longer is
        canceled and fails the task, naming the check. V(0) disables it.
    type: str
    default: 30s
  fail_on_violation:
    description: Fail the task when a check is violated, listing every violation. With V(false), only report them.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: The checks only read (in READ ONLY transactions), so check mode runs them and reports real values.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: The module never changes anything (C(changed=false)).
notes:
  - The queries run on the host the task runs on; run it where PostgreSQL is reachable (often C(delegate_to) a host
    of the application, or the controller).
  - Use a role that may read the tables checked; C(pg_read_all_data) (PostgreSQL 14+) is enough.
  - Count recent rows with a fixed point in time, not C(now()) - C(created_at >= now() - interval '7 days') moves
    between the runs before and after the release.
seealso:
  - module: runbook.release.migration_apply
    description: The migrations these checks guard.
  - module: runbook.release.smoke_check
    description: Its C(postgres) checks judge the server's health (long queries, lock waits, connections).
"""

EXAMPLES = r"""
- name: Before the release - read the counts (and fail on orphans that are already there)
  runbook.release.data_integrity:
    login_host: db.example.com
    login_user: release_reader
    login_password: "{{ release_reader_password }}"
    login_db: app
    checks: &integrity_checks
      - name: assessments
        query: SELECT count(*) FROM assessments
      - name: recent_users
        query: SELECT count(*) FROM users WHERE created_at >= '2031-03-01'
        tolerance_pct: 2
      - name: orphaned_assessments
        query: >-
          SELECT count(*) FROM assessments a LEFT JOIN facilities f ON a.facility_id = f.id WHERE f.id IS NULL
        max: 0
      - name: active_without_stripe_id
        query: SELECT count(*) FROM users WHERE stripe_customer_id IS NULL AND subscription_status = 'active'
        max: 0
  register: integrity_before

- name: After the migrations - compare with the baseline
  runbook.release.data_integrity:
    login_host: db.example.com
    login_user: release_reader
    login_password: "{{ release_reader_password }}"
    login_db: app
    checks: *integrity_checks
    baseline: "{{ integrity_before.baseline }}"
  register: integrity_after

- name: Hand the verdict to the deployment record
  ansible.builtin.set_stats:
    data:
      runbook_release: "{{ integrity_after.release_data }}"
    aggregate: true
"""

RETURN = r"""
passed:
  description: No check was violated.
  returned: success, or failure with violations
  type: bool
values:
  description:
    - Check name to the number its query returned.
    - In Jinja, write C(result['values']); C(result.values) is the dict's own method.
  returned: success, or failure with violations
  type: dict
  sample: {items: 1040, orphaned_items: 0}
violations:
  description: Every violation, in the order of the checks.
  returned: success, or failure with violations
  type: list
  elements: str
  sample: ["items: 1040 is +8.0 % from 963 (tolerance ±5 %)", "orphaned_items: 3 is above the maximum 0"]
baseline:
  description: The values of this run, to pass as O(baseline) to the run after the release.
  returned: success, or failure with violations
  type: dict
  sample: {items: 963, orphaned_items: 0}
checks:
  description: One entry per check, in the order of O(checks).
  returned: success, or failure with violations
  type: list
  elements: dict
  contains:
    name: {description: Name of the check., type: str, returned: always}
    value: {description: The number the query returned., type: float, returned: always}
    baseline: {description: The baseline value it was compared with; null when not compared., type: float,
               returned: always}
    change_pct: {description: Change from the baseline in percent (signed); null when not compared., type: float,
                 returned: always}
    tolerance_pct: {description: Tolerance it was judged by; null for a check judged by its bounds only., type: float,
                    returned: always}
    max: {description: "Upper bound, or null.", type: float, returned: always}
    min: {description: "Lower bound, or null.", type: float, returned: always}
    compared: {description: Whether it was compared with a baseline., type: bool, returned: always}
    passed: {description: Whether it passed., type: bool, returned: always}
    violations: {description: Its violations., type: list, elements: str, returned: always}
    duration_ms: {description: Time its query took., type: float, returned: always}
problems:
  description: Why the checks could not judge (bad input, a query that failed or did not return one number).
  returned: failure
  type: list
  elements: str
release_data:
  description:
    - This run's part of the release data contract (docs/release-data-contract.md), for C(ansible.builtin.set_stats)
      under C(runbook_release) - C(integrity) with C(passed), C(violations), C(values), C(baseline) (the values it was
      compared with, null without one) and C(checked_at).
  returned: success, or failure with violations
  type: dict
  sample:
    integrity:
      passed: false
      violations: ["items: 1040 is +8.0 % from 963 (tolerance ±5 %)"]
      values: {items: 1040, orphaned_items: 0}
      baseline: {items: 963, orphaned_items: 0}
      checked_at: "2031-03-01T10:20:00.000000Z"
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.release.plugins.module_utils import _data_integrity as integrity
from ansible_collections.runbook.release.plugins.module_utils import _postgres as pg
from ansible_collections.runbook.release.plugins.module_utils._release_data import utc_now


class DataIntegrity(object):
    """Checks the input, asks every query once, judges, and reports."""

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.conn = None

    def fail(self, msg, **extra):
        self.close()
        self.module.fail_json(msg=msg, changed=False, **extra)

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except pg.Error:
                pass  # closing a broken connection has nothing left to clean up
            self.conn = None

    def inputs(self):
        problems = integrity.check_timeout(self.p["statement_timeout"])
        checks = baseline = None
        try:
            checks = integrity.normalize_checks(self.p["checks"], self.p["tolerance_pct"])
        except integrity.IntegrityInputError as exc:
            problems.extend(exc.problems)
        if checks is not None:
            try:
                baseline, notes = integrity.check_baseline(self.p["baseline"], checks)
            except integrity.IntegrityInputError as exc:
                problems.extend(exc.problems)
            else:
                for note in notes:
                    self.module.warn(note)
        if problems:
            self.fail("data_integrity refused the task before asking anything: %s" % "; ".join(problems),
                      problems=problems)
        return checks, baseline

    def run(self):
        checks, baseline = self.inputs()
        pg.ensure_psycopg2(self.module)
        checked_at = utc_now()
        secrets = pg.Secrets(self.p)
        try:
            self.conn = pg.connect(self.p, application_name=integrity.APPLICATION_NAME, autocommit=True)
            values, problems, durations = integrity.run_checks(self.conn, checks, self.p["statement_timeout"].strip(),
                                                               pg.Error)
        except pg.PostgresError as exc:
            return self.fail(exc.msg)
        except pg.Error as exc:
            return self.fail(secrets.scrub("PostgreSQL error while preparing the checks on %s: %s"
                                           % (pg.target_description(self.p), str(exc).strip())))
        self.close()
        if problems:
            problems = [secrets.scrub(problem) for problem in problems]
            return self.fail("%d check(s) could not judge, nothing was judged: %s" % (len(problems), "; ".join(problems)),
                             problems=problems, values=values)
        results, violations = integrity.judge(checks, values, baseline)
        for entry in results:
            entry["duration_ms"] = durations.get(entry["name"])
        passed = not violations
        result = dict(changed=False, passed=passed, values=values, violations=violations, baseline=dict(values),
                      checks=results, msg=integrity.verdict_message(violations, len(checks)),
                      release_data=integrity.release_fragment(passed, violations, values, baseline, checked_at))
        if violations and self.p["fail_on_violation"]:
            return self.module.fail_json(**result)
        return self.module.exit_json(**result)


def argument_spec():
    spec = pg.connection_argument_spec()
    spec["argument_spec"].update(
        checks=dict(type="list", elements="dict", required=True, options=dict(
            name=dict(type="str", required=True),
            query=dict(type="str", required=True),
            tolerance_pct=dict(type="float"),
            max=dict(type="float"),
            min=dict(type="float"),
        )),
        baseline=dict(type="dict"),
        tolerance_pct=dict(type="float", default=integrity.DEFAULT_TOLERANCE_PCT),
        statement_timeout=dict(type="str", default="30s"),
        fail_on_violation=dict(type="bool", default=True),
    )
    return spec


def main():
    module = AnsibleModule(supports_check_mode=True, **argument_spec())
    DataIntegrity(module).run()


if __name__ == "__main__":
    main()
