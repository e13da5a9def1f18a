"""The sandbox itself: every service answers on 127.0.0.1 and behaves like the real thing.

Runs after `scripts/sandbox up --reset` (make integration), so v1.2.2 is deployed on a freshly seeded database.
"""

import json
import socket
import ssl
import subprocess
import time
import urllib.parse
from datetime import datetime, timezone
from pathlib import Path

import boto3
import psycopg2
import pytest
import requests

from sandbox_cli import sandbox

PROXY = "http://127.0.0.1:8080"
SERVICES = ("proxy", "api", "web", "worker")
APP_TAGS = ("v1.2.2", "v1.2.3", "v1.2.4-unhealthy", "v1.2.4-crash", "v1.2.4-errors", "v1.2.4-slow")


def test_status_reports_every_service_running(sandbox_status):
    assert sandbox_status["docker"] is True
    for name in ("registry", "postgres", "s3", "statuspage", "webhook", "ssh"):
        assert sandbox_status[name]["running"] is True, name
    assert sorted(sandbox_status["stack"]["services"]) == sorted(SERVICES)


def test_every_container_is_healthy(sandbox_status):
    for service, states in sandbox_status["stack"]["services"].items():
        assert states == ["running healthy"], (service, states)


def test_good_version_is_deployed_behind_the_proxy():
    for path in ("/api/version", "/web/api/version"):
        body = requests.get(PROXY + path, timeout=5).json()
        assert body["version"] == "v1.2.2", path
        assert len(body["commit"]) == 40
        assert body["deployed_at"].endswith("Z")
    assert "v1.2.2" in requests.get(PROXY + "/", timeout=5).text


def test_health_readiness_and_database_endpoint():
    assert requests.get(PROXY + "/health", timeout=5).json()["status"] == "ok"
    assert requests.get(PROXY + "/readiness", timeout=5).json()["database"] == "connected"
    db = requests.get(PROXY + "/api/db", timeout=5).json()
    assert db["database"] == "connected"
    assert db["items"] == 500
    assert db["schema_version"] == "V003"


def test_resource_api_login_create_fetch_delete():
    bad = requests.post(PROXY + "/api/login", json={"username": "demo", "password": "wrong"}, timeout=5)
    assert bad.status_code == 401
    token = requests.post(PROXY + "/api/login", json={"username": "demo", "password": "demo-password"},
                          timeout=5).json()["token"]
    auth = {"Authorization": f"Bearer {token}"}
    assert requests.post(PROXY + "/api/items", json={"name": "x"}, timeout=5).status_code == 401
    created = requests.post(PROXY + "/api/items", json={"name": "smoke item"}, headers=auth, timeout=5)
    assert created.status_code == 201
    item_id = created.json()["id"]
    fetched = requests.get(f"{PROXY}/api/items/{item_id}", headers=auth, timeout=5).json()
    assert fetched["name"] == "smoke item"
    assert requests.delete(f"{PROXY}/api/items/{item_id}", headers=auth, timeout=5).status_code == 204
    assert requests.get(f"{PROXY}/api/items/{item_id}", headers=auth, timeout=5).status_code == 404


def test_registry_serves_every_image():
    catalog = requests.get("http://127.0.0.1:5000/v2/_catalog", timeout=5).json()["repositories"]
    assert {"demo/api", "demo/web", "demo/worker", "demo/proxy"} <= set(catalog)
    for service in ("api", "web", "worker"):
        tags = requests.get(f"http://127.0.0.1:5000/v2/demo/{service}/tags/list", timeout=5).json()["tags"]
        assert set(APP_TAGS) <= set(tags), (service, tags)
    manifest = requests.get("http://127.0.0.1:5000/v2/demo/api/manifests/v1.2.3", timeout=5, headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    assert manifest.status_code == 200
    assert manifest.headers["Docker-Content-Digest"].startswith("sha256:")


def test_images_carry_version_label_and_healthcheck():
    proc = subprocess.run(["docker", "image", "inspect", "127.0.0.1:5000/demo/api:v1.2.3"], capture_output=True,
                          text=True, check=True)
    config = json.loads(proc.stdout)[0]["Config"]
    assert config["Labels"]["org.opencontainers.image.version"] == "v1.2.3"
    assert config["Healthcheck"]["Test"][0] in ("CMD", "CMD-SHELL")


def test_release_artifacts_hold_each_versions_migrations(sandbox_status):
    root = Path(sandbox_status["artifacts"])
    good = sorted(p.name for p in (root / "v1.2.2" / "migrations").glob("V*.sql") if p.name.count(".") == 1)
    new = sorted(p.name for p in (root / "v1.2.3" / "migrations").glob("V*.sql") if p.name.count(".") == 1)
    assert [n[:4] for n in good] == ["V001", "V002", "V003"]
    assert [n[:4] for n in new] == ["V001", "V002", "V003", "V004", "V005", "V006"]
    assert "-- runbook: breaks-previous" in (root / "v1.2.3" / "migrations" /
                                             "V006__items_rename_name_to_title.sql").read_text()


def test_postgres_accepts_the_app_user_and_rejects_a_wrong_password(sandbox_status, secret_of):
    pg = sandbox_status["postgres"]
    with psycopg2.connect(host=pg["host"], port=pg["port"], dbname=pg["database"], user=pg["user"],
                          password=secret_of("app_db_password"), connect_timeout=5) as conn:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM items")
            assert cur.fetchone()[0] == 500
            cur.execute("SELECT array_agg(version ORDER BY version) FROM schema_migrations")
            assert cur.fetchone()[0] == ["V001", "V002", "V003"]
    conn.close()
    with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
        psycopg2.connect(host=pg["host"], port=pg["port"], dbname=pg["database"], user=pg["user"],
                         password="not-the-password", connect_timeout=5)


def test_postgres_listens_on_loopback_only(sandbox_status):
    proc = subprocess.run(["ss", "-ltnH", f"sport = :{sandbox_status['postgres']['port']}"], capture_output=True,
                          text=True, check=True)
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in proc.stdout.splitlines()}
    assert addresses == {"127.0.0.1"}


def test_ssh_listens_on_loopback_only(sandbox_status):
    assert sandbox_status["ssh"]["running"] is True
    proc = subprocess.run(["ss", "-ltnH", f"sport = :{sandbox_status['ssh']['port']}"], capture_output=True,
                          text=True, check=True)
    addresses = {line.split()[3].rsplit(":", 1)[0] for line in proc.stdout.splitlines()}
    assert addresses == {"127.0.0.1"}


def ssh_to_sandbox(ssh, user, *options, command="true"):
    """ssh to the sandbox's sshd with host key checking on against its known_hosts, never prompting."""
    argv = ["ssh", "-F", "/dev/null", "-p", str(ssh["port"]), "-o", f"UserKnownHostsFile={ssh['known_hosts_file']}",
            "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", *options,
            f"{user}@{ssh['host']}", command]
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)


def test_ssh_lets_the_deploy_user_in_by_key_and_root_only_through_sudo(sandbox_status):
    ssh = sandbox_status["ssh"]
    key = ["-i", ssh["private_key_file"], "-o", "IdentitiesOnly=yes"]
    proc = ssh_to_sandbox(ssh, ssh["user"], *key, command="id -un; sudo -n id -un")
    assert (proc.returncode, proc.stdout.split()) == (0, [ssh["user"], "root"]), proc.stderr


def test_ssh_refuses_passwords_and_root(sandbox_status):
    ssh = sandbox_status["ssh"]
    # The server names the methods it would accept: publickey only, so no password is ever asked for.
    password = ssh_to_sandbox(ssh, ssh["user"], "-o", "PubkeyAuthentication=no")
    assert password.returncode == 255
    assert "Permission denied (publickey)" in password.stderr
    root = ssh_to_sandbox(ssh, "root", "-i", ssh["private_key_file"], "-o", "IdentitiesOnly=yes")
    assert root.returncode == 255
    assert "Permission denied (publickey)" in root.stderr


def test_local_ssh_inventory_releases_with_the_local_settings():
    inventories = Path(__file__).resolve().parents[2] / "inventories"
    local = sorted(p.name for p in (inventories / "local" / "group_vars" / "all").iterdir())
    for name in local:
        link = inventories / "local-ssh" / "group_vars" / "all" / name
        assert link.is_symlink() and link.resolve() == (inventories / "local" / "group_vars" / "all" / name).resolve()
    proc = subprocess.run([str(inventories.parent / ".venv" / "bin" / "ansible-inventory"), "-i",
                           str(inventories / "local-ssh"), "--host", "sandbox-ssh"], capture_output=True, text=True,
                          check=True, cwd=inventories.parent, timeout=60)
    hostvars = json.loads(proc.stdout)
    assert hostvars["release_environment"] == "local-ssh"
    assert (hostvars["ansible_user"], hostvars["ansible_port"], hostvars["ansible_become"]) == ("rbdeploy", 2222, True)


def test_s3_bucket_exists_and_round_trips(sandbox_status):
    s3cfg = sandbox_status["s3"]
    client = boto3.client("s3", endpoint_url=s3cfg["endpoint_url"], aws_access_key_id=s3cfg["aws_access_key_id"],
                          aws_secret_access_key=s3cfg["aws_secret_access_key"],
                          region_name=s3cfg["aws_default_region"])
    client.head_bucket(Bucket=s3cfg["bucket"])
    key = f"tests/probe-{time.time_ns()}"
    client.put_object(Bucket=s3cfg["bucket"], Key=key, Body=b"probe")
    try:
        assert client.get_object(Bucket=s3cfg["bucket"], Key=key)["Body"].read() == b"probe"
    finally:
        client.delete_object(Bucket=s3cfg["bucket"], Key=key)


def test_statuspage_server_authenticates_and_records(sandbox_status, secret_of):
    sp = sandbox_status["statuspage"]
    base = sp["api_url"].rsplit("/v1", 1)[0]
    key = secret_of("statuspage_api_key")
    requests.delete(base + "/_sandbox/requests", timeout=5)
    unauth = requests.get(f"{sp['api_url']}/pages/{sp['page_id']}/components", timeout=5)
    assert unauth.status_code == 401
    for _attempt in range(3):  # the stand-in enforces the real API's rate limit: 1 request/s over 60 s, per key
        components = requests.get(f"{sp['api_url']}/pages/{sp['page_id']}/components", timeout=5,
                                  headers={"Authorization": f"OAuth {key}"})
        if components.status_code != 429:
            break
        time.sleep(float(components.headers["Retry-After"]))
    assert components.status_code == 200
    assert {c["name"] for c in components.json()} >= {"API", "Web App", "Worker", "Database"}
    recorded = requests.get(base + "/_sandbox/requests", timeout=5)
    assert [r["status"] for r in recorded.json()][0] == 401 and recorded.json()[-1]["status"] == 200
    assert key not in recorded.text


def test_webhook_receiver_records_messages(sandbox_status):
    url = sandbox_status["webhook"]["url"]
    base = url.split("/hooks/")[0]
    requests.delete(base + "/_sandbox/requests", timeout=5)
    marker = f"release probe {time.time_ns()}"
    resp = requests.post(url, json={"text": marker}, timeout=5)
    assert (resp.status_code, resp.text) == (200, "ok")
    recorded = requests.get(base + "/_sandbox/requests", timeout=5).json()
    assert recorded[-1]["body"] == {"text": marker}
    assert recorded[-1]["path"] == urllib.parse.urlparse(url).path


def test_maintenance_switch_turns_the_page_on_and_off():
    try:
        sandbox("maintenance", "on")
        resp = requests.get(PROXY + "/api/version", timeout=5)
        assert resp.status_code == 503
        assert "maintenance" in resp.text.lower()
        assert resp.headers["Retry-After"] == "120"
        assert requests.get(PROXY + "/_proxy/health", timeout=5).status_code == 200
    finally:
        sandbox("maintenance", "off")
    assert requests.get(PROXY + "/api/version", timeout=5).status_code == 200


def test_https_endpoint_has_a_short_lived_certificate_for_localhost(sandbox_status):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", 8443), timeout=5) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            der = tls.getpeercert(binary_form=True)
    pem = ssl.DER_cert_to_PEM_cert(der)
    proc = subprocess.run(["openssl", "x509", "-noout", "-enddate", "-ext", "subjectAltName"], input=pem,
                          capture_output=True, text=True, check=True)
    assert "DNS:localhost" in proc.stdout and "IP Address:127.0.0.1" in proc.stdout
    end = datetime.strptime(proc.stdout.split("notAfter=")[1].splitlines()[0], "%b %d %H:%M:%S %Y %Z")
    days_left = (end.replace(tzinfo=timezone.utc) - datetime.now(timezone.utc)).days
    assert 2 <= days_left <= 10
    cert = f"{sandbox_status['stack']['project_src']}/tls/cert.pem"
    resp = requests.get("https://localhost:8443/api/version", verify=cert, timeout=5)
    assert resp.json()["version"] == "v1.2.2"
    assert resp.headers["Strict-Transport-Security"].startswith("max-age=")


def test_fault_images_misbehave_as_labelled():
    def run(tag, *cmd, timeout=30):
        return subprocess.run(["docker", "run", "--rm", "-e", "PGHOST=/nonexistent",
                               f"127.0.0.1:5000/demo/api:{tag}", *cmd],
                              capture_output=True, text=True, timeout=timeout, check=False)

    crash = run("v1.2.4-crash")
    assert crash.returncode == 1 and "simulated crash" in crash.stderr
    env = run("v1.2.4-errors", "sh", "-c", "echo $APP_FAULT $APP_VERSION")
    assert env.stdout.split() == ["errors", "v1.2.4-errors"]


def test_up_again_is_idempotent(sandbox_status):
    before = subprocess.run(["docker", "ps", "-q", "--filter", "label=com.docker.compose.project=rbdemo"],
                            capture_output=True, text=True, check=True).stdout.split()
    proc = sandbox("up")
    assert "sandbox is up — demo stack a: v1.2.2" in proc.stdout
    assert "deploying" not in proc.stdout and "built and pushed" not in proc.stdout
    assert "restarting" not in proc.stdout
    after = subprocess.run(["docker", "ps", "-q", "--filter", "label=com.docker.compose.project=rbdemo"],
                           capture_output=True, text=True, check=True).stdout.split()
    assert sorted(before) == sorted(after)


def test_up_restarts_a_stand_in_started_from_other_code_and_keeps_its_records(sandbox_status):
    """A stand-in left running by an older checkout (its code stamp differs) is restarted; its state file keeps
    what it recorded, as tests read it."""
    url = sandbox_status["webhook"]["url"]
    base = url.split("/hooks/")[0]
    marker = f"before restart {time.time_ns()}"
    assert requests.post(url, json={"text": marker}, timeout=5).status_code == 200
    home = Path(sandbox_status["home"])
    pid_before = (home / "run" / "saas.pid").read_text()
    (home / "run" / "saas.code").write_text("from-another-checkout")
    proc = sandbox("up")
    assert "restarting saas: it runs other code or options than this checkout's" in proc.stdout
    assert (home / "run" / "saas.pid").read_text() != pid_before
    assert (home / "run" / "saas.code").read_text() != "from-another-checkout"
    recorded = requests.get(base + "/_sandbox/requests", timeout=5).json()
    assert marker in [r["body"].get("text") for r in recorded if isinstance(r["body"], dict)]
    assert "restarting" not in sandbox("up").stdout  # the stamp matches now


def test_up_puts_no_secret_in_any_process_argument(sandbox_status, secret_of):
    """`up` sets the app role's password on every run (ALTER ROLE): the statement goes to psql on stdin, since any
    process on the host can read another's arguments (the e2e secret test watches them while the lanes run)."""
    import threading

    secrets = [secret_of(name) for name in ("app_db_password", "postgres_password", "statuspage_api_key")]
    seen, stop = set(), threading.Event()

    def watch():
        while not stop.is_set():
            for pid in Path("/proc").iterdir():
                if pid.name.isdigit():
                    try:
                        seen.add((pid / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace"))
                    except OSError:
                        pass
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        sandbox("up")
    finally:
        stop.set()
        watcher.join(timeout=10)
    assert any("psql" in args for args in seen), "the watcher saw up's psql calls"
    leaking = [args for args in seen for secret in secrets if secret in args]
    assert leaking == [], "a secret is in the arguments of %d process(es)" % len(leaking)
