"""The on-call handoff renderer (Markdown, HTML with an SVG timeline) and the release summary."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ansible_collections.runbook.release.plugins.module_utils import _report

REPO = Path(__file__).resolve().parents[4]


def record(**overrides):
    data = {
        "record_version": 1, "record_id": "f" * 32, "run_id": "a" * 32, "job_id": "443", "runbook": "release",
        "environment": "production", "service": "shop", "version": "v1.2.3", "previous_version": "v1.2.2",
        "operator": "alice", "controller": "ctl1", "check_mode": False, "inventory": ["inventories/production"],
        "started_at": "2025-10-29T10:00:00.000000Z", "finished_at": "2025-10-29T10:30:00.000000Z",
        "duration_s": 1800.0, "outcome": "success", "rollback": None, "aborted": None, "first_failure": None,
        "project": {"commit": "0123456789abcdef0123456789abcdef01234567", "branch": "main"},
        "phases": [
            {"name": "pre_tasks", "start_s": 0, "end_s": 10, "duration_s": 10, "status": "ok", "tasks": 3},
            {"name": "db_backup", "start_s": 10, "end_s": 300, "duration_s": 290, "status": "changed", "tasks": 4},
            {"name": "app_rollout", "start_s": 300, "end_s": 1700, "duration_s": 1400, "status": "changed", "tasks": 6},
            {"name": "smoke", "start_s": 1700, "end_s": 1800, "duration_s": 100, "status": "ok", "tasks": 1},
        ],
        "release": {
            "backup": {"id": "appdb-20251029T100500Z", "location": "/var/backups/appdb.dump",
                       "s3_uri": "s3://backups/appdb.dump", "sha256": "ab" * 32, "size_bytes": 1234, "verified": True},
            "migrations": {"applied": [{"version": "0042", "name": "add_index", "duration_ms": 812}],
                           "pending": [], "schema_version": "0042", "breaks_previous": []},
            "smoke": {"passed": True, "failed_checks": [], "checked_at": "2025-10-29T10:29:00Z"},
            "monitor": {"passed": True, "rollback_recommended": False, "error_rate": 0.003, "p95_ms": 180},
            "statuspage": {"incident_ids": ["inc1"]},
        },
        "handoff": {"watch_for": ["checkout latency"], "changes": ["faster search"],
                    "escalation_contacts": [{"role": "Primary", "name": "Dana", "contact": "+1 555 0100"}, "SRE: #sre"],
                    "dashboards": ["https://grafana.example.com/d/shop"], "known_issues": ["slow export (ticket 12)"]},
        "hosts": {"web1": {"ok": 10, "changed": 3, "failures": 0, "unreachable": 0}},
    }
    data.update(overrides)
    return data


def test_markdown_has_every_handoff_field():
    text = _report.render_markdown(record())
    for expected in ["# On-call handoff: shop v1.2.3 (production)", "| Version deployed | v1.2.3 |",
                     "| Deployed at | 2025-10-29 10:30:00 UTC |", "| Last known good | v1.2.2 |",
                     "| Run id | " + "a" * 32 + " (AWX job 443) |", "- faster search",
                     "applied 0042 add_index (812 ms)", "Backup id: appdb-20251029T100500Z",
                     "Copy: s3://backups/appdb.dump", "Smoke checks passed", "error rate 0.30 %",
                     "- slow export (ticket 12)", "- checkout latency", "- Primary: Dana, +1 555 0100", "- SRE: #sre",
                     "ansible-playbook -i inventories/production playbooks/rollback.yml -e rollback_to=previous",
                     "incident inc1", "app_rollout: 23m 20s, changed (6 tasks)", "https://grafana.example.com/d/shop"]:
        assert expected in text, expected


def test_rolled_back_release_says_what_serves_and_why():
    rb = {"trigger": "smoke", "reason": "checkout returned 500", "rolled_back_to": "v1.2.2"}
    rec = record(outcome="rolled_back", rollback=rb)
    rec["release"]["smoke"] = {"passed": False, "failed_checks": ["checkout"]}
    text = _report.render_markdown(rec)
    assert "| Serving now | v1.2.2 |" in text
    assert "Already rolled back to v1.2.2 (trigger: smoke): checkout returned 500" in text
    assert "smoke checks failed: checkout" in text
    assert "Smoke checks FAILED: checkout" in text
    summary = _report.summary_lines(rec)
    assert summary[0] == "DEPLOYMENT RECORD: release shop (production): v1.2.2 -> v1.2.3: ROLLED_BACK in 30m 00s"
    assert "rolled back to v1.2.2 (trigger smoke): checkout returned 500" in summary[-1]


def test_breaking_migrations_change_the_rollback_procedure():
    rec = record()
    rec["release"]["migrations"]["breaks_previous"] = ["0042"]
    text = _report.render_markdown(rec)
    assert "Migrations 0042 break the previous version: restore backup appdb-20251029T100500Z (s3://backups/appdb.dump)" in text


def test_failed_and_aborted_runs_are_known_issues():
    first = {"task": "Roll", "phase": "app_rollout", "host": "web2"}
    failed = _report.render_markdown(record(outcome="failed", first_failure=first))
    assert "the run failed at task 'Roll' (app_rollout) on web2" in failed
    assert "| Serving now | unknown (see known issues) |" in failed
    interrupted = {"signal": "SIGTERM", "reason": "r", "at": "2025-10-29T10:10:00Z"}
    aborted = _report.render_markdown(record(outcome="aborted", aborted=interrupted))
    assert "the run was interrupted (SIGTERM): r" in aborted


def test_rollback_command_from_the_inventory_wins():
    rec = record()
    rec["handoff"]["rollback_command"] = "make rollback ENV=production"
    assert "make rollback ENV=production" in _report.render_markdown(rec)


def test_html_is_self_contained_with_a_timeline():
    page = _report.render_html(record(first_failure={"task": "x", "at": "2025-10-29T10:20:00Z"}))
    assert page.startswith("<!DOCTYPE html>")
    assert "<style>" in page and "<svg" in page
    assert not re.search(r"<script|<link|src=|url\(|@import", page)
    assert not re.search(r"href=\"(?!#)", page)
    bars = re.findall(r'<rect x="[\d.]+" y="\d+" width="([\d.]+)" height="\d+" rx="3" fill="(#[0-9a-f]{6})"', page)
    assert [colour for _w, colour in bars] == ["#2e7d32", "#1565c0", "#1565c0", "#2e7d32"]
    widths = [float(w) for w, _c in bars]
    assert widths[2] > widths[1] > widths[3] > widths[0]  # bars scale with the phase durations
    assert "first failure" in page


def test_html_escapes_everything_it_shows():
    rec = record(service="<script>alert(1)</script>")
    rec["phases"][0]["name"] = "<b>x</b>"
    page = _report.render_html(rec)
    assert "<script>" not in page and "<b>x</b>" not in page
    assert "&lt;script&gt;" in page


def test_reports_scrub_old_records_again():
    rec = record()
    rec["handoff"]["watch_for"] = ["db at postgresql://app:Shunter2x@db/app"]
    rec["extra_vars"] = {"api_token": "Stoken1234"}
    rec["handoff"]["known_issues"] = ["token Stoken1234 expires soon"]
    for text in (_report.render_markdown(rec), _report.render_html(rec), "\n".join(_report.summary_lines(rec))):
        assert "Shunter2x" not in text and "Stoken1234" not in text


def test_summary_of_a_run_without_release_data():
    rec = record(release={}, runbook="site", outcome="failed", phases=[])
    assert _report.summary_lines(rec) == ["DEPLOYMENT RECORD: site (no release data): FAILED in 30m 00s"]


@pytest.mark.parametrize("seconds, text", [(0.421, "0.42s"), (13.14, "13.1s"), (125, "2m 05s"), (3725, "1h 02m"),
                                           (None, "-")])
def test_fmt_duration(seconds, text):
    assert _report.fmt_duration(seconds) == text


MD_CHANGELOG = """# Changelog

## v1.2.4 (unreleased)
- next thing

## v1.2.3 - 2025-10-28
### Added
- faster search
- export to CSV
### Fixed
* checkout rounding

## v1.2.2
- older
"""

RST_CHANGELOG = """Shop release notes
==================

v1.2.3
======

Minor Changes
-------------

- faster search
- export to CSV

v1.2.2
======

- older
"""


@pytest.mark.parametrize("text", [MD_CHANGELOG, RST_CHANGELOG])
def test_changes_from_changelog(text):
    changes = _report.changes_from_changelog(text, "v1.2.3")
    assert changes[:2] == ["faster search", "export to CSV"]
    assert "older" not in changes and "next thing" not in changes
    assert _report.changes_from_changelog(text, "1.2.3")[:2] == ["faster search", "export to CSV"]
    assert _report.changes_from_changelog(text, "v9.9.9") == []


def test_version_match_is_exact():
    assert _report.changes_from_changelog("## v1.2.30\n- no\n## v1.2.3\n- yes\n", "v1.2.3") == ["yes"]


def test_release_report_command(tmp_path):
    import json
    path = tmp_path / "r.json"
    path.write_text(json.dumps(record(handoff={})))
    changelog = tmp_path / "CHANGELOG.md"
    changelog.write_text(MD_CHANGELOG)
    out = tmp_path / "h.html"
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "release-report"), str(path), "--format", "html",
                           "--out", str(out), "--changelog", str(changelog)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "export to CSV" in out.read_text()
    md = subprocess.run([sys.executable, str(REPO / "scripts" / "release-report"), str(path)], capture_output=True,
                        text=True, check=False)
    assert md.stdout.startswith("# On-call handoff: shop v1.2.3 (production)")
    bad = tmp_path / "j.jsonl"
    bad.write_text("{}")
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "release-report"), str(bad)], capture_output=True,
                          text=True, check=False)
    assert proc.returncode == 2 and "is not a deployment record" in proc.stderr


def _git_repo(path):
    """A real git repository with two tagged releases and a merge between them."""
    def git(*args):
        subprocess.run(["git", "-C", str(path), *args], check=True, capture_output=True,
                       env=dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.invalid",
                                GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.invalid"))
    git("init", "-q", "-b", "main")
    for subject in ("first", "second"):
        (path / "f").write_text(subject)
        git("add", "f")
        git("commit", "-q", "-m", subject)
    git("tag", "v1.2.2")
    git("checkout", "-q", "-b", "topic")
    for subject in ("items export", "faster search"):
        (path / "f").write_text(subject)
        git("commit", "-q", "-am", subject)
    git("checkout", "-q", "main")
    git("merge", "-q", "--no-ff", "-m", "Merge topic", "topic")
    git("tag", "v1.2.3")
    return path


def test_changes_from_git_lists_the_commit_subjects_of_the_range_without_merges(tmp_path):
    repo = _git_repo(tmp_path)
    assert _report.changes_from_git(str(repo), "v1.2.2..v1.2.3") == ["faster search", "items export"]
    assert _report.changes_from_git(str(repo), "v1.2.2..v1.2.3", limit=1) == ["faster search"]
    assert _report.changes_from_git(str(repo), "") == []


@pytest.mark.parametrize("revision_range, message", [
    ("--output=/tmp/x", "is not a revision range"),
    ("v1.2.2.. v1.2.3", "is not a revision range"),
    ("v9.9.9..v1.2.3", "failed (rc="),
])
def test_changes_from_git_refuses_what_it_cannot_read(tmp_path, revision_range, message):
    repo = _git_repo(tmp_path)
    with pytest.raises(_report.GitChangesError, match=re.escape(message)):
        _report.changes_from_git(str(repo), revision_range)


def test_changes_from_git_names_a_missing_directory(tmp_path):
    with pytest.raises(_report.GitChangesError, match="release_changes_git_dir"):
        _report.changes_from_git(str(tmp_path / "absent"), "v1..v2")
