# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Reading images from a registry through the HTTP API v2, for runbook.release.image_verify.

- ``parse_reference()``: an image reference (``registry/repository:tag@digest``) as docker reads it.
- ``parse_challenges()``: the ``WWW-Authenticate`` challenges of a 401 (``Basic`` or ``Bearer``).
- ``select_manifest()``: the entry of a manifest list / OCI index for one platform.
- ``config_facts()``: version label and healthcheck of an image config.
- ``RegistryClient``: GET with anonymous, basic or bearer-token auth (the token flow of the distribution spec),
  through ``ansible.module_utils.urls`` (``Request``, what ``open_url`` wraps, given one TLS context per client:
  ``open_url`` builds one and loads the CA bundle on every call, about 100 ms each, two or more calls per image).
  Credentials and tokens only ever go into request headers.
- ``inspect_image()``: tag -> manifest (-> platform manifest) -> config, with every digest checked.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import socket
import ssl
from urllib.error import URLError
from urllib.parse import urlencode, urlsplit

from ansible.module_utils.common.text.converters import to_native
from ansible.module_utils.urls import Request, make_context

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
INDEX_TYPES = (DOCKER_LIST, OCI_INDEX)
MANIFEST_TYPES = (DOCKER_MANIFEST, OCI_MANIFEST)
ACCEPT = ", ".join((OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST))

DEFAULT_REGISTRY = "docker.io"
_HUB_NAMES = ("docker.io", "index.docker.io", "registry-1.docker.io")
_HUB_API = "registry-1.docker.io"

# From the distribution reference grammar (github.com/distribution/reference).
_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_REPOSITORY_RE = re.compile(r"^%s(?:/%s)*$" % (_COMPONENT, _COMPONENT))
_TAG_RE = re.compile(r"^[\w][\w.-]{0,127}$")
_DIGEST_RE = re.compile(r"^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$")
_REGISTRY_RE = re.compile(r"^(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(?::[0-9]+)?$")


class RegistryError(Exception):
    """The registry could not be asked (unreachable, refused the credentials, answered nonsense)."""


class Reference(object):
    """An image reference split the way docker splits it."""

    def __init__(self, registry, repository, tag=None, digest=None):
        self.registry = registry
        self.repository = repository
        self.tag = tag
        self.digest = digest

    @property
    def name(self):
        return "%s/%s" % (self.registry, self.repository)

    def pinned(self, digest):
        """The reference by digest (what to verify a signature of, or to deploy)."""
        return "%s@%s" % (self.name, digest)

    def __str__(self):
        return self.name + (":" + self.tag if self.tag else "") + ("@" + self.digest if self.digest else "")


def parse_reference(text, default_registry=DEFAULT_REGISTRY):
    """A :class:`Reference` of ``text``; ``ValueError`` saying what is wrong with it."""
    if not isinstance(text, str) or not text.strip() or text != text.strip():
        raise ValueError("%r is not an image reference: use registry/repository:tag (for example "
                         "registry.example.com/app/api:v1.2.3)" % (text,))
    name, _sep, digest = text.partition("@")
    tag = None
    last = name.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = name.rsplit(":", 1)
    first, sep, rest = name.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        registry, repository = first, rest
    else:
        registry, repository = default_registry or DEFAULT_REGISTRY, name
    if not _REGISTRY_RE.match(registry):
        raise ValueError("%r: registry %r is not a host name with an optional port" % (text, registry))
    if registry in _HUB_NAMES and "/" not in repository:
        repository = "library/" + repository
    if not _REPOSITORY_RE.match(repository):
        raise ValueError("%r: repository %r is not valid: lower-case letters, digits and separators (. _ __ -), "
                         "components joined by /" % (text, repository))
    if tag is not None and not _TAG_RE.match(tag):
        raise ValueError("%r: tag %r is not valid: up to 128 letters, digits, _, . and -, not starting with . or -"
                         % (text, tag))
    if digest and not _DIGEST_RE.match(digest):
        raise ValueError("%r: digest %r is not valid: use algorithm:hex, for example sha256:<64 hex digits>"
                         % (text, digest))
    if tag is None and not digest:
        tag = "latest"
    return Reference(registry, repository, tag, digest or None)


def is_valid_tag(text):
    return isinstance(text, str) and bool(_TAG_RE.match(text))


def api_host(registry):
    """Where the API of a registry answers (Docker Hub's is not docker.io)."""
    return _HUB_API if registry in _HUB_NAMES else registry


def is_loopback(registry):
    host = registry.rsplit(":", 1)[0] if not registry.endswith("]") else registry
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def scheme_for(registry, setting="auto"):
    """``http`` or ``https``: ``auto`` speaks plain HTTP to loopback registries only (as docker does)."""
    if setting in ("http", "https"):
        return setting
    return "http" if is_loopback(registry) else "https"


# --- authentication --------------------------------------------------------------------------------------------

_AUTH_PARAM = re.compile(r'\s*([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,"]*))\s*(?:,|$)')
_AUTH_SCHEME = re.compile(r"\s*,?\s*([A-Za-z][A-Za-z0-9_-]*)(?:\s+|$)")


def parse_challenges(headers):
    """``[(scheme, {param: value})]`` of ``WWW-Authenticate`` header values (a string or a list of them).

    Schemes are lower-cased, parameter names too; quoted values are unescaped. Several challenges may share a
    header (``Basic realm="a", Bearer realm="b"``)."""
    if isinstance(headers, str):
        headers = [headers]
    out = []
    for header in headers or []:
        pos, text = 0, header or ""
        while pos < len(text):
            match = _AUTH_SCHEME.match(text, pos)
            if not match:
                break
            scheme, params = match.group(1).lower(), {}
            pos = match.end()
            while pos < len(text):
                param = _AUTH_PARAM.match(text, pos)
                if not param:
                    break
                value = param.group(2)
                value = re.sub(r"\\(.)", r"\1", value) if value is not None else param.group(3)
                params[param.group(1).lower()] = value
                pos = param.end()
            out.append((scheme, params))
    return out


def token_url(params, repository):
    """The token endpoint URL of a Bearer challenge, asking for pull access to ``repository``."""
    realm = params.get("realm")
    if not realm or urlsplit(realm).scheme not in ("http", "https"):
        raise RegistryError("the registry asks for a bearer token but its challenge has no usable realm (%r)" % (realm,))
    query = []
    if params.get("service"):
        query.append(("service", params["service"]))
    query.append(("scope", params.get("scope") or "repository:%s:pull" % repository))
    return realm + ("&" if "?" in realm else "?") + urlencode(query)


def basic_header(username, password):
    raw = ("%s:%s" % (username, password or "")).encode("utf-8")
    return "Basic " + base64.b64encode(raw).decode("ascii")


def error_codes(body):
    """The ``errors[].code`` of a registry error answer, for messages (never its whole body)."""
    try:
        doc = json.loads(body or b"{}")
        return [str(e.get("code")) for e in doc.get("errors") or [] if isinstance(e, dict) and e.get("code")]
    except (ValueError, AttributeError, TypeError):
        return []


class RegistryClient(object):
    """GET requests to one registry's API v2, authenticating as its 401 challenges ask."""

    def __init__(self, registry, scheme="auto", username=None, password=None, timeout=30, validate_certs=True,
                 ca_path=None, opener=None):
        self.registry = registry
        self.base = "%s://%s" % (scheme_for(registry, scheme), api_host(registry))
        self.username = username
        self.password = password
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.ca_path = ca_path
        self.opener = opener or self._open
        self.auth = {}  # repository -> Authorization header value; never leaves this object
        self.requests = 0
        self._tls = None

    def _context(self):
        """The TLS context, made once per client (also used when an http registry redirects to https storage)."""
        if self._tls is None:
            self._tls = make_context(cafile=self.ca_path, validate_certs=self.validate_certs)
        return self._tls

    def _open(self, url, headers):
        """(status, headers, body) of a GET; HTTP errors are answers, network errors raise RegistryError."""
        try:
            resp = Request().open("GET", url, headers=headers, timeout=self.timeout, validate_certs=self.validate_certs,
                                  ca_path=self.ca_path, follow_redirects="safe", unredirected_headers=["Authorization"],
                                  use_netrc=False, http_agent="runbook.release.image_verify",
                                  context=self._context())
            return resp.getcode(), resp.headers, resp.read()
        except URLError as exc:
            if hasattr(exc, "code"):
                try:
                    body = exc.read()
                except Exception:  # pylint: disable=broad-except
                    body = b""
                return exc.code, exc.headers, body
            raise RegistryError("cannot reach %s: %s" % (url, to_native(getattr(exc, "reason", exc))))
        except (socket.timeout, ssl.SSLError, OSError) as exc:
            raise RegistryError("cannot reach %s: %s" % (url, to_native(exc)))

    def _request(self, url, headers):
        self.requests += 1
        return self.opener(url, headers)

    def get(self, repository, path, accept=None):
        """(status, headers, body) of ``/v2/<repository>/<path>``, authenticating once if challenged."""
        url = "%s/v2/%s/%s" % (self.base, repository, path)
        headers = {"Accept": accept} if accept else {}
        if repository in self.auth:
            headers["Authorization"] = self.auth[repository]
        status, resp_headers, body = self._request(url, headers)
        if status != 401:
            return status, resp_headers, body
        self.auth[repository] = headers["Authorization"] = self._authenticate(repository, resp_headers)
        status, resp_headers, body = self._request(url, headers)
        if status == 401:
            raise RegistryError("%s refused the %s for pull access to %s (401 %s): check username and password, and "
                                "that the account may pull this repository"
                                % (self.registry, "credentials" if self.username else "anonymous token", repository,
                                   ", ".join(error_codes(body)) or "UNAUTHORIZED"))
        return status, resp_headers, body

    def _authenticate(self, repository, resp_headers):
        values = resp_headers.get_all("WWW-Authenticate") if hasattr(resp_headers, "get_all") else \
            [v for k, v in dict(resp_headers or {}).items() if k.lower() == "www-authenticate"]
        challenges = dict(parse_challenges(values or []))
        if "bearer" in challenges:
            return "Bearer " + self._token(challenges["bearer"], repository)
        if "basic" in challenges:
            if not self.username:
                raise RegistryError("%s needs credentials to read %s (Basic auth): set username and password"
                                    % (self.registry, repository))
            return basic_header(self.username, self.password)
        raise RegistryError("%s answered 401 for %s without a Basic or Bearer challenge (WWW-Authenticate: %s): "
                            "this registry's authentication is not supported"
                            % (self.registry, repository, ", ".join(sorted(challenges)) or "none"))

    def _token(self, params, repository):
        url = token_url(params, repository)
        headers = {"Authorization": basic_header(self.username, self.password)} if self.username else {}
        status, _headers, body = self._request(url, headers)
        if status != 200:
            if self.username:
                raise RegistryError("the token service %s refused pull access to %s for user %s (HTTP %s): check "
                                    "username and password" % (url.split("?")[0], repository, self.username, status))
            raise RegistryError("the token service %s refused anonymous pull access to %s (HTTP %s): set username "
                                "and password" % (url.split("?")[0], repository, status))
        try:
            doc = json.loads(body)
            token = doc.get("token") or doc.get("access_token")
        except (ValueError, AttributeError):
            token = None
        if not token or not isinstance(token, str):
            raise RegistryError("the token service %s answered without a token" % url.split("?")[0])
        return token


# --- manifests and configs -------------------------------------------------------------------------------------

def parse_platform(text):
    """``{os, architecture, variant}`` of ``os/arch[/variant]``; ``ValueError`` otherwise."""
    parts = (text or "").split("/")
    if len(parts) not in (2, 3) or not all(parts):
        raise ValueError("platform %r is not os/architecture[/variant] (for example linux/amd64 or linux/arm64/v8)"
                         % (text,))
    return {"os": parts[0], "architecture": parts[1], "variant": parts[2] if len(parts) == 3 else None}


def platform_text(platform):
    platform = platform or {}
    parts = [platform.get("os") or "?", platform.get("architecture") or "?"]
    if platform.get("variant"):
        parts.append(platform["variant"])
    return "/".join(parts)


def _is_attestation(entry):
    annotations = entry.get("annotations") or {}
    return "vnd.docker.reference.type" in annotations or platform_text(entry.get("platform")) == "unknown/unknown"


def select_manifest(index, platform):
    """The index entry for ``platform`` (``os/arch[/variant]``), or None.

    Attestation entries (``unknown/unknown``, BuildKit's provenance) are never picked. Without a requested variant
    an entry without one wins; ``arm64`` with no variant and ``arm64/v8`` are the same platform."""
    want = parse_platform(platform)
    exact, loose = [], []
    for entry in index.get("manifests") or []:
        if not isinstance(entry, dict) or _is_attestation(entry):
            continue
        got = entry.get("platform") or {}
        if got.get("os") != want["os"] or got.get("architecture") != want["architecture"]:
            continue
        variant = got.get("variant")
        if want["architecture"] == "arm64":
            variant = variant or "v8"
            wanted = want["variant"] or "v8"
        else:
            wanted = want["variant"]
        if variant == wanted:
            exact.append(entry)
        elif want["variant"] is None:
            loose.append(entry)
    chosen = exact or loose
    return chosen[0] if chosen else None


def index_platforms(index):
    return [platform_text(e.get("platform")) for e in index.get("manifests") or []
            if isinstance(e, dict) and not _is_attestation(e)]


def is_index(media_type, doc):
    if media_type in INDEX_TYPES:
        return True
    return media_type not in MANIFEST_TYPES and isinstance(doc, dict) and "manifests" in doc and "config" not in doc


def config_facts(config, label_key):
    """Version label, healthcheck and platform of an image config (docker's and OCI's are alike here)."""
    inner = (config or {}).get("config") or {}
    labels = inner.get("Labels") or {}
    test = (inner.get("Healthcheck") or {}).get("Test") or []
    return {"version_label": labels.get(label_key) if isinstance(labels, dict) else None,
            "healthcheck": bool(test) and test[0] != "NONE",
            "platform": platform_text({"os": config.get("os"), "architecture": config.get("architecture"),
                                       "variant": config.get("variant")})}


def sha256_digest(body):
    return "sha256:" + hashlib.sha256(body).hexdigest()


def _header(headers, name):
    if headers is None:
        return None
    value = headers.get(name)
    if value is None and isinstance(headers, dict):
        for key, item in headers.items():
            if key.lower() == name.lower():
                return item
    return value


def _load(body, what):
    try:
        doc = json.loads(body)
    except ValueError as exc:
        raise RegistryError("%s is not JSON: %s" % (what, exc))
    if not isinstance(doc, dict):
        raise RegistryError("%s is not a JSON object" % what)
    return doc


def _content_problem(expected, body, what):
    """Digests are content addresses: the bytes must hash to the digest they were asked for by."""
    if expected.startswith("sha256:") and sha256_digest(body) != expected:
        return "%s does not match its digest %s (got %s): the registry or a proxy altered it" % (
            what, expected, sha256_digest(body))
    return None


def inspect_image(client, ref, platform, label_key):
    """What the registry holds for ``ref``: ``{exists, digest, platform_digest, media_type, version_label,
    healthcheck, platform}`` plus ``problems`` (image content problems; not the policy, see judge())."""
    out = {"exists": False, "digest": None, "platform_digest": None, "media_type": None, "version_label": None,
           "healthcheck": None, "platform": None, "problems": []}
    where = "%s in repository %s of %s" % (("digest " + ref.digest) if ref.digest else ("tag " + ref.tag),
                                           ref.repository, ref.registry)
    status, headers, body = client.get(ref.repository, "manifests/" + (ref.digest or ref.tag), ACCEPT)
    if status == 404:
        out["problems"].append("%s: the %s does not exist (%s): push the image, or check the version and repository"
                               % (ref, where, ", ".join(error_codes(body)) or "404"))
        return out
    if status != 200:
        raise RegistryError("%s answered HTTP %s for the manifest of %s (%s)"
                            % (ref.registry, status, ref, ", ".join(error_codes(body)) or "no error code"))
    out["exists"] = True
    computed = sha256_digest(body)
    announced = _header(headers, "Docker-Content-Digest")
    out["digest"] = ref.digest or announced or computed
    problem = _content_problem(out["digest"], body, "the manifest of %s" % ref)
    if problem:
        out["problems"].append(problem)
        return out
    manifest = _load(body, "the manifest of %s" % ref)
    media_type = manifest.get("mediaType") or (_header(headers, "Content-Type") or "").split(";")[0].strip()
    out["media_type"] = media_type
    if manifest.get("schemaVersion") == 1:
        out["problems"].append("%s: the manifest is schema 1 (deprecated, no image config): push the image again "
                               "with a current docker or buildkit" % ref)
        return out
    if is_index(media_type, manifest):
        entry = select_manifest(manifest, platform)
        if entry is None:
            out["problems"].append("%s: the index has no image for platform %s (it has %s): build and push that "
                                   "platform, or set platform" % (ref, platform,
                                                                  ", ".join(index_platforms(manifest)) or "none"))
            return out
        out["platform_digest"] = entry.get("digest")
        status, headers, body = client.get(ref.repository, "manifests/" + entry["digest"], ACCEPT)
        if status != 200:
            out["problems"].append("%s: the index names %s for %s but the registry answers HTTP %s for it: push "
                                   "the image again" % (ref, entry["digest"], platform, status))
            return out
        problem = _content_problem(entry["digest"], body, "the %s manifest of %s" % (platform, ref))
        if problem:
            out["problems"].append(problem)
            return out
        manifest = _load(body, "the %s manifest of %s" % (platform, ref))
    config_digest = (manifest.get("config") or {}).get("digest")
    if not config_digest:
        out["problems"].append("%s: the manifest names no image config (%s): it is not a container image"
                               % (ref, manifest.get("mediaType") or media_type or "no media type"))
        return out
    status, headers, body = client.get(ref.repository, "blobs/" + config_digest)
    if status != 200:
        out["problems"].append("%s: the registry answers HTTP %s for the image config %s: push the image again"
                               % (ref, status, config_digest))
        return out
    problem = _content_problem(config_digest, body, "the image config of %s" % ref)
    if problem:
        out["problems"].append(problem)
        return out
    out.update(config_facts(_load(body, "the image config of %s" % ref), label_key))
    if out["platform_digest"]:
        want = parse_platform(platform)
        if out["platform"].split("/")[:2] != [want["os"], want["architecture"]]:
            out["problems"].append("%s: the index lists %s as %s, but its config says %s: the index is wrong; build "
                                   "and push the image again" % (ref, out["platform_digest"], platform, out["platform"]))
    return out


def judge(ref, facts, expected_version, label_key, require_healthcheck):
    """Policy problems of an inspected image: the version label and the healthcheck."""
    problems = []
    if not facts["exists"] or facts["healthcheck"] is None:
        return problems
    label = facts["version_label"]
    if label is None:
        problems.append("%s: the image has no label %s%s: build it with --label %s=<version>"
                        % (ref, label_key, " (expected %s)" % expected_version if expected_version else "", label_key))
    elif expected_version is not None and label != expected_version:
        problems.append("%s: label %s is %r, expected %r: the tag points at an image built for another version"
                        % (ref, label_key, label, expected_version))
    if require_healthcheck and not facts["healthcheck"]:
        problems.append("%s: the image defines no healthcheck: add HEALTHCHECK to its Dockerfile, so the rollout can "
                        "wait for healthy containers" % ref)
    return problems
