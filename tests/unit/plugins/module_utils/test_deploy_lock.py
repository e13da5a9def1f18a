"""The deploy lock on a real file system: exclusive, re-entrant per run id, stale after its ttl."""

import json
import os
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
