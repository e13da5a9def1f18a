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


@pytest.mark.parametrize("how", ["option", "environment"])
def test_an_unknown_stack_is_refused_by_name_before_anything_changes(tmp_path, how):
    home = tmp_path / "home"
    argv = [str(REPO / "scripts" / "sandbox"), *(["--stack", "c"] if how == "option" else []), "up"]
    env = {"PATH": "/usr/bin:/bin", "RUNBOOK_SANDBOX_HOME": str(home)}
    if how == "environment":
        env["RUNBOOK_SANDBOX_STACK"] = "c"
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, env=env)
    assert proc.returncode == 2
    assert "unknown stack 'c' (from --stack or RUNBOOK_SANDBOX_STACK); use one of: a, b" in proc.stderr
    assert not home.exists()


def test_the_two_stacks_share_no_port_directory_project_database_or_stand_in(sandbox_mod):
    stacks = list(sandbox_mod.STACKS.values())
    assert [s.name for s in stacks] == ["a", "b"]
    ports = [port for s in stacks for port in s.ports.values()] + list(sandbox_mod.PORTS.values())
    assert len(ports) == len(set(ports)), ports
    for attribute in ("directory", "project", "database", "saas"):
        values = [getattr(s, attribute) for s in stacks]
        assert len(set(values)) == len(values), (attribute, values)
    # Stack a keeps the names the README, the demo and inventories/local use.
    a = sandbox_mod.STACKS["a"]
    assert (a.directory, a.project, a.database, a.ports["proxy_http"], a.saas) == ("stack", "rbdemo", "appdb", 8080,
                                                                                   "saas")


def test_the_stack_b_overlay_names_what_the_sandbox_gives_stack_b(sandbox_mod):
    """tests/e2e/inventory-stack-b must point at the same ports, directory and database as sandbox.py's stack b."""
    import yaml

    b = sandbox_mod.STACKS["b"]
    overlay = yaml.safe_load((REPO / "tests" / "e2e" / "inventory-stack-b" / "group_vars" / "all" / "stack.yml")
                             .read_text())
    assert overlay["release_project_src"].endswith("/" + b.directory)
    assert overlay["release_base_url"] == overlay["release_scale_probe_base_url"] == \
        f"http://127.0.0.1:{b.ports['proxy_http']}"
    assert overlay["release_db_name"] == b.database
    assert overlay["release_statuspage_api_url"] == f"http://127.0.0.1:{b.ports['statuspage']}/v1"
    assert overlay["release_chat_webhook_url"] == f"http://127.0.0.1:{b.ports['webhook']}/hooks/releases"
