# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Reading a server certificate without extra libraries, for runbook.release.smoke_check's ``tls`` checks.

``ssl`` only decodes a certificate it has verified; with ``validate_certs: false`` (or to report on a
certificate that fails verification) we still want its expiry date and names. ``parse_certificate()`` walks
the DER just far enough to read ``notBefore``/``notAfter``, the subject's common name and the
subjectAltName DNS names and IP addresses; ``hostname_matches()`` applies RFC 6125 matching (one
left-most wildcard label, IP addresses only against IP SANs).
"""

from __future__ import annotations

import ipaddress
from datetime import datetime, timezone

_SAN_OID = bytes.fromhex("551d11")  # 2.5.29.17 subjectAltName
_CN_OID = bytes.fromhex("550403")  # 2.5.4.3 commonName


class CertificateError(ValueError):
    """The bytes are not a certificate this reader understands."""


def _read(der, pos):
    """(tag, content start, content end) of the DER element at ``pos``."""
    if pos + 2 > len(der):
        raise CertificateError("truncated DER at byte %d" % pos)
    tag = der[pos]
    length = der[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > len(der):
            raise CertificateError("unsupported DER length at byte %d" % pos)
        length = int.from_bytes(der[pos:pos + count], "big")
        pos += count
    if pos + length > len(der):
        raise CertificateError("DER element at byte %d runs past the end" % pos)
    return tag, pos, pos + length


def _children(der, start, end):
    out = []
    pos = start
    while pos < end:
        tag, cstart, cend = _read(der, pos)
        out.append((tag, cstart, cend))
        pos = cend
    return out


def _time(der, tag, start, end):
    text = der[start:end].decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ, years 50-99 are 19xx (RFC 5280 4.1.2.5.1)
        year = int(text[:2])
        text = ("19" if year >= 50 else "20") + text
    elif tag != 0x18:
        raise CertificateError("validity time has tag 0x%02x, expected UTCTime or GeneralizedTime" % tag)
    return datetime.strptime(text[:14], "%Y%m%d%H%M%S").replace(tzinfo=timezone.utc)


def _common_name(der, start, end):
    for _set_tag, sstart, send in _children(der, start, end):
        for _seq_tag, astart, aend in _children(der, sstart, send):
            parts = _children(der, astart, aend)
            if len(parts) == 2 and der[parts[0][1]:parts[0][2]] == _CN_OID:
                return der[parts[1][1]:parts[1][2]].decode("utf-8", "replace")
    return None


def _san(der, start, end):
    dns, ips = [], []
    for _tag, estart, eend in _children(der, start, end):  # Extensions ::= SEQUENCE OF Extension
        parts = _children(der, estart, eend)
        if not parts or der[parts[0][1]:parts[0][2]] != _SAN_OID:
            continue
        _otag, vstart, vend = parts[-1]  # extnValue OCTET STRING holding GeneralNames
        _gtag, gstart, gend = _read(der, vstart)
        for ntag, nstart, nend in _children(der, gstart, gend):
            if ntag == 0x82:
                dns.append(der[nstart:nend].decode("ascii", "replace"))
            elif ntag == 0x87:
                ips.append(str(ipaddress.ip_address(der[nstart:nend])))
    return dns, ips


def parse_certificate(der):
    """{not_before, not_after (aware datetimes), subject_cn, dns_names, ip_addresses} of a DER certificate."""
    try:
        _tag, cstart, cend = _read(der, 0)
        _tag, tstart, tend = _read(der, cstart)  # tbsCertificate
        fields = _children(der, tstart, tend)
        if fields and fields[0][0] == 0xA0:  # [0] version
            fields = fields[1:]
        # serialNumber, signature, issuer, validity, subject, subjectPublicKeyInfo, then optional [1] [2] [3]
        validity, subject = fields[3], fields[4]
        times = _children(der, validity[1], validity[2])
        out = {"not_before": _time(der, times[0][0], times[0][1], times[0][2]),
               "not_after": _time(der, times[1][0], times[1][1], times[1][2]),
               "subject_cn": _common_name(der, subject[1], subject[2]), "dns_names": [], "ip_addresses": []}
        for tag, start, end in fields[6:]:
            if tag == 0xA3:  # [3] extensions
                _stag, sstart, send = _read(der, start)
                out["dns_names"], out["ip_addresses"] = _san(der, sstart, send)
        return out
    except (IndexError, ValueError, UnicodeDecodeError) as exc:
        if isinstance(exc, CertificateError):
            raise
        raise CertificateError("cannot read the certificate: %s" % exc)


def hostname_matches(hostname, cert):
    """Whether ``hostname`` (a DNS name or an IP address) is one of the certificate's names (RFC 6125)."""
    try:
        address = ipaddress.ip_address(hostname.strip("[]"))
    except ValueError:
        address = None
    if address is not None:
        return str(address) in cert["ip_addresses"]
    host = hostname.rstrip(".").lower()
    names = cert["dns_names"] or ([cert["subject_cn"]] if cert.get("subject_cn") else [])
    for name in names:
        name = name.rstrip(".").lower()
        if name == host:
            return True
        if name.startswith("*.") and "." in host:
            label, rest = host.split(".", 1)
            if label and rest == name[2:] and "." in rest:
                return True
    return False


def days_left(cert, now=None):
    now = now or datetime.now(timezone.utc)
    return (cert["not_after"] - now).total_seconds() / 86400.0
