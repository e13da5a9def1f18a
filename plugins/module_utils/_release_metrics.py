# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Release metrics over a history of deployment records (``scripts/release-metrics``).

Per environment and service, and over everything:

- deployments: runs of a changing runbook (release, hotfix, first_deploy, migrate), not in check mode, that
  ended ``success`` or ``rolled_back``, or ended ``failed`` after changing something;
- deployment frequency: successful deployments per day and per week over the window;
- lead time: the deployed commit's time (``project.committed_at``) to the end of a successful deployment;
- change failure rate: deployments that rolled back, failed after changing something, or were followed by a
  ``rollback``, ``hotfix`` or ``disaster_recovery`` run before the next deployment, over all deployments;
- time to restore: for a deployment that rolled back in its own run, from its first failed task (or its
  start) to its end; for one remedied by a later run, from its end to the end of the first successful
  remedy. Both are upper bounds: the records do not know when users first saw the failure.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os

from ansible_collections.runbook.release.plugins.module_utils._deployment_record import iso, parse_time, utc_now

DEPLOY_RUNBOOKS = ("release", "hotfix", "first_deploy", "migrate")
REMEDY_RUNBOOKS = ("rollback", "hotfix", "disaster_recovery")
CSV_COLUMNS = ("environment", "service", "first_at", "last_at", "days", "runs", "deployments",
               "successful_deployments", "failed_changes", "change_failure_rate", "deployments_per_day",
               "deployments_per_week", "lead_time_count", "lead_time_median_h", "lead_time_p90_h", "lead_time_mean_h",
               "time_to_restore_count", "time_to_restore_median_min", "time_to_restore_mean_min",
               "time_to_restore_max_min", "unrestored_failures", "rollback_runs", "failed_runs", "aborted_runs")


def load_records(directory):
    """(records, problems): every deployment record (*.json with record_version) under directory."""
    records, problems, seen = [], [], {}
    for root, dirs, files in os.walk(directory):
        dirs.sort()
        for name in sorted(files):
            if not name.endswith(".json") or name.startswith("."):
                continue
            path = os.path.join(root, name)
            try:
                with open(path, encoding="utf-8") as handle:
                    data = json.load(handle)
            except (OSError, ValueError) as exc:
                problems.append("%s: not readable as JSON (%s)" % (path, exc))
                continue
            if not isinstance(data, dict) or "record_version" not in data:
                continue
            key = data.get("record_id") or path
            if key in seen:
                # The same run stored twice (a copy, a re-render): keep the complete one, then the latest.
                other = records[seen[key]]
                mine = (bool(data.get("complete")), data.get("finished_at") or "")
                if mine <= (bool(other.get("complete")), other.get("finished_at") or ""):
                    continue
                records[seen[key]] = data
                continue
            seen[key] = len(records)
            records.append(data)
    return records, problems


def _changed_something(record):
    return any((p.get("changed") or 0) > 0 for p in record.get("phases") or [])


def _is_deployment(record):
    if record.get("runbook") not in DEPLOY_RUNBOOKS or record.get("check_mode"):
        return False
    outcome = record.get("outcome")
    return outcome in ("success", "rolled_back") or (outcome == "failed" and _changed_something(record))


def _seconds(start, end):
    first, second = parse_time(start), parse_time(end)
    if first is None or second is None:
        return None
    return (second - first).total_seconds()


def _stats(values, scale):
    values = sorted(v / scale for v in values if v is not None)
    if not values:
        return {"count": 0, "median": None, "p90": None, "mean": None, "max": None}
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2.0
    p90 = values[max(int(math.ceil(0.9 * len(values))) - 1, 0)]  # nearest rank
    return {"count": len(values), "median": round(median, 3), "p90": round(p90, 3),
            "mean": round(sum(values) / len(values), 3), "max": round(values[-1], 3)}


def assess(records):
    """One row per deployment: failed change or not, what remedied it, lead time and time to restore."""
    ordered = sorted((r for r in records if not r.get("check_mode")), key=lambda r: r.get("started_at") or "")
    by_group = {}
    for record in ordered:
        by_group.setdefault((record.get("environment") or "?", record.get("service") or "?"), []).append(record)
    rows = []
    for (environment, service), seq in sorted(by_group.items()):
        for index, record in enumerate(seq):
            if not _is_deployment(record):
                continue
            outcome = record.get("outcome")
            failed = outcome in ("rolled_back", "failed")
            remedy, restore_s = None, None
            if outcome == "rolled_back":
                start = (record.get("first_failure") or {}).get("at") or record.get("started_at")
                restore_s = _seconds(start, record.get("finished_at"))
            for later in seq[index + 1:]:
                if later.get("runbook") in REMEDY_RUNBOOKS:
                    failed = True
                    if later.get("outcome") == "success" and restore_s is None:
                        remedy = later
                        restore_s = _seconds(record.get("finished_at"), later.get("finished_at"))
                        break
                elif _is_deployment(later):
                    break
            committed = (record.get("project") or {}).get("committed_at")
            lead_s = _seconds(committed, record.get("finished_at")) if outcome == "success" and committed else None
            rows.append({
                "record_id": record.get("record_id"), "run_id": record.get("run_id"),
                "environment": environment, "service": service, "runbook": record.get("runbook"),
                "version": record.get("version"), "previous_version": record.get("previous_version"),
                "started_at": record.get("started_at"), "finished_at": record.get("finished_at"),
                "outcome": outcome, "failed_change": failed,
                "remedied_by": remedy.get("record_id") if remedy else None,
                "lead_time_s": lead_s if lead_s is None or lead_s >= 0 else None,
                "time_to_restore_s": restore_s if failed else None,
            })
    return rows


def _group_metrics(records, rows, window=None):
    real = [r for r in records if not r.get("check_mode")]
    starts = [r.get("started_at") for r in real if r.get("started_at")]
    ends = [r.get("finished_at") for r in real if r.get("finished_at")]
    first_at, last_at = (window or (min(starts) if starts else None, max(ends) if ends else None))
    span = _seconds(first_at, last_at) if first_at and last_at else None
    days = max((span or 0) / 86400.0, 1.0)
    deployments = len(rows)
    successful = sum(1 for r in rows if r["outcome"] == "success")
    failures = [r for r in rows if r["failed_change"]]
    restore = _stats([r["time_to_restore_s"] for r in failures], 60.0)
    lead = _stats([r["lead_time_s"] for r in rows], 3600.0)
    return {
        "first_at": first_at, "last_at": last_at, "days": round(days, 3), "runs": len(real),
        "deployments": deployments, "successful_deployments": successful, "failed_changes": len(failures),
        "change_failure_rate": round(len(failures) / float(deployments), 4) if deployments else None,
        "deployments_per_day": round(successful / days, 4),
        "deployments_per_week": round(successful * 7.0 / days, 3),
        "lead_time_h": lead,
        "time_to_restore_min": dict(restore, unrestored=sum(1 for r in failures if r["time_to_restore_s"] is None)),
        "rollback_runs": sum(1 for r in real if r.get("runbook") == "rollback" or r.get("outcome") == "rolled_back"),
        "failed_runs": sum(1 for r in real if r.get("outcome") == "failed"),
        "aborted_runs": sum(1 for r in real if r.get("outcome") == "aborted"),
    }


def compute(records, now=None):
    """The metrics document: overall, per (environment, service), and the per-deployment rows."""
    rows = assess(records)
    groups = {}
    for record in records:
        groups.setdefault((record.get("environment") or "?", record.get("service") or "?"), []).append(record)
    per_group = []
    for (environment, service), members in sorted(groups.items()):
        mine = [r for r in rows if (r["environment"], r["service"]) == (environment, service)]
        entry = {"environment": environment, "service": service}
        entry.update(_group_metrics(members, mine))
        per_group.append(entry)
    overall = {"environment": "*", "service": "*"}
    overall.update(_group_metrics(records, rows))
    return {
        "generated_at": iso(now or utc_now()),
        "records": len(records),
        "check_mode_runs_ignored": sum(1 for r in records if r.get("check_mode")),
        "overall": overall,
        "groups": per_group,
        "deployments": rows,
        "definitions": __doc__.split("\n\n", 1)[1].strip(),
    }


def _flat(entry):
    lead, restore = entry["lead_time_h"], entry["time_to_restore_min"]
    row = {k: entry.get(k) for k in CSV_COLUMNS}
    row.update({"lead_time_count": lead["count"], "lead_time_median_h": lead["median"], "lead_time_p90_h": lead["p90"],
                "lead_time_mean_h": lead["mean"], "time_to_restore_count": restore["count"],
                "time_to_restore_median_min": restore["median"], "time_to_restore_mean_min": restore["mean"],
                "time_to_restore_max_min": restore["max"], "unrestored_failures": restore["unrestored"]})
    return row


def to_csv(metrics):
    """CSV text: one row per environment and service, then the overall row (environment and service '*')."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for entry in metrics["groups"] + [metrics["overall"]]:
        writer.writerow({k: ("" if v is None else v) for k, v in _flat(entry).items()})
    return buffer.getvalue()
