"""End to end: the README's main job, `ansible-playbook playbooks/release.yml -e version=v1.2.3`, on the sandbox.

Runs after `scripts/sandbox up --reset` (make e2e): v1.2.2 is serving when it starts, and it leaves v1.2.2 serving.
"""

import re
import subprocess
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]
PLAYBOOK = REPO / ".venv" / "bin" / "ansible-playbook"


def release(*extra):
    env = {"PATH": f"{REPO}/.venv/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": "/root", "ANSIBLE_FORCE_COLOR": "0"}
    return subprocess.run([str(PLAYBOOK), "playbooks/release.yml", *extra], cwd=REPO, capture_output=True,
                          text=True, timeout=600, check=False, env=env)


def recap(stdout):
    match = re.search(r"sandbox\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", stdout)
    assert match, stdout[-3000:]
    return dict(zip(("ok", "changed", "unreachable", "failed"), map(int, match.groups())))


def served_version():
    return requests.get("http://127.0.0.1:8080/api/version", timeout=5).json()["version"]


def env_file(sandbox_status):
    return (Path(sandbox_status["stack"]["project_src"]) / ".env").read_text()


@pytest.fixture
def restore_good_version():
    yield
    proc = release("-e", "version=v1.2.2")
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert served_version() == "v1.2.2"


def test_release_serves_the_new_version_and_is_idempotent(sandbox_status, restore_good_version, secret_of):
    assert served_version() == "v1.2.2"
    first = release("-e", "version=v1.2.3")
    assert first.returncode == 0, first.stdout[-3000:]
    assert recap(first.stdout)["changed"] >= 1
    assert served_version() == "v1.2.3"
    assert "SERVICE_VERSION=v1.2.3" in env_file(sandbox_status)

    again = release("-e", "version=v1.2.3")
    assert again.returncode == 0, again.stdout[-3000:]
    assert recap(again.stdout)["changed"] == 0
    assert served_version() == "v1.2.3"
    for output in (first.stdout + first.stderr, again.stdout + again.stderr):
        assert secret_of("app_db_password") not in output
        assert secret_of("statuspage_api_key") not in output


@pytest.mark.parametrize("extra, message", [
    ((), "version is required: pass -e version=v1.2.3"),
    (("-e", '{"version": "v1.2.3; touch /tmp/pwned"}'), 'version "v1.2.3; touch /tmp/pwned" is not valid'),
    (("-e", "version=" + "v" * 129), "is not valid: use 1 to 128 letters"),
])
def test_bad_input_stops_before_anything_changes(sandbox_status, extra, message):
    before = env_file(sandbox_status)
    proc = release(*extra)
    assert proc.returncode != 0
    flat = " ".join(proc.stdout.split())  # the YAML callback folds long messages
    assert message in flat
    assert "Nothing was changed." in flat
    assert recap(proc.stdout)["changed"] == 0
    assert env_file(sandbox_status) == before
    assert served_version() == "v1.2.2"
