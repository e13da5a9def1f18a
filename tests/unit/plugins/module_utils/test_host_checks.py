"""module_utils/_host_checks: env key diff (keys only), disk and memory judgement, TLS date math, and the TLS check
against a real TLS server on loopback with certificates made here (so every date and name is known)."""

from __future__ import annotations

import ipaddress
import tempfile
import json
import os
import socket
import ssl
import threading
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from hypothesis import given, settings, strategies as st

from ansible_collections.runbook.release.plugins.module_utils import _host_checks as hc

SECRET = "s3cr3t-Pl4nted-VALUE"


# --- env keys ------------------------------------------------------------------------------------------------

def test_read_env_keys_compose_syntax():
    text = "\n".join([
        "# comment with KEY=notakey",
        "",
        "PLAIN=value",
        "export EXPORTED=1",
        "EMPTY=",
        "SPACED = padded ",
        "EMPTY_QUOTED=''",
        'DOUBLE="a # not a comment"',
        "INLINE=x # comment",
        "ONLY_COMMENT= # nothing here",
        'MULTI="line one',
        "line two = not a key",
        'end"',
        "dotted.key-name=1",
        "PLAIN=again",
        "EMPTY=now set",
    ])
    info = hc.read_env_keys(text)
    assert info["keys"] == ["PLAIN", "EXPORTED", "EMPTY", "SPACED", "EMPTY_QUOTED", "DOUBLE", "INLINE",
                            "ONLY_COMMENT", "MULTI", "dotted.key-name"]
    assert info["empty"] == ["EMPTY_QUOTED", "ONLY_COMMENT"]
    assert info["bad_lines"] == [] and info["unclosed_line"] is None


def test_bad_lines_are_numbers_only():
    # a bare word is a bad line too: a password alone on a line looks just like compose's "VAR from the environment"
    info = hc.read_env_keys("OK=1\n%s\n9BAD=%s\n-x=1\nFROM_ENV\n" % (SECRET, SECRET))
    assert info["keys"] == ["OK"] and info["bad_lines"] == [2, 3, 4, 5]
    assert SECRET not in json.dumps(info)


def test_unclosed_quote_is_reported_by_line():
    info = hc.read_env_keys('A=1\nB="%s\nC=3\n' % SECRET)
    assert info["keys"] == ["A", "B"] and info["unclosed_line"] == 2
    assert SECRET not in json.dumps(info)


def test_escaped_quote_inside_double_quotes():
    info = hc.read_env_keys('A="say \\"hi\\""\nB=2\n')
    assert info["keys"] == ["A", "B"] and info["empty"] == [] and info["unclosed_line"] is None


def test_diff_env_keys():
    assert hc.diff_env_keys(["A", "B", "EXTRA"], ["C", "A", "B", "D"]) == (["C", "D"], ["EXTRA"])
    assert hc.diff_env_keys([], []) == ([], [])


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_check_env_lists_missing_extra_and_empty_keys_never_values(tmp_path):
    env = _write(tmp_path / ".env", "DB_PASSWORD=%s\nAPI_KEY=\nEXTRA=%s\nbroken line %s\n" % (SECRET, SECRET, SECRET))
    example = _write(tmp_path / ".env.example", "DB_PASSWORD=\nAPI_KEY=\nJWT_SECRET=\n")
    facts, problems = hc.check_env(env, example, nonempty_keys=["DB_PASSWORD", "API_KEY", "JWT_SECRET"])
    assert facts["missing_env_keys"] == ["JWT_SECRET"]
    assert facts["extra_env_keys"] == ["EXTRA"]
    assert facts["empty_env_keys"] == ["API_KEY", "JWT_SECRET"]
    assert len(problems) == 3
    assert "line 4" in problems[0] and "lacks keys" in problems[1] and "non-empty value for: API_KEY" in problems[2]
    assert SECRET not in json.dumps([facts, problems])
    _facts, problems = hc.check_env(env, example, fail_on_extra=True)
    assert any("keys that %s does not list: EXTRA" % example in p for p in problems)


def test_check_env_missing_files(tmp_path):
    facts, problems = hc.check_env(str(tmp_path / "nope.env"), str(tmp_path / "nope.example"))
    assert len(problems) == 2 and "cannot be read (No such file or directory): create it" in problems[0]
    assert facts["missing_env_keys"] == []


def _strings(value):
    if isinstance(value, dict):
        return [s for v in value.values() for s in _strings(v)] + [str(k) for k in value]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return [str(value)]


# Values start with "!", which no key, path or line number holds: any "!" in the output would be a leak.
_VALUE = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp")), min_size=6, max_size=40)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.from_regex(r"[A-Z][A-Z0-9_]{0,10}", fullmatch=True), _VALUE), min_size=1, max_size=8),
       st.sampled_from(["", "'", '"']))
def test_no_value_ever_reaches_the_result(pairs, quote):
    lines = ["%s=%s!%s%s" % (key, quote, value, quote) for key, value in pairs]
    lines += ["!" + value for _key, value in pairs]  # values alone on a line: bad lines
    with tempfile.TemporaryDirectory() as tmp:
        env = os.path.join(tmp, ".env")
        example = os.path.join(tmp, ".env.example")
        with open(env, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        with open(example, "w") as handle:
            handle.write("OTHER=\n")
        facts, problems = hc.check_env(env, example, nonempty_keys=[key for key, _value in pairs])
        shown = _strings([hc.read_env_keys("\n".join(lines)), facts, problems])
    assert not [text for text in shown if "!" in text]


# --- disk and memory -------------------------------------------------------------------------------------------

def test_disk_usage_of_a_path_that_does_not_exist_yet(tmp_path):
    usage = hc.disk_usage(str(tmp_path / "not" / "there"))
    assert usage["checked_path"] == str(tmp_path)
    assert usage["free_gb"] > 0 and 0 < usage["free_pct"] <= 100 and usage["total_gb"] >= usage["free_gb"]


def test_judge_disk():
    usage = {"path": "/srv", "checked_path": "/srv", "free_gb": 3.5, "free_pct": 12.0}
    assert hc.judge_disk(usage, 2, 10) == []
    problems = hc.judge_disk(usage, 5, 15)
    assert problems == ["disk: /srv has 3.50 GiB free, needs at least 5 GiB: free space or grow the volume",
                        "disk: /srv has 12.0 % free, needs at least 15 %: free space or grow the volume"]
    moved = dict(usage, path="/srv/new")
    assert "/srv/new (not there yet; checked /srv)" in hc.judge_disk(moved, 5)[0]


def test_mem_available():
    text = "MemTotal:       32000000 kB\nMemFree:  100 kB\nMemAvailable:   2097152 kB\n"
    assert hc.mem_available_mb(text) == 2048
    assert hc.mem_available_mb("MemTotal: 1 kB\n") is None


# --- TLS date math ---------------------------------------------------------------------------------------------

NOW = datetime(2031, 3, 1, 12, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize("delta, min_days, days, problem", [
    (timedelta(days=30), 14, 30.0, None),
    (timedelta(days=14), 14, 14.0, None),  # exactly the minimum is enough
    (timedelta(days=14) - timedelta(seconds=1), 14, 13.99999, "fewer than the 14 required"),
    (timedelta(hours=12), 1, 0.5, "in 0.5 days, fewer than the 1 required"),
    (timedelta(days=0), 0, 0.0, "expired on 2031-03-01T12:00:00Z (0.0 days ago)"),
    (-timedelta(days=3, hours=12), 14, -3.5, "expired on 2031-02-26T00:00:00Z (3.5 days ago)"),
])
def test_judge_certificate(delta, min_days, days, problem):
    left, message = hc.judge_certificate(NOW + delta, min_days, now=NOW)
    assert left == pytest.approx(days, abs=1e-4)
    if problem is None:
        assert message is None
    else:
        assert problem in message


def test_judge_certificate_across_a_leap_day():
    left, _message = hc.judge_certificate(datetime(2032, 3, 1, tzinfo=timezone.utc), 1,
                                          now=datetime(2032, 2, 28, tzinfo=timezone.utc))
    assert left == 2.0


# --- TLS against a real server ----------------------------------------------------------------------------------

KEY = ec.generate_private_key(ec.SECP256R1())


def _cert(tmp_path, name, not_after, dns=("localhost",), ips=("127.0.0.1",)):
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, dns[0] if dns else "x")])
    now = datetime.now(timezone.utc)
    alt = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject).public_key(KEY.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - timedelta(days=1))
            .not_valid_after(not_after).add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(KEY, hashes.SHA256()))
    cert_path, key_path = tmp_path / (name + ".pem"), tmp_path / (name + ".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


@pytest.fixture
def tls_server(tmp_path):
    """A TLS server on 127.0.0.1 that serves the certificate it is started with, one handshake per connection."""
    servers = []

    def start(cert_path, key_path):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_path, key_path)
        listener = socket.create_server(("127.0.0.1", 0))
        stop = threading.Event()

        def serve():
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    conn, _addr = listener.accept()
                except socket.timeout:
                    continue
                try:
                    with context.wrap_socket(conn, server_side=True) as tls:
                        tls.recv(1)
                except (ssl.SSLError, OSError):
                    pass

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        servers.append((stop, thread, listener))
        return listener.getsockname()[1]

    yield start
    for stop, thread, listener in servers:
        stop.set()
        thread.join(5)
        listener.close()


def _endpoint(port, **extra):
    return dict({"host": "127.0.0.1", "port": port, "server_name": "localhost", "min_days": 14, "ca_file": None,
                 "timeout": 5.0}, **extra)


def test_trusted_certificate_with_enough_days(tmp_path, tls_server):
    cert, key = _cert(tmp_path, "good", datetime.now(timezone.utc) + timedelta(days=40))
    facts, problems = hc.check_tls(_endpoint(tls_server(cert, key), ca_file=cert))
    assert problems == []
    assert facts["trusted"] is True and 39.9 < facts["days_left"] <= 40


def test_untrusted_and_short_lived_certificate_lists_both(tmp_path, tls_server):
    cert, key = _cert(tmp_path, "short", datetime.now(timezone.utc) + timedelta(days=5))
    other, _other_key = _cert(tmp_path, "other", datetime.now(timezone.utc) + timedelta(days=400))
    facts, problems = hc.check_tls(_endpoint(tls_server(cert, key), ca_file=other))
    assert facts["trusted"] is False and 4.9 < facts["days_left"] <= 5
    assert len(problems) == 2
    assert "is not trusted" in problems[0] and "against %s" % other in problems[0]
    assert "fewer than the 14 required" in problems[1]


def test_wrong_server_name(tmp_path, tls_server):
    cert, key = _cert(tmp_path, "named", datetime.now(timezone.utc) + timedelta(days=40), dns=("app.example",), ips=())
    facts, problems = hc.check_tls(_endpoint(tls_server(cert, key), ca_file=cert))
    assert facts["trusted"] is False and len(problems) == 1
    assert "not valid for 'localhost'" in problems[0] or "mismatch" in problems[0].lower()


def test_no_tls_on_the_port():
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()
    facts, problems = hc.check_tls(_endpoint(port))
    assert facts["trusted"] is None and facts["days_left"] is None
    assert "no TLS handshake" in problems[0]


def test_env_check_reads_no_file_outside_the_two_given(tmp_path):
    env = _write(tmp_path / "a.env", "A=1\n")
    example = _write(tmp_path / "a.example", "A=\n")
    before = set(os.listdir(tmp_path))
    assert hc.check_env(env, example)[1] == []
    assert set(os.listdir(tmp_path)) == before
