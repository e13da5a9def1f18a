"""`scripts/sandbox down` leaves nothing of the sandbox running, and `up` brings it all back.

Runs last in make test (it restarts every service) and leaves the sandbox up, serving v1.2.2.
"""

import json
import socket
import subprocess
import time
from pathlib import Path

import requests

from sandbox_cli import sandbox

# Both demo stacks' ports (a: 8080/8443 and stand-ins 8090/8091; b: 8180/8543 and 8190/8191) and the shared ones.
PORTS = (5000, 8080, 8443, 55432, 9000, 8090, 8091, 8180, 8543, 8190, 8191)
PROJECTS = ("rbdemo", "rbdemo-b")
# What identifies the sandbox's own processes (other instances, e.g. a test's private stand-in, do not count).
PORT_MARKERS = ("--statuspage-port 8090", "--statuspage-port 8190", "-p 9000")


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
    # The second stack too (make test's second lane leaves it up): `down` takes both away.
    assert "demo stack b: v1.2.2" in sandbox("--stack", "b", "up").stdout
    assert requests.get("http://127.0.0.1:8180/api/version", timeout=5).json()["version"] == "v1.2.2"

    down = sandbox("down")
    assert "nothing of the sandbox is running" in down.stdout
    assert our_processes(home) == []
    assert [p for p in PORTS if not port_free(p)] == []
    if subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0:
        for project in PROJECTS:
            assert docker_lines("ps", "-aq", "--filter", f"label=com.docker.compose.project={project}") == []
            assert docker_lines("network", "ls", "-q", "--filter", f"name={project}_") == []
    assert not (home / "postgres").exists() and not (home / "secrets").exists()
    assert not (home / "stack").exists() and not (home / "stack-b").exists()
    assert sandbox("status", check=False).returncode == 3

    again = sandbox("down")
    assert again.returncode == 0, "down twice is fine"

    up = sandbox("up")
    assert "sandbox is up — demo stack a: v1.2.2" in up.stdout
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


def test_the_second_stack_is_a_separate_copy_and_resetting_it_leaves_stack_a_alone(secret_of):
    """Stack b (make test's second lane) has its own project, ports, database and stand-in: what happens on it is
    not seen on stack a, and `--stack b up --reset` does not touch stack a's containers."""
    import psycopg2

    before_a = docker_lines("ps", "-q", "--filter", "label=com.docker.compose.project=rbdemo")
    assert before_a, "precondition: stack a is deployed"
    up = sandbox("--stack", "b", "up", "--reset")
    assert "demo stack b: v1.2.2" in up.stdout and "db=appdb_b" in up.stdout
    assert sorted(docker_lines("ps", "-q", "--filter", "label=com.docker.compose.project=rbdemo")) == sorted(before_a)
    assert len(docker_lines("ps", "-q", "--filter", "label=com.docker.compose.project=rbdemo-b")) == 4
    status = json.loads(sandbox("--stack", "b", "status", "--json").stdout)
    assert status["stack"]["project_src"].endswith("/stack-b") and status["postgres"]["database"] == "appdb_b"
    assert requests.get("http://127.0.0.1:8180/api/version", timeout=5).json()["version"] == "v1.2.2"

    def marked(database, insert=False):
        with psycopg2.connect(host="127.0.0.1", port=55432, dbname=database, user="app",
                              password=secret_of("app_db_password"), connect_timeout=5) as conn:
            with conn.cursor() as cur:
                if insert:
                    cur.execute("INSERT INTO items (name, owner) VALUES (%s, 'demo')", (marker,))
                cur.execute("SELECT count(*) FROM items WHERE name = %s", (marker,))
                count = cur.fetchone()[0]
        conn.close()
        return count

    # A row written to stack b's database is not in stack a's.
    marker = f"stack-b-{time.time_ns()}"
    assert (marked("appdb_b", insert=True), marked("appdb")) == (1, 0)

    # Each stack has its own chat stand-in: a message to b's is not recorded by a's.
    assert requests.post("http://127.0.0.1:8191/hooks/releases", json={"text": marker}, timeout=5).ok
    seen = {port: marker in requests.get(f"http://127.0.0.1:{port}/_sandbox/requests", timeout=5).text
            for port in (8091, 8191)}
    assert seen == {8091: False, 8191: True}

    # Another reset of stack b gives it a fresh database, and stack a keeps its containers.
    sandbox("--stack", "b", "up", "--reset")
    assert marked("appdb_b") == 0
    assert sorted(docker_lines("ps", "-q", "--filter", "label=com.docker.compose.project=rbdemo")) == sorted(before_a)
