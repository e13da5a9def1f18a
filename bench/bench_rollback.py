"""Benchmark: playbooks/rollback.yml, application only, under bounded loopback load.

From v1.2.4-slow back to v1.2.3 (no migration between them, so the schema gate lets the application go back alone),
while bench/loadgen.py sends requests through the proxy. The wall time is the whole runbook as an operator runs it:
input checks, the record, the diagnostics bundle, the gate, the lock, the announcements (status page and chat), the
integrity checks, the start-first rollback of every service, the version and smoke checks and the on-call handoff.
Set-up between rounds (not timed): v1.2.4-slow rolled out with compose_rollout. Targets: at most 25 s, 0 failed
requests. At the end the stack goes back to the baseline (v1.2.2 on schema V003).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv" / "bin"
HOME = Path(os.environ.get("RUNBOOK_SANDBOX_HOME", "/var/lib/runbook-sandbox"))
STACK = HOME / "stack"
OLD, GOOD, SLOW = "v1.2.2", "v1.2.3", "v1.2.4-slow"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))  # loadgen workers; 0 measures without load, for comparison
TARGET_S = 25.0
ENV = {"PATH": f"{VENV}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root"),
       "ANSIBLE_FORCE_COLOR": "0", "LANG": "C.UTF-8", "USER": "root"}
DB = {"login_host": "127.0.0.1", "login_port": 55432, "login_user": "app", "login_db": "appdb",
      "login_password": "{{ lookup('ansible.builtin.file', '%s/secrets/app_db_password') }}" % HOME}


def playbook(tasks):
    """Set-up steps (not timed) as a throw-away play, without a deployment record."""
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}, "tasks": tasks}]
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "setup.yml"
        path.write_text(json.dumps(play))
        # Its deployment record goes to the scratch directory: set-up is not a release.
        proc = subprocess.run([str(VENV / "ansible-playbook"), str(path)], cwd=REPO, capture_output=True, text=True,
                              env=dict(ENV, RUNBOOK_RELEASE_RECORD_DIR=scratch), check=False)
        if proc.returncode:
            raise SystemExit("set-up failed:\n" + proc.stdout[-3000:])


def runbook(name, *extra):
    proc = subprocess.run([str(VENV / "ansible-playbook"), f"playbooks/{name}", *extra], cwd=REPO, env=ENV,
                          capture_output=True, text=True, check=False)
    if proc.returncode:
        raise SystemExit(f"{name} failed:\n" + proc.stdout[-4000:])
    return proc


def roll_out(version):
    playbook([{"runbook.release.compose_rollout": {"project_src": str(STACK), "version": version}}])


def served():
    proc = subprocess.run(["curl", "-fsS", "--max-time", "5", "http://127.0.0.1:8080/api/version"],
                          capture_output=True, text=True, check=False)
    return json.loads(proc.stdout or "{}").get("version")


def timed_rollback(tmp):
    stop, out = tmp / f"stop-{time.monotonic_ns()}", tmp / "load.json"
    load = None
    if WORKERS > 0:
        load = subprocess.Popen([str(VENV / "python"), str(REPO / "bench" / "loadgen.py"), "--url",
                                 "http://127.0.0.1:8080/api/version", "--workers", str(WORKERS), "--max-seconds",
                                 "180", "--stop-file", str(stop), "--out", str(out)], stdout=subprocess.DEVNULL)
        time.sleep(0.5)
    started = time.monotonic()
    try:
        runbook("rollback.yml", "-e", '{"rollback_reason": "bench: p95 above the limit"}')
    finally:
        wall = time.monotonic() - started
        if load is not None:
            stop.touch()
            load.wait(timeout=60)
    totals = json.loads(out.read_text()) if load is not None else {"requests": 0, "failed": 0, "p95_ms": None}
    if served() != GOOD:
        raise SystemExit(f"after rollback.yml the stack serves {served()}, not {GOOD}")
    return wall, totals


def main():
    if served() != GOOD:
        runbook("release.yml", "-e", f"version={GOOD}")
    walls, failed, requests_sent = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for number in range(ROUNDS):
            roll_out(SLOW)
            wall, totals = timed_rollback(Path(tmp))
            walls.append(wall)
            failed.append(totals["failed"])
            requests_sent.append(totals["requests"])
            print("round %d: rollback.yml %.2f s, %d requests, %d failed, p95 %s ms"
                  % (number + 1, wall, totals["requests"], totals["failed"], totals["p95_ms"]), flush=True)
    # Back to the baseline for the benchmarks after this one: schema V003 by the down scripts, the stack on v1.2.2.
    down = dict(DB, path=str(HOME / "artifacts" / GOOD / "migrations"), target="V003", baseline="auto")
    playbook([{"runbook.release.migration_apply": down, "no_log": True}])
    roll_out(OLD)
    median = statistics.median(walls)
    print("%-44s %8s %8s" % ("case", "median_s", "failed"))
    print("%-44s %8.2f %8d  (targets <= %.0f s, 0 failed; load: %d loadgen workers)"
          % ("rollback.yml v1.2.4-slow -> v1.2.3 (app only)", median, sum(failed), TARGET_S, WORKERS))
    print(json.dumps({"rollback_yml_s": [round(w, 2) for w in walls], "workers": WORKERS, "failed_requests": failed,
                      "requests": requests_sent, "median_s": round(median, 2),
                      "met": median <= TARGET_S and sum(failed) == 0}))
    return 0 if median <= TARGET_S and sum(failed) == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
