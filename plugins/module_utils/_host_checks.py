# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Checks of a target host before a release, for runbook.release.host_preflight.

Each ``check_*`` function returns ``(facts, problems)``; problems say what is wrong, with the value, and what to do.
Env files are read for their KEYS: a value is only ever tested for emptiness and then dropped, so no value can
reach a result, a log or an error message (bad lines are reported by line number, never by content).
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from datetime import datetime, timezone

from ansible_collections.runbook.release.plugins.module_utils._smoke_tls import CertificateError, parse_certificate

GIB = 1024.0 ** 3
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")


# --- env files ---------------------------------------------------------------------------------------------------

def _value_is_empty(rest, lines):
    """Whether the value starting at ``rest`` (after ``=``) is empty. Consumes continuation lines of a quoted
    multi-line value from the iterator ``lines``. Returns (empty, closed)."""
    rest = rest.strip()
    if rest[:1] in ("'", '"'):
        quote = rest[0]
        body = rest[1:]
        while True:
            end = _closing_quote(body, quote)
            if end >= 0:
                return end == 0, True
            try:
                _number, line = next(lines)
            except StopIteration:
                return False, False
            body += "\n" + line.rstrip("\r\n")
    if rest.startswith("#"):
        return True, True
    return rest.split(" #", 1)[0].strip() == "", True


def _closing_quote(body, quote):
    pos = 0
    while pos < len(body):
        char = body[pos]
        if char == "\\" and quote == '"':
            pos += 2
            continue
        if char == quote:
            return pos
        pos += 1
    return -1


def read_env_keys(text):
    """``{keys, empty, bad_lines, unclosed_line}`` of an env file's text (docker compose syntax).

    ``keys`` in file order (a repeated key once), ``empty`` the keys whose (last) value is empty, ``bad_lines`` the
    numbers of lines that are not ``KEY=VALUE`` (a bare ``VAR`` included)."""
    keys, empty, bad = [], set(), []
    unclosed = None
    lines = enumerate(text.splitlines(), 1)
    for number, line in lines:
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if stripped.startswith("export ") or stripped.startswith("export\t"):
            stripped = stripped[7:].lstrip()
        key, sep, rest = stripped.partition("=")
        key = key.strip()
        # A bare word (compose's "take VAR from the environment") cannot be told from a stray value, such as
        # a password pasted on its own line, so it is a bad line, reported by number: it never becomes a key.
        if not sep or not _KEY_RE.match(key):
            bad.append(number)
            continue
        is_empty, closed = _value_is_empty(rest, lines)
        if not closed:
            unclosed = number
        if key not in keys:
            keys.append(key)
        if is_empty:
            empty.add(key)
        else:
            empty.discard(key)
    return {"keys": keys, "empty": sorted(empty), "bad_lines": bad, "unclosed_line": unclosed}


def diff_env_keys(actual, example):
    """(missing, extra): keys of the example the env file lacks, and keys the example does not list. Sorted."""
    actual, example = set(actual), set(example)
    return sorted(example - actual), sorted(actual - example)


def check_env(env_file, example_file, nonempty_keys=(), fail_on_extra=False):
    facts = {"env_file": env_file, "env_example_file": example_file, "missing_env_keys": [], "extra_env_keys": [],
             "empty_env_keys": []}
    problems = []
    parsed = {}
    for role, path in (("env_file", env_file), ("env_example_file", example_file)):
        if path is None:
            continue
        try:
            with open(path, "r", encoding="utf-8", errors="replace") as handle:
                parsed[role] = read_env_keys(handle.read())
        except (IOError, OSError) as exc:
            problems.append("%s %s cannot be read (%s): %s" % (
                role, path, exc.strerror or type(exc).__name__,
                "create it, or point %s at the project's file" % role if exc.errno == 2 else "check its permissions"))
            continue
        info = parsed[role]
        if info["bad_lines"]:
            problems.append("%s %s has lines that are not KEY=VALUE (line %s): fix them; they are not shown, since they "
                            "may hold secrets" % (role, path, ", ".join(str(n) for n in info["bad_lines"][:10])))
        if info["unclosed_line"]:
            problems.append("%s %s has a quoted value starting on line %d that is never closed: close the quote"
                            % (role, path, info["unclosed_line"]))
    env = parsed.get("env_file")
    example = parsed.get("env_example_file")
    if env is not None and example is not None:
        facts["missing_env_keys"], facts["extra_env_keys"] = diff_env_keys(env["keys"], example["keys"])
        if facts["missing_env_keys"]:
            problems.append("%s lacks keys that %s lists: %s: add them (values are not compared)"
                            % (env_file, example_file, ", ".join(facts["missing_env_keys"])))
        if facts["extra_env_keys"] and fail_on_extra:
            problems.append("%s has keys that %s does not list: %s: add them to the example, or remove them"
                            % (env_file, example_file, ", ".join(facts["extra_env_keys"])))
    if env is not None:
        facts["empty_env_keys"] = [k for k in nonempty_keys if k in env["empty"] or k not in env["keys"]]
        if facts["empty_env_keys"]:
            problems.append("%s must set a non-empty value for: %s" % (env_file, ", ".join(facts["empty_env_keys"])))
    return facts, problems


# --- disk and memory -----------------------------------------------------------------------------------------

def nearest_existing(path):
    path = os.path.abspath(path)
    while not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path


def disk_usage(path):
    """Free space of the filesystem holding ``path`` (or its nearest existing parent), as ``df`` counts it:
    free is what an unprivileged user may still write, percent free of used plus that."""
    checked = nearest_existing(path)
    st = os.statvfs(checked)
    free = st.f_bavail * st.f_frsize
    used = (st.f_blocks - st.f_bfree) * st.f_frsize
    total = st.f_blocks * st.f_frsize
    pct = 100.0 * free / (used + free) if used + free else 0.0
    return {"path": path, "checked_path": checked, "free_gb": round(free / GIB, 2), "total_gb": round(total / GIB, 2),
            "free_pct": round(pct, 2)}


def judge_disk(usage, min_free_gb=None, min_free_pct=None):
    problems = []
    where = usage["path"] if usage["path"] == usage["checked_path"] else "%s (not there yet; checked %s)" % (
        usage["path"], usage["checked_path"])
    if min_free_gb is not None and usage["free_gb"] < min_free_gb:
        problems.append("disk: %s has %.2f GiB free, needs at least %g GiB: free space or grow the volume"
                        % (where, usage["free_gb"], min_free_gb))
    if min_free_pct is not None and usage["free_pct"] < min_free_pct:
        problems.append("disk: %s has %.1f %% free, needs at least %g %%: free space or grow the volume"
                        % (where, usage["free_pct"], min_free_pct))
    return problems


def mem_available_mb(meminfo_text):
    """MemAvailable of /proc/meminfo in MiB, or None when the kernel does not say."""
    match = re.search(r"^MemAvailable:\s+(\d+)\s*kB", meminfo_text or "", re.M)
    return int(match.group(1)) // 1024 if match else None


# --- TLS -----------------------------------------------------------------------------------------------------

def judge_certificate(not_after, min_days, now=None):
    """(days_left, problem or None) of a certificate ending at ``not_after`` (aware datetime)."""
    now = now or datetime.now(timezone.utc)
    days_left = (not_after - now).total_seconds() / 86400.0
    stamp = not_after.strftime("%Y-%m-%dT%H:%M:%SZ")
    if days_left <= 0:
        return days_left, "expired on %s (%.1f days ago): renew it now" % (stamp, abs(days_left))
    if days_left < min_days:
        return days_left, "expires on %s, in %.1f days, fewer than the %s required: renew it before releasing" % (
            stamp, days_left, min_days)
    return days_left, None


def _handshake(host, port, server_name, context, timeout):
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with context.wrap_socket(sock, server_hostname=server_name) as tls:
            return tls.getpeercert(binary_form=True)


def fetch_certificate(host, port, server_name, ca_file=None, timeout=10.0):
    """``(der, trust_error)``: the peer certificate in DER, verified against ``ca_file`` (else the system CAs) and
    for ``server_name``. When verification fails, the certificate is read again unverified, so its dates can still
    be reported, and ``trust_error`` says why it is not trusted."""
    context = ssl.create_default_context(cafile=ca_file)
    try:
        return _handshake(host, port, server_name, context, timeout), None
    except ssl.SSLCertVerificationError as exc:
        trust_error = exc.verify_message or str(exc)
    loose = ssl.create_default_context()
    loose.check_hostname = False
    loose.verify_mode = ssl.CERT_NONE
    return _handshake(host, port, server_name, loose, timeout), trust_error


def check_tls(endpoint, now=None):
    host, port = endpoint["host"], endpoint["port"]
    server_name = endpoint.get("server_name") or host
    facts = {"host": host, "port": port, "server_name": server_name, "trusted": None, "not_after": None,
             "days_left": None, "min_days": endpoint["min_days"]}
    label = "tls: %s:%s (%s)" % (host, port, server_name)
    try:
        der, trust_error = fetch_certificate(host, port, server_name, endpoint.get("ca_file"), endpoint["timeout"])
        cert = parse_certificate(der)
    except (OSError, ssl.SSLError) as exc:
        return facts, ["%s: no TLS handshake (%s): check that the endpoint is up and serves TLS on that port"
                       % (label, exc)]
    except CertificateError as exc:
        return facts, ["%s: the certificate cannot be read: %s" % (label, exc)]
    problems = []
    facts["trusted"] = trust_error is None
    if trust_error:
        problems.append("%s: the certificate is not trusted (%s)%s: install a certificate for %s signed by a trusted "
                        "CA, or set ca_file" % (label, trust_error,
                                                " against %s" % endpoint["ca_file"] if endpoint.get("ca_file") else "",
                                                server_name))
    days_left, problem = judge_certificate(cert["not_after"], endpoint["min_days"], now)
    facts["not_after"] = cert["not_after"].strftime("%Y-%m-%dT%H:%M:%SZ")
    facts["days_left"] = round(days_left, 2)
    if problem:
        problems.append("%s: the certificate %s" % (label, problem))
    return facts, problems
