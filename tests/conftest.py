"""Shared fixtures: where the sandbox's services are, read from `scripts/sandbox status --json`."""

import json
from pathlib import Path

import pytest

from sandbox_cli import sandbox


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
