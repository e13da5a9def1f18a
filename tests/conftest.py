"""Shared fixtures: where the sandbox's services are, read from `scripts/sandbox status --json`."""

import json
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SANDBOX = REPO / "scripts" / "sandbox"


def sandbox(*args, check=True, timeout=900):
    """Run scripts/sandbox with args; return the CompletedProcess."""
    proc = subprocess.run([str(SANDBOX), *args], capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"scripts/sandbox {' '.join(args)} failed rc={proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="session")
def sandbox_status():
    proc = sandbox("status", "--json", check=False)
    data = json.loads(proc.stdout)
    if proc.returncode != 0:
        raise AssertionError("the sandbox is not up; run 'scripts/sandbox up' (make test does)\n" + proc.stdout)
    return data


@pytest.fixture(scope="session")
def secret_of(sandbox_status):
    home = Path(sandbox_status["home"])

    def read(name):
        return (home / "secrets" / name).read_text().strip()

    return read
