"""Benchmark: playbooks/release.yml against the same release done with raw commands, side by side in one run.

Both release v1.2.3 over v1.2.2 on the sandbox (schema V003 -> V006), from the same starting state, alternated:
  (a) bench/raw_release.sh: pg_dump + sha256sum, a psql -f loop, compose pull, the same start-first roll, curl;
  (b) ansible-playbook playbooks/release.yml -e version=v1.2.3 with the monitoring window at 0 - which also runs
      the preflight, the go/no-go gate, announcements, the S3 upload, the deploy lock and the smoke checks.
Between runs (not timed) the schema goes back to V003 and the stack to v1.2.2.
Targets: (b) at most 60 s, and at most 1.5x (a). Prints every run's wall seconds and the medians' ratio.
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
OLD, NEW = "v1.2.2", "v1.2.3"
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2"))
ENV = {"PATH": f"{VENV}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root"),
       "ANSIBLE_FORCE_COLOR": "0", "LANG": "C.UTF-8"}


def pg_env():
    return dict(ENV, PGPASSWORD=(HOME / "secrets" / "app_db_password").read_text().strip(), PGHOST="127.0.0.1",
                PGPORT="55432", PGUSER="app", PGDATABASE="appdb")


def psql(sql):
    return subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], env=pg_env(), check=True,
                          capture_output=True, text=True).stdout.strip()


def playbook(tasks):
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"}, "tasks": tasks}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(play, handle)
    try:
        proc = subprocess.run([str(VENV / "ansible-playbook"), handle.name], cwd=REPO, capture_output=True,
                              text=True, env=ENV, check=False)
        if proc.returncode:
            raise SystemExit("revert failed:\n" + proc.stdout[-3000:])
    finally:
        os.unlink(handle.name)


def revert(raw):
    """Back to the starting state: schema V003 (down scripts), stack v1.2.2."""
    migrations = HOME / "artifacts" / NEW / "migrations"
    if raw:
        for version in ("V006", "V005", "V004"):
            down = next(migrations.glob(version + "__*.down.sql"))
            single = [] if "-- runbook: no-transaction" in down.read_text() else ["--single-transaction"]
            subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", *single, "-f", str(down)],
                           env=pg_env(), check=True, capture_output=True)
        psql("DELETE FROM schema_migrations WHERE version > 'V003'")
    else:
        db = {"login_host": "127.0.0.1", "login_port": 55432, "login_user": "app", "login_db": "appdb",
              "login_password": "{{ lookup('ansible.builtin.file', '%s/secrets/app_db_password') }}" % HOME}
        down = dict(db, path=str(migrations), target="V003", baseline="auto")
        playbook([{"runbook.release.migration_apply": down, "no_log": True}])
    playbook([{"runbook.release.compose_rollout": {"project_src": str(STACK), "version": OLD}}])


def raw_release():
    subprocess.run([str(REPO / "bench" / "raw_release.sh"), NEW], env=ENV, check=True, capture_output=True)


def tool_release():
    proc = subprocess.run([str(VENV / "ansible-playbook"), "playbooks/release.yml", "-e", "version=" + NEW,
                           "-e", "release_monitor_window_s=0"], cwd=REPO, env=ENV, capture_output=True, text=True,
                          check=False)
    if proc.returncode:
        raise SystemExit("release.yml failed:\n" + proc.stdout[-4000:])


def timed(action):
    started = time.monotonic()
    action()
    return time.monotonic() - started


def main():
    revert(raw=False)
    served = psql("SELECT max(version) FROM schema_migrations")
    if served != "V003":
        raise SystemExit("the sandbox's schema_migrations is at %s, not V003: run scripts/sandbox up --reset" % served)
    raw, tool = [], []
    for number in range(ROUNDS):
        raw.append(timed(raw_release))
        revert(raw=True)
        tool.append(timed(tool_release))
        revert(raw=False)
        print("round %d: raw %.2f s, release.yml %.2f s" % (number + 1, raw[-1], tool[-1]), flush=True)
    a, b = statistics.median(raw), statistics.median(tool)
    print("%-34s %8s" % ("case", "median_s"))
    print("%-34s %8.2f" % ("(a) raw commands (raw_release.sh)", a))
    print("%-34s %8.2f  (target <= 60 s)" % ("(b) playbooks/release.yml", b))
    print("ratio (b)/(a): %.2fx (target <= 1.5x)" % (b / a))
    print(json.dumps({"raw_s": [round(x, 2) for x in raw], "release_yml_s": [round(x, 2) for x in tool],
                      "ratio": round(b / a, 3)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
