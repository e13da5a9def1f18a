"""The record builder and the file helpers of the deployment_record callback."""

import json
import os
import stat
import subprocess
from datetime import datetime, timezone

import pytest

from ansible_collections.runbook.release.plugins.module_utils import _deployment_record as dr

T0 = datetime(2025, 10, 29, 10, 0, 0, tzinfo=timezone.utc)
OPENING = {"schema_version": 1, "run_id": "ab" * 16, "runbook": "release", "environment": "production",
           "service": "shop", "operator": "alice", "started_at": "2025-10-29T10:00:00Z", "version": "v1.2.3",
           "previous_version": "v1.2.2"}


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


def builder():
    clock = Clock()
    return dr.RecordBuilder("r" * 32, clock=clock, wallclock=lambda: T0), clock


def run_release(custom=None, failing=False, host_stats=None):
    b, clock = builder()
    b.meta.update({"controller": "ctl", "extra_vars": {"version": "v9"}})
    b.task_start("u1", "Open the record", "ansible.builtin.set_stats", "pre_tasks", "Release")
    b.task_result("u1", "web1", "ok")
    clock.now += 1.5
    b.task_start("u2", "Back up", "runbook.release.pg_backup", "db_backup", "Release")
    b.task_result("u2", "web1", "changed", changed=True)
    clock.now += 4
    b.task_start("u3", "Roll", "runbook.release.compose_rollout", "app_rollout", "Release")
    b.task_result("u3", "web1", "changed", changed=True)
    b.task_result("u3", "web2", "failed" if failing else "changed", changed=not failing)
    clock.now += 10
    b.task_start("u4", "Verify", "ansible.builtin.uri", "app_rollout", "Release")
    b.task_result("u4", "web1", "ok")
    clock.now += 2
    if host_stats is None:
        host_stats = {"web1": {"ok": 4, "changed": 2, "failures": 0, "unreachable": 0},
                      "web2": {"ok": 0, "changed": 0, "failures": 1 if failing else 0, "unreachable": 0}}
    return b.build(host_stats=host_stats, custom=custom), b


def test_phases_tasks_and_durations_come_from_the_monotonic_clock():
    record, _b = run_release(custom={"_run": {"runbook_release": dict(OPENING, outcome="success")}})
    assert [(p["name"], p["duration_s"], p["tasks"], p["status"]) for p in record["phases"]] == [
        ("pre_tasks", 1.5, 1, "ok"), ("db_backup", 4.0, 1, "changed"), ("app_rollout", 12.0, 2, "changed")]
    assert record["duration_s"] == 17.5
    assert record["started_at"] == "2025-10-29T10:00:00.000000Z"
    assert record["finished_at"] == "2025-10-29T10:00:17.500000Z"
    roll = record["tasks"][2]
    assert roll == {"name": "Roll", "action": "runbook.release.compose_rollout", "phase": "app_rollout",
                    "play": "Release", "started_at": "2025-10-29T10:00:05.500000Z", "start_s": 5.5,
                    "duration_s": 10.0, "status": "changed", "changed": 2, "hosts": {"web1": "changed", "web2": "changed"}}
    assert record["outcome"] == "success"
    assert record["complete"] is True
    assert record["run_id"] == OPENING["run_id"]
    assert record["version"] == "v1.2.3"  # release data wins over the extra var
    assert record["release_warnings"] == []


def test_custom_stats_merge_run_wide_then_per_host():
    custom = {"_run": {"runbook_release": dict(OPENING, backup={"id": "b1"})},
              "web2": {"runbook_release": {"backup": {"verified": True}}},
              "web1": {"other": 1}}
    record, _b = run_release(custom=custom)
    assert record["release"]["backup"] == {"id": "b1", "verified": True}


def test_a_failed_host_makes_the_outcome_failed_even_if_the_playbook_claimed_success():
    record, _b = run_release(custom={"_run": {"runbook_release": dict(OPENING, outcome="success")}}, failing=True)
    assert record["outcome"] == "failed"
    assert record["first_failure"] == {"task": "Roll", "action": "runbook.release.compose_rollout",
                                       "phase": "app_rollout", "host": "web2", "status": "failed",
                                       "at": "2025-10-29T10:00:05.500000Z"}
    assert record["phases"][2]["status"] == "failed"


def test_rolled_back_wins_over_failures_and_carries_the_reason():
    rollback = {"trigger": "smoke", "reason": "checkout returned 500", "rolled_back_to": "v1.2.2"}
    custom = {"_run": {"runbook_release": dict(OPENING, outcome="rolled_back", rollback=rollback)}}
    record, _b = run_release(custom=custom, failing=True)
    assert record["outcome"] == "rolled_back"
    assert record["rollback"] == rollback


def test_rolled_back_without_a_reason_says_so():
    record, _b = run_release(custom={"_run": {"runbook_release": dict(OPENING, outcome="rolled_back")}})
    assert record["rollback"]["trigger"] == "unknown"


def test_abort_wins_and_marks_the_running_task_interrupted():
    b, clock = builder()
    b.task_start("u1", "Sleep", "ansible.builtin.command", "tasks")
    clock.now += 3
    b.abort("the run received SIGTERM", "SIGTERM")
    record = b.build()
    assert record["outcome"] == "aborted"
    assert record["aborted"] == {"reason": "the run received SIGTERM", "signal": "SIGTERM",
                                 "at": "2025-10-29T10:00:03.000000Z"}
    assert record["tasks"][0]["status"] == "interrupted"
    assert record["complete"] is False


def test_fragments_seen_during_the_run_stand_in_when_stats_never_came():
    b, _clock = builder()
    b.release_fragment(OPENING)
    b.release_fragment({"backup": {"id": "b7"}})
    b.abort("crash")
    record = b.build()
    assert record["release"]["backup"] == {"id": "b7"}
    assert record["service"] == "shop"


def test_invalid_release_data_is_a_warning_not_an_error():
    custom = {"_run": {"runbook_release": dict(OPENING, colour="blue", outcome="meh")}}
    record, _b = run_release(custom=custom)
    assert any("colour: unknown key" in w for w in record["release_warnings"])
    assert record["outcome"] == "success"  # an unknown claimed outcome is ignored


def test_no_release_data_falls_back_to_inventory_and_extra_vars():
    b, _clock = builder()
    b.vars = {"release_environment": "staging", "release_service": "shop"}
    b.meta.update({"extra_vars": {"version": "v2"}, "runbook": "release"})
    record = b.build(host_stats={})
    assert (record["environment"], record["service"], record["version"], record["runbook"]) == (
        "staging", "shop", "v2", "release")
    assert record["release_warnings"] == ["no release data: the playbook set no runbook_release stats"]
    assert record["run_id"] == "r" * 32


def test_results_of_unknown_tasks_are_ignored():
    b, _clock = builder()
    assert b.task_result("nope", "h", "ok") is None


@pytest.mark.parametrize("text, name", [
    ("web-01.example.com", "web-01.example.com"),
    ("../../etc/passwd", "etc-passwd"),
    ("host name/with:odd*chars", "host-name-with-odd-chars"),
    ("...", "unknown"),
    ("", "unknown"),
    ("a" * 100, "a" * 64),
])
def test_safe_name(text, name):
    assert dr.safe_name(text) == name


@pytest.mark.parametrize("text, expected", [
    ("2025-10-29T10:30:00Z", datetime(2025, 10, 29, 10, 30, tzinfo=timezone.utc)),
    ("2025-10-29T10:30:00.5Z", datetime(2025, 10, 29, 10, 30, 0, 500000, tzinfo=timezone.utc)),
    ("2025-10-29T12:30:00+02:00", datetime(2025, 10, 29, 10, 30, tzinfo=timezone.utc)),
    ("2025-10-29 10:30", datetime(2025, 10, 29, 10, 30, tzinfo=timezone.utc)),
    ("yesterday", None),
    (None, None),
])
def test_parse_time(text, expected):
    assert dr.parse_time(text) == expected


def test_write_atomic_is_0600_and_leaves_no_temp_file(tmp_path):
    target = tmp_path / "r.json"
    dr.write_atomic(str(target), "one")
    dr.write_atomic(str(target), "two")
    assert target.read_text() == "two"
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert os.listdir(tmp_path) == ["r.json"]


def test_journal_appends_one_line_per_event(tmp_path):
    path = tmp_path / "j.jsonl"
    journal = dr.Journal(str(path))
    journal.write({"ev": "start"})
    journal.write({"ev": "task", "name": "x"})
    # no close: what a crash leaves behind is already on disk
    assert [json.loads(line)["ev"] for line in path.read_text().splitlines()] == ["start", "task"]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    journal.close()
    journal.write({"ev": "late"})  # after close: ignored, no error


def _git(repo, *args):
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@x", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@x", GIT_COMMITTER_DATE="2025-10-29T08:00:00+02:00",
               GIT_AUTHOR_DATE="2025-10-29T08:00:00+02:00")
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True, env=env).stdout


@pytest.mark.parametrize("packed", [False, True])
def test_git_info_reads_loose_and_packed_commits_without_git(tmp_path, packed):
    _git(tmp_path, "init", "-q", "-b", "release")
    (tmp_path / "f").write_text("x")
    _git(tmp_path, "add", "f")
    _git(tmp_path, "commit", "-q", "-m", "one")
    if packed:
        _git(tmp_path, "gc", "-q", "--prune=now")
        assert not [d for d in os.listdir(tmp_path / ".git" / "objects") if len(d) == 2]
    sha = _git(tmp_path, "rev-parse", "HEAD").strip()
    sub = tmp_path / "playbooks"
    sub.mkdir()
    assert dr.git_info(str(sub)) == {"commit": sha, "branch": "release", "committed_at": "2025-10-29T06:00:00.000000Z"}


def test_git_info_resolves_deltified_commits_and_alternates(tmp_path):
    # An aggressively packed history stores most commits as deltas of each other (what a CI checkout may hold).
    origin = tmp_path / "origin"
    origin.mkdir()
    _git(origin, "init", "-q", "-b", "main")
    text = "\n".join("release note line %d: nothing to see here" % i for i in range(80))
    for number in range(12):
        (origin / "f").write_text(str(number))
        _git(origin, "add", "f")
        _git(origin, "commit", "-q", "-m", "change %d\n\n%s" % (number, text))
    _git(origin, "repack", "-adfq", "--window=250", "--depth=50")
    shas = _git(origin, "rev-list", "HEAD").split()
    pack = next((origin / ".git" / "objects" / "pack").glob("*.idx"))
    listing = _git(origin, "verify-pack", "-v", str(pack))
    deltified = {line.split()[0] for line in listing.splitlines() if " commit " in line and len(line.split()) >= 7}
    assert deltified & set(shas), "the repack stored no commit as a delta; the test proves nothing"
    for sha in shas:
        _git(origin, "checkout", "-q", "--detach", sha)
        assert dr.git_info(str(origin))["committed_at"] == "2025-10-29T06:00:00.000000Z", sha
    # a clone sharing its objects through .git/objects/info/alternates
    _git(origin, "checkout", "-q", "main")
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--shared", str(origin), str(clone)], check=True)
    assert not list((clone / ".git" / "objects" / "pack").glob("*.pack"))
    info = dr.git_info(str(clone))
    assert info["commit"] == shas[0] and info["committed_at"] == "2025-10-29T06:00:00.000000Z"


def test_git_info_outside_a_repository(tmp_path):
    assert dr.git_info(str(tmp_path)) == {}


def test_collection_info_reads_galaxy_yml():
    root = os.path.join(os.path.dirname(dr.__file__), "..", "..")
    assert dr.collection_info(root)["name"] == "runbook.release"
    assert dr.collection_info(root)["version"]


def test_handoff_from_vars_lists_and_skips_empty():
    out = dr.handoff_from_vars({"release_handoff_watch_for": "error rate", "release_escalation_contacts": [],
                                "release_rollback_command": "make rollback", "unrelated": 1})
    assert out == {"watch_for": ["error rate"], "rollback_command": "make rollback"}


def test_plain_turns_odd_types_into_json():
    class Tagged(str):
        pass

    data = dr.plain({"a": Tagged("x"), "b": (1, 2.5, None, True), "c": {3}, "d": b"raw", "e": T0})
    assert json.loads(json.dumps(data)) == {"a": "x", "b": [1, 2.5, None, True], "c": [3], "d": "raw",
                                            "e": "2025-10-29T10:00:00.000000Z"}
    assert type(data["a"]) is str  # pylint: disable=unidiomatic-typecheck


def test_store_history_rejects_odd_table_names():
    with pytest.raises(ValueError, match="plain SQL identifier"):
        dr.store_history("host=/nonexistent", "deployments; drop table x", {})
