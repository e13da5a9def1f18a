"""Benchmark: 50 smoke checks in one runbook.release.smoke_check task against a loop of ansible.builtin.uri.

A threaded HTTP server on 127.0.0.1 (ephemeral port, started here) answers every request after 100 ms. Measured,
side by side in one run (median of --runs runs each):
  (a) wall time of a playbook with one smoke_check task checking 50 endpoints (default concurrency, 16),
  (b) wall time of a playbook looping ansible.builtin.uri over the same 50 endpoints,
  (c) the module's own reported duration_ms in (a),
  (d) as (a) and (c) with concurrency 50,
  (e) an empty playbook (the ansible-playbook start-up both pay),
  (f) a playbook with one ansible.builtin.ping task: what a module task run as its own process costs on top of (e)
      (the AnsiballZ payload built, a Python started on the target, ansible.module_utils.basic imported, the result
      read back), which every uri iteration pays,
  (g) as (a) with runbook_release_in_worker=false: smoke_check run as its own process like (f), where (a) runs it
      in the Ansible worker (plugins/plugin_utils/_in_worker.py; the local connection).
Targets: (c) <= 0.5 s; (b)/(a) >= 20x (printed for (a) and for (d)).
Every playbook is the task alone: the module's duration_ms is read by bench/callback_plugins/bench_result.py, which
is enabled for every playbook alike. The playbooks run with the repository's settings minus its deployment_record
callback (a configuration written for the benchmark), so the figures are the tasks' own cost; the same pair is
then timed once with the repository's ansible.cfg as it is, callback included, for reference. Both sides run with the same configuration, and the runs are
interleaved (one of each playbook per round) so that load from elsewhere on the machine hits all of them alike.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"
ENDPOINTS = 50
DELAY_S = 0.1


class Slow(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 - http.server's naming
        time.sleep(DELAY_S)
        body = json.dumps({"status": "ok", "path": self.path}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the default 5 would drop concurrent connects and add 1 s SYN retries


def play(tasks, in_worker=True):
    return [{"name": "bench", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}",
                      "runbook_release_in_worker": in_worker}, "tasks": tasks}]


def smoke_play(base, concurrency, in_worker=True):
    checks = [{"name": "ep%02d" % i, "url": "%s/ep/%d" % (base, i), "expect_json": {"status": "ok"}}
              for i in range(ENDPOINTS)]
    return play([{"name": "Smoke checks", "runbook.release.smoke_check": {"checks": checks, "concurrency": concurrency}}],
                in_worker)


def uri_play(base):
    return play([{"name": "uri loop", "ansible.builtin.uri": {"url": base + "/ep/{{ item }}", "return_content": True},
                  "loop": "{{ range(%d) | list }}" % ENDPOINTS, "register": "bench_uri"}])


def bare_config(directory):
    """The repository's settings without extra callbacks."""
    path = Path(directory) / "ansible.cfg"
    path.write_text("[defaults]\ninventory = %s\ncollections_path = %s\ninterpreter_python = auto_silent\n"
                    "retry_files_enabled = False\nforks = 10\n" % (REPO / "inventories" / "local", REPO / "collections"))
    return path


CONFIG = {}


def run(playbook, directory, name):
    path = Path(directory) / (name + ".yml")
    path.write_text(json.dumps(playbook))
    result_file = Path(directory) / (name + ".result.json")
    if result_file.exists():
        result_file.unlink()
    env = dict(os.environ, ANSIBLE_CONFIG=str(CONFIG["path"]), ANSIBLE_FORCE_COLOR="0",
               BENCH_RESULT_FILE=str(result_file), ANSIBLE_CALLBACK_PLUGINS=str(REPO / "bench" / "callback_plugins"))
    enabled = [c for c in (env.get("ANSIBLE_CALLBACKS_ENABLED") or CONFIG.get("callbacks", "")).split(",") if c]
    env["ANSIBLE_CALLBACKS_ENABLED"] = ",".join(enabled + ["bench_result"])
    began = time.monotonic()
    proc = subprocess.run([str(PLAYBOOK), str(path)], cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - began
    if proc.returncode != 0:
        sys.exit("%s failed (rc=%s):\n%s\n%s" % (name, proc.returncode, proc.stdout[-3000:], proc.stderr[-2000:]))
    if not result_file.exists():
        return wall, None
    result = json.loads(result_file.read_text())
    if result["passed"] is not True:
        sys.exit("%s: the smoke checks did not pass:\n%s" % (name, proc.stdout[-3000:]))
    return wall, result["duration_ms"] / 1000.0


def median_of(runs, playbook, directory, name):
    return medians_of(runs, {name: playbook}, directory)[name]


def medians_of(runs, playbooks, directory):
    """{name: (median wall s, median module s or None)}, ``runs`` rounds that run each playbook once, in turn."""
    results = {name: [] for name in playbooks}
    for _round in range(runs):
        for name, playbook in playbooks.items():
            results[name].append(run(playbook, directory, name))
    out = {}
    for name, pairs in results.items():
        modules = [m for _w, m in pairs if m is not None]
        out[name] = (statistics.median([w for w, _m in pairs]), statistics.median(modules) if modules else None)
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each playbook; the median is reported")
    args = parser.parse_args()
    server = Server(("127.0.0.1", 0), Slow)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = "http://127.0.0.1:%d" % server.server_address[1]
    try:
        with tempfile.TemporaryDirectory(prefix="bench_smoke_check.") as directory:
            CONFIG.update(path=REPO / "ansible.cfg", callbacks="runbook.release.deployment_record")
            repo_smoke, _module = median_of(1, smoke_play(base, 16), directory, "repo_smoke")
            repo_uri, _none = median_of(1, uri_play(base), directory, "repo_uri")
            CONFIG.update(path=bare_config(directory), callbacks="")
            run(smoke_play(base, 16), directory, "warmup")
            figures = medians_of(args.runs, {
                "empty": play([{"name": "nothing", "ansible.builtin.meta": "noop"}]),
                "ping": play([{"name": "ping", "ansible.builtin.ping": {}}]),
                "smoke": smoke_play(base, 16), "smoke50": smoke_play(base, 50), "uri": uri_play(base),
                "process": smoke_play(base, 16, in_worker=False)}, directory)
            empty, ping, uri = figures["empty"][0], figures["ping"][0], figures["uri"][0]
            smoke, module = figures["smoke"]
            smoke50, module50 = figures["smoke50"]
            process = figures["process"][0]
    finally:
        server.shutdown()
        server.server_close()
    ratio = uri / smoke
    print("%d endpoints answering after %d ms, median of %d runs" % (ENDPOINTS, DELAY_S * 1000, args.runs))
    print("%-48s %8.2f s" % ("(e) empty playbook (ansible-playbook start-up)", empty))
    print("%-48s %8.2f s" % ("(f) playbook: one ansible.builtin.ping task", ping))
    print("%-48s %8.2f s" % ("(b) playbook: uri loop over 50 endpoints", uri))
    print("%-48s %8.2f s" % ("(a) playbook: one smoke_check task (concurrency 16)", smoke))
    print("%-48s %8.3f s  (target <= 0.5 s: %s)" % ("(c) smoke_check duration_ms (concurrency 16)", module,
                                                    "met" if module <= 0.5 else "NOT met"))
    print("%-48s %8.2f s" % ("(d) playbook: smoke_check, concurrency 50", smoke50))
    print("%-48s %8.3f s" % ("(d) smoke_check duration_ms, concurrency 50", module50))
    print("%-48s %8.2f s" % ("(g) as (a), the module as its own process", process))
    ratio50 = uri / smoke50
    print("ratio (b)/(a) playbook wall time, concurrency 16 (the default): %.1fx (target >= 20x: %s)"
          % (ratio, "met" if ratio >= 20 else "NOT met"))
    print("ratio (b)/(d) playbook wall time, concurrency 50 (one thread per endpoint): %.1fx (target >= 20x: %s)"
          % (ratio50, "met" if ratio50 >= 20 else "NOT met"))
    print("ratio net of start-up ((b)-(e))/((a)-(e)): %.1fx" % ((uri - empty) / max(smoke - empty, 1e-3)))
    print("ratio (b)/(g), the module as its own process: %.1fx; running it in the worker saves %.2f s" % (
        uri / process, process - smoke))
    print("with the repository's ansible.cfg (deployment_record callback on), one run: uri loop %.2f s, smoke_check "
          "%.2f s, ratio %.1fx" % (repo_uri, repo_smoke, repo_uri / repo_smoke))
    print(json.dumps({"endpoints": ENDPOINTS, "delay_ms": DELAY_S * 1000, "runs": args.runs, "empty_s": round(empty, 3),
                      "ping_s": round(ping, 3), "smoke_check_process_s": round(process, 3),
                      "ratio_process": round(uri / process, 2),
                      "uri_loop_s": round(uri, 3), "smoke_check_s": round(smoke, 3), "module_s": round(module, 3),
                      "smoke_check_c50_s": round(smoke50, 3), "module_c50_s": round(module50, 3),
                      "ratio": round(ratio, 2), "ratio_c50": round(ratio50, 2), "repo_cfg_uri_loop_s": round(repo_uri, 3),
                      "repo_cfg_smoke_check_s": round(repo_smoke, 3)}, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
