# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Reports from a deployment record: the on-call handoff (Markdown, or one self-contained HTML page with an
SVG timeline of the phases) and the short release summary the callback prints.

The fields are those of the seed runbooks' handoff templates: version deployed and when, last known good,
changes, migrations, backup, smoke results, known issues, rollback procedure and command, watch-for notes,
dashboards and escalation contacts. ``scripts/release-report`` renders any stored record with the same code.
Every string that reaches a report goes through the redactor again, so an old record cannot leak either.
"""

from __future__ import annotations

import html
import os
import re
import subprocess

from ansible_collections.runbook.release.plugins.module_utils._deployment_record import parse_time
from ansible_collections.runbook.release.plugins.module_utils._redact import scrub

DEFAULT_ROLLBACK_COMMAND = "ansible-playbook playbooks/rollback.yml -e rollback_to=previous"
STATUS_COLOURS = {
    "ok": "#2e7d32", "changed": "#1565c0", "failed": "#c62828", "unreachable": "#6a1b9a",
    "ignored": "#ef6c00", "skipped": "#9e9e9e", "interrupted": "#ad1457",
}
OUTCOME_COLOURS = {"success": "#2e7d32", "failed": "#c62828", "rolled_back": "#ef6c00", "aborted": "#6a1b9a"}
_HEADING_MD = re.compile(r"^(#{1,6})\s+(.*)$")
_BULLET = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*)$")


def fmt_duration(seconds):
    """0.42s, 13.1s, 2m 05s, 1h 02m."""
    if seconds is None:
        return "-"
    seconds = float(seconds)
    if seconds < 10:
        return "%.2fs" % seconds
    if seconds < 60:
        return "%.1fs" % seconds
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return "%dm %02ds" % (minutes, secs)
    hours, minutes = divmod(minutes, 60)
    return "%dh %02dm" % (hours, minutes)


def fmt_time(text):
    """'2025-10-29T10:30:12.123456Z' -> '2025-10-29 10:30:12 UTC'."""
    if not text:
        return "-"
    match = re.match(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d(?::\d\d)?)", str(text))
    return "%s %s UTC" % match.groups() if match else str(text)


def _version_token(version):
    return re.compile(r"(?<![A-Za-z0-9_.-])v?%s(?![A-Za-z0-9_-]|\.\d)" % re.escape(str(version).lstrip("vV")))


class GitChangesError(Exception):
    """The changes could not be read from git log (the message names the input and the fix)."""


def changes_from_git(directory, revision_range, limit=50, timeout=10):
    """Subjects of the commits in revision_range (for example v1.2.2..v1.2.3), newest first, merges left out.

    Runs ``git log`` with an argv list in directory; a range that could be read as an option is refused."""
    revision_range = (revision_range or "").strip()
    if not revision_range:
        return []
    if revision_range.startswith("-") or any(c.isspace() for c in revision_range):
        raise GitChangesError("release_changes_git_range %r is not a revision range: use for example v1.2.2..v1.2.3"
                              % revision_range)
    if not os.path.isdir(directory):
        raise GitChangesError("release_changes_git_dir %r is not a directory: point it at the application's git "
                              "checkout" % directory)
    argv = ["git", "-C", directory, "log", "--no-merges", "--format=%s", "-n", str(int(limit)), revision_range, "--"]
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False,
                              env=dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C"))
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise GitChangesError("git log %s in %s did not run: %s" % (revision_range, directory, exc)) from exc
    if proc.returncode != 0:
        raise GitChangesError("git log %s in %s failed (rc=%s): %s; check release_changes_git_range and "
                              "release_changes_git_dir" % (revision_range, directory, proc.returncode,
                                                           proc.stderr.strip()[:300]))
    return [line.strip() for line in proc.stdout.splitlines() if line.strip()]


def changes_from_changelog(text, version, limit=50):
    """Items of the changelog section for version (Markdown '#' headings or reST underlined titles)."""
    if not text or not version:
        return []
    lines = text.splitlines()
    token = _version_token(version)
    start = level = None
    for index, line in enumerate(lines):
        md = _HEADING_MD.match(line)
        underlined = (index + 1 < len(lines) and re.match(r"^([=\-~^*+#])\1{2,}\s*$", lines[index + 1])
                      and line.strip())
        if (md or underlined) and token.search(line):
            start = index + (1 if md else 2)
            level = len(md.group(1)) if md else lines[index + 1][0]
            break
    if start is None:
        return []
    items, body = [], []
    for index in range(start, len(lines)):
        line = lines[index]
        md = _HEADING_MD.match(line)
        if md and isinstance(level, int) and len(md.group(1)) <= level:
            break
        if (not isinstance(level, int) and index + 1 < len(lines) and line.strip()
                and re.match(r"^%s{3,}\s*$" % re.escape(level), lines[index + 1])):
            break
        bullet = _BULLET.match(line)
        if bullet:
            items.append(bullet.group(1).strip())
        elif line.strip() and not md and not re.match(r"^([=\-~^*+#])\1{2,}\s*$", line):
            body.append(line.strip())
    return (items or body)[:limit]


def _listify(value):
    if value in (None, "", [], {}):
        return []
    return value if isinstance(value, list) else [value]


def _contact(value):
    """'Primary on-call: Dana, +1 555 0100' from {role, name, contact, ...} or a plain string."""
    if isinstance(value, dict):
        label = value.get("role") or value.get("name") or "contact"
        details = [str(value[k]) for k in ("name", "contact", "phone", "email", "channel")
                   if value.get(k) and not (k == "name" and label == value.get("name"))]
        return "%s: %s" % (label, ", ".join(details)) if details else str(label)
    return str(value)


def rollback_command(record):
    handoff = record.get("handoff") or {}
    if handoff.get("rollback_command"):
        return str(handoff["rollback_command"])
    inventories = [i for i in (record.get("inventory") or []) if i]
    prefix = "ansible-playbook " + "".join("-i %s " % i for i in inventories[:1])
    return prefix + DEFAULT_ROLLBACK_COMMAND[len("ansible-playbook "):]


def handoff(record):
    """The handoff fields of a record, plain data; the renderers only lay them out."""
    release = record.get("release") or {}
    extra = record.get("handoff") or {}
    outcome = record.get("outcome") or "unknown"
    rollback = record.get("rollback") or {}
    version, previous = record.get("version"), record.get("previous_version")
    migrations = release.get("migrations") or {}
    smoke, monitor = release.get("smoke") or {}, release.get("monitor") or {}
    if outcome == "rolled_back":
        serving = rollback.get("rolled_back_to") or previous
        last_good = serving
    elif outcome == "success":
        serving, last_good = version, previous
    else:
        serving, last_good = None, previous

    known = [str(i) for i in _listify(extra.get("known_issues"))]
    if smoke.get("failed_checks"):
        known.append("smoke checks failed: %s" % ", ".join(str(c) for c in smoke["failed_checks"]))
    if monitor.get("rollback_recommended"):
        known.append("the monitoring window recommended a rollback: %s" % (monitor.get("reason") or "no reason given"))
    if migrations.get("pending"):
        known.append("migrations still pending: %s" % ", ".join(str(v) for v in migrations["pending"]))
    failure = record.get("first_failure") or {}
    if outcome == "failed" and failure:
        known.append("the run failed at task '%s' (%s) on %s"
                     % (failure.get("task"), failure.get("phase"), failure.get("host")))
    if outcome == "aborted":
        aborted = record.get("aborted") or {}
        known.append("the run was interrupted (%s): %s"
                     % (aborted.get("signal") or "no signal", aborted.get("reason") or "unknown reason"))

    command = rollback_command(record)
    procedure = []
    if outcome == "rolled_back":
        procedure.append("Already rolled back to %s (trigger: %s): %s" % (
            rollback.get("rolled_back_to") or previous or "the previous version", rollback.get("trigger") or "unknown",
            rollback.get("reason") or "no reason recorded"))
    elif outcome in ("failed", "aborted"):
        procedure.append("The run did not finish: the service may be partly released. Check what serves, then "
                         "rerun the release or roll back to %s." % (previous or "the last known good version"))
    else:
        procedure.append("Roll back to the last known good version %s with the command below; the release "
                         "history on the host knows the previous images, no version is needed." % (previous or "(unknown)"))
    if migrations.get("breaks_previous"):
        backup = release.get("backup") or {}
        breaking = ", ".join(str(v) for v in migrations["breaks_previous"])
        procedure.append("Migrations %s break the previous version: restore backup %s (%s) before running it, or "
                         "roll forward with a hotfix." % (breaking, backup.get("id") or "(none recorded)",
                                                          backup.get("s3_uri") or backup.get("location") or "-"))
    return {
        "service": record.get("service") or "(unknown service)",
        "environment": record.get("environment") or "(unknown environment)",
        "runbook": record.get("runbook") or "-",
        "outcome": outcome,
        "version": version,
        "previous_version": previous,
        "serving": serving,
        "last_known_good": last_good,
        "deployed_at": record.get("finished_at"),
        "started_at": record.get("started_at"),
        "duration_s": record.get("duration_s"),
        "run_id": record.get("run_id"),
        "job_id": record.get("job_id"),
        "operator": record.get("operator"),
        "controller": record.get("controller"),
        "check_mode": record.get("check_mode"),
        "project": record.get("project") or {},
        "changes": [str(c) for c in _listify(extra.get("changes"))],
        "phases": record.get("phases") or [],
        "backup": release.get("backup") or {},
        "migrations": migrations,
        "smoke": smoke,
        "monitor": monitor,
        "statuspage": (release.get("statuspage") or {}).get("incident_ids") or [],
        "known_issues": known,
        "watch_for": [str(i) for i in _listify(extra.get("watch_for"))],
        "dashboards": [str(i) for i in _listify(extra.get("dashboards"))],
        "escalation": [_contact(c) for c in _listify(extra.get("escalation_contacts"))],
        "rollback": {"procedure": procedure, "command": command, "trigger": rollback.get("trigger"),
                     "reason": rollback.get("reason")},
        "first_failure": failure,
        "hosts": record.get("hosts") or {},
    }


def _title(fields):
    version = fields["version"] or "(no version)"
    return "On-call handoff: %s %s (%s)" % (fields["service"], version, fields["environment"])


def _facts(fields):
    """(label, text) rows of the summary table."""
    rows = [
        ("Outcome", fields["outcome"] + (" (check mode, nothing changed)" if fields["check_mode"] else "")),
        ("Version deployed", fields["version"] or "-"),
        ("Serving now", fields["serving"] or "unknown (see known issues)"),
        ("Deployed at" if fields["outcome"] == "success" else "Run ended at", fmt_time(fields["deployed_at"])),
        ("Last known good", fields["last_known_good"] or "-"),
        ("Runbook", fields["runbook"]),
        ("Duration", fmt_duration(fields["duration_s"])),
        ("Run id", (fields["run_id"] or "-") + (" (AWX job %s)" % fields["job_id"] if fields["job_id"] else "")),
        ("Operator", fields["operator"] or "-"),
        ("Controller", fields["controller"] or "-"),
    ]
    project = fields["project"]
    if project.get("commit"):
        rows.append(("Project commit", "%s%s" % (project["commit"][:12],
                                                 " (%s)" % project["branch"] if project.get("branch") else "")))
    return rows


def _backup_lines(backup):
    if not backup:
        return ["No backup recorded for this run."]
    lines = ["Backup id: %s" % backup.get("id", "-"),
             "Location: %s" % (backup.get("location") or "-")]
    if backup.get("s3_uri"):
        lines.append("Copy: %s" % backup["s3_uri"])
    extra = []
    if "verified" in backup:
        extra.append("verified" if backup["verified"] else "NOT verified")
    if backup.get("size_bytes") is not None:
        extra.append("%s bytes" % backup["size_bytes"])
    if backup.get("sha256"):
        extra.append("sha256 %s" % backup["sha256"][:16])
    if backup.get("created_at"):
        extra.append("taken %s" % fmt_time(backup["created_at"]))
    if extra:
        lines.append(", ".join(extra))
    return lines


def _migration_lines(migrations):
    if not migrations:
        return ["No migrations recorded for this run."]
    applied = migrations.get("applied") or []
    lines = []
    for item in applied:
        if isinstance(item, dict):
            lines.append("applied %s %s (%s ms)"
                         % (item.get("version", "?"), item.get("name", ""), item.get("duration_ms", "?")))
        else:
            lines.append("applied %s" % item)
    if not applied:
        lines.append("no migration applied")
    if migrations.get("schema_version"):
        lines.append("schema version now %s" % migrations["schema_version"])
    if migrations.get("pending"):
        lines.append("still pending: %s" % ", ".join(str(v) for v in migrations["pending"]))
    if migrations.get("breaks_previous"):
        lines.append("breaks the previous version: %s" % ", ".join(str(v) for v in migrations["breaks_previous"]))
    return lines


def _check_lines(smoke, monitor):
    lines = []
    if smoke:
        if smoke.get("passed"):
            lines.append("Smoke checks passed" + (" at %s" % fmt_time(smoke["checked_at"]) if smoke.get("checked_at") else ""))
        else:
            lines.append("Smoke checks FAILED: %s" % (", ".join(str(c) for c in smoke.get("failed_checks") or []) or "?"))
    else:
        lines.append("No smoke check recorded.")
    if monitor:
        text = "Monitoring window %s" % ("passed" if monitor.get("passed") else "did NOT pass")
        figures = []
        if monitor.get("error_rate") is not None:
            figures.append("error rate %.2f %%" % (100.0 * float(monitor["error_rate"])))
        if monitor.get("p95_ms") is not None:
            figures.append("p95 %s ms" % monitor["p95_ms"])
        if figures:
            text += " (%s)" % ", ".join(figures)
        if monitor.get("reason"):
            text += ": %s" % monitor["reason"]
        lines.append(text)
    return lines


def _sections(fields):
    """(title, list of lines, code line or None) in handoff order."""
    phases = ["%s: %s, %s (%d task%s)" % (p.get("name"), fmt_duration(p.get("duration_s")), p.get("status"),
                                          p.get("tasks", 0), "" if p.get("tasks") == 1 else "s")
              for p in fields["phases"]]
    return [
        ("Changes", fields["changes"] or ["None recorded (set release_changes, release_changelog_file or release_changes_git_range)."], None),
        ("Phases", phases or ["No task ran."], None),
        ("Database migrations", _migration_lines(fields["migrations"]), None),
        ("Backup", _backup_lines(fields["backup"]), None),
        ("Smoke and monitoring", _check_lines(fields["smoke"], fields["monitor"]), None),
        ("Known issues", fields["known_issues"] or ["None."], None),
        ("Watch for", fields["watch_for"] or ["Nothing specific (set release_handoff_watch_for)."], None),
        ("Rollback", fields["rollback"]["procedure"], fields["rollback"]["command"]),
        ("Dashboards", fields["dashboards"] or ["None listed (set release_handoff_dashboards)."], None),
        ("Escalation", fields["escalation"] or ["None listed (set release_escalation_contacts)."], None),
        ("Status page", ["incident %s" % i for i in fields["statuspage"]] or ["No status page activity."], None),
    ]


def _scrubbed(record):
    """The record scrubbed again, without its per-task list (no report shows it; it is most of the record)."""
    return scrub({k: v for k, v in record.items() if k != "tasks"})


def render_markdown(record):
    fields = handoff(_scrubbed(record))
    out = ["# %s" % _md(_title(fields)), "", "| | |", "|---|---|"]
    out.extend("| %s | %s |" % (_md(label), _md(text)) for label, text in _facts(fields))
    for title, lines, code in _sections(fields):
        out.extend(["", "## %s" % title, ""])
        out.extend("- %s" % _md(line) for line in lines)
        if code:
            out.extend(["", "```", code, "```"])
    out.extend(["", "_Generated by runbook.release.deployment_record from record %s._" % _md(record.get("record_id") or "-"), ""])
    return "\n".join(out)


def _md(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def timeline_svg(record, width=1100):
    """An SVG timeline: one bar per phase on a time axis from the run's start to its end."""
    phases = record.get("phases") or []
    total = max([float(record.get("duration_s") or 0)] + [float(p.get("end_s") or 0) for p in phases] + [0.001])
    label_w, right_w, row_h, top = 190, 90, 30, 34
    area = width - label_w - right_w
    height = top + row_h * max(len(phases), 1) + 30
    esc = html.escape
    parts = ['<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Timeline of the release phases" '
             'width="%d" height="%d" viewBox="0 0 %d %d" class="timeline">' % (width, height, width, height),
             '<rect x="0" y="0" width="%d" height="%d" fill="#fafafa"/>' % (width, height)]
    for step in range(5):
        x = label_w + area * step / 4.0
        parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>' % (x, top - 6, x, height - 24))
        parts.append('<text x="%.1f" y="%d" font-size="11" text-anchor="middle" fill="#555">+%s</text>'
                     % (x, height - 8, esc(fmt_duration(total * step / 4.0))))
    parts.append('<text x="8" y="20" font-size="13" font-weight="bold" fill="#222">Phases (%s total)</text>'
                 % esc(fmt_duration(record.get("duration_s"))))
    for index, phase in enumerate(phases):
        y = top + index * row_h
        start, end = float(phase.get("start_s") or 0), float(phase.get("end_s") or 0)
        x = label_w + area * start / total
        bar_w = max(area * (end - start) / total, 3)
        colour = STATUS_COLOURS.get(phase.get("status"), "#607d8b")
        name = str(phase.get("name") or "?")
        parts.append('<text x="%d" y="%d" font-size="12" text-anchor="end" fill="#222">%s</text>'
                     % (label_w - 8, y + 16, esc(name if len(name) <= 26 else name[:25] + "…")))
        parts.append('<rect x="%.1f" y="%d" width="%.1f" height="%d" rx="3" fill="%s"><title>%s: %s, %s</title></rect>'
                     % (x, y + 4, bar_w, row_h - 10, colour, esc(name), esc(fmt_duration(phase.get("duration_s"))),
                        esc(str(phase.get("status")))))
        label = esc(fmt_duration(phase.get("duration_s")))
        if bar_w >= 70:  # wide bars carry their duration inside, so it never runs into the next bar
            parts.append('<text x="%.1f" y="%d" font-size="11" text-anchor="end" fill="#fff">%s</text>'
                         % (x + bar_w - 6, y + 16, label))
        else:
            parts.append('<text x="%.1f" y="%d" font-size="11" fill="#333">%s</text>'
                         % (min(x + bar_w + 6, width - right_w + 4), y + 16, label))
    failure = record.get("first_failure") or {}
    marker = None
    if failure.get("at") and record.get("started_at"):
        marker = ("first failure", _offset(record["started_at"], failure["at"]), "#c62828")
    aborted = record.get("aborted") or {}
    if aborted.get("at") and record.get("started_at"):
        marker = ("aborted (%s)" % (aborted.get("signal") or "?"), _offset(record["started_at"], aborted["at"]), "#6a1b9a")
    if marker and marker[1] is not None:
        x = label_w + area * min(marker[1], total) / total
        parts.append('<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="%s" stroke-width="2" stroke-dasharray="4 3"/>'
                     % (x, top - 8, x, height - 24, marker[2]))
        parts.append('<text x="%.1f" y="%d" font-size="11" fill="%s">%s</text>' % (x + 4, top - 10, marker[2],
                                                                                   esc(marker[0])))
    parts.append("</svg>")
    return "".join(parts)


def _offset(start, moment):
    first, second = parse_time(start), parse_time(moment)
    if first is None or second is None:
        return None
    return max((second - first).total_seconds(), 0.0)


_CSS = """
body{font-family:-apple-system,'Segoe UI',Roboto,Helvetica,Arial,sans-serif;margin:24px;color:#222;max-width:1140px}
h1{font-size:22px;margin:0 0 12px}h2{font-size:16px;margin:22px 0 6px;border-bottom:1px solid #e0e0e0;padding-bottom:3px}
table.facts{border-collapse:collapse;margin:8px 0}table.facts td{padding:3px 14px 3px 0;vertical-align:top}
table.facts td:first-child{color:#666;white-space:nowrap}
.badge{display:inline-block;padding:2px 10px;border-radius:10px;color:#fff;font-weight:bold}
ul{margin:4px 0 4px 20px;padding:0}li{margin:2px 0}
pre{background:#f4f4f4;border:1px solid #ddd;padding:8px;overflow-x:auto}
.legend span{display:inline-block;margin-right:12px;font-size:12px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;border-radius:2px}
footer{margin-top:24px;color:#888;font-size:12px}
"""


def render_html(record):
    record = _scrubbed(record)
    fields = handoff(record)
    esc = html.escape
    colour = OUTCOME_COLOURS.get(fields["outcome"], "#607d8b")
    out = ['<!DOCTYPE html>', '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>%s</title>" % esc(_title(fields)), "<style>%s</style></head><body>" % _CSS,
           '<h1>%s <span class="badge" style="background:%s">%s</span></h1>' % (esc(_title(fields)), colour,
                                                                                esc(fields["outcome"])),
           timeline_svg(record),
           '<div class="legend">%s</div>' % "".join('<span><i style="background:%s"></i>%s</span>' % (c, esc(s))
                                                    for s, c in STATUS_COLOURS.items()),
           '<table class="facts">']
    out.extend("<tr><td>%s</td><td>%s</td></tr>" % (esc(label), esc(text)) for label, text in _facts(fields))
    out.append("</table>")
    for title, lines, code in _sections(fields):
        out.append("<h2>%s</h2><ul>%s</ul>" % (esc(title), "".join("<li>%s</li>" % esc(line) for line in lines)))
        if code:
            out.append("<pre><code>%s</code></pre>" % esc(code))
    out.append("<footer>Generated by runbook.release.deployment_record from record %s.</footer></body></html>"
               % esc(record.get("record_id") or "-"))
    return "\n".join(out)


def summary_lines(record):
    """The short release summary the callback prints when the run ends."""
    record = _scrubbed(record)
    fields = handoff(record)
    frm, to = fields["previous_version"] or "?", fields["version"] or "?"
    if record.get("release"):
        head = "DEPLOYMENT RECORD: %s %s (%s): %s -> %s: %s in %s" % (
            fields["runbook"], fields["service"], fields["environment"], frm, to, fields["outcome"].upper(),
            fmt_duration(fields["duration_s"]))
    else:
        head = "DEPLOYMENT RECORD: %s (no release data): %s in %s" % (
            fields["runbook"], fields["outcome"].upper(), fmt_duration(fields["duration_s"]))
    if fields["check_mode"]:
        head += " (check mode)"
    lines = [head]
    width = max([len(str(p.get("name"))) for p in fields["phases"]] + [5])
    for phase in fields["phases"]:
        lines.append("  %s  %9s  %s" % (str(phase.get("name")).ljust(width), fmt_duration(phase.get("duration_s")),
                                        phase.get("status")))
    if fields["outcome"] == "rolled_back":
        lines.append("  rolled back to %s (trigger %s): %s" % (fields["serving"] or "?", fields["rollback"]["trigger"],
                                                               fields["rollback"]["reason"]))
    failure = fields["first_failure"]
    if fields["outcome"] == "failed" and failure:
        lines.append("  failed at '%s' on %s" % (failure.get("task"), failure.get("host")))
    if fields["outcome"] == "aborted":
        lines.append("  aborted: %s" % ((record.get("aborted") or {}).get("reason") or "interrupted"))
    return lines
