"""`scripts/sandbox down` leaves nothing of the sandbox running, and `up` brings it all back.

Runs last in make test (it restarts every service) and leaves the sandbox up, serving v1.2.2.
"""

import socket
import subprocess
from pathlib import Path

import requests

from conftest import sandbox

PORTS = (5000, 8080, 8443, 55432, 9000, 8090, 8091)
# What identifies the sandbox's own processes (other instances, e.g. a test's private stand-in, do not count).
PORT_MARKERS = ("--statuspage-port 8090", "-p 9000")


def our_processes(home):
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if str(home) in cmdline or any(marker in cmdline for marker in PORT_MARKERS):
            found.append(cmdline.strip())
    return found


def port_free(port):
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def docker_lines(*args):
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=True).stdout.split()


def test_down_removes_everything_then_up_restores_it(sandbox_status):
    home = Path(sandbox_status["home"])
    assert our_processes(home), "precondition: the sandbox is running"

    down = sandbox("down")
    assert "nothing of the sandbox is running" in down.stdout
    assert our_processes(home) == []
    assert [p for p in PORTS if not port_free(p)] == []
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
        assert docker_lines("ps", "-aq", "--filter", "label=com.docker.compose.project=rbdemo") == []
        assert docker_lines("network", "ls", "-q", "--filter", "name=rbdemo_") == []
    assert not (home / "postgres").exists() and not (home / "secrets").exists()
    assert sandbox("status", check=False).returncode == 3

    again = sandbox("down")
    assert again.returncode == 0, "down twice is fine"

    up = sandbox("up")
    assert "sandbox is up — demo stack: v1.2.2" in up.stdout
    assert requests.get("http://127.0.0.1:8080/api/version", timeout=5).json()["version"] == "v1.2.2"
    assert sandbox("status", check=False).returncode == 0
