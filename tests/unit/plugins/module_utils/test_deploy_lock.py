"""The deploy lock on a real file system: exclusive, re-entrant per run id, stale after its ttl."""

import json
import os
import socket
import threading

import pytest

from ansible_collections.runbook.release.plugins.module_utils._deploy_lock import DeployLock, LockError


class Clock(object):
    def __init__(self, now=1000.0):
        self.now = now

    def __call__(self):
        return self.now


def test_first_acquire_creates_and_release_removes(tmp_path):
    path = str(tmp_path / "proj" / ".runbook-release" / "deploy.lock")
    lock = DeployLock(path, "run-a", owner="alice", version="v1.2.3")
    assert lock.acquire() is True
    record = json.loads(open(path).read())
    assert record["run_id"] == "run-a" and record["owner"] == "alice" and record["version"] == "v1.2.3"
    assert record["pid"] == os.getpid() and record["host"]
    assert lock.release() is True
    assert not os.path.exists(path)


def test_same_run_id_reenters_and_does_not_own_the_release(tmp_path):
    path = str(tmp_path / "deploy.lock")
    outer = DeployLock(path, "run-a")
    assert outer.acquire() is True
    inner = DeployLock(path, "run-a")
    assert inner.acquire() is False, "re-entry: the outer holder releases"
    assert os.path.exists(path)


def test_other_run_waits_then_fails_naming_the_owner(tmp_path):
    path = str(tmp_path / "deploy.lock")
    DeployLock(path, "run-a", owner="alice", version="v1.2.3").acquire()
    with pytest.raises(LockError) as err:
        DeployLock(path, "run-b", owner="bob").acquire(timeout=1, poll=0.2)
    assert "held by run run-a (owner alice" in str(err.value)
    assert "deploying v1.2.3" in str(err.value)
    assert err.value.owner["run_id"] == "run-a"


def test_stale_lock_is_taken_over_with_a_warning(tmp_path):
    path = str(tmp_path / "deploy.lock")
    clock = Clock()
    DeployLock(path, "run-dead", owner="carol", ttl=60, clock=clock).acquire()
    clock.now += 61
    taker = DeployLock(path, "run-new", ttl=60, clock=clock)
    assert taker.acquire() is True
    assert "took over a stale deploy lock held by run run-dead (owner carol" in taker.warnings[0]
    assert json.loads(open(path).read())["run_id"] == "run-new"


def test_heartbeat_keeps_a_long_run_fresh(tmp_path):
    path = str(tmp_path / "deploy.lock")
    clock = Clock()
    holder = DeployLock(path, "run-a", ttl=60, clock=clock)
    holder.acquire()
    clock.now += 50
    assert holder.heartbeat() is True
    clock.now += 50
    with pytest.raises(LockError):
        DeployLock(path, "run-b", ttl=60, clock=clock).acquire()


def test_release_by_another_run_does_nothing(tmp_path):
    path = str(tmp_path / "deploy.lock")
    DeployLock(path, "run-a").acquire()
    assert DeployLock(path, "run-b").release() is False
    assert os.path.exists(path)


def test_concurrent_acquires_have_exactly_one_winner(tmp_path):
    path = str(tmp_path / "deploy.lock")
    winners = []

    def attempt(run_id):
        try:
            DeployLock(path, run_id).acquire()
            winners.append(run_id)
        except LockError:
            pass

    threads = [threading.Thread(target=attempt, args=("run-%d" % i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(winners) == 1
    assert json.loads(open(path).read())["run_id"] == winners[0]


def test_refusal_names_the_heartbeat_age_and_when_it_goes_stale(tmp_path):
    path = str(tmp_path / "deploy.lock")
    clock = Clock()
    DeployLock(path, "run-a", owner="alice", version="v1.2.3", ttl=900, clock=clock).acquire()
    clock.now += 40
    with pytest.raises(LockError) as err:
        DeployLock(path, "run-b", clock=clock).acquire()
    message = str(err.value)
    assert "held by run run-a (owner alice on %s, pid %d, deploying v1.2.3 since" % (socket.gethostname(), os.getpid()) \
        in message
    assert "last heartbeat 40 s ago" in message
    assert "becomes stale 900 s after its last heartbeat" in message and "in about 860 s" in message


def test_reentry_keeps_the_holders_owner_version_start_and_ttl(tmp_path):
    path = str(tmp_path / "deploy.lock")
    clock = Clock()
    outer = DeployLock(path, "run-a", owner="alice", version="v1.2.3", ttl=900, clock=clock)
    outer.acquire()
    started = json.loads(open(path).read())["started_at"]
    clock.now += 30
    inner = DeployLock(path, "run-a", owner="root", version="v1.2.2", ttl=600, clock=clock)
    assert inner.acquire() is False and inner.action == "reenter"
    record = json.loads(open(path).read())
    assert (record["owner"], record["version"], record["ttl"], record["started_at"]) == ("alice", "v1.2.3", 900, started)
    assert record["heartbeat"] == 1030.0, "re-entry refreshes the heartbeat"
    clock.now += 700
    with pytest.raises(LockError):
        DeployLock(path, "run-b", clock=clock).acquire()  # still fresh under the holder's 900 s ttl
    assert inner.heartbeat() is True
    assert json.loads(open(path).read())["owner"] == "alice", "a heartbeat does not rename the owner either"


def test_reentry_and_heartbeat_keep_a_short_ttl_of_the_holder(tmp_path):
    # A playbook takes the lock with a 30 s ttl; modules re-entering it (600 s default) and heartbeats (900 s)
    # must not stretch it, or a killed run's lock would stay fresh for 15 minutes.
    path = str(tmp_path / "deploy.lock")
    clock = Clock()
    DeployLock(path, "run-a", ttl=30, clock=clock).acquire()
    inner = DeployLock(path, "run-a", ttl=900, clock=clock)
    assert inner.acquire() is False
    assert inner.heartbeat() is True
    assert json.loads(open(path).read())["ttl"] == 30
    clock.now += 31
    taker = DeployLock(path, "run-b", clock=clock)
    assert taker.acquire() is True and taker.warnings, "the lock of the killed run is stale after the holder's ttl"


def test_acquire_reports_action_record_and_the_stale_record_taken_over(tmp_path):
    path = str(tmp_path / "deploy.lock")
    clock = Clock()
    dead = DeployLock(path, "run-dead", owner="carol", ttl=60, clock=clock)
    dead.acquire()
    assert dead.action == "create" and dead.taken_over is None
    dead_record = json.loads(open(path).read())
    clock.now += 61
    taker = DeployLock(path, "run-new", owner="dave", ttl=60, clock=clock)
    taker.acquire()
    assert taker.action == "takeover"
    assert taker.taken_over == dead_record
    assert taker.record == json.loads(open(path).read())


def test_dry_run_decides_like_a_real_run_and_writes_nothing(tmp_path):
    project = tmp_path / "proj"
    project.mkdir()
    path = str(project / ".runbook-release" / "deploy.lock")
    clock = Clock()
    probe = DeployLock(path, "run-a", owner="alice", clock=clock)
    assert probe.acquire(dry_run=True) is True and probe.action == "create"
    assert probe.record["owner"] == "alice"
    assert os.listdir(str(project)) == [], "no directory, lock or guard file in a dry run"
    DeployLock(path, "run-a", clock=clock).acquire()
    before = open(path).read()
    clock.now += 5
    again = DeployLock(path, "run-a", clock=clock)
    assert again.acquire(dry_run=True) is False and again.action == "reenter"
    assert again.heartbeat(dry_run=True) is True
    assert again.release(dry_run=True) is True
    assert open(path).read() == before
    with pytest.raises(LockError):
        DeployLock(path, "run-b", clock=clock).acquire(dry_run=True)
    clock.now += 1000
    stale = DeployLock(path, "run-b", clock=clock)
    assert stale.acquire(dry_run=True) is True and stale.action == "takeover"
    assert stale.warnings[0].startswith("would take over a stale deploy lock held by run run-a")
    assert DeployLock(path, None).break_lock("test", dry_run=True)["run_id"] == "run-a"
    assert open(path).read() == before


def test_break_removes_any_owners_lock_and_leaves_a_note(tmp_path):
    path = str(tmp_path / "deploy.lock")
    clock = Clock()
    DeployLock(path, "run-a", owner="alice", clock=clock).acquire()
    breaker = DeployLock(path, None, owner="bob", clock=clock)
    removed = breaker.break_lock("node died with the job (INC-1)")
    assert removed["run_id"] == "run-a" and removed["owner"] == "alice"
    assert not os.path.exists(path)
    note = DeployLock(path, "run-a").broken_note()
    assert note["broken_by"] == "bob" and note["reason"] == "node died with the job (INC-1)"
    assert note["lock"] == removed and note["broken_at"].endswith("Z")
    assert breaker.break_lock("again") is None, "nothing left to break"
    holder = DeployLock(path, "run-a", clock=clock)
    assert holder.heartbeat() is False, "the run that lost the lock learns it at its next heartbeat"
