"""Benchmark: what the runbook.release.deployment_record callback costs a run.

A generated 300-task local playbook (debug and set_fact, no loops) runs without and with the callback,
alternated, RUNS times each (BENCH_RUNS, default 5) after one warm-up of each. Prints for both the median wall
time and the median CPU time (user + system of ansible-playbook and everything it ran), the overhead of each
(target <= 3 % of the median without the callback), and the time the callback itself reports spending in its
hooks (``callback_time_s`` in the record, final write and reports included).

Wall time is what an operator waits for, but on a shared, busy machine it swings by more than the callback
costs; CPU time is the steadier measure of the same work. The exit status follows the CPU overhead.
"""

import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
TASKS = 300
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
TARGET_PCT = 3.0
CONFIGS = {}


def write_playbook(path):
    tasks = []
    for index in range(TASKS):
        if index % 2:
            tasks.append({"name": "Fact %d" % index, "ansible.builtin.set_fact": {"bench_fact_%d" % index: index}})
        else:
            tasks.append({"name": "Debug %d" % index, "ansible.builtin.debug": {"msg": "step %d" % index}})
    play = [{"name": "Deployment record benchmark", "hosts": "localhost", "connection": "local",
             "gather_facts": False, "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
             "tasks": tasks}]
    path.write_text(json.dumps(play))


def write_configs(tmp):
    """The project's ansible.cfg twice, with and without the callback (an empty ANSIBLE_CALLBACKS_ENABLED is an error)."""
    text = (REPO / "ansible.cfg").read_text().replace("collections_path = collections",
                                                      "collections_path = %s" % (REPO / "collections"))
    with_cfg, without_cfg = Path(tmp) / "with.cfg", Path(tmp) / "without.cfg"
    with_cfg.write_text(text)
    without_cfg.write_text("\n".join(line for line in text.splitlines() if not line.startswith("callbacks_enabled")))
    return {True: with_cfg, False: without_cfg}


def run(playbook, records, with_callback):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ANSIBLE_", "RUNBOOK_RELEASE_"))}
    env["ANSIBLE_CONFIG"] = str(CONFIGS[with_callback])
    env["RUNBOOK_RELEASE_RECORD_DIR"] = str(records)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    subprocess.run([str(PLAYBOOK), "-i", "localhost,", str(playbook)], cwd=REPO, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    with tempfile.TemporaryDirectory() as tmp:
        playbook = Path(tmp) / "bench.json"
        records = Path(tmp) / "records"
        write_playbook(playbook)
        CONFIGS.update(write_configs(tmp))
        run(playbook, records, False)
        run(playbook, records, True)
        without, with_cb = [], []
        for _index in range(RUNS):
            without.append(run(playbook, records, False))
            with_cb.append(run(playbook, records, True))
        reported = []
        for path in sorted(records.glob("*.json")):
            record = json.loads(path.read_text())
            assert record["outcome"] == "success" and len(record["tasks"]) == TASKS, path
            reported.append(record["callback_time_s"])
    print("%d-task local playbook, %d runs each, alternated; %d CPUs, load average %.2f"
          % (TASKS, RUNS, os.cpu_count(), os.getloadavg()[0]))
    results = {}
    for index, label in ((0, "wall"), (1, "cpu")):
        base = statistics.median(v[index] for v in without)
        cost = statistics.median(v[index] for v in with_cb)
        results[label] = 100.0 * (cost - base) / base
        print("%-4s without callback: median %.3f s  (%s)" % (label, base, " ".join("%.3f" % v[index] for v in without)))
        print("%-4s with callback:    median %.3f s  (%s)" % (label, cost, " ".join("%.3f" % v[index] for v in with_cb)))
        print("%-4s overhead: %+.3f s = %+.2f %% of the median (target <= %.0f %%)"
              % (label, cost - base, results[label], TARGET_PCT))
    base_wall = statistics.median(v[0] for v in without)
    inside = statistics.median(reported[1:])  # skip the warm-up run's record
    print("time inside the callback's hooks (its own measure): median %.3f s = %.2f %% of the median wall time"
          % (inside, 100.0 * inside / base_wall))
    return 0 if results["cpu"] <= TARGET_PCT else 1


if __name__ == "__main__":
    sys.exit(main())
