"""module_utils/_smoke_tls: reading expiry and names from DER certificates, and RFC 6125 host name matching.
Certificates are made with the cryptography library, so every field is known."""

from __future__ import annotations

import ipaddress
from datetime import datetime, timedelta, timezone

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from ansible_collections.runbook.release.plugins.module_utils import _smoke_tls as tls

KEY = ec.generate_private_key(ec.SECP256R1())


def make_cert(cn="example.test", dns=(), ips=(), not_before=None, not_after=None):
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    not_before = not_before or datetime(2031, 1, 1, tzinfo=timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(KEY.public_key())
               .serial_number(x509.random_serial_number()).not_valid_before(not_before)
               .not_valid_after(not_after or not_before + timedelta(days=10)))
    names = [x509.DNSName(d) for d in dns] + [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(KEY, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def test_reads_validity_names_and_common_name():
    der = make_cert(cn="localhost", dns=["localhost", "*.example.test"], ips=["127.0.0.1", "::1"],
                    not_after=datetime(2031, 1, 11, 12, 30, tzinfo=timezone.utc))
    cert = tls.parse_certificate(der)
    assert cert["not_before"] == datetime(2031, 1, 1, tzinfo=timezone.utc)
    assert cert["not_after"] == datetime(2031, 1, 11, 12, 30, tzinfo=timezone.utc)
    assert cert["subject_cn"] == "localhost"
    assert cert["dns_names"] == ["localhost", "*.example.test"]
    assert cert["ip_addresses"] == ["127.0.0.1", "::1"]
    now = datetime(2031, 1, 10, 12, 30, tzinfo=timezone.utc)
    assert tls.days_left(cert, now) == pytest.approx(1.0)


def test_reads_generalized_time_after_2049():
    der = make_cert(not_before=datetime(2049, 12, 30, tzinfo=timezone.utc),
                    not_after=datetime(2051, 6, 1, tzinfo=timezone.utc))
    cert = tls.parse_certificate(der)
    assert cert["not_before"].year == 2049 and cert["not_after"] == datetime(2051, 6, 1, tzinfo=timezone.utc)


@pytest.mark.parametrize("host, ok", [
    ("localhost", True), ("LOCALHOST.", True), ("api.example.test", True), ("a.b.example.test", False),
    ("example.test", False), ("127.0.0.1", True), ("::1", True), ("10.0.0.1", False), ("other.test", False),
])
def test_hostname_matching(host, ok):
    cert = tls.parse_certificate(make_cert(dns=["localhost", "*.example.test"], ips=["127.0.0.1", "::1"]))
    assert tls.hostname_matches(host, cert) == ok


def test_common_name_counts_only_without_san():
    assert tls.hostname_matches("legacy.test", tls.parse_certificate(make_cert(cn="legacy.test")))
    assert not tls.hostname_matches("legacy.test", tls.parse_certificate(make_cert(cn="legacy.test", dns=["new.test"])))


def test_garbage_is_refused():
    with pytest.raises(tls.CertificateError):
        tls.parse_certificate(b"\x30\x82\x01")
    with pytest.raises(tls.CertificateError):
        tls.parse_certificate(make_cert()[:40])
