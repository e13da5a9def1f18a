"""The runbook.release sandbox: real services on 127.0.0.1 for the demo and the tests.

Brings up, idempotently, on a Debian 12 machine where we are root:
Docker Engine (+ Compose v2), a local image registry, a debootstrap base image, the demo images (good, new
and fault variants), PostgreSQL, an S3 API (moto), the Statuspage/chat stand-in, the demo compose stack, and
an SSH target (its own sshd on 127.0.0.1:2222, a deploy user with sudo) for inventories/local-ssh.
Everything it starts is recorded under SANDBOX_HOME so that `down` removes exactly that and nothing else.

The demo stack comes in two copies. Stack `a` (the default) is the one the README, the demo and the local
inventory use. Stack `b` (`--stack b`, or RUNBOOK_SANDBOX_STACK=b) is the same application under another compose
project, on other loopback ports, with its own database and its own Statuspage/chat stand-in, so that `make test`
can run two lanes of tests at once without either seeing the other's releases, incidents or rate limit. The
registry, PostgreSQL, the S3 API, the SSH target and the images are shared.
"""

import argparse
import datetime
import fcntl
import hashlib
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SANDBOX_SRC = REPO / "sandbox"
VENV_BIN = REPO / ".venv" / "bin"
HOME = Path(os.environ.get("RUNBOOK_SANDBOX_HOME", "/var/lib/runbook-sandbox"))
CACHE = Path(os.environ.get("RUNBOOK_CACHE", Path.home() / ".cache" / "runbook-release"))
PG_BIN = Path("/usr/lib/postgresql/15/bin")

HOST = "127.0.0.1"
PORTS = {
    "registry": 5000,
    "postgres": 55432,
    "s3": 9000,
    "ssh": 2222,
}
REGISTRY = f"{HOST}:{PORTS['registry']}"
BASE_IMAGE = "local/base:bookworm"
BASE_PACKAGES = ["python3", "python3-psycopg2", "nginx-light", "curl", "ca-certificates"]
PROXY_VERSION = "1.0"
APP_SERVICES = ("api", "web", "worker")
GOOD_VERSION = "v1.2.2"
# tag -> (APP_SCHEMA, highest migration shipped, fault)
RELEASES = {
    "v1.2.2": (1, 3, ""),
    "v1.2.3": (2, 6, ""),
    "v1.2.4-unhealthy": (2, 6, "unhealthy"),
    "v1.2.4-crash": (2, 6, "crash"),
    "v1.2.4-errors": (2, 6, "errors"),
    "v1.2.4-slow": (2, 6, "slow"),
}
DB_USER = "app"
S3_BUCKET = "runbook-backups"
S3_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "sandbox", "AWS_SECRET_ACCESS_KEY": "sandbox-secret",
                  "AWS_DEFAULT_REGION": "us-east-1"}
STATUSPAGE_PAGE_ID = "rbsbx0000001"
TLS_DAYS = 10
SECRET_NAMES = ("postgres_password", "app_db_password", "statuspage_api_key")
# The SSH target: a dedicated sshd (never the system's), and a deploy user that is root only through sudo.
SSHD = Path("/usr/sbin/sshd")  # sshd re-executes itself, so it must be started by its absolute path
SSH_USER = "rbdeploy"
SSH_USER_COMMENT = "runbook.release sandbox deploy user"  # marks the account as the sandbox's own
SUDOERS_FILE = Path("/etc/sudoers.d/runbook-sandbox")


class SandboxError(Exception):
    """A failure the operator can act on; the message says what and how."""


class Stack:
    """One copy of the demo stack: its directory, compose project, published ports, database and stand-in."""

    def __init__(self, name, directory, project, proxy_http, proxy_https, statuspage, webhook, database):
        self.name, self.directory, self.project, self.database = name, directory, project, database
        self.ports = {"proxy_http": proxy_http, "proxy_https": proxy_https, "statuspage": statuspage,
                      "webhook": webhook}
        # Stack a keeps the names an older sandbox used, so `up` finds what it started before.
        self.saas = "saas" if name == "a" else f"saas-{name}"

    @property
    def dir(self):
        return HOME / self.directory


STACKS = {
    "a": Stack("a", "stack", "rbdemo", 8080, 8443, 8090, 8091, "appdb"),
    "b": Stack("b", "stack-b", "rbdemo-b", 8180, 8543, 8190, 8191, "appdb_b"),
}
STACK = STACKS["a"]  # the stack this command works on (main() sets it from --stack)


def log(msg):
    print(f"sandbox: {msg}", flush=True)


def run(argv, check=True, env=None, capture=True, timeout=600, cwd=None, stdin_text=None):
    """Run an argv list; on failure raise with the command, rc and output tail. Text that must not show in the
    process list (SQL carrying a password) goes in as stdin_text."""
    full_env = dict(os.environ, **(env or {}))
    extra = {"input": stdin_text} if stdin_text is not None else {"stdin": subprocess.DEVNULL}
    proc = subprocess.run(argv, env=full_env, cwd=cwd, timeout=timeout, text=True, check=False,
                          stdout=subprocess.PIPE if capture else None,
                          stderr=subprocess.PIPE if capture else None, **extra)
    if check and proc.returncode != 0:
        tail = ((proc.stderr or "") + (proc.stdout or "")).strip()[-2000:]
        raise SandboxError(f"command failed (rc={proc.returncode}): {' '.join(map(str, argv))}\n{tail}")
    return proc


def http_get(url, timeout=3.0):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except (urllib.error.URLError, OSError):
        return None, b""


def wait_for(what, predicate, timeout=60.0, interval=0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise SandboxError(f"{what} did not become ready within {timeout:.0f} s")


# --- ports and prerequisites -------------------------------------------------------------------------------

def port_owner(port):
    proc = run(["ss", "-ltnpH", f"sport = :{port}"], check=False)
    return proc.stdout.strip() or "unknown process"


def port_is_free(port, host=HOST):
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_port(name, port):
    if not port_is_free(port):
        raise SandboxError(
            f"port {HOST}:{port} (needed for {name}) is already in use by: {port_owner(port)}. "
            f"Stop that process, or run 'scripts/sandbox down' if it is a sandbox left from another checkout.")


PREREQUISITES = [
    ("dockerd", "docker.io"), ("docker", "docker.io"), ("docker-registry", "docker-registry"),
    ("debootstrap", "debootstrap"), ("openssl", "openssl"), ("runuser", "util-linux"), ("ss", "iproute2"),
    ("psql", "postgresql-client"), ("ssh", "openssh-client"), ("ssh-keygen", "openssh-client"),
    ("sudo", "sudo"), ("visudo", "sudo"), ("useradd", "passwd"), ("userdel", "passwd"),
]


def check_prerequisites():
    missing = [f"{cmd} (Debian package {pkg})" for cmd, pkg in PREREQUISITES if not shutil.which(cmd)]
    if not (PG_BIN / "initdb").exists():
        missing.append(f"{PG_BIN}/initdb (Debian package postgresql)")
    if not SSHD.exists():
        missing.append(f"{SSHD} (Debian package openssh-server)")
    for tool in ("moto_server", "ansible-playbook"):
        if not (VENV_BIN / tool).exists():
            missing.append(f"{VENV_BIN / tool} (Python tooling)")
    if os.geteuid() != 0:
        missing.append("root privileges (the sandbox starts dockerd, PostgreSQL and sshd, and adds a deploy user)")
    if missing:
        raise SandboxError("missing prerequisites: " + "; ".join(missing) + ". Run 'make deps' to install them.")
    if shutil.which("docker") and run(["docker", "compose", "version"], check=False).returncode != 0:
        raise SandboxError("the Docker Compose v2 plugin is missing ('docker compose version' fails). "
                           "Run 'make deps' to install it.")


# --- processes we own ----------------------------------------------------------------------------------------

class Process:
    """A long-running process started by the sandbox, tracked by a pid file."""

    def __init__(self, name, argv, port=None, marker=None, ready=None, env=None, code=()):
        self.name, self.argv, self.port, self.env = name, argv, port, env
        self.marker = marker or Path(argv[0]).name
        self.ready = ready
        self.code = tuple(code)  # our own source files: a process started from other code is restarted
        self.pidfile = HOME / "run" / f"{name}.pid"
        self.stampfile = HOME / "run" / f"{name}.code"
        self.logfile = HOME / "log" / f"{name}.log"

    def stamp(self):
        return tree_digest(self.code, extra="\0".join(self.argv)) if self.code else ""

    def pid(self):
        try:
            pid = int(self.pidfile.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            return None
        return pid if self.marker in cmdline else None

    def running(self):
        return self.pid() is not None

    def start(self):
        if self.running():
            if not self.code or (self.stampfile.exists() and self.stampfile.read_text() == self.stamp()):
                return False
            log(f"restarting {self.name}: it runs other code or options than this checkout's")
            self.stop()
        if self.port:
            require_port(self.name, self.port)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile, "ab") as out:
            proc = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True, env=dict(os.environ, **(self.env or {})))
        self.pidfile.write_text(str(proc.pid))
        if self.code:
            self.stampfile.write_text(self.stamp())
        try:
            wait_for(self.name, lambda: proc.poll() is None and (self.ready is None or self.ready()), 60)
        except SandboxError:
            tail = self.logfile.read_text(errors="replace")[-1500:]
            raise SandboxError(f"{self.name} failed to start (log {self.logfile}):\n{tail}") from None
        return True

    def stop(self):
        pid = self.pid()
        if pid is None:
            self.pidfile.unlink(missing_ok=True)
            return False
        for sig, wait in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pid, sig)
            except ProcessLookupError:
                break
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                _reap(pid)
                time.sleep(0.1)
            if not Path(f"/proc/{pid}").exists():
                break
        self.pidfile.unlink(missing_ok=True)
        self.stampfile.unlink(missing_ok=True)
        return True


def _reap(pid):
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


def docker_ready():
    return run(["docker", "info", "--format", "{{.ServerVersion}}"], check=False, timeout=20).returncode == 0


def processes():
    reg_cfg = HOME / "registry" / "config.yml"
    secrets_dir = HOME / "secrets"
    return {
        "dockerd": Process("dockerd", ["dockerd"], ready=docker_ready),
        "registry": Process("registry", ["docker-registry", "serve", str(reg_cfg)], port=PORTS["registry"],
                            marker="docker-registry",
                            ready=lambda: http_get(f"http://{REGISTRY}/v2/")[0] == 200),
        "s3": Process("s3", [str(VENV_BIN / "moto_server"), "-H", HOST, "-p", str(PORTS["s3"])],
                      port=PORTS["s3"], marker="moto_server",
                      ready=lambda: http_get(f"http://{HOST}:{PORTS['s3']}/moto-api/")[0] is not None),
        **{stack.saas: saas_process(stack, secrets_dir) for stack in STACKS.values()},
        # -D: in the foreground, so the pid is ours to track; -e: its log goes to HOME/log/sshd.log. sshd rewrites
        # its process title, which keeps the config path: the marker tells it from the system's sshd.
        "sshd": Process("sshd", [str(SSHD), "-D", "-e", "-f", str(SshPaths.config)], port=PORTS["ssh"],
                        marker=str(SshPaths.config), ready=sshd_ready),
    }


def saas_process(stack, secrets_dir):
    """A stack's Statuspage and chat webhook stand-in (one process serves both ports)."""
    page, hook = stack.ports["statuspage"], stack.ports["webhook"]
    return Process(stack.saas, [str(VENV_BIN / "python"), str(SANDBOX_SRC / "fakes" / "saas.py"),
                                "--host", HOST, "--statuspage-port", str(page), "--webhook-port", str(hook),
                                "--page-id", STATUSPAGE_PAGE_ID, "--keys-file", str(secrets_dir / "statuspage_api_key"),
                                "--state-file", str(HOME / stack.saas / "state.json")],
                   port=page, marker="saas.py", code=[SANDBOX_SRC / "fakes" / "saas.py"],
                   ready=lambda: http_get(f"http://{HOST}:{page}/_sandbox/health")[0] == 200)


# --- secrets ---------------------------------------------------------------------------------------------------

def secret(name):
    return (HOME / "secrets" / name).read_text().strip()


def ensure_secrets():
    sdir = HOME / "secrets"
    sdir.mkdir(parents=True, exist_ok=True)
    os.chmod(sdir, 0o700)
    for name in SECRET_NAMES:
        path = sdir / name
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(secrets.token_urlsafe(24) + "\n")
    # A pgpass file for both database users (PGPASSFILE=HOME/secrets/pgpass): what tests and operators give psql,
    # since a password in a command's environment shows in the process list when Ansible runs it.
    pgpass = "".join(f"{HOST}:{PORTS['postgres']}:*:{user}:{secret(name)}\n"
                     for user, name in (("postgres", "postgres_password"), (DB_USER, "app_db_password")))
    path = sdir / "pgpass"
    if not path.exists() or path.read_text() != pgpass:
        write_file(path, pgpass, mode=0o600)


# --- Docker, registry, images ------------------------------------------------------------------------------------

def ensure_docker(procs):
    if docker_ready():
        return
    log("starting Docker Engine (dockerd)")
    procs["dockerd"].start()
    (HOME / "run" / "dockerd.owned").touch()


def ensure_registry(procs):
    cfg = HOME / "registry" / "config.yml"
    cfg.parent.mkdir(parents=True, exist_ok=True)
    cfg.write_text(
        "version: 0.1\n"
        "log: {level: warn}\n"
        f"storage: {{filesystem: {{rootdirectory: {HOME / 'registry' / 'data'}}}, delete: {{enabled: true}}}}\n"
        f"http: {{addr: '{REGISTRY}'}}\n")
    if procs["registry"].start():
        log(f"registry started on {REGISTRY}")


def image_label(image, label):
    proc = run(["docker", "image", "inspect", "--format", f'{{{{ index .Config.Labels "{label}" }}}}', image],
               check=False)
    return proc.stdout.strip() if proc.returncode == 0 else None


def ensure_base_image():
    key = hashlib.sha256(" ".join(BASE_PACKAGES).encode()).hexdigest()[:12]
    if image_label(BASE_IMAGE, "runbook.sandbox.base") == key:
        return
    tarball = CACHE / f"rootfs-bookworm-{key}.tar"
    if not tarball.exists():
        log("building the base image rootfs with debootstrap (about a minute; cached afterwards)")
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
            rootfs = Path(tmp) / "rootfs"
            run(["debootstrap", "--variant=minbase", "--include=" + ",".join(BASE_PACKAGES), "bookworm",
                 str(rootfs), "http://deb.debian.org/debian"], timeout=1200)
            for debs in (rootfs / "var/cache/apt/archives").glob("*.deb"):
                debs.unlink()
            shutil.rmtree(rootfs / "var/lib/apt/lists", ignore_errors=True)
            partial = tarball.with_suffix(".partial")
            run(["tar", "-C", str(rootfs), "-cf", str(partial), "."])
            partial.rename(tarball)
    log(f"importing {BASE_IMAGE}")
    run(["docker", "import", "--change", f"LABEL runbook.sandbox.base={key}", "--change", "LABEL runbook.sandbox=1",
         str(tarball), BASE_IMAGE])


def tree_digest(paths, extra=""):
    digest = hashlib.sha256(extra.encode())
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def registry_has(repo, tag):
    req = urllib.request.Request(f"http://{REGISTRY}/v2/{repo}/manifests/{tag}", method="HEAD", headers={
        "Accept": "application/vnd.docker.distribution.manifest.v2+json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status == 200
    except (urllib.error.URLError, OSError):
        return False


def build_and_push(repo, tag, context, build_args, digest):
    image = f"{REGISTRY}/{repo}:{tag}"
    if image_label(image, "runbook.sandbox.build") != digest:
        argv = ["docker", "build", "-q", "-t", image, "--label", f"runbook.sandbox.build={digest}",
                "--label", "runbook.sandbox=1"]
        for key, value in build_args.items():
            argv += ["--build-arg", f"{key}={value}"]
        run(argv + [str(context)], timeout=600)
        run(["docker", "push", "-q", image], timeout=600)
        return True
    if not registry_has(repo, tag):
        run(["docker", "push", "-q", image], timeout=600)
        return True
    return False


def migrations_upto(limit):
    """The migration files a release ships: V001..V<limit>, with their down and verify scripts."""
    files = []
    for path in sorted((SANDBOX_SRC / "app" / "migrations").glob("V*.sql")):
        if int(path.name[1:4]) <= limit:
            files.append(path)
    return files


def ensure_images():
    built = []
    proxy_src = SANDBOX_SRC / "proxy"
    proxy_files = [proxy_src / n for n in ("Dockerfile", "nginx.conf", "maintenance.html")]
    if build_and_push("demo/proxy", PROXY_VERSION, proxy_src, {"PROXY_VERSION": PROXY_VERSION},
                      tree_digest(proxy_files, PROXY_VERSION)):
        built.append(f"demo/proxy:{PROXY_VERSION}")
    app_src = SANDBOX_SRC / "app"
    app_files = [app_src / n for n in ("Dockerfile", "app.py", "healthcheck.py")]
    for tag, (schema, upto, fault) in RELEASES.items():
        migrations = migrations_upto(upto)
        with tempfile.TemporaryDirectory() as tmp:
            ctx = Path(tmp)
            for path in app_files:
                shutil.copy(path, ctx / path.name)
            (ctx / "migrations").mkdir()
            for path in migrations:
                shutil.copy(path, ctx / "migrations" / path.name)
            commit = hashlib.sha1(tag.encode()).hexdigest()
            for service in APP_SERVICES:
                args = {"SERVICE_NAME": service, "APP_VERSION": tag, "APP_COMMIT": commit, "APP_FAULT": fault,
                        "APP_SCHEMA": str(schema)}
                digest = tree_digest(app_files + migrations, json.dumps(args, sort_keys=True))
                if build_and_push(f"demo/{service}", tag, ctx, args, digest):
                    built.append(f"demo/{service}:{tag}")
        publish_artifacts(tag, migrations)
    if built:
        log(f"built and pushed {len(built)} images to {REGISTRY}")


def publish_artifacts(tag, migrations):
    """Each release's artifacts on the host, as a CI pipeline would publish them: the migrations, the test
    evidence (JUnit XML, 197 of 200 passing) and a vulnerability report (one medium finding) the go/no-go gate
    reads, and the approvals an AWX approval step would hand over (the sandbox's approvers, dated now)."""
    dest = HOME / "artifacts" / tag / "migrations"
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    for path in migrations:
        shutil.copy(path, dest / path.name)
    evidence = HOME / "artifacts" / tag / "evidence"
    evidence.mkdir(parents=True, exist_ok=True)
    write_file(evidence / "junit.xml",
               '<testsuites><testsuite name="e2e" tests="200" failures="3" errors="0" skipped="0"/></testsuites>\n')
    write_file(evidence / "trivy.json", json.dumps({"SchemaVersion": 2, "Results": [{
        "Target": f"demo/api:{tag}", "Vulnerabilities": [{
            "VulnerabilityID": "CVE-2031-0001", "PkgName": "libexample", "Severity": "MEDIUM",
            "CVSS": {"nvd": {"V3Score": 5.3}}}]}]}, indent=1) + "\n")
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    approvals = HOME / "approvals"
    approvals.mkdir(mode=0o700, exist_ok=True)
    people = {"team_lead": "sandbox-lead", "engineering_manager": "sandbox-em", "product_owner": "sandbox-po",
              "on_call": "sandbox-oncall"}
    write_file(approvals / f"{tag}.yml", "approvals:\n" + "".join(
        f"  - {{approver: {who}, role: {role}, version: {tag}, approved_at: \"{now}\"}}\n"
        for role, who in people.items()), mode=0o600)


# --- PostgreSQL ---------------------------------------------------------------------------------------------------

class PgPaths:
    """Where the sandbox's PostgreSQL cluster lives."""

    base = HOME / "postgres"
    data = base / "data"
    socket = base / "socket"
    log = HOME / "log" / "postgres.log"


def pg_running():
    if not PgPaths.data.exists():
        return False
    return run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(PgPaths.data), "status"],
               check=False).returncode == 0


def pg_env(user="postgres", database="postgres"):
    # Passwords reach client programs through the environment, never argv.
    password = secret("postgres_password" if user == "postgres" else "app_db_password")
    return {"PGHOST": HOST, "PGPORT": str(PORTS["postgres"]), "PGUSER": user, "PGDATABASE": database,
            "PGPASSWORD": password, "PGCONNECT_TIMEOUT": "5"}


def psql(sql, user="postgres", database="postgres"):
    # The statement goes in on stdin, never argv: ALTER ROLE ... PASSWORD must not show in the process list.
    proc = run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"], env=pg_env(user, database), stdin_text=sql)
    return proc.stdout.strip()


def ensure_postgres():
    base, data, sock, logfile = PgPaths.base, PgPaths.data, PgPaths.socket, PgPaths.log
    if pg_running():
        return
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o755)
    for path in (data, sock):
        path.mkdir(exist_ok=True)
        shutil.chown(path, "postgres", "postgres")
    os.chmod(data, 0o700)
    os.chmod(sock, 0o755)
    logfile.parent.mkdir(parents=True, exist_ok=True)
    logfile.touch()
    shutil.chown(logfile, "postgres", "postgres")
    if not (data / "PG_VERSION").exists():
        log("initialising PostgreSQL 15")
        pwfile = base / ".pwfile"
        pwfile.write_text(secret("postgres_password") + "\n")
        shutil.chown(pwfile, "postgres", "postgres")
        os.chmod(pwfile, 0o600)
        try:
            run(["runuser", "-u", "postgres", "--", str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres",
                 "-A", "scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"])
        finally:
            pwfile.unlink(missing_ok=True)
    require_port("postgres", PORTS["postgres"])
    log(f"starting PostgreSQL on {HOST}:{PORTS['postgres']}")
    opts = f"-p {PORTS['postgres']} -c listen_addresses={HOST} -k {sock} -c max_connections=100"
    run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(logfile),
         "-o", opts, "-w", "-t", "60", "start"])


def reset_database(with_schema):
    """Recreate the stack's application database: empty, or at the good release's schema with its seed data."""
    db = STACK.database
    psql(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}' "
         "AND pid <> pg_backend_pid()")
    psql(f"DROP DATABASE IF EXISTS {db}")
    psql(f"CREATE DATABASE {db} OWNER {DB_USER}")
    if not with_schema:
        return
    # Applied by hand as the seeds do (psql -f per file), remembered Supabase-style in schema_migrations.
    psql("CREATE TABLE schema_migrations (version text PRIMARY KEY, name text NOT NULL, "
         "inserted_at timestamptz NOT NULL DEFAULT now())", user=DB_USER, database=db)
    for path in migrations_upto(RELEASES[GOOD_VERSION][1]):
        if path.name.endswith((".down.sql", ".verify.sql")):
            continue
        run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", str(path)],
            env=pg_env(DB_USER, db))
        version, name = path.stem.split("__", 1)
        psql(f"INSERT INTO schema_migrations (version, name) VALUES ('{version}', '{name}')",
             user=DB_USER, database=db)


def ensure_app_role():
    exists = psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{DB_USER}'")
    verb = "ALTER" if exists == "1" else "CREATE"
    # The password travels inside the SQL text, on psql's stdin (not in its argv, which every process can read)
    # and over the local connection; the server does not log statements.
    pw = secret("app_db_password").replace("'", "''")
    psql(f"{verb} ROLE {DB_USER} LOGIN PASSWORD '{pw}'")


def database_exists():
    return psql(f"SELECT 1 FROM pg_database WHERE datname = '{STACK.database}'") == "1"


# --- S3 and SaaS stand-ins ---------------------------------------------------------------------------------------

def ensure_bucket():
    import boto3  # the sandbox runs in .venv, which has it

    client = boto3.client("s3", endpoint_url=f"http://{HOST}:{PORTS['s3']}",
                          aws_access_key_id=S3_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=S3_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
                          region_name=S3_CREDENTIALS["AWS_DEFAULT_REGION"])
    names = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
    if S3_BUCKET not in names:
        client.create_bucket(Bucket=S3_BUCKET)
        client.put_bucket_versioning(Bucket=S3_BUCKET, VersioningConfiguration={"Status": "Enabled"})


# --- SSH target -------------------------------------------------------------------------------------------------

class SshPaths:
    """The sandbox's sshd and its keys (HOME/ssh, 0700): the SSH target of inventories/local-ssh."""

    base = HOME / "ssh"
    config = base / "sshd_config"
    host_key = base / "ssh_host_ed25519_key"
    client_key = base / "id_ed25519"
    known_hosts = base / "known_hosts"
    pidfile = HOME / "run" / "sshd.pid"


def sshd_ready():
    try:
        with socket.create_connection((HOST, PORTS["ssh"]), timeout=2) as sock:
            return sock.recv(64).startswith(b"SSH-2.0-")
    except OSError:
        return False


def sshd_config():
    return "\n".join([
        "# The runbook.release sandbox's own sshd (scripts/sandbox), the SSH target of inventories/local-ssh.",
        "# Not the system's sshd: it reads only this file, listens only on the loopback address and lets in only",
        f"# {SSH_USER}, by key. Written by every 'scripts/sandbox up'; edits are overwritten.",
        f"ListenAddress {HOST}:{PORTS['ssh']}",
        f"HostKey {SshPaths.host_key}",
        f"PidFile {SshPaths.pidfile}",
        f"AllowUsers {SSH_USER}",
        "PermitRootLogin no",
        "PubkeyAuthentication yes",
        "AuthorizedKeysFile .ssh/authorized_keys",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PermitEmptyPasswords no",
        "AuthenticationMethods publickey",
        # No PAM: the deploy user has no password and the sandbox needs no PAM session (pam_loginuid fails in
        # containers); its account is unlocked ('*', no password matches it) so sshd's own checks let it in.
        "UsePAM no",
        "StrictModes yes",
        "UseDNS no",
        "X11Forwarding no",
        "AllowAgentForwarding no",
        "AllowTcpForwarding no",
        "PermitTunnel no",
        "PrintMotd no",
        "MaxStartups 30:30:100",
        "Subsystem sftp internal-sftp",  # Ansible copies files over SFTP when it does not pipeline
        "LogLevel INFO",
    ]) + "\n"


def ensure_ssh_user():
    """The deploy user: unprivileged, root only through sudo (become), as a production deploy user is."""
    try:
        entry = pwd.getpwnam(SSH_USER)
    except KeyError:
        log(f"adding the deploy user {SSH_USER} (root only through sudo)")
        # '*' as the password: no password matches it, and the account is not locked ('!'), which sshd refuses.
        run(["useradd", "--create-home", "--shell", "/bin/bash", "--comment", SSH_USER_COMMENT, "--password", "*",
             SSH_USER])
        entry = pwd.getpwnam(SSH_USER)
    if entry.pw_gecos != SSH_USER_COMMENT:
        raise SandboxError(
            f"user {SSH_USER} exists but the sandbox did not create it (comment {entry.pw_gecos!r}, expected "
            f"{SSH_USER_COMMENT!r}); the sandbox would give it passwordless sudo. Remove that user "
            f"(userdel {SSH_USER}) or rename it, then run 'scripts/sandbox up' again.")
    shadow = run(["getent", "shadow", SSH_USER], check=False).stdout.split(":")
    if len(shadow) > 1 and shadow[1].startswith("!"):
        run(["usermod", "--password", "*", SSH_USER])  # locked (an older sandbox or a manual useradd)
    return entry


def ensure_sudoers():
    text = (f"# runbook.release sandbox (scripts/sandbox): {SSH_USER}, the deploy user of inventories/local-ssh,\n"
            "# gets root only through become, as a production deploy user does. 'scripts/sandbox down --purge'\n"
            "# removes this file.\n"
            f"{SSH_USER} ALL=(ALL:ALL) NOPASSWD: ALL\n")
    try:
        if SUDOERS_FILE.read_text() == text and (SUDOERS_FILE.stat().st_mode & 0o777) == 0o440:
            return False
    except OSError:
        pass
    SUDOERS_FILE.parent.mkdir(mode=0o755, exist_ok=True)
    # sudo ignores files in sudoers.d whose names contain a dot, so the candidate cannot take effect unchecked.
    tmp = SUDOERS_FILE.with_name(f".{SUDOERS_FILE.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o440)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, 0o440)
    try:
        run(["visudo", "-cf", str(tmp)])
    except SandboxError:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, SUDOERS_FILE)
    return True


def ensure_keypair(path, comment):
    if path.exists() and path.with_suffix(".pub").exists():
        return False
    path.unlink(missing_ok=True)
    path.with_suffix(".pub").unlink(missing_ok=True)
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)])
    os.chmod(path, 0o600)
    return True


def ensure_authorized_key(entry, pubkey):
    """The client key in the deploy user's ~/.ssh/authorized_keys, owned by the user, as sshd's StrictModes wants."""
    sshdir = Path(entry.pw_dir) / ".ssh"
    keys = sshdir / "authorized_keys"
    if not sshdir.is_dir():
        sshdir.mkdir(mode=0o700)
    try:
        if keys.read_text() == pubkey:
            return
    except OSError:
        pass
    write_file(keys, pubkey, mode=0o600)
    for path in (sshdir, keys):
        os.chown(path, entry.pw_uid, entry.pw_gid)
    os.chmod(sshdir, 0o700)


def ensure_ssh(procs):
    """The SSH target: the deploy user with sudo, keys and known_hosts under HOME/ssh, and the sandbox's sshd."""
    entry = ensure_ssh_user()
    ensure_sudoers()
    SshPaths.base.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(SshPaths.base, 0o700)
    changed = ensure_keypair(SshPaths.host_key, "runbook-sandbox-sshd")
    ensure_keypair(SshPaths.client_key, f"runbook-sandbox-{SSH_USER}")
    ensure_authorized_key(entry, SshPaths.client_key.with_suffix(".pub").read_text())
    # The host key as Ansible's ssh sees the target: host key checking stays on.
    host_pub = SshPaths.host_key.with_suffix(".pub").read_text().split()
    known = f"[{HOST}]:{PORTS['ssh']} {host_pub[0]} {host_pub[1]}\n"
    if not SshPaths.known_hosts.exists() or SshPaths.known_hosts.read_text() != known:
        write_file(SshPaths.known_hosts, known)
    config = sshd_config()
    if not SshPaths.config.exists() or SshPaths.config.read_text() != config:
        write_file(SshPaths.config, config, mode=0o600)
        changed = True
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege separation directory
    proc = run([str(SSHD), "-t", "-f", str(SshPaths.config)], check=False)
    if proc.returncode != 0:
        raise SandboxError(f"{SSHD} rejects {SshPaths.config}: {(proc.stderr or proc.stdout).strip()}")
    sshd = procs["sshd"]
    if changed and sshd.running():
        log("restarting the sandbox's sshd (its configuration or host key changed)")
        sshd.stop()
    if sshd.start():
        log(f"sshd started on {HOST}:{PORTS['ssh']} (user {SSH_USER}, key {SshPaths.client_key})")
    # inventories/local-ssh runs modules with this checkout's .venv Python; a task without become runs it as the
    # deploy user, who cannot when the venv was made from an interpreter in a private directory (pyenv in /root).
    python = VENV_BIN / "python"
    if run(["runuser", "-u", SSH_USER, "--", str(python), "-c", ""], check=False).returncode != 0:
        log(f"warning: {SSH_USER} cannot run {python} (it is {os.path.realpath(python)}); tasks of "
            f"inventories/local-ssh without become fail. Recreate .venv from /usr/bin/python3 to fix it.")


def remove_ssh_target():
    """`down --purge`: the deploy user (only if the sandbox created it), its sudoers file and HOME/ssh."""
    SUDOERS_FILE.unlink(missing_ok=True)
    try:
        entry = pwd.getpwnam(SSH_USER)
    except KeyError:
        entry = None
    if entry is not None and entry.pw_gecos == SSH_USER_COMMENT:
        proc = run(["userdel", "--force", "--remove", SSH_USER], check=False)
        if proc.returncode == 0:
            log(f"removed the deploy user {SSH_USER} and {SUDOERS_FILE}")
        else:
            log(f"warning: could not remove the user {SSH_USER}: {(proc.stderr or proc.stdout).strip()}")
    shutil.rmtree(SshPaths.base, ignore_errors=True)


# --- the demo stack ------------------------------------------------------------------------------------------------

def stack_dir():
    return STACK.dir


def compose(*args, check=True, timeout=300):
    return run(["docker", "compose", "--project-directory", str(stack_dir()), *args], check=check,
               timeout=timeout)


def ensure_tls():
    tls = stack_dir() / "tls"
    tls.mkdir(parents=True, exist_ok=True)
    cert = tls / "cert.pem"
    # Renew when fewer than 3 days are left, so TLS checks see a valid but short-lived certificate.
    if cert.exists() and run(["openssl", "x509", "-checkend", str(3 * 86400), "-noout", "-in", str(cert)],
                             check=False).returncode == 0:
        return False
    run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", str(TLS_DAYS), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1", "-keyout", str(tls / "key.pem"), "-out", str(cert)])
    os.chmod(tls / "key.pem", 0o644)  # read by nginx's worker inside the container
    return True


def write_file(path, text, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_stack(version):
    """The compose project as an operator's host has it: compose file, .env pinning the release, app.env."""
    sdir = stack_dir()
    (sdir / "maintenance").mkdir(parents=True, exist_ok=True)
    shutil.copy(SANDBOX_SRC / "stack" / "compose.yaml", sdir / "compose.yaml")
    sock = PgPaths.socket
    env_lines = ["# Compose variables of the demo stack; SERVICE_VERSION pins the release.",
                 f"SANDBOX_PROJECT={STACK.project}", f"PROXY_HTTP_PORT={STACK.ports['proxy_http']}",
                 f"PROXY_HTTPS_PORT={STACK.ports['proxy_https']}",
                 f"REGISTRY={REGISTRY}", f"PROXY_VERSION={PROXY_VERSION}", f"PG_SOCKET_DIR={sock}"]
    if version:
        env_lines.append(f"SERVICE_VERSION={version}")
    write_file(sdir / ".env", "\n".join(env_lines) + "\n")
    example = [line.split("=", maxsplit=1)[0] + "=" if "=" in line else line
               for line in env_lines + ["SERVICE_VERSION=v0.0.0"]]
    write_file(sdir / ".env.example", "\n".join(dict.fromkeys(example)) + "\n")
    write_file(sdir / "app.env", "\n".join([
        "# Application settings (secrets: mode 0600).", "PGHOST=/run/postgresql", f"PGPORT={PORTS['postgres']}",
        f"PGDATABASE={STACK.database}", f"PGUSER={DB_USER}", f"PGPASSWORD={secret('app_db_password')}",
        "APP_DRAIN_SECONDS=1"]) + "\n", mode=0o600)
    ensure_tls()


def stack_containers(stack=None):
    if not docker_ready():
        return []
    proc = run(["docker", "ps", "-a", "--filter", f"label=com.docker.compose.project={(stack or STACK).project}",
                "--format", "{{.ID}} {{.Label \"com.docker.compose.service\"}} {{.State}}"], check=False)
    return [line.split() for line in proc.stdout.splitlines() if line.strip()]


def deploy_stack():
    for name in ("proxy_http", "proxy_https"):
        require_port(name, STACK.ports[name])
    log(f"deploying the demo stack {STACK.name} ({STACK.project}) at {GOOD_VERSION}")
    compose("up", "-d", "--wait", "--wait-timeout", "180", "--remove-orphans", timeout=400)


def deployed_version():
    status, body = http_get(f"http://{HOST}:{STACK.ports['proxy_http']}/api/version")
    if status == 200:
        try:
            return json.loads(body).get("version")
        except ValueError:
            return None
    return None


# --- commands --------------------------------------------------------------------------------------------------------

def reset_saas():
    """Forget what the Statuspage and chat stand-ins recorded (incidents, maintenances, requests, faults)."""
    request = urllib.request.Request(f"http://{HOST}:{STACK.ports['statuspage']}/_sandbox/reset", data=b"",
                                     method="POST")
    with urllib.request.urlopen(request, timeout=10) as answer:
        answer.read()


def shared_lock():
    """Held while `up` sees to what the stacks share, so two `up`s (one per stack, from two test lanes) never
    start the same service twice; each then resets its own stack without waiting for the other."""
    HOME.mkdir(parents=True, exist_ok=True)
    handle = open(HOME / ".up.lock", "a", encoding="utf-8")  # pylint: disable=consider-using-with
    fcntl.flock(handle, fcntl.LOCK_EX)
    return handle


def ensure_shared_services():
    ensure_secrets()
    procs = processes()
    ensure_docker(procs)
    ensure_registry(procs)
    ensure_base_image()
    ensure_images()
    ensure_postgres()
    ensure_app_role()
    if procs["s3"].start():
        log(f"S3 API (moto) started on {HOST}:{PORTS['s3']}")
    ensure_bucket()
    (HOME / STACK.saas).mkdir(exist_ok=True)
    if procs[STACK.saas].start():
        log(f"Statuspage and chat webhook stand-ins of stack {STACK.name} started on "
            f"{HOST}:{STACK.ports['statuspage']}/{STACK.ports['webhook']}")
    ensure_ssh(procs)


def cmd_up(args):
    check_prerequisites()
    with shared_lock():
        ensure_shared_services()

    empty = args.empty
    deployed = any(state == "running" for _cid, _service, state in stack_containers())
    if args.reset or empty or not deployed:
        if stack_containers():
            compose("down", "--remove-orphans", "--timeout", "5", check=False)
        if args.reset or empty or not database_exists():
            reset_database(with_schema=not empty)
        write_stack(None if empty else GOOD_VERSION)
        (stack_dir() / "maintenance" / "enabled").unlink(missing_ok=True)
        # A fresh start: no deploy lock or release history of earlier runs, no incidents left open on the page.
        shutil.rmtree(stack_dir() / ".runbook-release", ignore_errors=True)
        reset_saas()
        if not empty:
            deploy_stack()
    elif ensure_tls():
        compose("exec", "-T", "proxy", "nginx", "-s", "reload", check=False)
    print_endpoints(status_data())
    return 0


def stop_stack(stack):
    if not docker_ready():
        return
    if (stack.dir / "compose.yaml").exists():
        run(["docker", "compose", "--project-directory", str(stack.dir), "down", "--remove-orphans", "--volumes",
             "--timeout", "5"], check=False, timeout=300)
    leftovers = [container[0] for container in stack_containers(stack)]
    if leftovers:
        run(["docker", "rm", "-f", *leftovers], check=False)
    run(["docker", "network", "rm", f"{stack.project}_default"], check=False)


def cmd_down(args):
    """Every stack and everything shared: `down` takes the whole sandbox away, whichever --stack is given."""
    procs = processes()
    for stack in STACKS.values():
        stop_stack(stack)
    if args.purge and docker_ready():
        ids = run(["docker", "images", "-q", "--filter", "label=runbook.sandbox=1"], check=False).stdout.split()
        if ids:
            run(["docker", "rmi", "-f", *sorted(set(ids))], check=False)
    for name in ("sshd", *(stack.saas for stack in STACKS.values()), "s3", "registry"):
        if procs[name].stop():
            log(f"stopped {name}")
    if pg_running():
        run(["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(PgPaths.data), "-m", "fast", "-w",
             "stop"], check=False)
        log("stopped postgres")
    owned = HOME / "run" / "dockerd.owned"
    if owned.exists():
        procs["dockerd"].stop()
        owned.unlink()
        log("stopped dockerd (the sandbox had started it)")
    # Runtime state goes; the registry's storage stays as a cache unless --purge.
    stack_dirs = [sub for stack in STACKS.values() for sub in (stack.directory, stack.saas)]
    for sub in ("postgres", *stack_dirs, "run", "secrets", "artifacts", "approvals"):
        shutil.rmtree(HOME / sub, ignore_errors=True)
    if args.purge:
        remove_ssh_target()
        shutil.rmtree(HOME, ignore_errors=True)
        for tarball in CACHE.glob("rootfs-bookworm-*.tar"):
            tarball.unlink()
    log("down: nothing of the sandbox is running")
    return 0


def status_data():
    procs = processes()
    containers = stack_containers()
    health = {}
    for cid, service, _state in containers:
        proc = run(["docker", "inspect", "--format",
                    "{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}", cid],
                   check=False)
        health.setdefault(service, []).append(proc.stdout.strip())
    return {
        "home": str(HOME),
        "docker": docker_ready(),
        "registry": {"running": procs["registry"].running(), "url": f"http://{REGISTRY}"},
        "postgres": {"running": pg_running(), "host": HOST, "port": PORTS["postgres"], "database": STACK.database,
                     "user": DB_USER, "password_file": str(HOME / "secrets" / "app_db_password"),
                     "pgpass_file": str(HOME / "secrets" / "pgpass"),
                     "admin_password_file": str(HOME / "secrets" / "postgres_password"),
                     "socket_dir": str(PgPaths.socket)},
        "s3": {"running": procs["s3"].running(), "endpoint_url": f"http://{HOST}:{PORTS['s3']}",
               "bucket": S3_BUCKET, **{k.lower(): v for k, v in S3_CREDENTIALS.items()}},
        "statuspage": {"running": procs[STACK.saas].running(),
                       "api_url": f"http://{HOST}:{STACK.ports['statuspage']}/v1",
                       "page_id": STATUSPAGE_PAGE_ID, "api_key_file": str(HOME / "secrets" / "statuspage_api_key")},
        "webhook": {"running": procs[STACK.saas].running(),
                    "url": f"http://{HOST}:{STACK.ports['webhook']}/hooks/releases"},
        "ssh": {"running": procs["sshd"].running(), "host": HOST, "port": PORTS["ssh"], "user": SSH_USER,
                "private_key_file": str(SshPaths.client_key), "known_hosts_file": str(SshPaths.known_hosts),
                "sudoers_file": str(SUDOERS_FILE), "inventory": "inventories/local-ssh"},
        "stack": {"name": STACK.name, "project": STACK.project, "project_src": str(stack_dir()), "services": health,
                  "version": deployed_version(),
                  "maintenance": (stack_dir() / "maintenance" / "enabled").exists()},
        "proxy": {"http": f"http://{HOST}:{STACK.ports['proxy_http']}",
                  "https": f"https://localhost:{STACK.ports['proxy_https']}"},
        "artifacts": str(HOME / "artifacts"),
    }


def print_endpoints(data):
    stack = data["stack"]
    deployed = stack["version"] or ("nothing deployed (empty mode)" if not stack["services"] else "not answering")
    lines = [
        f"sandbox is up — demo stack {stack['name']}: {deployed}",
        f"  proxy         {data['proxy']['http']}  {data['proxy']['https']} (self-signed)",
        f"  stack         {stack['project_src']} (compose project {stack['project']})",
        f"  registry      {data['registry']['url']}",
        f"  postgres      {HOST}:{PORTS['postgres']} db={STACK.database} user={DB_USER} "
        f"(password in {data['postgres']['password_file']})",
        f"  s3 (moto)     {data['s3']['endpoint_url']} bucket={S3_BUCKET}",
        f"  statuspage    {data['statuspage']['api_url']} page={STATUSPAGE_PAGE_ID} "
        f"(key in {data['statuspage']['api_key_file']})",
        f"  chat webhook  {data['webhook']['url']}",
        f"  ssh           {data['ssh']['user']}@{HOST}:{PORTS['ssh']} (key {data['ssh']['private_key_file']}, "
        f"known hosts {data['ssh']['known_hosts_file']}; inventories/local-ssh)",
    ]
    print("\n".join(lines), flush=True)


def cmd_status(args):
    data = status_data()
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        for key in ("docker",):
            print(f"{key:12} {'running' if data[key] else 'stopped'}")
        for key in ("registry", "postgres", "s3", "statuspage", "ssh"):
            print(f"{key:12} {'running' if data[key]['running'] else 'stopped'}")
        services = ", ".join(f"{s}={'/'.join(v)}" for s, v in sorted(data["stack"]["services"].items())) or "none"
        print(f"{'stack':12} version={data['stack']['version']} {services}")
    up = data["docker"] and all(data[k]["running"] for k in ("registry", "postgres", "s3", "statuspage", "ssh"))
    return 0 if up else 3


def cmd_maintenance(args):
    flag = stack_dir() / "maintenance" / "enabled"
    if not flag.parent.exists():
        raise SandboxError(f"no demo stack at {stack_dir()}; run 'scripts/sandbox up' first")
    if args.state == "on":
        flag.write_text(datetime.datetime.now(datetime.timezone.utc).isoformat() + "\n")
    else:
        flag.unlink(missing_ok=True)
    log(f"maintenance page {args.state}")
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="scripts/sandbox", description=__doc__.splitlines()[0])
    parser.add_argument("--stack", default=os.environ.get("RUNBOOK_SANDBOX_STACK") or "a",
                        help="which demo stack: a (the default; 127.0.0.1:8080) or b (the second copy the test "
                             "lanes use; 127.0.0.1:8180). Default: $RUNBOOK_SANDBOX_STACK, else a")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="start everything (idempotent) and print the endpoints")
    mode = up.add_mutually_exclusive_group()
    mode.add_argument("--reset", action="store_true", help=f"redeploy {GOOD_VERSION} on a freshly seeded database")
    mode.add_argument("--empty", action="store_true", help="services only: no stack deployed, empty database")
    down = sub.add_parser("down", help="stop and remove everything the sandbox started")
    down.add_argument("--purge", action="store_true", help="also delete images, registry storage and caches")
    status = sub.add_parser("status", help="what is running, and where (exit 3 when not up)")
    status.add_argument("--json", action="store_true")
    maint = sub.add_parser("maintenance", help="switch the proxy's maintenance page")
    maint.add_argument("state", choices=["on", "off"])
    args = parser.parse_args(argv)
    global STACK  # pylint: disable=global-statement
    if args.stack not in STACKS:
        print(f"sandbox: ERROR: unknown stack {args.stack!r} (from --stack or RUNBOOK_SANDBOX_STACK); "
              f"use one of: {', '.join(STACKS)}", file=sys.stderr)
        return 2
    STACK = STACKS[args.stack]
    handler = {"up": cmd_up, "down": cmd_down, "status": cmd_status, "maintenance": cmd_maintenance}[args.command]
    try:
        return handler(args)
    except SandboxError as exc:
        print(f"sandbox: ERROR: {exc}", file=sys.stderr, flush=True)
        return 2
    except subprocess.TimeoutExpired as exc:
        print(f"sandbox: ERROR: timed out after {exc.timeout} s: {' '.join(map(str, exc.cmd))}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
