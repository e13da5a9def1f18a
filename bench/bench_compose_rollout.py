"""Benchmark: zero-downtime releases on the sandbox, measured side by side in one run.

Under the same bounded 4-worker loopback load through the proxy (bench/loadgen.py), paced and then saturating:
  (a) a plain `docker compose up -d` to a new tag (what the seeds do; it returns once the containers started),
  (b) runbook.release.compose_rollout to the same tag,
  (c) compose_rollout with rollback_to=previous.
Each load runs the three cases ROUNDS times (default 3, `--rounds N`), one round after the other, so one slow
moment of the machine does not decide the verdict. Prints requests and failed requests (summed over the rounds),
each round's wall seconds and their median, and the ratio of the medians (b)/(a).
Targets: (b) and (c) 0 failed requests in every round; median (b) at most 3x median (a); (c) at most 10 s in every
round.
"""

import argparse

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
STACK = Path(os.environ.get("RUNBOOK_SANDBOX_HOME", "/var/lib/runbook-sandbox")) / "stack"
OLD, NEW = "v1.2.2", "v1.2.3"
# The same three cases under two loads. Paced: 4 workers x 25 requests/s, steady traffic that leaves the CPUs to the
# release. Saturating: 4 workers sending as fast as they are answered, which on a 2-CPU machine keeps both CPUs busy
# with the load itself, so it also measures how each case copes with CPU starvation.
LOADS = (("paced load: 4 workers x 25 requests/s", 25), ("saturating load: 4 workers, no pause", 0))


def rollout(**args):
    play = [{"hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
             "tasks": [{"runbook.release.compose_rollout": dict(project_src=str(STACK), **args)}]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(play, handle)
    try:
        subprocess.run([str(VENV / "ansible-playbook"), handle.name], cwd=REPO, check=True, capture_output=True,
                       text=True)
    finally:
        os.unlink(handle.name)


def plain_compose_up(version):
    env = STACK / ".env"
    text = "".join(line if not line.startswith("SERVICE_VERSION=") else "SERVICE_VERSION=%s\n" % version
                   for line in env.read_text().splitlines(keepends=True))
    env.write_text(text)
    subprocess.run(["docker", "compose", "--project-directory", str(STACK), "up", "-d"], check=True,
                   capture_output=True)


def under_load(action, rate):
    stop = Path(tempfile.mkdtemp()) / "stop"
    load = subprocess.Popen([str(VENV / "python"), str(REPO / "bench" / "loadgen.py"), "--url",
                             "http://127.0.0.1:8080/api/version", "--workers", "4", "--max-seconds", "180",
                             "--rate", str(rate), "--stop-file", str(stop)], stdout=subprocess.PIPE, text=True)
    time.sleep(1)
    started = time.monotonic()
    action()
    wall = time.monotonic() - started
    stop.touch()
    out, _err = load.communicate(timeout=60)
    result = json.loads(out)
    result["action_wall_s"] = round(wall, 2)
    return result


CASES = ("(a) docker compose up -d", "(b) compose_rollout", "(c) rollback_to=previous")


def measure_round(rate):
    rollout(version=OLD)
    results = {CASES[0]: under_load(lambda: plain_compose_up(NEW), rate)}
    rollout(version=OLD)
    results[CASES[1]] = under_load(lambda: rollout(version=NEW), rate)
    results[CASES[2]] = under_load(lambda: rollout(rollback_to="previous"), rate)
    return results


def measure(rate, rounds):
    """Every case `rounds` times: requests and failures summed, each round's wall seconds and their median."""
    per_round = [measure_round(rate) for _round in range(rounds)]
    results = {}
    for case in CASES:
        walls = [r[case]["action_wall_s"] for r in per_round]
        results[case] = {"requests": sum(r[case]["requests"] for r in per_round),
                         "failed": sum(r[case]["failed"] for r in per_round),
                         "walls_s": walls, "action_wall_s": round(statistics.median(walls), 2)}
    return results


def report(title, results):
    print(title)
    print("%-28s %10s %8s %8s  %s" % ("case", "requests", "failed", "median_s", "wall_s of each round"))
    for name, res in results.items():
        print("%-28s %10d %8d %8.2f  %s" % (name, res["requests"], res["failed"], res["action_wall_s"],
                                            " ".join("%.2f" % w for w in res["walls_s"])))
    a = results["(a) docker compose up -d"]["action_wall_s"]
    b = results["(b) compose_rollout"]["action_wall_s"]
    c = results["(c) rollback_to=previous"]
    verdicts = [
        ("(b)/(a) median wall %.2fx" % (b / a), "<= 3x", b / a <= 3),
        ("(b) failed requests %d" % results["(b) compose_rollout"]["failed"], "0",
         results["(b) compose_rollout"]["failed"] == 0),
        ("(c) failed requests %d" % c["failed"], "0", c["failed"] == 0),
        ("(c) slowest round %.2f s" % max(c["walls_s"]), "<= 10 s", max(c["walls_s"]) <= 10),
    ]
    for figure, target, met in verdicts:
        print("%-32s target %-7s %s" % (figure, target, "met" if met else "NOT met"))
    print()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds of the three cases per load (default 3)")
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error("--rounds must be 1 or more, not %d" % args.rounds)
    runs = {}
    for title, rate in LOADS:
        runs[title] = measure(rate, args.rounds)
    for title, results in runs.items():
        report(title, results)
    print(json.dumps(runs, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
