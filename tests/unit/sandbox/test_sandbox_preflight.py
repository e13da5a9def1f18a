"""The sandbox refuses to start with a clear error, before changing anything, when a port is busy or a
prerequisite is missing."""

import importlib.util
import os
import socket
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def sandbox_mod():
    spec = importlib.util.spec_from_file_location("rb_sandbox", REPO / "sandbox" / "sandbox.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_busy_port_is_named_with_its_owner(sandbox_mod):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        port = listener.getsockname()[1]
        assert not sandbox_mod.port_is_free(port)
        with pytest.raises(sandbox_mod.SandboxError) as err:
            sandbox_mod.require_port("registry", port)
    message = str(err.value)
    assert f"127.0.0.1:{port} (needed for registry) is already in use by" in message
    assert f"pid={os.getpid()}" in message, "the owning process should be named"
    assert sandbox_mod.port_is_free(port)


def test_missing_prerequisites_stop_up_before_anything_changes(tmp_path):
    home = tmp_path / "home"
    proc = subprocess.run([str(REPO / "scripts" / "sandbox"), "up"], capture_output=True, text=True, timeout=60,
                          check=False, env={"PATH": "/usr/bin:/bin", "RUNBOOK_SANDBOX_HOME": str(home)})
    assert proc.returncode == 2
    assert "missing prerequisites: dockerd (Debian package docker.io)" in proc.stderr
    assert "Run 'make deps' to install them." in proc.stderr
    assert not home.exists(), "nothing may be created when prerequisites are missing"


def test_unknown_command_is_a_usage_error():
    proc = subprocess.run([str(REPO / "scripts" / "sandbox"), "explode"], capture_output=True, text=True,
                          timeout=60, check=False)
    assert proc.returncode == 2
    assert "invalid choice: 'explode'" in proc.stderr
