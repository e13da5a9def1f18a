"""runbook.release.deploy_lock run as Ansible runs it (a subprocess with its arguments file), on a temp project."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[4]
MODULE = "ansible_collections.runbook.release.plugins.modules.deploy_lock"


class Lock:
    """Runs the module against one project directory."""

    def __init__(self, workdir):
        self.workdir = workdir
        self.project = workdir / "project"
        self.project.mkdir()
        self.path = self.project / ".runbook-release" / "deploy.lock"

    def run(self, check=False, diff=False, **args):
        args.setdefault("project_src", str(self.project))
        args_file = self.workdir / ("args-%d.json" % time.monotonic_ns())
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": dict(args, _ansible_check_mode=check,
                                                                     _ansible_diff=diff)}))
        environ = dict(os.environ, PYTHONPATH=str(REPO / "collections"), TMPDIR=str(self.workdir), USER="target-user")
        proc = subprocess.run([sys.executable, "-m", MODULE, str(args_file)], capture_output=True, text=True,
                              env=environ, cwd=self.workdir, timeout=60, check=False)
        try:
            return json.loads(proc.stdout)
        except ValueError:
            return pytest.fail("module printed no JSON (rc=%d):\n%s%s" % (proc.returncode, proc.stdout, proc.stderr))

    def record(self):
        return json.loads(self.path.read_text())


def warnings(result):
    """Warning texts, whether ansible-core returns strings or (2.19) warning summaries."""
    return [w if isinstance(w, str) else w["event"]["msg"] for w in result.get("warnings", [])]


@pytest.fixture
def lock(tmp_path):
    return Lock(tmp_path)


def test_acquire_check_real_and_reentry(lock):
    check = lock.run(check=True, diff=True, state="acquired", run_id="run-a", owner="alice", version="v1.2.3")
    assert check["changed"] and check["action"] == "created" and check["lock"]["owner"] == "alice"
    assert "would acquire" in check["msg"] and '"owner": "alice"' in check["diff"]["after"]
    assert not (lock.project / ".runbook-release").exists()
    real = lock.run(state="acquired", run_id="run-a", owner="alice", version="v1.2.3")
    assert real["changed"] and real["lock"] == lock.record() and real["taken_over"] is None
    again = lock.run(state="acquired", run_id="run-a", owner="alice", version="v1.2.3")
    assert not again["changed"] and again["action"] == "reentered"
    assert again["lock"]["started_at"] == real["lock"]["started_at"]


def test_another_live_run_is_refused_naming_the_holder(lock):
    lock.run(state="acquired", run_id="run-a", owner="alice", version="v1.2.3")
    for check in (True, False):
        result = lock.run(check=check, state="acquired", run_id="run-b", owner="bob", timeout=1, poll=0.2)
        assert result["failed"] and result["action"] == "refused"
        assert "held by run run-a (owner alice on" in result["msg"]
        assert "deploying v1.2.3 since" in result["msg"] and "last heartbeat" in result["msg"]
        assert "waited 1 s" in result["msg"] and "becomes stale 900 s after its last heartbeat" in result["msg"]
        assert "state=broken and force_reason" in result["msg"]
        assert result["lock"]["run_id"] == "run-a"
    assert lock.record()["run_id"] == "run-a"


def test_stale_lock_is_taken_over_with_a_warning(lock):
    lock.run(state="acquired", run_id="run-dead", owner="carol", ttl=1)
    time.sleep(1.5)
    result = lock.run(state="acquired", run_id="run-new", owner="dave")
    assert result["changed"] and result["action"] == "taken_over"
    assert result["taken_over"]["run_id"] == "run-dead"
    assert any("took over a stale deploy lock held by run run-dead (owner carol" in w for w in warnings(result))
    assert lock.record()["run_id"] == "run-new"


def test_release_by_another_run_changes_nothing_and_warns(lock):
    lock.run(state="acquired", run_id="run-a", owner="alice")
    result = lock.run(state="released", run_id="run-b")
    assert not result["changed"] and result["action"] == "not_ours"
    assert "never releases another run's lock" in warnings(result)[0]
    assert lock.path.exists()
    check = lock.run(check=True, state="released", run_id="run-a")
    assert check["changed"] and lock.path.exists()
    real = lock.run(state="released", run_id="run-a")
    assert real["changed"] and real["lock"] is None and not lock.path.exists()
    assert not lock.run(state="released", run_id="run-a")["changed"]


def test_heartbeat_refreshes_and_fails_once_the_lock_is_lost(lock):
    lock.run(state="acquired", run_id="run-a", owner="alice")
    before = lock.record()["heartbeat"]
    time.sleep(0.05)
    beat = lock.run(state="heartbeat", run_id="run-a")
    assert not beat["changed"] and beat["action"] == "refreshed" and lock.record()["heartbeat"] > before
    broken = lock.run(state="broken", owner="bob", force_reason="the job's node died")
    assert broken["changed"] and broken["previous_lock"]["owner"] == "alice"
    assert "broke the deploy lock" in warnings(broken)[0] and "the job's node died" in warnings(broken)[0]
    lost = lock.run(state="heartbeat", run_id="run-a")
    assert lost["failed"] and "does not hold the deploy lock" in lost["msg"]
    assert "bob broke it at" in lost["msg"] and "the job's node died" in lost["msg"]


def test_bad_input_is_refused_before_touching_the_lock(lock):
    assert "run_id" in lock.run(state="acquired")["msg"]
    assert "force_reason" in lock.run(state="broken")["msg"]
    assert "not a valid version" in lock.run(state="acquired", run_id="r", version="v1 2")["msg"]
    missing = lock.run(state="acquired", run_id="r", project_src=str(lock.workdir / "nope"))
    assert missing["failed"] and "is not a directory" in missing["msg"]
    assert not (lock.project / ".runbook-release").exists()
