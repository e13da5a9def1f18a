"""module_utils/_smoke_probes against real loopback servers started here: an HTTP server with a small item API
(log in, create, fetch, export, delete), an HTTPS server with a certificate made for the test, TCP and DNS.
Container, logs and PostgreSQL probes are exercised against the sandbox by the integration target."""

from __future__ import annotations

import base64
import gzip
import json
import socket
import ssl
import subprocess
import sys
import threading
import time
import types
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.runbook.release.plugins.module_utils import _smoke_spec as spec
from ansible_collections.runbook.release.plugins.module_utils._smoke_probes import Probes

TOKEN = "tok-4f1c2a9e8b7d6c5b4a39"


class Api(BaseHTTPRequestHandler):
    items = {}
    log = []

    def log_message(self, *args):
        pass

    def _send(self, status, payload=None, headers=None):
        body = b"" if payload is None else (payload if isinstance(payload, bytes) else json.dumps(payload).encode())
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _authorized(self):
        return self.headers.get("Authorization") == "Bearer " + TOKEN

    def do_GET(self):  # noqa: N802 - http.server's naming
        Api.log.append(("GET", self.path, self.headers.get("Authorization")))
        if self.path == "/health":
            return self._send(200, {"status": "ok", "version": "v1.2.3", "items": 3},
                              {"X-App-Version": "v1.2.3", "Strict-Transport-Security": "max-age=1"})
        if self.path == "/slow":
            time.sleep(0.3)
            return self._send(200, {"status": "ok"})
        if self.path == "/boom":
            return self._send(500, {"error": "boom", "token": "leaky-token-value"})
        if self.path == "/text":
            return self._send(200, b"plain text")
        if self.path == "/redirect":
            return self._send(302, headers={"Location": "/health"})
        if self.path == "/redirect-with-cookie":
            return self._send(302, headers={"Location": "/needs-cookie", "Set-Cookie": "rb=c00k1e; Path=/"})
        if self.path == "/needs-cookie":
            return self._send(200, {"cookie": "yes"}) if "rb=c00k1e" in (self.headers.get("Cookie") or "") else \
                self._send(403, {"cookie": "no"})
        if self.path == "/gzip":
            return self._send(200, gzip.compress(json.dumps({"status": "zipped"}).encode()),
                              {"Content-Encoding": "gzip", "Content-Type": "application/json"})
        if self.path == "/basic":
            if self.headers.get("Authorization") == "Basic " + base64.b64encode(b"user:p@ss").decode():
                return self._send(200, {"user": "user"})
            return self._send(401, {"error": "who"}, {"WWW-Authenticate": 'Basic realm="smoke"'})
        if self.path == "/items/export":
            return self._send(200, ("id,name\n" + "".join("%s,%s\n" % kv for kv in Api.items.items())).encode())
        if self.path.startswith("/items/"):
            if not self._authorized():
                return self._send(401, {"error": "no"})
            item = self.path.split("/")[-1]
            return self._send(200, {"id": int(item), "name": Api.items[item]}) if item in Api.items else self._send(404)
        return self._send(404, {"error": "not found"})

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        Api.log.append(("POST", self.path, self.headers.get("Authorization")))
        if self.path == "/redirect":
            return self._send(302, headers={"Location": "/health"})
        if self.path == "/login":
            return self._send(200, {"token": TOKEN}) if body.get("password") == "pw-1" else self._send(401)
        if self.path == "/items" and self._authorized():
            item = str(len(Api.items) + 100)
            Api.items[item] = body["name"]
            return self._send(201, {"id": int(item), "name": body["name"]})
        return self._send(401, {"error": "no"})

    def do_DELETE(self):  # noqa: N802
        Api.log.append(("DELETE", self.path, self.headers.get("Authorization")))
        item = self.path.split("/")[-1]
        if self._authorized() and Api.items.pop(item, None) is not None:
            return self._send(204)
        return self._send(404)


def serve(server):
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server


@pytest.fixture(scope="module")
def base():
    server = serve(ThreadingHTTPServer(("127.0.0.1", 0), Api))
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    directory = tmp_path_factory.mktemp("tls")
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(hours=1))
            .not_valid_after(now + timedelta(days=10))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    (directory / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(directory / "cert.pem"), str(directory / "key.pem"))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Api)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    serve(server)
    yield server.server_address[1], str(directory / "cert.pem")
    server.shutdown()
    server.server_close()


@pytest.fixture
def probes():
    return Probes(types.SimpleNamespace(no_log_values=set()), secrets={"pw": "pw-1"}, unique="u1234")


def one(raw, base_url=None):
    return spec.normalize_checks([dict({"name": "c"}, **raw)], base_url, {"pw": "pw-1"})[0]


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- http ----------------------------------------------------------------------------------------------------

def test_http_expectations_that_hold(probes, base):
    check = one({"url": "/health", "expect_status": 200, "expect_json": {"status": "ok", "items": {">=": 1}},
                 "expect_body": '"status"', "expect_headers": {"Strict-Transport-Security": True, "X-Debug": False},
                 "expect_version": "v1.2.3", "max_latency_ms": 5000}, base)
    sample = probes.sample(check)
    assert sample["ok"], sample["reason"]
    assert sample["status"] == 200 and sample["details"]["version"] == "v1.2.3" and sample["latency_ms"] > 0


@pytest.mark.parametrize("raw, reason", [
    ({"url": "/health", "expect_status": 204}, "status 200, expected 204"),
    ({"url": "/boom"}, 'status 500, expected 2xx (body: {"error": "boom", "token": "********"})'),
    ({"url": "/health", "expect_json": {"status": "down"}}, 'JSON status is "ok", expected "down"'),
    ({"url": "/text", "expect_json": {"a": 1}}, "the response is not JSON"),
    ({"url": "/health", "expect_body": "nope"}, "body does not match /nope/"),
    ({"url": "/health", "expect_headers": {"X-Missing": True}}, "header X-Missing is missing"),
    ({"url": "/health", "expect_headers": {"X-App-Version": "^v2"}}, "header X-App-Version is 'v1.2.3', does not match /^v2/"),
    ({"url": "/health", "expect_version": "v1.2.4"}, "version is v1.2.3, expected v1.2.4 (from JSON field version)"),
    ({"url": "/health", "expect_version": "v9", "version_header": "X-App-Version"},
     "version is v1.2.3, expected v9 (from header X-App-Version)"),
    ({"url": "/slow", "max_latency_ms": 100}, "more than max_latency_ms 100"),
])
def test_http_expectations_that_fail_say_why(probes, base, raw, reason):
    sample = probes.sample(one(raw, base))
    assert not sample["ok"] and reason in sample["reason"], sample["reason"]


def test_a_5xx_is_marked(probes, base):
    assert probes.sample(one({"url": "/boom"}, base))["five_xx"]
    assert not probes.sample(one({"url": "/nothing", "expect_status": 404}, base))["five_xx"]


def test_a_refused_connection_is_a_failed_sample(probes):
    sample = probes.sample(one({"url": "http://127.0.0.1:%d/health" % closed_port(), "timeout_s": 2}))
    assert not sample["ok"] and "GET http://127.0.0.1:" in sample["reason"] and "failed" in sample["reason"]


def test_secret_header_values_are_marked_for_masking(probes, base):
    check = one({"url": "/health", "headers": {"Authorization": "Bearer ${secrets.pw}", "Accept": "x"}}, base)
    probes.sample(check)
    assert {"Bearer pw-1", "pw-1"} <= probes.module.no_log_values
    assert "x" not in probes.module.no_log_values


# --- http: what urllib does for a probe (redirects, cookies, gzip, credentials, proxies, TLS settings) -------------

def test_redirects_are_followed_for_get_only_unless_disabled(probes, base):
    followed = probes.sample(one({"url": "/redirect", "expect_json": {"status": "ok"}}, base))
    assert followed["ok"] and followed["status"] == 200, followed["reason"]
    kept = probes.sample(one({"url": "/redirect", "follow_redirects": False, "expect_status": 302}, base))
    assert kept["ok"] and kept["status"] == 302, kept["reason"]
    post = probes.sample(one({"url": "/redirect", "method": "POST", "json": {}, "expect_status": 302}, base))
    assert post["ok"] and post["status"] == 302, "a POST is not redirected (follow_redirects 'safe')"


def test_a_cookie_set_by_a_redirect_is_sent_to_its_target_only(probes, base):
    sample = probes.sample(one({"url": "/redirect-with-cookie", "expect_json": {"cookie": "yes"}}, base))
    assert sample["ok"], sample["reason"]
    later = probes.sample(one({"url": "/needs-cookie", "expect_status": 403}, base))
    assert later["ok"], "each request starts with an empty cookie jar: %s" % later["reason"]


def test_a_gzip_answer_is_decoded(probes, base):
    sample = probes.sample(one({"url": "/gzip", "expect_json": {"status": "zipped"}}, base))
    assert sample["ok"], sample["reason"]


def test_credentials_in_the_url_answer_a_basic_challenge(probes, base):
    url = base.replace("http://", "http://user:p%40ss@") + "/basic"
    sample = probes.sample(one({"url": url, "expect_json": {"user": "user"}}))
    assert sample["ok"], sample["reason"]
    assert not probes.sample(one({"url": base + "/basic", "expect_status": 200}))["ok"]


def test_a_proxy_from_the_environment_is_used(probes, base, monkeypatch):
    monkeypatch.setenv("http_proxy", "http://127.0.0.1:%d" % closed_port())
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    sample = Probes(probes.module).sample(one({"url": "http://example.invalid/health", "timeout_s": 2}))
    assert not sample["ok"] and "Connection refused" in sample["reason"], sample["reason"]


def test_concurrent_probes_keep_their_own_redirect_settings(probes, base):
    """ansible.module_utils.urls.Request.open installs its opener process-wide and then uses whichever is installed:
    from several threads, a request could follow (or not) another check's redirects, or use its TLS settings."""
    follow = one({"url": "/redirect"}, base)
    stay = one({"url": "/redirect", "follow_redirects": False, "expect_status": 302}, base)
    wrong = []

    def worker(check, status):
        for _attempt in range(25):
            got = probes.sample(check)["status"]
            if got != status:
                wrong.append((check["follow_redirects"], got))

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible, to give a race every chance
    try:
        threads = [threading.Thread(target=worker, args=(follow, 200) if n % 2 else (stay, 302)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        sys.setswitchinterval(interval)
    assert not wrong, "%d of 200 requests used another check's redirect setting: %s" % (len(wrong), wrong[:5])


def test_plain_http_builds_no_tls_context_and_leaves_ansible_urls_unloaded(base):
    """Building a TLS context loads the CA store (tens of ms) and ansible.module_utils.urls imports cryptography:
    neither is needed until a request (or a redirect) goes to https, so checks of plain http URLs skip both."""
    code = (
        "import sys, types\n"
        "from ansible_collections.runbook.release.plugins.module_utils import _smoke_spec as spec\n"
        "from ansible_collections.runbook.release.plugins.module_utils._smoke_probes import Probes\n"
        "probes = Probes(types.SimpleNamespace(no_log_values=set()))\n"
        "for path in ('/health', '/redirect'):\n"
        "    sample = probes.sample(spec.normalize_checks([{'name': 'c', 'url': sys.argv[1] + path}], None, {})[0])\n"
        "    assert sample['ok'] and sample['status'] == 200, sample\n"
        "    print(path, ','.join(m for m in ('ansible.module_utils.urls', 'cryptography') if m in sys.modules) or '-',\n"
        "          len(probes._contexts))\n"
    )
    paths = [p for p in sys.path if p.endswith(("collections", "tests"))]
    proc = subprocess.run([sys.executable, "-c", code, base], capture_output=True, text=True, check=False,
                          env={"PYTHONPATH": ":".join(paths), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    plain, redirected = proc.stdout.splitlines()
    assert plain == "/health - 0", "a plain-http check loaded urls or built a TLS context: " + plain
    assert redirected.endswith(" 0"), "a redirect to http built a TLS context: " + redirected


def test_a_ca_file_that_cannot_be_read_fails_even_a_plain_http_check(probes, base, tmp_path):
    sample = probes.sample(one({"url": "/health", "ca_path": str(tmp_path / "missing.pem")}, base))
    assert not sample["ok"] and "No such file or directory" in sample["reason"], sample["reason"]


def test_https_context_is_built_once_per_certificate_setting(probes, tls_server):
    port, ca = tls_server
    for _attempt in range(3):
        assert probes.sample(one({"url": "https://localhost:%d/health" % port, "ca_path": ca}))["ok"]
    assert list(probes._contexts) == [(True, ca)]


# --- scenarios -----------------------------------------------------------------------------------------------

def scenario(fetch_name="item-${unique}"):
    auth = {"Authorization": "Bearer ${token}"}
    return one({"type": "scenario", "steps": [
        {"name": "login", "method": "POST", "url": "/login", "json": {"user": "demo", "password": "${secrets.pw}"},
         "capture": {"token": "token"}},
        {"name": "create", "method": "POST", "url": "/items", "headers": auth, "json": {"name": "item-${unique}"},
         "expect_status": 201, "capture": {"item_id": "id"}},
        {"name": "fetch", "url": "/items/${item_id}", "headers": auth, "expect_json": {"name": fetch_name}},
        {"name": "export", "url": "/items/export", "expect_body": "${item_id},item-${unique}"},
        {"name": "delete", "cleanup": True, "method": "DELETE", "url": "/items/${item_id}", "headers": auth,
         "expect_status": 204},
    ]}, base_url=BASE[0])


BASE = [None]


@pytest.fixture
def scenario_base(base):
    BASE[0] = base
    Api.items.clear()
    del Api.log[:]
    return base


def test_a_scenario_passes_values_between_steps_and_cleans_up(probes, scenario_base):
    sample = probes.sample(scenario())
    assert sample["ok"], sample["reason"]
    steps = sample["details"]["steps"]
    assert [s["name"] for s in steps] == ["login", "create", "fetch", "export", "delete"]
    assert steps[0]["captured"] == {"token": spec.MASK}
    assert steps[1]["captured"] == {"item_id": 100}
    assert Api.items == {}, "the cleanup step deleted the item"
    assert TOKEN in probes.module.no_log_values, "a captured token is masked in everything the module returns"
    assert TOKEN not in json.dumps(sample)


def test_cleanup_runs_after_a_failed_step(probes, scenario_base):
    sample = probes.sample(scenario(fetch_name="something else"))
    assert not sample["ok"]
    assert sample["reason"] == 'step fetch: JSON name is "item-u1234", expected "something else"'
    steps = {s["name"]: s for s in sample["details"]["steps"]}
    assert steps["export"]["ok"] is None and steps["delete"]["ok"] is True
    assert Api.items == {}


def test_a_cleanup_that_needs_a_value_never_captured_is_skipped(probes, scenario_base):
    check = scenario()
    check["steps"][0]["json"] = {"user": "demo", "password": "wrong"}
    sample = probes.sample(check)
    steps = {s["name"]: s for s in sample["details"]["steps"]}
    assert sample["reason"].startswith("step login: status 401")
    assert steps["delete"]["ok"] is None and "skipped: ${item_id}, ${token} not captured" in steps["delete"]["reason"]
    assert [entry[0] for entry in Api.log] == ["POST"], "nothing after the failed login was sent"


# --- tcp, dns, tls -------------------------------------------------------------------------------------------

def test_tcp(probes, base):
    port = int(base.rsplit(":", 1)[1])
    assert probes.sample(one({"type": "tcp", "host": "127.0.0.1", "port": port}))["ok"]
    sample = probes.sample(one({"type": "tcp", "host": "127.0.0.1", "port": closed_port(), "timeout_s": 2}))
    assert not sample["ok"] and sample["reason"].startswith("cannot connect to 127.0.0.1:")


def test_dns(probes):
    sample = probes.sample(one({"type": "dns", "host": "localhost", "expect_addresses": ["127.0.0.1"]}))
    assert sample["ok"], sample["reason"]
    sample = probes.sample(one({"type": "dns", "host": "localhost", "expect_addresses": ["192.0.2.1"]}))
    assert not sample["ok"] and "not to 192.0.2.1" in sample["reason"]
    sample = probes.sample(one({"type": "dns", "host": "no-such-host.invalid"}))
    assert not sample["ok"] and "does not resolve" in sample["reason"]


def test_tls_expiry_and_names(probes, tls_server):
    port, ca = tls_server
    good = probes.sample(one({"type": "tls", "host": "localhost", "port": port, "ca_path": ca, "min_days": 1}))
    assert good["ok"], good["reason"]
    assert 9 < good["details"]["days_left"] < 10.1 and good["details"]["names"] == ["localhost"]
    soon = probes.sample(one({"type": "tls", "host": "localhost", "port": port, "ca_path": ca, "min_days": 30}))
    assert not soon["ok"] and "less than min_days 30" in soon["reason"]
    untrusted = probes.sample(one({"type": "tls", "host": "localhost", "port": port, "min_days": 1}))
    assert not untrusted["ok"] and "certificate not trusted for localhost" in untrusted["reason"]
    assert untrusted["details"]["days_left"] > 9, "an untrusted certificate is still read"
    wrong = probes.sample(one({"type": "tls", "host": "127.0.0.1", "port": port, "server_name": "other.test",
                               "validate_certs": False, "min_days": 1}))
    assert not wrong["ok"] and "the certificate is for localhost, not other.test" in wrong["reason"]


def test_https_request_with_the_ca_file(probes, tls_server):
    port, ca = tls_server
    sample = probes.sample(one({"url": "https://localhost:%d/health" % port, "ca_path": ca}))
    assert sample["ok"], sample["reason"]
    sample = probes.sample(one({"url": "https://localhost:%d/health" % port}))
    assert not sample["ok"] and "CERTIFICATE_VERIFY_FAILED" in sample["reason"]
