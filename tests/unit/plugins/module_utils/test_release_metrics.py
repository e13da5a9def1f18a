"""Release metrics over a history of records: frequency, lead time, change failure rate, time to restore."""

import csv
import io
import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ansible_collections.runbook.release.plugins.module_utils import _release_metrics as rm

REPO = Path(__file__).resolve().parents[4]
DAY0 = datetime(2025, 10, 1, 9, 0, tzinfo=timezone.utc)
_COUNTER = [0]


def z(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def rec(day, hour, runbook="release", outcome="success", minutes=20, env="production", service="shop",
        committed_hours_before=None, check_mode=False, changed=1, failure_after_min=None):
    _COUNTER[0] += 1
    start = DAY0 + timedelta(days=day, hours=hour)
    end = start + timedelta(minutes=minutes)
    data = {"record_version": 1, "record_id": "r%04d" % _COUNTER[0], "run_id": "x%04d" % _COUNTER[0],
            "runbook": runbook, "environment": env, "service": service, "version": "v%d" % _COUNTER[0],
            "started_at": z(start), "finished_at": z(end), "outcome": outcome, "check_mode": check_mode,
            "complete": True, "phases": [{"name": "app_rollout", "changed": changed}], "project": {}}
    if committed_hours_before is not None:
        data["project"]["committed_at"] = z(end - timedelta(hours=committed_hours_before))
    if failure_after_min is not None:
        data["first_failure"] = {"at": z(start + timedelta(minutes=failure_after_min))}
    return data


@pytest.fixture()
def history():
    return [
        rec(0, 0, committed_hours_before=2),                      # ok
        rec(1, 0, committed_hours_before=4),                      # followed by a rollback 1 h later -> failed change
        rec(1, 1, runbook="rollback", minutes=80),                # restores: 20 min run ending 1h20m after release end
        rec(2, 0, outcome="rolled_back", minutes=30, failure_after_min=12),  # in-run rollback: 18 min to restore
        rec(3, 0, committed_hours_before=6),                      # followed by a hotfix -> failed change
        rec(3, 2, runbook="hotfix", committed_hours_before=1),    # hotfix: itself a deployment, ok
        rec(4, 0, outcome="failed", changed=0),                   # failed before any change: not a deployment
        rec(5, 0, check_mode=True),                               # check mode: ignored
        rec(6, 0, env="staging", committed_hours_before=1),
        rec(6, 1, env="staging", outcome="aborted"),
    ]


def group(metrics, env):
    return next(g for g in metrics["groups"] if g["environment"] == env)


def test_change_failure_rate_and_time_to_restore(history):
    metrics = rm.compute(history)
    prod = group(metrics, "production")
    assert prod["deployments"] == 5           # 4 releases (one rolled back) + the hotfix
    assert prod["successful_deployments"] == 4
    assert prod["failed_changes"] == 3        # followed by rollback, rolled back in-run, followed by hotfix
    assert prod["change_failure_rate"] == 0.6
    ttr = prod["time_to_restore_min"]
    # release day1 ends 00:20, rollback ends 01:00+80min=02:20 -> 120 min; in-run 30-12 = 18; hotfix ends 2:20 vs 0:20
    assert ttr["count"] == 3 and ttr["unrestored"] == 0
    assert ttr["median"] == 120.0 and ttr["max"] == 120.0
    assert sorted(r["time_to_restore_s"] / 60 for r in metrics["deployments"] if r["failed_change"]) == [18, 120, 120]
    assert prod["failed_runs"] == 1 and prod["rollback_runs"] == 2


def test_lead_time_and_frequency(history):
    metrics = rm.compute(history)
    prod = group(metrics, "production")
    assert prod["lead_time_h"] == {"count": 4, "median": 3.0, "p90": 6.0, "mean": 3.25, "max": 6.0}
    # window: day 0 09:00 to day 4 09:20 (check-mode runs ignored) -> 4.014 days, 4 successful deployments
    assert prod["days"] == pytest.approx(4.014, abs=0.001)
    assert prod["deployments_per_day"] == pytest.approx(4 / 4.0139, abs=0.001)
    assert metrics["check_mode_runs_ignored"] == 1
    staging = group(metrics, "staging")
    assert staging["deployments"] == 1 and staging["aborted_runs"] == 1 and staging["change_failure_rate"] == 0.0
    overall = metrics["overall"]
    assert overall["deployments"] == 6 and overall["failed_changes"] == 3 and overall["change_failure_rate"] == 0.5


def test_a_failed_remedy_leaves_the_failure_unrestored():
    history = [rec(0, 0), rec(0, 1, runbook="rollback", outcome="failed")]
    prod = group(rm.compute(history), "production")
    assert prod["failed_changes"] == 1 and prod["time_to_restore_min"]["unrestored"] == 1


def test_a_remedy_after_the_next_release_does_not_count_against_the_older_one():
    history = [rec(0, 0), rec(1, 0), rec(1, 2, runbook="rollback")]
    rows = rm.assess(history)
    assert [r["failed_change"] for r in rows] == [False, True]


def test_csv_has_one_row_per_group_and_overall(history):
    rows = list(csv.DictReader(io.StringIO(rm.to_csv(rm.compute(history)))))
    assert [(r["environment"], r["service"]) for r in rows] == [("production", "shop"), ("staging", "shop"), ("*", "*")]
    assert rows[0]["change_failure_rate"] == "0.6" and rows[0]["lead_time_median_h"] == "3.0"
    assert list(rows[0]) == list(rm.CSV_COLUMNS)


def test_load_records_skips_journals_reports_and_duplicates(tmp_path, history):
    for item in history:
        (tmp_path / (item["record_id"] + ".json")).write_text(json.dumps(item))
    (tmp_path / "sub").mkdir()
    partial = dict(history[0], complete=False)
    (tmp_path / "sub" / "copy.json").write_text(json.dumps(partial))
    (tmp_path / "x.journal.jsonl").write_text("{}\n")
    (tmp_path / "other.json").write_text(json.dumps({"not": "a record"}))
    (tmp_path / "broken.json").write_text("{")
    records, problems = rm.load_records(str(tmp_path))
    assert len(records) == len(history)
    assert next(r for r in records if r["record_id"] == history[0]["record_id"])["complete"] is True
    assert len(problems) == 1 and "broken.json" in problems[0]


def test_release_metrics_command(tmp_path, history):
    records = tmp_path / "records"
    records.mkdir()
    for item in history:
        (records / (item["record_id"] + ".json")).write_text(json.dumps(item))
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "release-metrics"), "--records", str(records),
                           "--json", str(tmp_path / "m.json"), "--csv", str(tmp_path / "m.csv")],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "production   shop" in proc.stdout and "60.0%" in proc.stdout
    doc = json.loads((tmp_path / "m.json").read_text())
    assert doc["overall"]["deployments"] == 6 and "change failure rate" in doc["definitions"]
    assert (tmp_path / "m.csv").read_text().startswith("environment,service,")
    missing = subprocess.run([sys.executable, str(REPO / "scripts" / "release-metrics"), "--records",
                              str(tmp_path / "nope")], capture_output=True, text=True, check=False)
    assert missing.returncode == 2 and "is not a directory" in missing.stderr
