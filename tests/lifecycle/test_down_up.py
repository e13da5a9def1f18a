"""`scripts/sandbox down` leaves nothing of the sandbox running, and `up` brings it all back.

Runs last in make test (it restarts every service) and leaves the sandbox up, serving v1.2.2.
"""

import socket
import subprocess
from pathlib import Path

import requests

from sandbox_cli import sandbox

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


def test_empty_mode_has_services_but_no_stack_and_an_empty_database(sandbox_status, secret_of):
    import psycopg2

    try:
        up = sandbox("up", "--empty")
        assert "nothing deployed (empty mode)" in up.stdout
        assert docker_lines("ps", "-aq", "--filter", "label=com.docker.compose.project=rbdemo") == []
        pg = sandbox_status["postgres"]
        with psycopg2.connect(host=pg["host"], port=pg["port"], dbname=pg["database"], user=pg["user"],
                              password=secret_of("app_db_password"), connect_timeout=5) as conn:
            with conn.cursor() as cur:
                cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
                assert cur.fetchone()[0] == 0
        conn.close()
        env = (Path(sandbox_status["stack"]["project_src"]) / ".env").read_text()
        assert "\nSERVICE_VERSION=" not in env, "nothing is pinned: the first-time deploy runbook pins it"
        assert sandbox("status", check=False).returncode == 0, "the services themselves are up"
    finally:
        sandbox("up", "--reset")
    assert requests.get("http://127.0.0.1:8080/api/version", timeout=5).json()["version"] == "v1.2.2"
