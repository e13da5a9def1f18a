# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""The go/no-go gate of the release runbooks (seed 002, "Success Metrics & Go/No-Go Criteria").

``check_policy()`` checks the gate's options against each other and raises ``GateInputError`` before anything is
evaluated. Then each ``check_*`` function judges one criterion and returns ``{name, passed, reason, evidence}``;
they are pure (the clock is an argument), so every NO-GO case is tested without waiting for a change window.
``evaluate()`` runs them all (never stopping at the first failure) and ``verdict()`` words the result.
"""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta, timezone

from ansible_collections.runbook.release.plugins.module_utils import _gate_evidence as ev
from ansible_collections.runbook.release.plugins.module_utils._gate_evidence import EvidenceError, GateInputError
from ansible_collections.runbook.release.plugins.module_utils._release_data import VERSION_RE
from ansible_collections.runbook.release.plugins.module_utils._statuspage import parse_time

RELEASE_TYPES = ("major", "minor", "patch", "hotfix")
CRITERIA = ("approvals", "test_evidence", "vulnerabilities", "change_window", "freeze", "open_incidents", "soak")
# Seed 000, "Release Types": Major - Engineering Manager + Product; Minor - Engineering Manager; Patch - Team Lead;
# Hotfix - On-call + Team Lead.
DEFAULT_APPROVALS_REQUIRED = {
    "major": ["engineering_manager", "product_owner"],
    "minor": ["engineering_manager"],
    "patch": ["team_lead"],
    "hotfix": ["on_call", "team_lead"],
}
# Seed 000, "Hotfix Process": hotfixes skip the staging soak and exist to fix open P0/P1 incidents and outages;
# seed 002, T-1: "Freeze code (no changes except critical bugs)". So these criteria spare hotfixes by default.
STANDARD_TYPES = ["major", "minor", "patch"]
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_FULL_DAYS = {d[:3]: d for d in ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")}
IMPACT_RANK = {"none": 0, "maintenance": 0, "minor": 1, "major": 2, "critical": 3}
RESOLVED_STATUSES = ("resolved", "postmortem", "completed")
_TIME_RE = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")
_SEMVER_RE = re.compile(r"^[vV]?(\d+)\.(\d+)\.(\d+)(?:[-+][0-9A-Za-z.+-]*)?$")
MAX_LISTED = 10  # ids named in a reason; the evidence lists all of them


def criterion(name, ok, reason, **evidence):
    return {"name": name, "passed": bool(ok), "reason": reason, "evidence": evidence}


def iso(moment):
    """UTC ISO-8601 with a Z, as the release data contract writes times."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(seconds):
    """Seconds as an operator reads them: 3h 12m, 45m 10s, 20s."""
    seconds = int(max(seconds, 0))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return "%dd %dh" % (days, hours) if hours else "%dd" % days
    if hours:
        return "%dh %dm" % (hours, minutes) if minutes else "%dh" % hours
    if minutes:
        return "%dm %ds" % (minutes, secs) if secs else "%dm" % minutes
    return "%ds" % secs


def _listed(items):
    shown = "; ".join(items[:MAX_LISTED])
    return shown + ("; and %d more" % (len(items) - MAX_LISTED) if len(items) > MAX_LISTED else "")


def _same(one, other):
    return str(one).strip().casefold() == str(other).strip().casefold()


def _bare_version(version):
    return str(version).strip()[1:] if str(version).strip()[:1] in ("v", "V") else str(version).strip()


# ---------------------------------------------------------------------------------------------- input

def parse_now(value):
    """The evaluation clock: the given ISO-8601 time (tests), or the real UTC time."""
    if value in (None, ""):
        return datetime.now(timezone.utc)
    try:
        return parse_time(value)
    except ValueError as exc:
        raise GateInputError("now=%r is not usable (%s): give ISO-8601 UTC such as 2031-03-06T10:30:00Z, or leave it "
                             "unset to use the real time" % (value, exc)) from None


def derive_release_type(release_type, version, previous_version):
    """(type, note): ``auto`` compares the semantic versions; a hotfix is never guessed, it is stated."""
    if release_type != "auto":
        return release_type, None
    if not previous_version:
        raise GateInputError("release_type=auto needs previous_version to compare %s with; give previous_version or "
                             "state release_type (major, minor, patch or hotfix)" % version)
    new, old = _SEMVER_RE.match(version), _SEMVER_RE.match(previous_version)
    for value, match in ((version, new), (previous_version, old)):
        if not match:
            raise GateInputError("release_type=auto cannot read %r as a semantic version (vMAJOR.MINOR.PATCH); state "
                                 "release_type (major, minor, patch or hotfix)" % value)
    new_parts, old_parts = [int(p) for p in new.groups()], [int(p) for p in old.groups()]
    for kind, new_part, old_part in zip(("major", "minor", "patch"), new_parts, old_parts):
        if new_part != old_part:
            note = None
            if new_part < old_part:
                note = "%s is older than previous_version %s: judged as a %s release" % (version, previous_version, kind)
            return kind, note
    return "patch", "%s has the same MAJOR.MINOR.PATCH as previous_version %s (a rerun?): judged as a patch release" % (
        version, previous_version)


def parse_window(window):
    """A change window {days, start_utc, end_utc} -> (set of weekday numbers, start minute, end minute), or None."""
    if window in (None, {}):
        return None
    example = "for example {days: [tue, wed, thu], start_utc: '15:00', end_utc: '18:00'}"
    if not isinstance(window, dict):
        raise GateInputError("change_window must be a dict, got %r; %s" % (window, example))
    unknown = sorted(set(window) - {"days", "start_utc", "end_utc"})
    if unknown:
        raise GateInputError("change_window has unknown key(s) %s; use days, start_utc and end_utc (%s)"
                             % (", ".join(unknown), example))
    days = window.get("days")
    if not isinstance(days, list) or not days:
        raise GateInputError("change_window.days must be a non-empty list of mon, tue, wed, thu, fri, sat, sun; got %r"
                             % (days,))
    numbers = set()
    for day in days:
        name = str(day).strip().lower()
        if name in _FULL_DAYS.values():
            name = name[:3]
        if name not in DAYS:
            raise GateInputError("change_window.days: %r is not a day; use mon, tue, wed, thu, fri, sat or sun" % (day,))
        numbers.add(DAYS.index(name))
    bounds = []
    for key in ("start_utc", "end_utc"):
        value = window.get(key)
        match = _TIME_RE.match(str(value).strip()) if value is not None else None
        minutes = int(match.group(1)) * 60 + int(match.group(2)) if match else None
        if minutes is None or minutes > 1440:
            raise GateInputError("change_window.%s=%r is not a time of day: use HH:MM in UTC, 00:00 to 24:00 (%s)"
                                 % (key, value, example))
        bounds.append(minutes)
    if bounds[0] == 1440:
        raise GateInputError("change_window.start_utc=%r: a window cannot open at 24:00; use '00:00'" % window.get("start_utc"))
    if bounds[0] == bounds[1]:
        raise GateInputError("change_window start_utc and end_utc are the same time (%s); for a window open all day use "
                             "start_utc: '00:00', end_utc: '24:00'" % window.get("start_utc"))
    return numbers, bounds[0], bounds[1]


def _check_types(value, option, allow_empty=True):
    if not isinstance(value, list) or (not value and not allow_empty):
        raise GateInputError("%s must be a list of release types (%s), got %r" % (option, ", ".join(RELEASE_TYPES), value))
    unknown = [t for t in value if t not in RELEASE_TYPES]
    if unknown:
        raise GateInputError("%s: unknown release type(s) %s; use %s"
                             % (option, ", ".join(map(str, unknown)), ", ".join(RELEASE_TYPES)))
    return list(value)


def check_policy(params):
    """The policy options, checked and normalised; GateInputError names the first problem and the fix."""
    version = params["version"]
    if not VERSION_RE.match(version or ""):
        raise GateInputError("version %r is not a release version: use 1 to 128 letters, digits, '.', '_' or '-' "
                             "(for example v1.2.3)" % (version,))
    previous = params.get("previous_version")
    if previous and not VERSION_RE.match(previous):
        raise GateInputError("previous_version %r is not a release version (for example v1.2.2)" % (previous,))
    hints = {"environment": "the environment released to; the role takes release_environment",
             "operator": "who runs the release, who may not approve it; the role takes release_operator, else AWX's "
                         "awx_user_name, else $USER"}
    for option, hint in hints.items():
        if not (params.get(option) or "").strip():
            raise GateInputError("%s is empty: pass %s (%s)" % (option, option, hint))
    required = params.get("approvals_required")
    if required is None:
        required = DEFAULT_APPROVALS_REQUIRED
    if not isinstance(required, dict):
        raise GateInputError("approvals_required must map release types to lists of roles, got %r" % (required,))
    for kind, roles in required.items():
        if kind not in RELEASE_TYPES:
            raise GateInputError("approvals_required: unknown release type %r; use %s" % (kind, ", ".join(RELEASE_TYPES)))
        if not isinstance(roles, list) or not all(isinstance(r, str) and r.strip() for r in roles):
            raise GateInputError("approvals_required.%s must be a list of role names, got %r" % (kind, roles))
    given = params.get("approvers") or {}
    if not isinstance(given, dict):
        raise GateInputError("approvers must map each role to the people allowed to approve for it, got %r" % (given,))
    approvers = {}
    for role, people in given.items():
        if isinstance(people, str):
            people = [people]
        if not isinstance(people, list) or not all(isinstance(p, str) for p in people):
            raise GateInputError("approvers.%s must be a list of names, got %r" % (role, people))
        approvers[role] = people
    for option in ("min_pass_rate",):
        if not 0 <= params[option] <= 1:
            raise GateInputError("min_pass_rate=%s must be between 0 and 1 (seed 002: 0.95)" % params[option])
    if not 0 <= params["max_cvss"] <= 10:
        raise GateInputError("max_cvss=%s must be between 0 and 10 (seed 002: 7.0)" % params["max_cvss"])
    for option in ("approval_max_age_h", "soak_s", "soak_major_s"):
        if params[option] < 0:
            raise GateInputError("%s=%s must not be negative" % (option, params[option]))
    promotion = params.get("promotion_environments") or {}
    if not isinstance(promotion, dict) or not all(isinstance(v, str) and v for v in promotion.values()):
        raise GateInputError("promotion_environments must map a target environment to the environment it is promoted "
                             "from, for example {production: staging}; got %r" % (promotion,))
    for index, entry in enumerate(params.get("promotion_evidence") or []):
        record = ev.normalize_record(entry, "promotion_evidence #%d" % (index + 1))
        if record is None or not record["finished_at"] or not record["outcome"]:
            raise GateInputError("promotion_evidence #%d (%r) is not a release record: each needs environment, version, "
                                 "outcome and finished_at" % (index + 1, entry))
    criteria = params.get("criteria") or list(CRITERIA)
    return {
        "version": version,
        "previous_version": previous,
        "approvals_required": {k: [r.strip() for r in v] for k, v in required.items()},
        "approvers": approvers,
        "window": parse_window(params.get("change_window")),
        "change_window_applies_to": _check_types(params["change_window_applies_to"], "change_window_applies_to"),
        "freeze_applies_to": _check_types(params["freeze_applies_to"], "freeze_applies_to"),
        "incidents_applies_to": _check_types(params["incidents_applies_to"], "incidents_applies_to"),
        "soak_applies_to": _check_types(params["soak_applies_to"], "soak_applies_to"),
        "promotion_environments": promotion,
        "criteria": [c for c in CRITERIA if c in criteria],
    }


# ---------------------------------------------------------------------------------------------- approvals

def _refusal(approval, roles_people, operator, version, now, max_age_h):
    """Why one approval does not count, or None when it does."""
    who = approval["approver"]
    allowed = roles_people.get(approval["role"])
    if allowed is None:
        return "%s approved as %s, but approvers lists nobody for %s" % (who, approval["role"], approval["role"])
    if not any(_same(who, person) for person in allowed):
        return "%s is not an approver for %s (approvers.%s: %s)" % (who, approval["role"], approval["role"],
                                                                    ", ".join(allowed) or "nobody")
    if _same(who, operator):
        return "%s is the operator of this release and cannot approve it (self-approval)" % who
    if _bare_version(approval["version"]) != _bare_version(version):
        return "%s approved %s, not %s" % (who, approval["version"], version)
    try:
        when = parse_time(approval["approved_at"])
    except ValueError as exc:
        return "%s's approved_at %r is not usable (%s)" % (who, approval["approved_at"], exc)
    age_h = (now - when).total_seconds() / 3600.0
    if age_h < -0.1:  # six minutes of clock skew between machines are tolerated
        return "%s's approval is dated in the future (%s)" % (who, iso(when))
    if age_h > max_age_h:
        return "%s's approval is %s old (%s), older than %g h" % (who, duration(age_h * 3600), iso(when), max_age_h)
    return None


def _assign(roles, candidates, distinct, taken=()):
    """One valid approval per role; with ``distinct`` a person counts for one role only. None when impossible."""
    if not roles:
        return {}
    role, rest = roles[0], roles[1:]
    for approval in candidates.get(role, []):
        person = approval["approver"].casefold()
        if distinct and person in taken:
            continue
        found = _assign(rest, candidates, distinct, tuple(taken) + (person,))
        if found is not None:
            found[role] = approval
            return found
    return None


def _largest_assignment(roles, candidates, distinct):
    """The most roles that can be approved at once (to say which roles are really missing)."""
    for size in range(len(roles), 0, -1):
        for subset in itertools.combinations(roles, size):
            found = _assign(list(subset), candidates, distinct)
            if found is not None:
                return found
    return {}


def check_approvals(approvals, release_type, policy, operator, now, max_age_h, distinct=True):
    """Every role the release type requires has a valid approval (seed 000's table, seed 002's sign-offs)."""
    version = policy["version"]
    required = policy["approvals_required"].get(release_type, [])
    roles_people = {}
    for role, people in policy["approvers"].items():
        roles_people[role.strip().casefold()] = [str(p).strip() for p in people]
    evidence = {"required_roles": required, "release_type": release_type, "approved": {}, "refused": []}
    if not required:
        return criterion("approvals", True, "no approval is required for a %s release" % release_type, **evidence)
    candidates, refused = {}, {}
    for approval in approvals:
        role = approval["role"].casefold()
        if not any(_same(role, r) for r in required):
            continue
        checked = dict(approval, role=role)
        why = _refusal(checked, roles_people, operator, version, now, max_age_h)
        if why:
            refused.setdefault(role, []).append(why)
            evidence["refused"].append({"approver": approval["approver"], "role": role, "reason": why,
                                        "source": approval.get("source")})
        else:
            candidates.setdefault(role, []).append(checked)
    keys = [r.casefold() for r in required]
    assignment = _assign(keys, candidates, distinct)
    if assignment is not None:
        evidence["approved"] = {r: {"approver": a["approver"], "approved_at": a["approved_at"]} for r, a in assignment.items()}
        return criterion("approvals", True, "%s approved %s (%s release)" % (
            ", ".join("%s (%s)" % (a["approver"], r) for r, a in sorted(assignment.items())), version, release_type),
            **evidence)
    problems = []
    partial = _largest_assignment([k for k in keys if candidates.get(k)], candidates, distinct)
    for role in keys:
        if role in partial:
            evidence["approved"][role] = {"approver": partial[role]["approver"], "approved_at": partial[role]["approved_at"]}
            continue
        if candidates.get(role):
            names = ", ".join(sorted({a["approver"] for a in candidates[role]}))
            problems.append("%s: %s already approved for another role; each required role needs a different person"
                            % (role, names))
        elif refused.get(role):
            problems.append("%s: %s" % (role, "; ".join(refused[role])))
        else:
            problems.append("%s: no approval" % role)
    missing = len(problems)
    return criterion("approvals", False, "%d of %d required approvals missing for %s (%s release): %s" % (
        missing, len(keys), version, release_type, _listed(problems)), **evidence)


# ---------------------------------------------------------------------------------------------- tests

def check_test_evidence(paths, min_pass_rate):
    """Seed 002: "All E2E tests pass (>95% pass rate)"; NO-GO when the pass rate is below it."""
    if not paths:
        return criterion("test_evidence", False, "no test report given: set test_reports to the JUnit XML reports of "
                         "this release (or leave test_evidence out of criteria)", reports=[])
    reports, problems = [], []
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for path in paths:
        try:
            counts = ev.read_junit(path)
        except EvidenceError as exc:
            problems.append(str(exc))
            reports.append({"path": path, "error": str(exc)})
            continue
        reports.append(dict(counts, path=path))
        for key, value in counts.items():
            totals[key] += value
    executed = totals["tests"] - totals["skipped"]
    passed = executed - totals["failures"] - totals["errors"]
    rate = float(passed) / executed if executed > 0 else None
    evidence = dict(totals, passed=passed, pass_rate=round(rate, 4) if rate is not None else None,
                    min_pass_rate=min_pass_rate, reports=reports)
    if problems:
        return criterion("test_evidence", False, "unusable test evidence: %s" % _listed(problems), **evidence)
    if executed <= 0:
        return criterion("test_evidence", False, "the test reports hold no executed test (%d tests, %d skipped)"
                         % (totals["tests"], totals["skipped"]), **evidence)
    summary = "%d of %d tests passed (%.1f %%; %d failed, %d errors, %d skipped)" % (
        passed, executed, rate * 100, totals["failures"], totals["errors"], totals["skipped"])
    if passed < min_pass_rate * executed - 1e-9:
        return criterion("test_evidence", False, "%s, below the required %g %%" % (summary, min_pass_rate * 100), **evidence)
    return criterion("test_evidence", True, "%s, at least %g %%" % (summary, min_pass_rate * 100), **evidence)


# ---------------------------------------------------------------------------------------------- vulnerabilities

def check_vulnerabilities(paths, max_cvss, block_unscored):
    """Seed 002: NO-GO on "Security vulnerability (CVSS >7.0) detected"."""
    if not paths:
        return criterion("vulnerabilities", False, "no vulnerability report given: set vulnerability_report to the "
                         "scanner's JSON (Trivy, Grype or [{id, cvss}]), or leave vulnerabilities out of criteria",
                         reports=[])
    block_unscored = [s.upper() for s in block_unscored]
    reports, problems, found = [], [], {}
    for path in paths:
        try:
            kind, findings = ev.read_vulnerabilities(path)
        except EvidenceError as exc:
            problems.append(str(exc))
            reports.append({"path": path, "error": str(exc)})
            continue
        reports.append({"path": path, "format": kind, "findings": len(findings)})
        for finding in findings:
            seen = found.setdefault(finding["id"], {"id": finding["id"], "cvss": None, "severity": None, "packages": []})
            if finding["cvss"] is not None and (seen["cvss"] is None or finding["cvss"] > seen["cvss"]):
                seen["cvss"] = finding["cvss"]
            seen["severity"] = seen["severity"] or finding.get("severity")
            if finding.get("package") and finding["package"] not in seen["packages"]:
                seen["packages"].append(finding["package"])
    above = sorted((f for f in found.values() if f["cvss"] is not None and f["cvss"] > max_cvss),
                   key=lambda f: (-f["cvss"], f["id"]))
    unscored = sorted((f for f in found.values() if f["cvss"] is None and str(f["severity"] or "").upper() in block_unscored),
                      key=lambda f: f["id"])
    evidence = {"max_cvss": max_cvss, "findings": len(found), "above": above, "unscored_blocking": unscored,
                "reports": reports}
    if problems:
        return criterion("vulnerabilities", False, "unusable vulnerability report: %s" % _listed(problems), **evidence)
    if above or unscored:
        parts = []
        if above:
            parts.append("%d above CVSS %g: %s" % (len(above), max_cvss, _listed(
                ["%s (%g%s)" % (f["id"], f["cvss"], ", " + ", ".join(f["packages"]) if f["packages"] else "") for f in above])))
        if unscored:
            parts.append("%d without a CVSS score but of severity %s: %s" % (
                len(unscored), "/".join(block_unscored), _listed([f["id"] for f in unscored])))
        return criterion("vulnerabilities", False, "; ".join(parts), **evidence)
    return criterion("vulnerabilities", True, "%d findings, none above CVSS %g" % (len(found), max_cvss), **evidence)


# ---------------------------------------------------------------------------------------------- change window

def _in_window(window, moment):
    days, start, end = window
    minute = moment.hour * 60 + moment.minute
    weekday = moment.weekday()
    if start < end:
        return weekday in days and start <= minute < end
    # Overnight (22:00-02:00): the day named is the day the window opens.
    return (weekday in days and minute >= start) or ((weekday - 1) % 7 in days and minute < end)


def next_opening(window, now):
    days, start, _end = window
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    for offset in range(0, 8):
        opening = midnight + timedelta(days=offset, minutes=start)
        if opening.weekday() in days and opening > now:
            return opening
    return None


def _window_text(window):
    days, start, end = window
    names = ", ".join(DAYS[d] for d in sorted(days))
    return "%s %02d:%02d-%02d:%02d UTC" % (names, start // 60, start % 60, end // 60, end % 60)


def check_change_window(window, now):
    """Seed 002: "Schedule deployment window (Tuesday-Thursday, 10 AM - 2 PM ET)"; seed 000: Thursdays 10:00 UTC."""
    if window is None:
        return criterion("change_window", True, "no change window is configured", now=iso(now))
    text = _window_text(window)
    evidence = {"now": iso(now), "window": text}
    if _in_window(window, now):
        return criterion("change_window", True, "%s %s is inside the change window (%s)"
                         % (DAYS[now.weekday()], now.strftime("%H:%M UTC"), text), **evidence)
    opening = next_opening(window, now)
    evidence["next_opening"] = iso(opening) if opening else None
    return criterion("change_window", False, "%s %s is outside the change window (%s); it next opens %s" % (
        DAYS[now.weekday()], now.strftime("%H:%M UTC"), text,
        "%s %s" % (DAYS[opening.weekday()], opening.strftime("%Y-%m-%d %H:%M UTC")) if opening else "never"), **evidence)


# ---------------------------------------------------------------------------------------------- freeze

def check_freeze(path):
    """Seed 000: "Freeze Deployments" (a flag file); seed 002: "Freeze code (no changes except critical bugs)"."""
    if not path:
        return criterion("freeze", True, "no freeze file is configured", freeze_file=None)
    content = ev.read_freeze(path)
    if content is None:
        return criterion("freeze", True, "no freeze: %s does not exist" % path, freeze_file=path, frozen=False)
    return criterion("freeze", False, "deployments are frozen (%s): %s" % (path, content),
                     freeze_file=path, frozen=True, content=content)


# ---------------------------------------------------------------------------------------------- incidents

def check_open_incidents(incidents, block_impact, source):
    """Seed 002's "No P0/P1 bugs open": no unresolved incident at or above ``block_impact``."""
    if incidents is None:
        return criterion("open_incidents", True, "no incident source is configured (open_incidents or statuspage)",
                         source=None)
    threshold = IMPACT_RANK[block_impact]
    blocking, open_ids = [], []
    for incident in incidents:
        if not isinstance(incident, dict):
            continue
        status = str(incident.get("status") or "unresolved")
        if status in RESOLVED_STATUSES:
            continue
        impact = incident.get("impact") or incident.get("impact_override") or "unknown"
        rank = IMPACT_RANK.get(str(impact), 99)  # an impact the gate does not know blocks: it may be the worst
        shown = {"id": incident.get("id"), "name": incident.get("name"), "impact": impact, "status": status,
                 "shortlink": incident.get("shortlink")}
        open_ids.append(shown)
        if rank >= threshold:
            blocking.append(shown)
    evidence = {"source": source, "block_on_incident_impact": block_impact, "unresolved": open_ids, "blocking": blocking}
    if blocking:
        return criterion("open_incidents", False, "%d unresolved incident(s) at or above %s impact: %s" % (
            len(blocking), block_impact, _listed(["%r (%s, %s, %s)" % (i["name"], i["id"], i["impact"], i["status"])
                                                  for i in blocking])), **evidence)
    return criterion("open_incidents", True, "%d unresolved incident(s), none at or above %s impact (%s)"
                     % (len(open_ids), block_impact, source), **evidence)


def fetch_open_incidents(client):
    """Unresolved realtime incidents of a Statuspage page (raises StatuspageError)."""
    return client.list_incidents("unresolved")


# ---------------------------------------------------------------------------------------------- soak

def _digest_problems(wanted, recorded):
    if recorded is None:
        return ["the staging record carries no image digests, so the same images cannot be proven"]
    problems = []
    for service, digests in sorted(wanted.items()):
        have = recorded.get(service)
        if not have:
            problems.append("%s: not in the staging record" % service)
        elif not digests & have:
            problems.append("%s: staging ran %s, not %s" % (service, ", ".join(sorted(have)), ", ".join(sorted(digests))))
    return problems


def check_soak(records, version, source_env, required_s, now, images=None, notes=()):
    """Seed 000, "Staging Soak Period": the same version ran successfully on staging for 4 h (24 h for major).

    The newest run on ``source_env`` (check-mode runs and runs the gate stopped are not deployments) must be a
    success of ``version``; it has soaked since the oldest of the successes of that version in a row before it.
    """
    runs = []
    for record in records:
        if record["environment"] != source_env or record["check_mode"] or record.get("stopped_by_gate"):
            continue
        try:
            finished = parse_time(record["finished_at"])
        except (TypeError, ValueError):
            continue
        runs.append((finished, record))
    runs.sort(key=lambda item: item[0])
    evidence = {"source_environment": source_env, "required_s": required_s, "soaked_s": 0, "since": None,
                "runs_considered": len(runs), "notes": list(notes)}
    required = duration(required_s)
    if not runs:
        return criterion("soak", False, "no deployment to %s in the promotion evidence: %s must run successfully on %s "
                         "for %s first" % (source_env, version, source_env, required), **evidence)
    latest_at, latest = runs[-1]
    evidence["latest"] = {"version": latest["version"], "outcome": latest["outcome"], "finished_at": iso(latest_at),
                          "source": latest.get("source")}
    if not _same(_bare_version(latest["version"]), _bare_version(version)):
        return criterion("soak", False, "%s is not what %s runs: its latest deployment is %s (%s, finished %s); deploy "
                         "%s to %s and let it soak %s" % (version, source_env, latest["version"], latest["outcome"],
                                                          iso(latest_at), version, source_env, required), **evidence)
    if latest["outcome"] != "success":
        return criterion("soak", False, "the latest %s run of %s ended %s (finished %s); it needs a successful deployment "
                         "and %s of soak" % (source_env, version, latest["outcome"], iso(latest_at), required), **evidence)
    since = latest_at
    for finished, record in reversed(runs):
        if record["outcome"] != "success" or not _same(_bare_version(record["version"]), _bare_version(version)):
            break
        since = finished
    soaked = (now - since).total_seconds()
    evidence.update(soaked_s=int(max(soaked, 0)), since=iso(since))
    if images:
        problems = _digest_problems(ev.image_digests(images), latest.get("images"))
        if problems:
            return criterion("soak", False, "%s on %s is not the same build: %s" % (version, source_env, _listed(problems)),
                             **evidence)
    if soaked < required_s:
        return criterion("soak", False, "%s has soaked on %s for %s (since %s); %s required, %s to go" % (
            version, source_env, duration(soaked), iso(since), required, duration(required_s - soaked)), **evidence)
    return criterion("soak", True, "%s has soaked on %s for %s (since %s), at least %s" % (
        version, source_env, duration(soaked), iso(since), required), **evidence)


# ---------------------------------------------------------------------------------------------- verdict

def not_applicable(name, reason):
    return criterion(name, True, "does not apply: %s" % reason, applies=False)


def verdict(version, environment, criteria):
    """(go, failed reasons, message) over the evaluated criteria."""
    failed = ["%s: %s" % (c["name"], c["reason"]) for c in criteria if not c["passed"]]
    if failed:
        msg = "NO-GO for %s to %s: %d of %d criteria failed:\n%s" % (
            version, environment, len(failed), len(criteria), "\n".join("- " + f for f in failed))
    else:
        msg = "GO for %s to %s: all %d criteria passed" % (version, environment, len(criteria))
    return not failed, failed, msg


def records_from_params(params):
    """(records, notes) from promotion_evidence and promotion_records_dir; EvidenceError when the directory fails."""
    records, notes = [], []
    for index, entry in enumerate(params.get("promotion_evidence") or []):
        record = ev.normalize_record(entry, "promotion_evidence #%d" % (index + 1))
        if record is not None:  # check_policy() refused the others already
            records.append(record)
    if params.get("promotion_records_dir"):
        found, skipped = ev.read_records_dir(params["promotion_records_dir"])
        records += found
        notes += skipped
    return records, notes


def evaluate(params, policy, release_type, approvals, now, incident_reader=None):
    """Every criterion in ``policy["criteria"]``, in order; none stops the others.

    ``incident_reader()`` returns the unresolved incidents (the Statuspage query) or raises EvidenceError.
    """
    environment = params["environment"]
    version = policy["version"]
    results = []
    for name in policy["criteria"]:
        if name == "approvals":
            results.append(check_approvals(approvals, release_type, policy, params["operator"], now,
                                           params["approval_max_age_h"], params["approvals_distinct"]))
        elif name == "test_evidence":
            results.append(check_test_evidence(params.get("test_reports") or [], params["min_pass_rate"]))
        elif name == "vulnerabilities":
            results.append(check_vulnerabilities(params.get("vulnerability_report") or [], params["max_cvss"],
                                                 params["block_unscored_severities"]))
        elif name == "change_window":
            if release_type not in policy["change_window_applies_to"]:
                results.append(not_applicable(name, "a %s release bypasses the change window (change_window_applies_to: "
                                              "%s)" % (release_type, ", ".join(policy["change_window_applies_to"]))))
            else:
                results.append(check_change_window(policy["window"], now))
        elif name == "freeze":
            if release_type not in policy["freeze_applies_to"]:
                results.append(not_applicable(name, "a %s release is not held by a freeze (freeze_applies_to: %s)"
                                              % (release_type, ", ".join(policy["freeze_applies_to"]))))
            else:
                results.append(check_freeze(params.get("freeze_file")))
        elif name == "open_incidents":
            results.append(_incidents(params, policy, release_type, incident_reader))
        elif name == "soak":
            results.append(_soak(params, policy, release_type, environment, version, now))
    return results


def _incidents(params, policy, release_type, incident_reader):
    if release_type not in policy["incidents_applies_to"]:
        return not_applicable("open_incidents", "a %s release is how open incidents get fixed (incidents_applies_to: %s)"
                              % (release_type, ", ".join(policy["incidents_applies_to"])))
    if params.get("open_incidents") is not None:
        return check_open_incidents(params["open_incidents"], params["block_on_incident_impact"], "open_incidents")
    if incident_reader is None:
        return check_open_incidents(None, params["block_on_incident_impact"], None)
    try:
        incidents, source = incident_reader()
    except EvidenceError as exc:
        return criterion("open_incidents", False, "cannot tell whether incidents are open: %s" % exc, source="statuspage")
    return check_open_incidents(incidents, params["block_on_incident_impact"], source)


def _soak(params, policy, release_type, environment, version, now):
    source_env = policy["promotion_environments"].get(environment)
    if source_env is None:
        return not_applicable("soak", "%s is not promoted from another environment (promotion_environments: %s)" % (
            environment, ", ".join("%s <- %s" % kv for kv in sorted(policy["promotion_environments"].items())) or "none"))
    if release_type not in policy["soak_applies_to"]:
        return not_applicable("soak", "a %s release skips the %s soak (soak_applies_to: %s)" % (
            release_type, source_env, ", ".join(policy["soak_applies_to"])))
    if not params.get("promotion_evidence") and not params.get("promotion_records_dir"):
        return criterion("soak", False, "no promotion evidence given: set promotion_records_dir (the deployment records) "
                         "or promotion_evidence to prove %s ran on %s" % (version, source_env), source_environment=source_env)
    required_s = params["soak_major_s"] if release_type == "major" else params["soak_s"]
    try:
        records, notes = records_from_params(params)
    except EvidenceError as exc:
        return criterion("soak", False, "cannot read the promotion evidence: %s" % exc, source_environment=source_env)
    return check_soak(records, version, source_env, required_s, now, images=params.get("images"), notes=notes)
