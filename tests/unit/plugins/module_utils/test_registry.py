"""module_utils/_registry: references, auth challenges, manifest list selection, config facts and the judge.
The HTTP side (anonymous, basic, bearer) runs against the sandbox registry in tests/integration/targets/image_verify."""

from __future__ import annotations

import base64
import json
from email.message import Message
from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import given, strategies as st

from ansible_collections.runbook.release.plugins.module_utils import _registry as reg

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64


# --- references ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, registry, repository, tag, digest", [
    ("127.0.0.1:5000/demo/api:v1.2.3", "127.0.0.1:5000", "demo/api", "v1.2.3", None),
    ("localhost/app", "localhost", "app", "latest", None),
    ("localhost:5000/app", "localhost:5000", "app", "latest", None),
    ("ghcr.io/acme/api@" + DIGEST_A, "ghcr.io", "acme/api", None, DIGEST_A),
    ("ghcr.io/acme/api:v1@" + DIGEST_A, "ghcr.io", "acme/api", "v1", DIGEST_A),
    ("ubuntu", "docker.io", "library/ubuntu", "latest", None),
    ("ubuntu:22.04", "docker.io", "library/ubuntu", "22.04", None),
    ("bitnami/redis:7", "docker.io", "bitnami/redis", "7", None),
    ("docker.io/nginx", "docker.io", "library/nginx", "latest", None),
    ("[::1]:5000/demo/web:v1", "[::1]:5000", "demo/web", "v1", None),
    ("registry.example.com:8443/a/b/c:1.0_rc-1", "registry.example.com:8443", "a/b/c", "1.0_rc-1", None),
])
def test_parse_reference(text, registry, repository, tag, digest):
    ref = reg.parse_reference(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == (registry, repository, tag, digest)


def test_default_registry_applies_to_names_without_one():
    ref = reg.parse_reference("app/api:v1", default_registry="registry.example.com")
    assert ref.name == "registry.example.com/app/api"
    assert ref.pinned(DIGEST_B) == "registry.example.com/app/api@" + DIGEST_B
    assert str(ref) == "registry.example.com/app/api:v1"


@pytest.mark.parametrize("text, message", [
    ("", "not an image reference"),
    (" demo/api:v1", "not an image reference"),
    ("127.0.0.1:5000/Demo/API:v1", "repository 'Demo/API' is not valid"),
    ("127.0.0.1:5000/demo/api:-bad", "tag '-bad' is not valid"),
    ("127.0.0.1:5000/demo/api@sha256:short", "digest 'sha256:short' is not valid"),
    ("bad_host:x/demo:v1", "registry .bad_host:x. is not a host name with an optional port"),
])
def test_parse_reference_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        reg.parse_reference(text)


@pytest.mark.parametrize("registry, setting, scheme", [
    ("127.0.0.1:5000", "auto", "http"),
    ("localhost:5000", "auto", "http"),
    ("[::1]:5000", "auto", "http"),
    ("127.8.9.1", "auto", "http"),
    ("registry.example.com", "auto", "https"),
    ("10.0.0.5:5000", "auto", "https"),
    ("127.0.0.1:5000", "https", "https"),
    ("registry.example.com", "http", "http"),
])
def test_scheme_for(registry, setting, scheme):
    assert reg.scheme_for(registry, setting) == scheme


def test_docker_hub_api_host():
    assert reg.api_host("docker.io") == "registry-1.docker.io"
    assert reg.api_host("ghcr.io") == "ghcr.io"


# --- challenges ------------------------------------------------------------------------------------------------

def test_bearer_challenge_of_docker_hub():
    header = ('Bearer realm="https://auth.docker.io/token",service="registry.docker.io",'
              'scope="repository:library/ubuntu:pull"')
    assert reg.parse_challenges(header) == [("bearer", {
        "realm": "https://auth.docker.io/token", "service": "registry.docker.io",
        "scope": "repository:library/ubuntu:pull"})]


def test_basic_challenge_and_case_insensitive_names():
    assert reg.parse_challenges('BASIC Realm="Registry Realm"') == [("basic", {"realm": "Registry Realm"})]


def test_several_challenges_in_one_header_and_in_several():
    parsed = reg.parse_challenges(['Basic realm="a, b", Bearer realm="https://t.example/token",service=reg',
                                   'Negotiate'])
    assert parsed == [("basic", {"realm": "a, b"}),
                      ("bearer", {"realm": "https://t.example/token", "service": "reg"}),
                      ("negotiate", {})]


def test_escaped_quotes_and_scope_with_several_actions():
    parsed = reg.parse_challenges(r'Bearer realm="https://t.example/token",scope="repository:a/b:pull,push",'
                                  r'error="insufficient_scope",x="say \"hi\""')
    assert parsed[0][1]["scope"] == "repository:a/b:pull,push"
    assert parsed[0][1]["error"] == "insufficient_scope"
    assert parsed[0][1]["x"] == 'say "hi"'


def test_empty_or_garbage_challenges():
    assert reg.parse_challenges("") == []
    assert reg.parse_challenges(None) == []
    assert reg.parse_challenges("=garbage") == []


def test_token_url_uses_the_challenge_scope_or_asks_for_pull():
    url = reg.token_url({"realm": "https://auth.example/token", "service": "reg.example"}, "acme/api")
    parts = urlsplit(url)
    assert parts.netloc == "auth.example" and parts.path == "/token"
    assert parse_qs(parts.query) == {"service": ["reg.example"], "scope": ["repository:acme/api:pull"]}
    url = reg.token_url({"realm": "https://auth.example/token?x=1", "scope": "repository:acme/api:pull"}, "other")
    assert parse_qs(urlsplit(url).query) == {"x": ["1"], "scope": ["repository:acme/api:pull"]}


@pytest.mark.parametrize("params", [{}, {"realm": "ftp://x/token"}, {"realm": "/token"}])
def test_token_url_needs_a_usable_realm(params):
    with pytest.raises(reg.RegistryError, match="no usable realm"):
        reg.token_url(params, "a/b")


def test_basic_header():
    value = reg.basic_header("ci", "s3cr:et")
    assert base64.b64decode(value.split(" ", 1)[1]) == b"ci:s3cr:et"


def test_error_codes_never_return_the_body():
    body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown", "detail": "x"}]})
    assert reg.error_codes(body.encode()) == ["MANIFEST_UNKNOWN"]
    assert reg.error_codes(b"<html>not json</html>") == []
    assert reg.error_codes(b'["list"]') == []


class _Recorder(object):
    """Stands in for the network in front of the client's auth logic: answers from a script, records requests."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.seen = []

    def __call__(self, url, headers):
        self.seen.append((url, dict(headers)))
        return self.answers.pop(0)


def _headers(**items):
    msg = Message()
    for key, value in items.items():
        msg[key.replace("_", "-")] = value
    return msg


def test_client_bearer_flow_asks_the_token_service_once_per_repository():
    challenge = _headers(WWW_Authenticate='Bearer realm="https://auth.example/token",service="reg"')
    net = _Recorder([(401, challenge, b""), (200, _headers(), b'{"token": "T0K3N"}'), (200, _headers(), b"{}"),
                     (200, _headers(), b"{}")])
    client = reg.RegistryClient("reg.example", username="ci", password="pw", opener=net)
    assert client.get("acme/api", "manifests/v1", reg.ACCEPT)[0] == 200
    assert client.get("acme/api", "blobs/" + DIGEST_A)[0] == 200
    urls = [u for u, _h in net.seen]
    assert urls[0] == "https://reg.example/v2/acme/api/manifests/v1"
    assert urls[1].startswith("https://auth.example/token?service=reg&scope=repository%3Aacme%2Fapi%3Apull")
    assert net.seen[1][1]["Authorization"] == reg.basic_header("ci", "pw")
    assert net.seen[2][1]["Authorization"] == "Bearer T0K3N"
    assert net.seen[3][1]["Authorization"] == "Bearer T0K3N"
    assert client.requests == 4


def test_client_basic_flow_and_refused_credentials():
    net = _Recorder([(401, _headers(WWW_Authenticate='Basic realm="r"'), b""),
                     (401, _headers(), b'{"errors": [{"code": "UNAUTHORIZED"}]}')])
    client = reg.RegistryClient("127.0.0.1:5001", username="ci", password="wrong-pw", opener=net)
    with pytest.raises(reg.RegistryError) as info:
        client.get("acme/api", "manifests/v1")
    assert "refused the credentials" in str(info.value) and "UNAUTHORIZED" in str(info.value)
    assert "wrong-pw" not in str(info.value)
    assert net.seen[0][0].startswith("http://127.0.0.1:5001/v2/")


def test_client_basic_without_credentials_says_to_set_them():
    net = _Recorder([(401, _headers(WWW_Authenticate='Basic realm="r"'), b"")])
    with pytest.raises(reg.RegistryError, match="needs credentials.*set username and password"):
        reg.RegistryClient("reg.example", opener=net).get("a/b", "manifests/v1")


def test_client_anonymous_token_refused():
    net = _Recorder([(401, _headers(WWW_Authenticate='Bearer realm="https://t.example/token"'), b""),
                     (403, _headers(), b"")])
    with pytest.raises(reg.RegistryError, match="refused anonymous pull access to a/b.*set username"):
        reg.RegistryClient("reg.example", opener=net).get("a/b", "manifests/v1")


# --- manifest lists ----------------------------------------------------------------------------------------------

def _entry(digest, os_="linux", arch="amd64", variant=None, attestation=False):
    platform = {"os": os_, "architecture": arch}
    if variant:
        platform["variant"] = variant
    entry = {"mediaType": reg.OCI_MANIFEST, "digest": digest, "size": 1, "platform": platform}
    if attestation:
        entry["annotations"] = {"vnd.docker.reference.type": "attestation-manifest",
                                "vnd.docker.reference.digest": DIGEST_A}
    return entry


def _index(*entries):
    return {"schemaVersion": 2, "mediaType": reg.OCI_INDEX, "manifests": list(entries)}


def test_select_picks_the_platform_and_skips_attestations():
    index = _index(_entry("sha256:att", "unknown", "unknown", attestation=True),
                   _entry("sha256:arm", arch="arm64", variant="v8"),
                   _entry("sha256:amd"), _entry("sha256:att2", attestation=True))
    assert reg.select_manifest(index, "linux/amd64")["digest"] == "sha256:amd"
    assert reg.select_manifest(index, "linux/arm64")["digest"] == "sha256:arm"
    assert reg.select_manifest(index, "linux/arm64/v8")["digest"] == "sha256:arm"
    assert reg.select_manifest(index, "linux/s390x") is None
    assert reg.select_manifest(index, "windows/amd64") is None
    assert reg.index_platforms(index) == ["linux/arm64/v8", "linux/amd64"]


def test_arm_variants_and_amd64_microarchitecture_levels():
    index = _index(_entry("sha256:v6", arch="arm", variant="v6"), _entry("sha256:v7", arch="arm", variant="v7"),
                   _entry("sha256:v3", arch="amd64", variant="v3"), _entry("sha256:plain"))
    assert reg.select_manifest(index, "linux/arm/v7")["digest"] == "sha256:v7"
    assert reg.select_manifest(index, "linux/arm/v5") is None
    assert reg.select_manifest(index, "linux/arm")["digest"] == "sha256:v6"  # no variant asked: first one
    assert reg.select_manifest(index, "linux/amd64")["digest"] == "sha256:plain"  # an entry without variant wins
    assert reg.select_manifest(index, "linux/amd64/v3")["digest"] == "sha256:v3"


def test_arm64_without_variant_matches_v8():
    index = _index(_entry("sha256:arm64", arch="arm64"))
    assert reg.select_manifest(index, "linux/arm64/v8")["digest"] == "sha256:arm64"


@pytest.mark.parametrize("platform", ["linux", "linux/", "/amd64", "a/b/c/d", ""])
def test_bad_platform(platform):
    with pytest.raises(ValueError, match="is not os/architecture"):
        reg.select_manifest(_index(), platform)


def test_is_index_by_media_type_or_shape():
    assert reg.is_index(reg.DOCKER_LIST, {})
    assert reg.is_index(reg.OCI_INDEX, {})
    assert reg.is_index("", {"manifests": []})  # OCI index without mediaType
    assert not reg.is_index(reg.OCI_MANIFEST, {"config": {}, "layers": []})
    assert not reg.is_index("", {"config": {}, "manifests": []})


# --- image config ------------------------------------------------------------------------------------------------

def test_config_facts_of_the_demo_image():
    config = {"architecture": "amd64", "os": "linux", "config": {
        "Labels": {"org.opencontainers.image.version": "v1.2.3"},
        "Healthcheck": {"Test": ["CMD", "python3", "/app/healthcheck.py"], "Interval": 2000000000}}}
    assert reg.config_facts(config, "org.opencontainers.image.version") == {
        "version_label": "v1.2.3", "healthcheck": True, "platform": "linux/amd64"}


@pytest.mark.parametrize("inner, healthcheck", [
    ({}, False),
    ({"Healthcheck": {"Test": ["NONE"]}}, False),  # HEALTHCHECK NONE disables an inherited one
    ({"Healthcheck": {"Test": []}}, False),
    ({"Healthcheck": {"Test": ["CMD-SHELL", "curl -f localhost"]}}, True),
    ({"Labels": None}, False),
])
def test_config_facts_healthcheck(inner, healthcheck):
    facts = reg.config_facts({"os": "linux", "architecture": "arm64", "variant": "v8", "config": inner}, "v")
    assert facts["healthcheck"] is healthcheck
    assert facts["version_label"] is None
    assert facts["platform"] == "linux/arm64/v8"


def test_judge_lists_every_problem():
    facts = {"exists": True, "version_label": "v1.2.2", "healthcheck": False}
    problems = reg.judge("r/a:v1.2.3", facts, "v1.2.3", "org.opencontainers.image.version", True)
    assert len(problems) == 2
    assert "label org.opencontainers.image.version is 'v1.2.2', expected 'v1.2.3'" in problems[0]
    assert "defines no healthcheck" in problems[1]
    assert reg.judge("r/a:v1", dict(facts, healthcheck=False, version_label="v1"), "v1", "k", False) == []


def test_judge_missing_label_and_no_expectation():
    facts = {"exists": True, "version_label": None, "healthcheck": True}
    assert "has no label k (expected v1)" in reg.judge("r/a:v1", facts, "v1", "k", True)[0]
    assert "has no label k:" in reg.judge("r/a@" + DIGEST_A, facts, None, "k", True)[0]
    assert reg.judge("r/a@" + DIGEST_A, dict(facts, version_label="anything"), None, "k", True) == []


def test_judge_says_nothing_about_an_image_that_could_not_be_read():
    assert reg.judge("r/a:v1", {"exists": False, "version_label": None, "healthcheck": None}, "v1", "k", True) == []
    assert reg.judge("r/a:v1", {"exists": True, "version_label": None, "healthcheck": None}, "v1", "k", True) == []


def test_content_problem_checks_sha256_digests_only():
    body = b'{"schemaVersion": 2}'
    assert reg._content_problem(reg.sha256_digest(body), body, "m") is None
    assert "does not match its digest" in reg._content_problem(DIGEST_A, body, "m")
    assert reg._content_problem("sha512:" + "c" * 128, body, "m") is None


@given(st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20),
       st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789._-", min_size=0, max_size=30))
def test_parse_reference_round_trips(name, tag):
    tag = ("v" + tag)[:128]
    ref = reg.parse_reference("registry.example.com:5000/team/%s:%s" % (name, tag))
    assert str(ref) == "registry.example.com:5000/team/%s:%s" % (name, tag)
    assert reg.parse_reference(str(ref)).repository == "team/" + name
