# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""The release data contract: what flows through a release, under stable keys.

Modules return their part of it, roles hand it to the deployment record with
``ansible.builtin.set_stats: {data: {runbook_release: {...}}, aggregate: true}`` and the callback reads it
back. docs/release-data-contract.md is the human description of the same schema; tests keep them in step.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone

SCHEMA_VERSION = 1
STATS_KEY = "runbook_release"

RUNBOOKS = ("release", "hotfix", "migrate", "rollback", "first_deploy", "scale", "disaster_recovery")
OUTCOMES = ("success", "failed", "rolled_back", "aborted")
VERSION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")

_STR = (str,)
_NUM = (int, float)
_OPT_STR = (str, type(None))

# key -> (allowed types, nested schema or None, description); nested schemas describe dicts.
FIELDS = {
    "schema_version": ((int,), None, "version of this contract"),
    "run_id": (_STR, None, "unique id of the run (uuid4 hex), shared by every record of it"),
    "runbook": (_STR, None, "one of " + ", ".join(RUNBOOKS)),
    "environment": (_STR, None, "inventory environment: local, staging, production, ..."),
    "service": (_STR, None, "the application (compose project) released"),
    "version": (_OPT_STR, None, "version being released (or rolled back to)"),
    "previous_version": (_OPT_STR, None, "version that was serving before the run"),
    "operator": (_STR, None, "who started the run"),
    "started_at": (_STR, None, "UTC ISO-8601"),
    "finished_at": (_OPT_STR, None, "UTC ISO-8601"),
    "backup": ((dict,), {
        "id": (_STR, None, "backup id"),
        "location": (_STR, None, "local path of the dump"),
        "s3_uri": (_OPT_STR, None, "s3://bucket/key when uploaded"),
        "sha256": (_STR, None, "hex sha256 of the dump"),
        "size_bytes": ((int,), None, "size of the dump"),
        "verified": ((bool,), None, "pg_restore --list parsed and minimums met"),
        "created_at": (_STR, None, "UTC ISO-8601"),
    }, "the pre-release database backup"),
    "migrations": ((dict,), {
        "applied": ((list,), None, "list of {version, name, duration_ms}"),
        "pending": ((list,), None, "versions still pending after the run"),
        "schema_version": (_OPT_STR, None, "highest applied version"),
        "breaks_previous": ((list,), None, "applied versions marked breaks-previous"),
    }, "database migrations of the run"),
    "smoke": ((dict,), {
        "passed": ((bool,), None, "every check passed"),
        "failed_checks": ((list,), None, "names of failed checks"),
        "checked_at": (_STR, None, "UTC ISO-8601"),
    }, "smoke check verdict"),
    "monitor": ((dict,), {
        "passed": ((bool,), None, "the window ended without a rollback recommendation"),
        "rollback_recommended": ((bool,), None, "the window recommended a rollback"),
        "reason": (_OPT_STR, None, "why"),
        "error_rate": (_NUM, None, "observed error rate, 0..1"),
        "p95_ms": (_NUM, None, "observed p95 latency"),
    }, "monitoring window verdict"),
    "preflight": ((dict,), {
        "passed": ((bool,), None, "every preflight check passed"),
        "problems": ((list,), None, "every problem found, one string each"),
        "checked_at": (_STR, None, "UTC ISO-8601"),
        "digests": ((dict,), None, "service -> image digest verified in the registry"),
    }, "preflight verdict, before any change"),
    "statuspage": ((dict,), {
        "incident_ids": ((list,), None, "incident and maintenance ids created or updated"),
    }, "status page activity"),
    "announcements": ((dict,), None, "announcements sent by the announce role, by '<kind>[-<phase>]@<time>': "
                                     "{kind, phase, at, chat, statuspage, incident_ids, errors}"),
    "gate": ((dict,), {
        "go": ((bool,), None, "every evaluated go/no-go criterion passed"),
        "failed": ((list,), None, "'<criterion>: <reason>' per failed criterion"),
        "evaluated_at": (_STR, None, "UTC ISO-8601"),
    }, "go/no-go gate verdict"),
    "integrity": ((dict,), {
        "passed": ((bool,), None, "no data integrity check was violated (the last run: after the change, when it ran)"),
        "violations": ((list,), None, "one string per violation, e.g. 'items: 1040 is +8.0 % from 963 (tolerance ±5 %)'"),
        "values": ((dict,), None, "check name -> number, of the last run"),
        "baseline": ((dict, type(None)), None, "check name -> number the last run was compared with; null without one"),
        "checked_at": (_STR, None, "UTC ISO-8601"),
    }, "data integrity checks before and after the change"),
    "hooks": ((dict,), None, "the team's hooks by stage (runbook.release.hooks): "
                             "{<stage>: [{name, rc, duration_s, ok, required, host}]}"),
    "handoff": ((dict,), {
        "posted": ((bool,), None, "the on-call summary reached the chat webhook"),
        "at": (_STR, None, "UTC ISO-8601, when the handoff was made"),
    }, "on-call handoff (runbook.release.handoff)"),
    "hotfix": ((dict,), {
        "reason": (_STR, None, "why the hotfix is needed"),
        "ticket": (_STR, None, "the incident or issue it fixes"),
    }, "present for a hotfix (playbooks/hotfix.yml)"),
    "scale": ((dict,), {
        "requested": ((dict,), None, "service -> replicas asked for"),
        "before": ((dict,), None, "service -> running replicas before"),
        "after": ((dict,), None, "service -> running replicas after (after the restore on failure)"),
        "answered": ((dict,), None, "service -> {replicas, requests, answered, missing, by}"),
        "capacity": ((dict,), None, "memory/CPU figures and problems of the capacity check"),
    }, "present for a scale run (playbooks/scale.yml)"),
    "disaster_recovery": ((dict,), {
        "backup_id": (_STR, None, "the backup restored"),
        "declared_at": (_STR, None, "UTC ISO-8601, when the disaster was declared"),
        "data_loss_window_s": ((int, float), None, "declared_at minus the backup's created_at, in seconds"),
        "restored_objects": ((int,), None, "objects pg_restore restored"),
    }, "present for a disaster recovery (playbooks/disaster_recovery.yml)"),
    "outcome": (_STR, None, "one of " + ", ".join(OUTCOMES)),
    "rollback": ((dict,), {
        "trigger": (_STR, None, "what triggered it: rollout, smoke, monitor, operator, ..."),
        "reason": (_STR, None, "human-readable reason"),
        "rolled_back_to": (_OPT_STR, None, "version restored"),
    }, "present when the run rolled back"),
}
REQUIRED = ("schema_version", "run_id", "runbook", "environment", "service", "operator", "started_at")


def utc_now():
    """Current time as the contract writes it: UTC ISO-8601 with a Z."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_run_id():
    import uuid  # here, not at the top: smoke_check imports this file on every run and never needs it

    return uuid.uuid4().hex


def new_release(runbook, environment, service, operator, version=None, previous_version=None, run_id=None):
    """The opening record of a run; later steps merge their parts into it."""
    data = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id or new_run_id(),
        "runbook": runbook,
        "environment": environment,
        "service": service,
        "operator": operator,
        "started_at": utc_now(),
        "version": version,
        "previous_version": previous_version,
    }
    errors = validate(data)
    if errors:
        raise ValueError("; ".join(errors))
    return data


def _check(data, schema, prefix, errors):
    for key, value in data.items():
        name = prefix + key
        if key not in schema:
            errors.append("%s: unknown key (allowed: %s)" % (name, ", ".join(sorted(schema))))
            continue
        types, nested, _desc = schema[key]
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            expected = "/".join(t.__name__ for t in types)
            errors.append("%s: expected %s, got %s" % (name, expected, type(value).__name__))
            continue
        if nested is not None:
            _check(value, nested, name + ".", errors)


def validate(data, partial=False):
    """Return a list of problems (empty when valid). ``partial`` allows a fragment without required keys."""
    if not isinstance(data, dict):
        return ["release data must be a dict, got %s" % type(data).__name__]
    errors = []
    _check(data, FIELDS, "", errors)
    if not partial:
        errors.extend("%s: required" % key for key in REQUIRED if key not in data)
    if isinstance(data.get("runbook"), str) and data["runbook"] not in RUNBOOKS:
        errors.append("runbook: %r is not one of %s" % (data["runbook"], ", ".join(RUNBOOKS)))
    if isinstance(data.get("outcome"), str) and data["outcome"] not in OUTCOMES:
        errors.append("outcome: %r is not one of %s" % (data["outcome"], ", ".join(OUTCOMES)))
    for key in ("version", "previous_version"):
        value = data.get(key)
        if isinstance(value, str) and not VERSION_RE.match(value):
            errors.append("%s: %r does not match %s" % (key, value, VERSION_RE.pattern))
    return errors


def _deep_merge(base, fragment):
    out = dict(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merge(base, fragment):
    """Merge a fragment into a record the way set_stats aggregation does (recursive for dicts)."""
    errors = validate(fragment, partial=True)
    if errors:
        raise ValueError("; ".join(errors))
    return _deep_merge(base, fragment)


def stats_payload(fragment):
    """What a role passes to set_stats: the fragment under the contract's single key."""
    errors = validate(fragment, partial=True)
    if errors:
        raise ValueError("; ".join(errors))
    return {STATS_KEY: fragment}
