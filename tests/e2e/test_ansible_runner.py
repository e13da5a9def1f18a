"""End to end: playbooks/release.yml through ansible-runner, with a private data dir laid out as AWX lays it out.

    <private_data_dir>/env/extravars   the job's extra variables (AWX: survey answers and extra_vars)
    <private_data_dir>/env/envvars     the job's environment (AWX: injected by credentials)
    <private_data_dir>/inventory/      the inventory (here a link to inventories/local)
    <private_data_dir>/project/        the project checkout (here a link to the repository root, so its
                                       ansible.cfg and collections/ resolve runbook.release.* as in a checkout)
    <private_data_dir>/artifacts/      written by ansible-runner: artifacts/<ident>/{rc,status,stdout,job_events/}

ansible-runner points AWX_ISOLATED_DATA_DIR at artifacts/<ident>; the deployment_record callback writes the
record there when no record_dir is configured (docs/deployment-record.md), which is where AWX collects artifacts.

The run changes the shared demo stack (a release of v1.2.3): run it only under the stack lock,
`flock /tmp/rb-stack.lock .venv/bin/pytest -q tests/e2e/test_ansible_runner.py`. The release runbook is
idempotent: when v1.2.3 serves already, the run verifies it and still succeeds with a success record.
"""

import json
import os
import subprocess
import uuid
from pathlib import Path

import pytest
import requests

from sandbox_cli import sandbox

REPO = Path(__file__).resolve().parents[2]
VENV = REPO / ".venv" / "bin"
BASE = "http://127.0.0.1:8080"
VERSION = "v1.2.3"


@pytest.fixture(scope="module", autouse=True)
def baseline_after():
    """The other end-to-end modules expect the sandbox's baseline (v1.2.2): put it back."""
    yield
    sandbox("up", "--reset")


def served_version():
    return requests.get(f"{BASE}/api/version", timeout=5).json()["version"]


def runner_env():
    """A job's environment as AWX gives it: no ANSIBLE_CONFIG, no RUNBOOK_RELEASE_RECORD_DIR from the caller."""
    return {"PATH": f"{VENV}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root"),
            "LANG": "C.UTF-8", "USER": "root"}


def private_data_dir(root, run_id):
    (root / "env").mkdir(parents=True)
    (root / "env" / "extravars").write_text(json.dumps({"version": VERSION, "release_run_id": run_id}))
    (root / "env" / "envvars").write_text(json.dumps({"ANSIBLE_FORCE_COLOR": "0", "ANSIBLE_NOCOLOR": "1"}))
    (root / "inventory").symlink_to(REPO / "inventories" / "local", target_is_directory=True)
    (root / "project").symlink_to(REPO, target_is_directory=True)
    (root / "artifacts").mkdir()
    return root


@pytest.fixture(scope="module")
def job(tmp_path_factory):
    run_id = uuid.uuid4().hex
    ident = "rb-" + run_id[:12]
    pdd = private_data_dir(tmp_path_factory.mktemp("runner") / "pdd", run_id)
    proc = subprocess.run([str(VENV / "ansible-runner"), "run", str(pdd), "-p", "playbooks/release.yml",
                           "--ident", ident], cwd=str(pdd), env=runner_env(), capture_output=True, text=True,
                          timeout=1200, check=False)
    return {"proc": proc, "pdd": pdd, "ident": ident, "run_id": run_id, "artifacts": pdd / "artifacts" / ident}


def test_the_runner_job_succeeds(job):
    artifacts, proc = job["artifacts"], job["proc"]
    stdout = (artifacts / "stdout").read_text() if (artifacts / "stdout").exists() else proc.stdout
    assert proc.returncode == 0, stdout[-5000:] + proc.stderr[-2000:]
    assert (artifacts / "status").read_text().strip() == "successful", stdout[-5000:]
    assert (artifacts / "rc").read_text().strip() == "0"
    assert served_version() == VERSION


def records_in(artifacts, run_id):
    found = []
    for path in artifacts.glob("*.json"):
        try:
            data = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(data, dict) and data.get("run_id") == run_id:
            found.append((path, data))
    return found


def test_the_deployment_record_lands_in_the_runner_artifacts_directory(job):
    found = records_in(job["artifacts"], job["run_id"])
    assert len(found) == 1, sorted(p.name for p in job["artifacts"].iterdir())
    _path, record = found[0]
    assert record["outcome"] == "success"
    assert record["version"] == VERSION
    assert not records_in(REPO / "records", job["run_id"]), "under ansible-runner the record goes to its artifacts"


def test_no_secret_in_any_artifact(job):
    secrets = [p.read_text().strip() for p in Path("/var/lib/runbook-sandbox/secrets").iterdir() if p.is_file()]
    secrets = [s for s in secrets if len(s) >= 6]
    assert secrets, "the sandbox has no secrets to look for"
    files = [p for p in job["artifacts"].rglob("*") if p.is_file()]
    assert files
    for path in files:
        text = path.read_bytes().decode("utf-8", "replace")
        for secret in secrets:
            assert secret not in text, f"a sandbox secret appears in {path.relative_to(job['pdd'])}"
