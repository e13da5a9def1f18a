#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: host_preflight
short_description: Check a target host before a release - disk, memory, Docker, compose, env keys, TLS certificates
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Runs the environment checks of the release runbooks (seed 002 "Environment Validation", seed 004 prerequisites)
    on the host the task runs on, all of them, and fails once listing every problem (O(fail_on_problems)).
  - Free disk space on paths (O(disk)), available memory (O(min_mem_available_mb)), the Docker daemon answering
    (O(docker)) and the compose plugin's version (O(min_compose_version)).
  - The keys of the project's env file against its example file (O(env_file), O(env_example_file)), and keys that
    must be non-empty (O(env_nonempty_keys)). Only KEYS are read into the result - a value is tested for being empty
    and dropped, so no value ever reaches the result, the log or an error message.
  - TLS certificates of endpoints (O(tls_endpoints)) - verified against a CA file and for the server name, with the
    days left before they expire.
extends_documentation_fragment:
  - runbook.release.attributes
options:
  project_src:
    description: Directory that relative O(env_file), O(env_example_file) and O(disk[].path) are relative to.
    type: path
  disk:
    description: Paths whose filesystem must have free space. A path that does not exist yet is measured at its
      nearest existing parent.
    type: list
    elements: dict
    default: []
    suboptions:
      path:
        description: A path on the filesystem to measure.
        type: path
        required: true
      min_free_gb:
        description: Free GiB (what a non-root user may still write, as C(df) says) required.
        type: float
      min_free_pct:
        description: Free share of the filesystem in percent (C(100 - Use%) of C(df)) required.
        type: float
  min_mem_available_mb:
    description: MiB of C(MemAvailable) (C(/proc/meminfo)) required.
    type: int
  docker:
    description: The Docker daemon must answer (C(docker version)).
    type: bool
    default: false
  min_compose_version:
    description: The Docker Compose v2 plugin must be at least this version (C(docker compose version --short)).
    type: str
  env_file:
    description: The project's env file, whose keys are compared with O(env_example_file).
    type: path
  env_example_file:
    description: The example env file that lists every key the project needs (values are ignored).
    type: path
  env_nonempty_keys:
    description: Keys of O(env_file) that must be present with a non-empty value.
    type: list
    elements: str
    default: []
  fail_on_extra_env_keys:
    description: Keys of O(env_file) that O(env_example_file) does not list are a problem (they are always returned).
    type: bool
    default: false
  tls_endpoints:
    description: TLS endpoints whose certificate must be trusted and valid for a while longer.
    type: list
    elements: dict
    default: []
    suboptions:
      host:
        description: Host name or address to connect to.
        type: str
        required: true
      port:
        description: Port.
        type: int
        default: 443
      server_name:
        description: Name sent as SNI and that the certificate must be valid for. Default is O(tls_endpoints[].host).
        type: str
      min_days:
        description: Days the certificate must stay valid at least.
        type: int
        default: 14
      ca_file:
        description: CA certificates (PEM) to verify the certificate with, instead of the system's; for a self-signed
          certificate, the certificate itself.
        type: path
      timeout:
        description: Seconds to connect and handshake.
        type: float
        default: 10
  fail_on_problems:
    description: Fail the task when any check has a problem. With V(false), only report them in RV(problems).
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: The module only reads; check mode does exactly the same.
  diff_mode:
    support: none
  idempotent:
    support: full
    details: Never changes anything (C(changed=false)).
notes:
  - Checks not asked for are not run, and their facts are null or empty.
seealso:
  - module: runbook.release.image_verify
    description: The release images side of the preflight.
"""

EXAMPLES = r"""
- name: Preflight the app server
  runbook.release.host_preflight:
    project_src: /opt/app
    disk:
      - {path: /opt/app, min_free_gb: 2}
      - {path: /var/lib/docker, min_free_pct: 15}
    min_mem_available_mb: 1024
    docker: true
    min_compose_version: 2.20.0
    env_file: .env
    env_example_file: .env.example
    env_nonempty_keys: [DATABASE_URL, JWT_SECRET]
    tls_endpoints:
      - {host: app.example.com, min_days: 14}
      - {host: 127.0.0.1, port: 8443, server_name: app.example.com, ca_file: /etc/ssl/internal-ca.pem}
  register: host

- name: Only report
  runbook.release.host_preflight:
    disk: [{path: /var/backups, min_free_gb: 20}]
    fail_on_problems: false
  register: host
"""

RETURN = r"""
problems:
  description: Every problem found, each saying what is wrong and what to do.
  returned: always
  type: list
  elements: str
passed:
  description: No check found a problem.
  returned: always
  type: bool
disk:
  description: One entry per O(disk) path.
  returned: always
  type: list
  elements: dict
  contains:
    path: {description: The path asked for., type: str}
    checked_path: {description: The path measured (its nearest existing parent when it does not exist)., type: str}
    free_gb: {description: Free GiB., type: float}
    free_pct: {description: Free percent., type: float}
    total_gb: {description: Size of the filesystem in GiB., type: float}
mem_available_mb:
  description: C(MemAvailable) in MiB; null when not asked for.
  returned: always
  type: int
docker_server_version:
  description: Version of the Docker daemon; null when not asked for or not answering.
  returned: always
  type: str
compose_version:
  description: Version of the compose plugin; null when not asked for or missing.
  returned: always
  type: str
missing_env_keys:
  description: Keys of O(env_example_file) that O(env_file) lacks.
  returned: always
  type: list
  elements: str
extra_env_keys:
  description: Keys of O(env_file) that O(env_example_file) does not list.
  returned: always
  type: list
  elements: str
empty_env_keys:
  description: Keys of O(env_nonempty_keys) that are missing or empty.
  returned: always
  type: list
  elements: str
tls:
  description: One entry per O(tls_endpoints) entry.
  returned: always
  type: list
  elements: dict
  contains:
    host: {description: Host connected to., type: str}
    port: {description: Port., type: int}
    server_name: {description: Name verified., type: str}
    trusted: {description: The certificate verified against the CA file and for the name; null without a handshake., type: bool}
    not_after: {description: End of validity (UTC)., type: str, sample: "2031-03-01T12:00:00Z"}
    days_left: {description: Days until then (negative when expired)., type: float}
    min_days: {description: Days required., type: int}
cmd:
  description: The last docker command that failed.
  returned: when a docker check failed
  type: list
  elements: str
rc:
  description: Exit code of RV(cmd).
  returned: when a docker check failed
  type: int
stdout:
  description: Output of RV(cmd).
  returned: when a docker check failed
  type: str
stderr:
  description: Error output of RV(cmd).
  returned: when a docker check failed
  type: str
"""

import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.release.plugins.module_utils import _host_checks as checks
from ansible_collections.runbook.release.plugins.module_utils._compose import parse_version


class HostPreflight(object):

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.problems = []
        self.result = {"changed": False, "problems": self.problems, "passed": False, "disk": [],
                       "mem_available_mb": None, "docker_server_version": None, "compose_version": None,
                       "missing_env_keys": [], "extra_env_keys": [], "empty_env_keys": [], "tls": []}

    def path(self, value):
        if value is None:
            return None
        if not os.path.isabs(value) and self.p["project_src"]:
            value = os.path.join(self.p["project_src"], value)
        return os.path.normpath(value)

    def run(self):
        self.validate()
        self.disk()
        self.memory()
        self.docker()
        self.env()
        self.tls()
        self.result["passed"] = not self.problems
        if self.problems and self.p["fail_on_problems"]:
            count = len(self.problems)
            self.module.fail_json(msg="%d preflight problem%s on this host: %s" % (
                count, "" if count == 1 else "s", "; ".join(self.problems)), **self.result)
        self.module.exit_json(**self.result)

    def validate(self):
        errors = []
        for i, item in enumerate(self.p["disk"]):
            if item["min_free_gb"] is None and item["min_free_pct"] is None:
                errors.append("disk[%d] (%s) needs min_free_gb or min_free_pct" % (i, item["path"]))
            for key in ("min_free_gb", "min_free_pct"):
                if item[key] is not None and item[key] < 0:
                    errors.append("disk[%d].%s is %s: use 0 or more" % (i, key, item[key]))
        if self.p["min_compose_version"] is not None and parse_version(self.p["min_compose_version"]) is None:
            errors.append("min_compose_version %r is not a version like 2.20.0" % self.p["min_compose_version"])
        if bool(self.p["env_file"]) != bool(self.p["env_example_file"]) and not self.p["env_nonempty_keys"]:
            errors.append("env_file and env_example_file go together: give both to compare the keys")
        if self.p["env_nonempty_keys"] and not self.p["env_file"]:
            errors.append("env_nonempty_keys needs env_file")
        for i, item in enumerate(self.p["tls_endpoints"]):
            if not 0 < item["port"] < 65536:
                errors.append("tls_endpoints[%d].port is %s: use 1 to 65535" % (i, item["port"]))
        if errors:
            self.module.fail_json(msg="bad input, nothing was checked: " + "; ".join(errors), **self.result)

    def disk(self):
        for item in self.p["disk"]:
            path = self.path(item["path"])
            try:
                usage = checks.disk_usage(path)
            except OSError as exc:
                self.problems.append("disk: %s cannot be measured: %s" % (path, exc))
                continue
            usage.update(min_free_gb=item["min_free_gb"], min_free_pct=item["min_free_pct"])
            self.result["disk"].append(usage)
            self.problems.extend(checks.judge_disk(usage, item["min_free_gb"], item["min_free_pct"]))

    def memory(self):
        need = self.p["min_mem_available_mb"]
        if need is None:
            return
        try:
            with open("/proc/meminfo") as handle:
                have = checks.mem_available_mb(handle.read())
        except (IOError, OSError):
            have = None
        self.result["mem_available_mb"] = have
        if have is None:
            self.problems.append("memory: MemAvailable cannot be read from /proc/meminfo on this host: unset "
                                 "min_mem_available_mb on hosts without it")
        elif have < need:
            self.problems.append("memory: %d MiB available, needs at least %d MiB: stop what uses it, or add memory"
                                 % (have, need))

    def docker(self):
        if not self.p["docker"] and self.p["min_compose_version"] is None:
            return
        cli = self.module.get_bin_path("docker")
        if cli is None:
            self.problems.append("docker: the docker CLI is not on PATH: install Docker Engine (Debian: docker.io)")
            return
        if self.p["docker"]:
            rc, out, err = self.run_cli([cli, "version", "--format", "{{.Server.Version}}"])
            if rc == 0 and out.strip():
                self.result["docker_server_version"] = out.strip()
            else:
                self.problems.append("docker: the daemon does not answer (rc=%s): %s: start it (systemctl start "
                                     "docker) or check access to its socket" % (rc, (err or out).strip()[-300:]))
        want = self.p["min_compose_version"]
        if want is not None:
            rc, out, err = self.run_cli([cli, "compose", "version", "--short"])
            have = parse_version(out) if rc == 0 else None
            self.result["compose_version"] = out.strip() if rc == 0 else None
            if have is None:
                self.problems.append("docker compose: the compose v2 plugin does not answer (rc=%s): %s: install it "
                                     "(Debian: docker-compose-plugin or docker-compose from trixie)"
                                     % (rc, (err or out).strip()[-300:]))
            elif have < parse_version(want):
                self.problems.append("docker compose: version %s, needs %s or newer: upgrade the compose plugin"
                                     % (out.strip(), want))

    def run_cli(self, argv):
        rc, out, err = self.module.run_command(argv, check_rc=False, environ_update={"LC_ALL": "C"})
        if rc != 0:
            self.result.update(cmd=argv, rc=rc, stdout=out, stderr=err)
        return rc, out, err

    def env(self):
        env_file, example = self.path(self.p["env_file"]), self.path(self.p["env_example_file"])
        if not env_file:
            return
        facts, problems = checks.check_env(env_file, example, self.p["env_nonempty_keys"],
                                           self.p["fail_on_extra_env_keys"])
        for key in ("missing_env_keys", "extra_env_keys", "empty_env_keys"):
            self.result[key] = facts[key]
        self.problems.extend(problems)

    def tls(self):
        for endpoint in self.p["tls_endpoints"]:
            facts, problems = checks.check_tls(endpoint)
            self.result["tls"].append(facts)
            self.problems.extend(problems)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_src=dict(type="path"),
            disk=dict(type="list", elements="dict", default=[], options=dict(
                path=dict(type="path", required=True),
                min_free_gb=dict(type="float"),
                min_free_pct=dict(type="float"),
            )),
            min_mem_available_mb=dict(type="int"),
            docker=dict(type="bool", default=False),
            min_compose_version=dict(type="str"),
            env_file=dict(type="path"),
            env_example_file=dict(type="path"),
            env_nonempty_keys=dict(type="list", elements="str", default=[], no_log=False),
            fail_on_extra_env_keys=dict(type="bool", default=False),
            tls_endpoints=dict(type="list", elements="dict", default=[], options=dict(
                host=dict(type="str", required=True),
                port=dict(type="int", default=443),
                server_name=dict(type="str"),
                min_days=dict(type="int", default=14),
                ca_file=dict(type="path"),
                timeout=dict(type="float", default=10),
            )),
            fail_on_problems=dict(type="bool", default=True),
        ),
        supports_check_mode=True,
    )
    HostPreflight(module).run()


if __name__ == "__main__":
    main()
