"""Benchmark: how long the go/no-go gate takes to judge a large release's evidence.

Generates, in a temp directory: RECORDS deployment records built with the deployment_record callback's own
RecordBuilder (TASKS tasks each, as a real release's record has; the newest is staging's v1.3.0), a JUnit XML
report of TESTCASES test cases without totals (the slow path: every case is counted), and a Trivy report with
VULNS findings. Then times, median of RUNS (BENCH_RUNS, default 5):

- each reader alone (records directory, JUnit, Trivy);
- the whole evaluation of the seven criteria in-process (``_release_gate.evaluate``);
- the module as Ansible runs it (a Python subprocess with its arguments file), which adds the interpreter and
  AnsibleModule start-up.

Prints the figures and the size of the evidence. Target: the whole module run under 5 s (a go/no-go decision must
not be the slow step of a release).
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "collections"))

# pylint: disable=wrong-import-position
from ansible_collections.runbook.release.plugins.module_utils import _deployment_record as dr  # noqa: E402
from ansible_collections.runbook.release.plugins.module_utils import _gate_evidence as ev  # noqa: E402
from ansible_collections.runbook.release.plugins.module_utils import _release_gate as gate  # noqa: E402
from ansible_collections.runbook.release.plugins.modules.release_gate import argument_spec  # noqa: E402

RECORDS = int(os.environ.get("BENCH_RECORDS", "1000"))
TASKS = 60
TESTCASES = int(os.environ.get("BENCH_TESTCASES", "20000"))
VULNS = int(os.environ.get("BENCH_VULNS", "3000"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
TARGET_S = 5.0
NOW = datetime(2031, 3, 6, 16, 0, tzinfo=timezone.utc)


def stamp(moment):
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def write_records(directory):
    for index in range(RECORDS):
        finished = NOW - timedelta(hours=6) - timedelta(hours=RECORDS - 1 - index)
        environment = ("staging", "production", "local")[index % 3] if index < RECORDS - 1 else "staging"
        version = "v1.%d.0" % (index // 10) if index < RECORDS - 1 else "v1.3.0"
        builder = dr.RecordBuilder("rec%06d" % index)
        for task in range(TASKS):
            builder.task_start("t%d" % task, "Task %d of the release" % task, "ansible.builtin.debug", "tasks")
            builder.task_result("t%d" % task, "app-01", "ok")
        release = {"schema_version": 1, "run_id": "%032x" % index, "runbook": "release", "environment": environment,
                   "service": "app", "operator": "ci", "started_at": stamp(finished - timedelta(minutes=10)),
                   "version": version, "outcome": "success"}
        record = dr.plain(builder.build(host_stats={"app-01": {"ok": TASKS, "failures": 0, "unreachable": 0}},
                                        custom={"_run": {"runbook_release": release}}))
        record["finished_at"] = stamp(finished)
        name = "%s_ctl_%06d.json" % (finished.strftime("%Y%m%dT%H%M%SZ"), index)
        (directory / name).write_text(json.dumps(record))
        (directory / (name[:-5] + ".journal.jsonl")).write_text("{}\n")


def write_junit(path):
    cases = []
    for index in range(TESTCASES):
        body = '<failure message="boom"/>' if index % 100 == 0 else ""
        cases.append('<testcase classname="e2e.Suite%d" name="test_%d" time="0.01">%s</testcase>' % (index // 50, index, body))
    path.write_text('<testsuites><testsuite name="e2e">%s</testsuite></testsuites>' % "".join(cases))


def write_trivy(path):
    vulns = [{"VulnerabilityID": "CVE-2031-%05d" % index, "PkgName": "pkg%d" % (index % 400), "Severity": "MEDIUM",
              "CVSS": {"nvd": {"V3Score": 5.0, "V2Score": 5.0}, "redhat": {"V3Score": 4.8}},
              "Description": "x" * 300} for index in range(VULNS)]
    path.write_text(json.dumps({"SchemaVersion": 2, "Results": [{"Target": "img", "Vulnerabilities": vulns}]}))


def median_s(func):
    times = []
    for _run in range(RUNS):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    with tempfile.TemporaryDirectory(prefix="bench_release_gate_") as tmp:
        tmp = Path(tmp)
        records = tmp / "records"
        records.mkdir()
        write_records(records)
        write_junit(tmp / "junit.xml")
        write_trivy(tmp / "trivy.json")
        (tmp / "approvals.yml").write_text(
            "approvals:\n  - {approver: maria, role: engineering_manager, version: v1.3.0, "
            "approved_at: '2031-03-06T09:00:00Z'}\n")
        args = {"version": "v1.3.0", "previous_version": "v1.2.3", "environment": "production", "operator": "alice",
                "now": stamp(NOW), "approvals_file": str(tmp / "approvals.yml"),
                "approvers": {"engineering_manager": ["maria"]}, "test_reports": [str(tmp / "junit.xml")],
                "vulnerability_report": [str(tmp / "trivy.json")],
                "change_window": {"days": ["thu"], "start_utc": "15:00", "end_utc": "18:00"},
                "freeze_file": str(tmp / "freeze"), "open_incidents": [], "promotion_records_dir": str(records)}
        params = {name: spec.get("default") for name, spec in argument_spec().items()}
        params.update(args)
        policy = gate.check_policy(params)
        approvals = ev.load_approvals_file(params["approvals_file"])

        verdict = {}

        def evaluate():
            verdict["criteria"] = gate.evaluate(params, policy, "minor", approvals, NOW)

        args_file = tmp / "args.json"
        args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": args}))
        env = dict(os.environ, PYTHONPATH=str(REPO / "collections"))

        def module_run():
            proc = subprocess.run([sys.executable, "-m", "ansible_collections.runbook.release.plugins.modules.release_gate",
                                   str(args_file)], capture_output=True, text=True, env=env, check=False)
            verdict["module"] = json.loads(proc.stdout)

        size_mb = sum(f.stat().st_size for f in records.iterdir() if f.suffix == ".json") / 1e6
        figures = {
            "records_dir_s": median_s(lambda: ev.read_records_dir(str(records))),
            "junit_s": median_s(lambda: ev.read_junit(str(tmp / "junit.xml"))),
            "trivy_s": median_s(lambda: ev.read_vulnerabilities(str(tmp / "trivy.json"))),
            "evaluate_s": median_s(evaluate),
            "module_s": median_s(module_run),
        }
        go = verdict["module"].get("go")
        print("release_gate benchmark: %d deployment records (%.1f MB of JSON, %d tasks each), JUnit with %d test "
              "cases (%.1f MB), Trivy with %d findings (%.1f MB); median of %d runs"
              % (RECORDS, size_mb, TASKS, TESTCASES, (tmp / "junit.xml").stat().st_size / 1e6, VULNS,
                 (tmp / "trivy.json").stat().st_size / 1e6, RUNS))
        print("  read records directory  %7.3f s" % figures["records_dir_s"])
        print("  read JUnit report       %7.3f s" % figures["junit_s"])
        print("  read Trivy report       %7.3f s" % figures["trivy_s"])
        print("  evaluate 7 criteria     %7.3f s (in-process)" % figures["evaluate_s"])
        print("  module run              %7.3f s (subprocess, as Ansible runs it; verdict %s)"
              % (figures["module_s"], "GO" if go else "NO-GO: %s" % verdict["module"].get("failed_criteria")))
        print(json.dumps({k: round(v, 4) for k, v in figures.items()}, sort_keys=True))
        ok = figures["module_s"] < TARGET_S and go
        print("target: module run under %.0f s with a GO verdict: %s" % (TARGET_S, "met" if ok else "NOT met"))
        return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
