"""Secret scrubbing: planted secrets never survive, data without secrets comes back unchanged."""

import json
import string

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ansible_collections.runbook.release.plugins.module_utils import _redact
from ansible_collections.runbook.release.plugins.module_utils._redact import MASK, Redactor, is_secret_key, scrub

# Secrets start with an upper-case 'S'; innocent text is lower-case, so it can never contain one by chance.
SECRETS = st.text(alphabet=string.ascii_letters + string.digits + "_-.~", min_size=6, max_size=24).map(lambda s: "S" + s)
INNOCENT_TEXT = st.text(alphabet=string.ascii_lowercase + string.digits + " -_./,", max_size=30)
INNOCENT_KEYS = st.text(alphabet=string.ascii_lowercase + "_", min_size=1, max_size=16).filter(lambda k: not is_secret_key(k))
LEAVES = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), INNOCENT_TEXT)
INNOCENT = st.recursive(LEAVES, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                        st.dictionaries(INNOCENT_KEYS, inner, max_size=4)),
                        max_leaves=20)

SECRET_KEYS = ["password", "DB_PASSWORD", "release_db_password", "passwd", "db_pass", "apiKey", "X-Api-Key",
               "api_key", "apikey", "client_secret", "aws_secret_access_key", "github_token", "accessToken",
               "Authorization", "Proxy-Authorization", "Cookie", "set-cookie", "private_key", "privateKey", "dsn",
               "record_dsn", "passphrase", "credentials"]
CARRIERS = [
    lambda s: {"key": SECRET_KEYS[0], "value": s},  # placeholder, replaced by a drawn secret key below
    lambda s: "postgresql://app:%s@127.0.0.1:55432/appdb" % s,
    lambda s: "s3://AKIA:%s@minio.internal/bucket" % s,
    lambda s: "https://deploy:%s@git.example.com/repo.git" % s,
    lambda s: "host=db port=5432 user=app password=%s dbname=appdb" % s,
    lambda s: "Authorization: Bearer %s" % s,
    lambda s: "Authorization: Basic %s" % s,
    lambda s: "curl -H 'Authorization: OAuth %s' https://api.example.com" % s,
    lambda s: {"headers": {"Authorization": "Bearer " + s, "Accept": "application/json"}},
    lambda s: "Cookie: session=%s; theme=dark" % s,
    lambda s: '{"token": "%s", "user": "bob"}' % s,
    lambda s: "api_key: %s" % s,
    lambda s: ["--password=%s" % s, "--verbose"],
    lambda s: "-----BEGIN OPENSSH PRIVATE KEY-----\n%s\n-----END OPENSSH PRIVATE KEY-----" % s,
    lambda s: "export DB_PASSWORD='%s'" % s,
]


def _plant(draw, data, carrier):
    """Put carrier somewhere inside data: a new dict key, a list element, or the top."""
    if isinstance(data, dict) and data and draw(st.booleans()):
        key = draw(st.sampled_from(sorted(data)))
        return dict(data, **{key: _plant(draw, data[key], carrier)})
    if isinstance(data, list) and data and draw(st.booleans()):
        index = draw(st.integers(0, len(data) - 1))
        return data[:index] + [_plant(draw, data[index], carrier)] + data[index + 1:]
    if isinstance(data, dict):
        return dict(data, **{draw(INNOCENT_KEYS) + "_x": carrier})
    if isinstance(data, list):
        index = draw(st.integers(0, len(data)))
        return data[:index] + [carrier] + data[index:]
    return [data, carrier]


@st.composite
def planted(draw):
    secret = draw(SECRETS)
    which = draw(st.integers(0, len(CARRIERS) - 1))
    carrier = CARRIERS[which](secret)
    if which == 0:
        carrier = {draw(st.sampled_from(SECRET_KEYS)): secret if draw(st.booleans()) else [secret, 12]}
    if draw(st.booleans()):
        carrier = {"nested": [{"deeper": carrier}]}
    return secret, _plant(draw, draw(INNOCENT), carrier)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(planted())
def test_a_planted_secret_never_survives(case):
    secret, data = case
    assert secret in json.dumps(data)
    assert secret not in json.dumps(scrub(data))


@settings(max_examples=300, deadline=None)
@given(SECRETS, INNOCENT, st.sampled_from(SECRET_KEYS))
def test_a_secret_seen_once_is_replaced_everywhere(secret, other, key):
    """Layer 4: an extra var's value that shows up later in plain text is still caught."""
    data = {"extra_vars": {key: secret}, "tasks": [{"name": "connect with %s now" % secret}], "other": other,
            "keys": {secret + "_suffix": 1}}
    out = json.dumps(scrub(data))
    assert secret not in out


@settings(max_examples=300, deadline=None)
@given(INNOCENT)
def test_data_without_secrets_comes_back_unchanged(data):
    text = json.dumps(data).lower()
    assume("bearer" not in text and "oauth" not in text)
    assert scrub(data) == data


@pytest.mark.parametrize("key", SECRET_KEYS)
def test_secret_keys(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["passed", "bypass", "keys", "sort_key", "s3_key", "tokenizer_name", "monkey",
                                 "version", "compass", "secretary_name", "author"])
def test_innocent_keys(key):
    assert not is_secret_key(key)


@pytest.mark.parametrize("text, kept", [
    ("postgresql://app:p@ss:w0rd@db:5432/app", "postgresql://app:" + MASK + "@db:5432/app"),
    ("ssh://git@github.com/org/repo.git", "ssh://git@github.com/org/repo.git"),
    ("smoke passed: true", "smoke passed: true"),
    ("password=\"two words\" next", 'password="' + MASK + '" next'),
    ("Authorization: token abc123def", "Authorization: " + MASK),
])
def test_text_rules(text, kept):
    assert Redactor().text(text) == kept


def test_no_log_results_stay_censored():
    result = {"_ansible_no_log": True, "changed": True, "msg": "the secret is Sabcdef", "stdout": "Sabcdef"}
    out = scrub({"results": [result]})
    assert out["results"][0]["changed"] is True
    assert "censored" in out["results"][0]
    assert "Sabcdef" not in json.dumps(out)


def test_placeholders_and_short_values_are_not_learned():
    redactor = Redactor()
    redactor.scrub({"password": "none", "token": "abc"})
    assert redactor.text("none of abc") == "none of abc"


def test_booleans_and_null_under_secret_keys_are_kept():
    assert scrub({"token_required": True, "password": None}) == {"token_required": True, "password": None}


def test_mask_is_not_learned_and_module_constants():
    redactor = Redactor([MASK, "Slongsecret"])
    assert redactor.text("x Slongsecret y") == "x %s y" % MASK
    assert _redact.MIN_LEARNED_LEN == 4
