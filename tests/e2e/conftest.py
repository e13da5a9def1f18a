"""End-to-end tests: every test marks the sandbox as no longer at the baseline a fresh_sandbox reset left."""

import pytest

from runbook_e2e import sandbox_touched


@pytest.fixture(autouse=True)
def _sandbox_in_use():
    sandbox_touched()
