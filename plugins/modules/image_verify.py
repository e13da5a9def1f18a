#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: image_verify
short_description: Verify the release images in their registry - tag, version label, healthcheck, signature
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Checks the build artifacts of a release before anything is deployed (seed 000 "Verify Build Artifacts"), by
    asking the registry's HTTP API v2 directly - no image is pulled, nothing is changed.
  - For every image - given as references in O(images), or as O(repositories) (service to repository) and one
    O(version) - the tag must exist; a manifest list or OCI index is resolved to the image of O(platform).
  - The image config's label O(label_key) (C(org.opencontainers.image.version)) must equal the version, and the
    config must define a healthcheck (O(require_healthcheck)), because the rollout gates on health.
  - Optionally a signature check - O(verify_command), for example C(cosign verify), run with the image pinned by
    digest - must exit 0.
  - Every digest read is checked against the content it addresses. RV(digests) maps each service to the digest of
    its tag, for promoting exactly what was verified.
  - All images are checked, and the module fails once, listing every problem (O(fail_on_problems)).
  - Registries are asked anonymously, with basic auth, or with a bearer token from the registry's token service
    (the C(WWW-Authenticate) challenge flow of Docker Hub, GHCR, Harbor, GitLab, ...). The password and tokens are
    never returned.
extends_documentation_fragment:
  - runbook.release.attributes
options:
  images:
    description:
      - Image references to verify, C(registry/repository:tag) or C(registry/repository@sha256:...).
      - A reference without a registry uses O(registry).
    type: list
    elements: str
    default: []
  repositories:
    description:
      - Service name to image repository (without tag), for example C(api - registry.example.com/app/api); each is
        verified at tag O(version). The keys of RV(digests) are these service names.
    type: dict
    default: {}
  version:
    description:
      - The release version. With O(repositories) it is the tag to verify; it is also the value the version label must
        have. Without it, the label must equal each reference's tag (and only exist for a reference by digest).
      - Required with O(repositories).
    type: str
  registry:
    description: Registry of references that name none (docker's default is Docker Hub).
    type: str
    default: docker.io
  registry_scheme:
    description:
      - V(auto) speaks plain HTTP to a registry on a loopback address (C(localhost), C(127.0.0.1):5000, as docker
        does) and HTTPS to every other. V(http) and V(https) force one.
    type: str
    default: auto
    choices: [auto, https, http]
  username:
    description:
      - User for registries that ask for credentials (basic auth, or the bearer token service). Without it, tokens
        are asked for anonymously.
    type: str
  password:
    description: Password or access token of O(username). Never returned or logged.
    type: str
  validate_certs:
    description: Verify the TLS certificates of the registry and its token service.
    type: bool
    default: true
  ca_path:
    description: CA certificates (PEM file) to verify the registry with, instead of the system's.
    type: path
  timeout:
    description: Seconds each HTTP request may take.
    type: float
    default: 30
  platform:
    description: Platform (C(os/architecture[/variant])) to pick from a manifest list or OCI index.
    type: str
    default: linux/amd64
  label_key:
    description: Label of the image config that holds the version.
    type: str
    default: org.opencontainers.image.version
  require_healthcheck:
    description: The image config must define a healthcheck (C(HEALTHCHECK) that is not C(NONE)).
    type: bool
    default: true
  verify_command:
    description:
      - Signature check run on the host for every image that exists, as an argument list (never a shell), for
        example C([cosign, verify, --key, /etc/cosign.pub, "{image}"]). It must exit 0.
      - C({image}) is replaced by the image pinned by digest (C(registry/repository@sha256:...)), so the signature
        checked is the one of the verified content, and C({ref}) by the reference as given.
    type: list
    elements: str
  fail_on_problems:
    description: Fail the task when any image has a problem. With V(false), only report them in RV(problems).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode does exactly the same (the signature check included).
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Never changes anything (C(changed=false)).
notes:
  - Uses C(ansible.module_utils.urls) only; no docker daemon is needed, except for what O(verify_command) needs.
  - A manifest list's own digest is what C(docker pull) records in C(RepoDigests), so RV(digests) holds the digest
    of the tag (the list's, for a multi-platform image) and RV(images[].platform_digest) the platform image's.
seealso:
  - module: runbook.release.compose_rollout
    description: Rolls out the images verified here.
  - module: runbook.release.host_preflight
    description: The host side of the preflight.
"""

EXAMPLES = r"""
- name: Verify every service image of the release
  runbook.release.image_verify:
    repositories:
      api: registry.example.com/app/api
      web: registry.example.com/app/web
      worker: registry.example.com/app/worker
    version: v1.2.3
    username: "{{ registry_user }}"
    password: "{{ registry_token }}"
  register: artifacts

- name: Single references, signatures checked with cosign, report without failing
  runbook.release.image_verify:
    images:
      - ghcr.io/example/api:v1.2.3
      - ghcr.io/example/web@sha256:4f5a0c3d8b3e2f1a0c9d8e7f6a5b4c3d2e1f0a9b8c7d6e5f4a3b2c1d0e9f8a7b
    platform: linux/arm64
    verify_command: [cosign, verify, --key, /etc/cosign/release.pub, "{image}"]
    fail_on_problems: false
  register: artifacts

- name: Promote exactly what was verified
  ansible.builtin.debug:
    msg: "api is {{ artifacts.digests.api }}"
"""

RETURN = r"""
images:
  description: One entry per image, in the order given (O(images) first, then O(repositories)).
  returned: always
  type: list
  elements: dict
  contains:
    ref: {description: The reference verified., type: str, returned: always, sample: "127.0.0.1:5000/demo/api:v1.2.3"}
    service: {description: "The service (key of O(repositories)); null for O(images).", type: str, returned: always}
    digest: {description: Digest of the tag (of the manifest list for a multi-platform image); null when absent.,
             type: str, returned: always, sample: "sha256:6eed3d812a6986c2e626e9ff63aa4b2b17875c8ce6ae4605bb203fd99a4c6262"}
    platform_digest: {description: Digest of the O(platform) image picked from a manifest list; null otherwise.,
                      type: str, returned: always}
    platform: {description: Platform of the image config (C(linux/amd64))., type: str, returned: always}
    media_type: {description: Media type of the tag's manifest., type: str, returned: always}
    exists: {description: The tag (or digest) exists in the registry., type: bool, returned: always}
    version_label: {description: Value of O(label_key) in the image config; null when missing., type: str, returned: always}
    healthcheck: {description: The image config defines a healthcheck; null when it could not be read., type: bool,
                  returned: always}
    signature:
      description: Result of O(verify_command); null when not run.
      type: dict
      returned: always
      contains:
        verified: {description: The command exited 0., type: bool}
        cmd: {description: The command run., type: list}
        rc: {description: Its exit code., type: int}
        stdout: {description: The last 2000 characters of its output., type: str}
        stderr: {description: The last 2000 characters of its error output., type: str}
    problems: {description: What is wrong with this image., type: list, elements: str, returned: always}
digests:
  description: Service (or, for O(images), the reference as given) to digest, for every image that exists.
  returned: always
  type: dict
  sample: {api: "sha256:6eed3d812a6986c2e626e9ff63aa4b2b17875c8ce6ae4605bb203fd99a4c6262"}
problems:
  description: Every problem of every image, each naming the image.
  returned: always
  type: list
  elements: str
passed:
  description: No image has a problem.
  returned: always
  type: bool
requests:
  description: HTTP requests sent (token requests included).
  returned: always
  type: int
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.release.plugins.module_utils import _registry as registry


class ImageVerify(object):

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.clients = {}
        self.result = {"changed": False, "images": [], "digests": {}, "problems": [], "passed": False, "requests": 0}

    def run(self):
        targets = self.targets()
        for service, text, ref in targets:
            self.result["images"].append(self.verify(service, text, ref))
        for entry in self.result["images"]:
            self.result["problems"].extend(entry["problems"])
            if entry["digest"]:
                self.result["digests"][entry["service"] or entry["ref"]] = entry["digest"]
        self.result["requests"] = sum(c.requests for c in self.clients.values())
        self.result["passed"] = not self.result["problems"]
        if self.result["problems"] and self.p["fail_on_problems"]:
            count = len(self.result["problems"])
            self.module.fail_json(msg="%d problem%s with the release images: %s" % (
                count, "" if count == 1 else "s", "; ".join(self.result["problems"])), **self.result)
        self.module.exit_json(**self.result)

    def targets(self):
        """(service, reference text, Reference) of every image; bad input fails before any request."""
        p = self.p
        errors, targets = [], []
        try:
            registry.parse_platform(p["platform"])
        except ValueError as exc:
            errors.append(str(exc))
        if p["version"] is not None and not registry.is_valid_tag(p["version"]):
            errors.append("version %r is not a valid tag: up to 128 letters, digits, _, . and -" % p["version"])
        for text in p["images"]:
            targets.append((None, text))
        for service, repository in sorted(p["repositories"].items()):
            if not isinstance(repository, str) or not repository or "@" in repository or \
                    ":" in repository.rsplit("/", 1)[-1]:
                errors.append("repositories.%s is %r: give the repository without a tag or digest (for example "
                              "registry.example.com/app/%s)" % (service, repository, service))
                continue
            targets.append((service, "%s:%s" % (repository, p["version"])))
        out = []
        for service, text in targets:
            try:
                out.append((service, text, registry.parse_reference(text, p["registry"])))
            except ValueError as exc:
                errors.append(str(exc))
        if not targets and not errors:
            errors.append("nothing to verify: give images, or repositories and version")
        if errors:
            self.module.fail_json(msg="bad input, nothing was checked: " + "; ".join(errors), **self.result)
        return out

    def client(self, ref):
        if ref.registry not in self.clients:
            p = self.p
            self.clients[ref.registry] = registry.RegistryClient(
                ref.registry, p["registry_scheme"], p["username"], p["password"], p["timeout"], p["validate_certs"],
                p["ca_path"])
        return self.clients[ref.registry]

    def verify(self, service, text, ref):
        entry = {"ref": text, "service": service, "digest": None, "platform_digest": None, "platform": None,
                 "media_type": None, "exists": False, "version_label": None, "healthcheck": None, "signature": None,
                 "problems": []}
        try:
            facts = registry.inspect_image(self.client(ref), ref, self.p["platform"], self.p["label_key"])
        except registry.RegistryError as exc:
            entry["problems"].append("%s: %s" % (text, exc))
            return entry
        problems = facts.pop("problems")
        entry.update(facts)
        expected = self.p["version"] if self.p["version"] is not None else (ref.tag if not ref.digest else None)
        entry["problems"] = problems + registry.judge(text, facts, expected, self.p["label_key"],
                                                      self.p["require_healthcheck"])
        if self.p["verify_command"] and entry["exists"] and entry["digest"]:
            entry["signature"] = self.signature(text, ref.pinned(entry["digest"]))
            if not entry["signature"]["verified"]:
                sig = entry["signature"]
                entry["problems"].append("%s: the signature check failed (%s exited %s): %s" % (
                    text, sig["cmd"][0], sig["rc"], (sig["stderr"] or sig["stdout"] or "no output").strip()[-300:]))
        return entry

    def signature(self, text, pinned):
        argv = [arg.replace("{image}", pinned).replace("{ref}", text) for arg in self.p["verify_command"]]
        try:
            rc, out, err = self.module.run_command(argv, check_rc=False, environ_update={"LC_ALL": "C"})
        except OSError as exc:
            rc, out, err = 127, "", str(exc)
        return {"verified": rc == 0, "cmd": argv, "rc": rc, "stdout": (out or "")[-2000:], "stderr": (err or "")[-2000:]}


def main():
    module = AnsibleModule(
        argument_spec=dict(
            images=dict(type="list", elements="str", default=[]),
            repositories=dict(type="dict", default={}),
            version=dict(type="str"),
            registry=dict(type="str", default="docker.io"),
            registry_scheme=dict(type="str", default="auto", choices=["auto", "https", "http"]),
            username=dict(type="str"),
            password=dict(type="str", no_log=True),
            validate_certs=dict(type="bool", default=True),
            ca_path=dict(type="path"),
            timeout=dict(type="float", default=30),
            platform=dict(type="str", default="linux/amd64"),
            label_key=dict(type="str", default="org.opencontainers.image.version", no_log=False),
            require_healthcheck=dict(type="bool", default=True),
            verify_command=dict(type="list", elements="str"),
            fail_on_problems=dict(type="bool", default=True),
        ),
        required_by={"password": "username"},
        supports_check_mode=True,
    )
    if module.params["repositories"] and module.params["version"] is None:
        module.fail_json(msg="repositories needs version: the tag to verify in each repository")
    ImageVerify(module).run()


if __name__ == "__main__":
    main()
