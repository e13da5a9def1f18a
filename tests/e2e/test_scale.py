"""End to end: the scaling runbook (playbooks/scale.yml, seed 004 §6) on the sandbox, judged by what users see.

Bad input and a capacity refusal change nothing; the api scales up to 3 replicas and back to 1 under bounded
loopback load with no failed request, every replica answers through the proxy, a rerun at the same count changes
nothing, and the deployment record holds the counts. The module starts from and ends with a reset sandbox.
"""

import json
import subprocess

import pytest

from runbook_e2e import (CHAT, STACK, STATUSPAGE, Load, check_secrets_absent, flat, fresh_sandbox, last_seq,
                         recap, record_of, run, served_version)

pytestmark = pytest.mark.usefixtures(fresh_sandbox.__name__)


def replicas(service):
    """Running containers of a service of the demo stack, from docker itself."""
    out = subprocess.run(["docker", "compose", "--project-directory", str(STACK), "ps", "--format",
                          "json", service], capture_output=True, text=True, check=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.strip()]
    return sum(1 for row in rows if row.get("State") == "running")


@pytest.fixture(scope="module")
def outputs():
    return []


@pytest.mark.parametrize("extra, message", [
    ((), "scale is required"),
    (("-e", "scale={\"api\":"), "is not valid JSON"),
    (("-e", '{"scale": {"db": 2}}'), "unknown service(s) db in scale"),
    (("-e", '{"scale": {"api": -1}}'), "is not a whole number of 0 or more"),
    (("-e", '{"scale": {"api": 99}}'), "is above the maximum of"),
])
def test_bad_input_is_refused_before_anything_changes(extra, message, outputs):
    chat_from, page_from = last_seq(CHAT), last_seq(STATUSPAGE)
    proc, _run_id, _wall = run("scale.yml", *extra)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert message in flat(proc), proc.stdout[-3000:]
    assert "Nothing was changed" in flat(proc)
    assert replicas("api") == 1
    assert last_seq(CHAT) == chat_from and last_seq(STATUSPAGE) == page_from


def test_a_capacity_refusal_changes_nothing(outputs):
    proc, run_id, _wall = run("scale.yml", "-e", '{"scale": {"api": 3}}', "-e", "scale_min_free_memory_mb=100000000")
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert "memory" in flat(proc).lower(), proc.stdout[-3000:]
    assert replicas("api") == 1
    assert record_of(run_id)["outcome"] != "success"


@pytest.mark.parametrize("count", [3, 1])
def test_scaling_under_load_fails_no_request(count, tmp_path, outputs):
    load = Load(tmp_path, seconds=300)
    try:
        proc, run_id, _wall = run("scale.yml", "-e", json.dumps({"scale": {"api": count}}))
    finally:
        figures = load.finish()
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-5000:]
    assert replicas("api") == count
    assert figures["failed"] == 0 and figures["requests"] > 50, figures
    assert served_version() == "v1.2.2"
    release = record_of(run_id)["release"]
    assert release["runbook"] == "scale"
    assert release["scale"]["after"]["api"] == count and release["scale"]["requested"] == {"api": count}
    if count > 1:
        answered = release["scale"]["answered"]["api"]
        assert not answered["missing"], answered
        # The same count again changes nothing and announces nothing.
        chat_from = last_seq(CHAT)
        again, _run_id, _wall = run("scale.yml", "-e", json.dumps({"scale": {"api": count}}))
        outputs.append(again.stdout + again.stderr)
        assert again.returncode == 0 and recap(again.stdout)["changed"] == 0, again.stdout[-3000:]
        assert last_seq(CHAT) == chat_from


def test_secrets_are_absent_from_output_and_records(outputs, secret_of):
    check_secrets_absent(outputs, secret_of)
