# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Secret scrubbing, in layers, for anything the collection writes down (records, reports, journals).

1. ``no_log`` results: only what Ansible itself keeps of a censored result survives (``censor``).
2. Keys: the value of any key that names a secret (password, token, api_key, authorization, dsn, ...) is
   replaced, whatever its type, at any depth.
3. Text: secrets inside strings are replaced: the password of ``scheme://user:pass@host`` URLs,
   ``password=...``/``token: ...`` pairs (libpq DSNs, query strings, JSON or YAML text), ``Authorization``
   and ``Cookie`` header values, bearer tokens, PEM private keys.
4. Values: every secret value seen by layers 2 and 3 (for example an extra var ``db_password``) is
   remembered by the ``Redactor`` and replaced wherever it shows up again, in any string.

Data that holds no secret comes back equal to what went in.
"""

from __future__ import annotations

import re

MASK = "********"
MIN_LEARNED_LEN = 4

# Words that make a key secret when they are one of its components (``db_password``, ``X-Api-Key``,
# ``clientSecret``); ``key`` alone is not one of them (sort keys and S3 keys are not secrets).
SECRET_WORDS = frozenset((
    "password", "passwd", "pass", "passphrase", "token", "secret", "apikey", "authorization", "cookie",
    "dsn", "credential", "credentials", "privatekey",
))
SECRET_PAIRS = frozenset((("api", "key"), ("private", "key"), ("set", "cookie"), ("access", "token")))

_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_SPLIT = re.compile(r"[^a-z0-9]+")

_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S)
# Header lines whose whole value is secret.
_HEADER = re.compile(r"(?i)\b((?:proxy-)?authorization|set-cookie|cookie)(\s*[:=]\s*)([^\r\n]+)")
# Bearer and OAuth tokens wherever they appear.
_BEARER = re.compile(r"(?i)\b(bearer|oauth)(\s+)([A-Za-z0-9._~+/=-]{6,})")
# scheme://user:password@host (an unencoded password may hold '@' or ':').
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)([^/\s:@]*):([^\s/]+)@")
# key=value, key: value, "key": "value", key='value'; replaced only when the key names a secret.
_PAIR = re.compile(r"([A-Za-z0-9_.-]+)([\"']?\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;&'\"}\]]+)")
# Values that say "no secret here"; never learned, so they are not replaced everywhere.
_PLACEHOLDERS = frozenset(("null", "none", "true", "false", "omit", "undefined", "changeme"))


def _components(key):
    return [c for c in _SPLIT.split(_CAMEL.sub("_", key).lower()) if c]


_KEY_CACHE = {}


def is_secret_key(key):
    """True when a mapping key names a secret: one of its components is a secret word."""
    if not isinstance(key, str):
        return False
    known = _KEY_CACHE.get(key)
    if known is None:
        parts = _components(key)
        known = any(p in SECRET_WORDS for p in parts) or any(pair in SECRET_PAIRS for pair in zip(parts, parts[1:]))
        if len(_KEY_CACHE) < 4096:
            _KEY_CACHE[key] = known
    return known


def _may_hold_secret(text):
    """Cheap test before the text rules: every rule needs one of these marks."""
    if ":" in text or "=" in text or "-----" in text:
        return True
    lowered = text.lower()
    return "bearer" in lowered or "oauth" in lowered


def censor(result):
    """A ``no_log`` result as Ansible shows it: the keys it keeps, and a ``censored`` note."""
    kept = {k: result[k] for k in ("changed", "failed", "skipped", "unreachable", "attempts", "rc") if k in result}
    kept["censored"] = "the output has been hidden due to the fact that 'no_log: true' was specified for this result"
    return kept


class Redactor:
    """Scrubs data in all four layers and remembers the secret values it met (layer 4)."""

    def __init__(self, secrets=()):
        self._values = set()
        self._pattern = None
        for value in secrets:
            self.learn(value)

    def learn(self, value):
        """Remember a secret value so that it is replaced wherever it appears again."""
        if isinstance(value, (bool, type(None))):
            return
        if isinstance(value, (int, float)):
            value = str(value)
        if isinstance(value, str):
            value = value.strip()
            if (len(value) >= MIN_LEARNED_LEN and MASK not in value and value.lower() not in _PLACEHOLDERS
                    and value not in self._values):
                self._values.add(value)
                self._pattern = None
        elif isinstance(value, dict):
            for item in value.values():
                self.learn(item)
        elif isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                self.learn(item)

    def learn_from(self, data):
        """Walk data and remember every secret found by keys and text rules, without changing it."""
        self.scrub(data)

    def _masked(self, match, prefix):
        self.learn(match.group(3))
        return prefix + MASK

    def _pair(self, match):
        key, sep, value = match.groups()
        if not is_secret_key(key):
            return match.group(0)
        quote = value[:1] if value[:1] in "\"'" and value[-1:] == value[:1] and len(value) > 1 else ""
        self.learn(value[1:-1] if quote else value)
        return key + sep + quote + MASK + quote

    def text(self, value):
        """Scrub one string."""
        if not value or not isinstance(value, str):
            return value
        out = value
        if _may_hold_secret(value):
            out = _PEM.sub(MASK, out)
            out = _HEADER.sub(lambda m: self._masked(m, m.group(1) + m.group(2)), out)
            out = _BEARER.sub(lambda m: self._masked(m, m.group(1) + m.group(2)), out)
            out = _URL.sub(lambda m: self._masked(m, m.group(1) + m.group(2) + ":") + "@", out)
            out = _PAIR.sub(self._pair, out)
        if self._values:
            if self._pattern is None:
                ordered = sorted(self._values, key=len, reverse=True)
                self._pattern = re.compile("|".join(re.escape(v) for v in ordered))
            out = self._pattern.sub(MASK, out)
        return out

    def scrub(self, data):
        """Scrubbed copy of data (dicts, lists, tuples, strings, numbers); mapping keys are scrubbed too."""
        if isinstance(data, str):
            return self.text(data)
        if isinstance(data, dict):
            if data.get("_ansible_no_log") is True:
                return censor(data)
            out = {}
            for key, value in data.items():
                if is_secret_key(key) and not isinstance(value, (bool, type(None))):
                    self.learn(value)
                    value = MASK
                else:
                    value = self.scrub(value)
                out[self.text(key) if isinstance(key, str) else key] = value
            return out
        if isinstance(data, (list, tuple)):
            return [self.scrub(item) for item in data]
        if isinstance(data, (set, frozenset)):
            return [self.scrub(item) for item in sorted(data, key=repr)]
        return data


def scrub(data, secrets=()):
    """One-shot scrub with a fresh Redactor: keys first (so their values are learned), then everything."""
    redactor = Redactor(secrets)
    redactor.learn_from(data)
    return redactor.scrub(data)
