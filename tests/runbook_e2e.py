"""What the end-to-end runbook tests share: running a playbook as an operator would, reading what it left behind
(served version, deployment record, status page and chat stand-ins, the database), and bounded loopback load.

Every address is 127.0.0.1. Secrets are read from the sandbox's 0600 files and passed through the environment,
never argv. Test modules import what they need; `fresh_sandbox` is a module fixture they opt into by importing it.

The tests run against one of the sandbox's two demo stacks: `a` (127.0.0.1:8080, appdb, the local inventory as it
is) or, with RUNBOOK_SANDBOX_STACK=b, the second copy (127.0.0.1:8180, appdb_b, its own stand-ins), so that make
test can run a second lane of them while the first lane tests stack a. For stack b every playbook also gets the
inventory overlay tests/e2e/inventory-stack-b, which points the local inventory's settings at that copy.
"""

import importlib.util
import json
import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import requests

from sandbox_cli import sandbox

REPO = Path(__file__).resolve().parents[1]
VENV = REPO / ".venv" / "bin"
RECORDS = REPO / "records"
HOME = Path(os.environ.get("RUNBOOK_SANDBOX_HOME", "/var/lib/runbook-sandbox"))


def _sandbox_stack():
    """The stack under test, as sandbox/sandbox.py defines it (one table of names and ports, not two)."""
    spec = importlib.util.spec_from_file_location("rb_sandbox_stacks", REPO / "sandbox" / "sandbox.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    name = os.environ.get("RUNBOOK_SANDBOX_STACK") or "a"
    if name not in module.STACKS:
        raise RuntimeError(f"RUNBOOK_SANDBOX_STACK={name!r} names no sandbox stack; use one of {list(module.STACKS)}")
    return module.STACKS[name]


SANDBOX_STACK = _sandbox_stack()
STACK = HOME / SANDBOX_STACK.directory
PROJECT = SANDBOX_STACK.project  # the compose project
DB = SANDBOX_STACK.database  # the application database
ENV_FILE = STACK / ".env"
LOCK = STACK / ".runbook-release" / "deploy.lock"
FLAG = STACK / "maintenance" / "enabled"
BASE = f"http://127.0.0.1:{SANDBOX_STACK.ports['proxy_http']}"
STANDIN = f"http://127.0.0.1:{SANDBOX_STACK.ports['statuspage']}"  # the Statuspage stand-in (API under /v1)
CHAT = f"http://127.0.0.1:{SANDBOX_STACK.ports['webhook']}/_sandbox/requests"
STATUSPAGE = f"{STANDIN}/_sandbox/requests"
STATUSPAGE_STATE = f"{STANDIN}/_sandbox/state"
# Stack a is what the local inventory describes; other stacks add their overlay after the inventory.
OVERLAY = [] if SANDBOX_STACK.name == "a" else [REPO / "tests" / "e2e" / f"inventory-stack-{SANDBOX_STACK.name}"]
OPERATOR = "e2e-operator"
SECRETS = ("app_db_password", "postgres_password", "statuspage_api_key")


def env(**extra):
    """A minimal, predictable environment for ansible-playbook (a real USER: no stray ~user directories)."""
    return {"PATH": f"{VENV}:/usr/sbin:/usr/bin:/sbin:/bin", "HOME": os.environ.get("HOME", "/root"),
            "ANSIBLE_FORCE_COLOR": "0", "LANG": "C.UTF-8", "USER": "root", **extra}


def inventory_args(inventory=None):
    """The -i options for a playbook run against the stack under test ([] means ansible.cfg's inventories/local)."""
    if not inventory and not OVERLAY:
        return []
    sources = [f"inventories/{inventory or 'local'}", *map(str, OVERLAY)]
    return [arg for source in sources for arg in ("-i", source)]


def argv_of(playbook, extra, inventory, run_id):
    return [str(VENV / "ansible-playbook"), *inventory_args(inventory), f"playbooks/{playbook}",
            "-e", f"release_run_id={run_id}", "-e", f"release_operator={OPERATOR}", *extra]


def run(playbook, *extra, inventory=None, run_id=None, timeout=900):
    """Run a runbook to its end; returns (CompletedProcess, run_id, wall seconds)."""
    run_id = run_id or uuid.uuid4().hex
    started = time.monotonic()
    proc = subprocess.run(argv_of(playbook, extra, inventory, run_id), cwd=REPO, capture_output=True, text=True,
                          timeout=timeout, check=False, env=env())
    return proc, run_id, time.monotonic() - started


def start(playbook, *extra, inventory=None, run_id=None):
    """Start a runbook in the background, in its own process group so it can be killed whole."""
    run_id = run_id or uuid.uuid4().hex
    proc = subprocess.Popen(argv_of(playbook, extra, inventory, run_id), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env(), start_new_session=True)
    return proc, run_id


def flat(proc):
    """stdout and stderr with whitespace folded, for message assertions that must not care about wrapping."""
    return " ".join((proc.stdout + proc.stderr).split())


def recap(stdout):
    """ok/changed/failed summed over the PLAY RECAP's hosts."""
    totals = {"ok": 0, "changed": 0, "failed": 0}
    for match in re.finditer(r"^\S+\s+: ok=(\d+)\s+changed=(\d+)\s+unreachable=\d+\s+failed=(\d+)", stdout, re.M):
        for key, value in zip(("ok", "changed", "failed"), map(int, match.groups())):
            totals[key] += value
    return totals


def served_version():
    return requests.get(f"{BASE}/api/version", timeout=5).json()["version"]


def record_file_of(run_id):
    for path in sorted(RECORDS.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True):
        if json.loads(path.read_text()).get("run_id") == run_id:
            return path
    raise AssertionError(f"no deployment record for run {run_id} in {RECORDS}")


def record_of(run_id):
    """The deployment record the callback wrote for a run."""
    return json.loads(record_file_of(run_id).read_text())


def requests_of(url, run_id=None, since=0):
    """What a stand-in received after sequence number `since`, optionally only what mentions a run id."""
    received = [r for r in requests.get(url, timeout=5).json() if r["seq"] > since]
    if run_id:
        received = [r for r in received if run_id in json.dumps(r)]
    return received


def last_seq(url):
    return max((r["seq"] for r in requests.get(url, timeout=5).json()), default=0)


def chat_bodies(since):
    """The JSON bodies posted to the chat webhook after `since`."""
    return [r["body"] for r in requests_of(CHAT, since=since)
            if r["method"] == "POST" and isinstance(r.get("body"), dict)]


def chat_texts(since):
    """The `text` of every chat message posted after `since`."""
    return [body.get("text", "") for body in chat_bodies(since)]


def psql(sql, database=DB):
    """One statement as the sandbox's superuser; the password travels in the environment."""
    pg = env(PGPASSWORD=(HOME / "secrets" / "postgres_password").read_text().strip(), PGHOST="127.0.0.1",
             PGPORT="55432", PGUSER="postgres", PGDATABASE=database)
    return subprocess.run(["psql", "-X", "-At", "-v", "ON_ERROR_STOP=1", "-c", sql], env=pg, check=True,
                          capture_output=True, text=True).stdout.strip()


def items():
    return int(psql("SELECT count(*) FROM items"))


def item_columns():
    return set(psql("SELECT column_name FROM information_schema.columns WHERE table_schema = 'public' "
                    "AND table_name = 'items'").split())


def admin_vars_file(directory):
    """A vars file giving the database admin as an inventory would: a lookup of the sandbox's 0600 secret file,
    never the secret itself. Returns its path."""
    path = Path(directory) / "admin.yml"
    path.write_text("release_db_admin_user: postgres\n"
                    "release_db_admin_password: \"{{ lookup('ansible.builtin.file', release_sandbox_home"
                    " ~ '/secrets/postgres_password') }}\"\n")
    path.chmod(0o600)
    return str(path)


def check_secrets_absent(texts, secret_of):
    """No sandbox secret in any of the texts (output, records, reports)."""
    for name in SECRETS:
        secret = secret_of(name)
        for text in texts:
            assert secret not in text, f"the {name} secret appears in output or files"


class ProcessArgs:
    """Every process's command line on the host while a run lasts (sampled every 50 ms, bounded by the run):
    `with ProcessArgs() as seen: run(...)`, then `check_secrets_absent(seen.args, secret_of)`. Any process counts,
    not only the run's own: a secret in argv is readable by every user of the host."""

    def __init__(self, interval=0.05):
        self.interval, self._seen = interval, set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self):
        while not self._stop.is_set():
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        self._seen.add(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(
                            "utf-8", "replace"))
                    except OSError:
                        pass
            time.sleep(self.interval)

    @property
    def args(self):
        """The distinct command lines seen."""
        return sorted(self._seen)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=10)
        assert self._seen, "the process watcher saw nothing"
        return False


class Load:
    """Bounded loopback load through the proxy (bench/loadgen.py) while a runbook runs; every failure counts.

    Paced (`rate` requests per second per worker): a request every 20 ms still catches any gap in service, and
    unpaced workers would take both CPUs from everything else the test suite runs beside it (bench/ measures
    saturating load)."""

    def __init__(self, tmp_path, seconds=600, workers=2, rate=25, url=f"{BASE}/api/version"):
        self.stop = Path(tmp_path) / "load.stop"
        self.out = Path(tmp_path) / "load.json"
        self.proc = subprocess.Popen([str(VENV / "python"), str(REPO / "bench" / "loadgen.py"), "--url", url,
                                      "--workers", str(workers), "--rate", str(rate), "--max-seconds", str(seconds),
                                      "--stop-file", str(self.stop), "--out", str(self.out)],
                                     stdout=subprocess.DEVNULL)
        time.sleep(0.5)

    def finish(self):
        self.stop.touch()
        self.proc.wait(timeout=60)
        return json.loads(self.out.read_text())


def probe(seconds=5, path="/api/items"):
    """A short, bounded burst of requests: (failed, total)."""
    failed = total = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        total += 1
        try:
            failed += requests.get(f"{BASE}{path}", timeout=5).status_code >= 500
        except requests.RequestException:
            failed += 1
    return failed, total


# Whether the sandbox is at its baseline because fresh_sandbox just reset it and no test has run since. Every e2e test
# clears it as it starts (tests/e2e/conftest.py), so a module's opening reset is skipped only when the module before
# it ended with one and nothing ran in between: one reset between two modules instead of two.
BASELINE = {"fresh": False}


def sandbox_touched():
    BASELINE["fresh"] = False


@pytest.fixture(scope="module")
def fresh_sandbox():
    """A freshly reset sandbox (v1.2.2 serving, schema V003) before the module, and again after it, so the next
    module finds the baseline. Import it and mark the module `pytestmark = pytest.mark.usefixtures(...)`."""
    if not BASELINE["fresh"]:
        sandbox("up", "--reset")
    sandbox_touched()
    yield
    sandbox("up", "--reset")
    BASELINE["fresh"] = True
