#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: compose_rollout
short_description: Zero-downtime rolling release of a Docker Compose v2 stack, with whole-release rollback
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Releases a new version of a Docker Compose project the way release runbooks do by hand, safely. The version is
    pinned in the project's env file (C(SERVICE_VERSION=v1.2.3), or one C(*_IMAGE=repository:tag) line per service),
    every image is pulled first, then services are rolled in dependency order (independent services together).
  - Services roll start-first (new containers up and healthy before the old ones are drained and removed) when that
    is safe, and stop-first when it is not (a fixed host port, C(container_name), a service listed as stateful, or
    C(deploy.update_config.order=stop-first)). The result says which strategy each service used and why.
  - If any service fails its gate (exits, restarts, turns unhealthy or is not healthy in time), every service rolled
    by this run goes back to the previous version in reverse order and the module fails with C(rolled_back=true),
    the failing service, its health log and the tail of its container log. A start-first service is rolled back
    without downtime, because its old containers are still serving.
  - Whether anything changes is decided from compose's own config hash and the image ids of the running
    containers, so rerunning with the deployed version changes nothing.
  - A deploy lock on the host (re-entrant for the same O(run_id)) keeps two releases of a project apart, and a
    release history in the project directory records every rollout with the env and compose files as they were
    before it, so O(rollback_to=previous) needs no version.
  - The project is read with C(docker compose config); the CLI is driven with argument lists, never a shell.
extends_documentation_fragment:
  - runbook.release.attributes
  - runbook.release.compose_project
requirements:
  - Docker Engine and the Docker CLI with the Compose v2 plugin 2.20.0 or newer on the target host.
options:
  env_file:
    description:
      - Env file, relative to O(project_src), that pins the release and that compose interpolates.
      - When it does not exist, O(version) creates it, unless O(require_env_file) is set.
    type: str
    default: .env
  require_env_file:
    description:
      - Fail before any change when O(env_file) does not exist, instead of creating it. A release of a running
        stack sets it, because there a missing env file means O(project_src) points at the wrong directory.
    type: bool
    default: false
  version:
    description:
      - The version (image tag) to release; 1 to 128 of C([A-Za-z0-9_.-]).
      - Mutually exclusive with O(rollback_to).
    type: str
  rollback_to:
    description:
      - Roll the stack back instead of releasing. V(previous) restores the env and compose files as they were before
        the release that brought the current version (from the release history), so the operator needs no version.
      - Any other value is a version to go back to, pinned like O(version).
    type: str
  version_var:
    description: Variable in the env file that holds the version (seed style C(SERVICE_VERSION=v1.2.3)).
    type: str
    default: SERVICE_VERSION
  image_vars:
    description:
      - For env files that pin each image separately (C(API_IMAGE=registry/api:v1.2.3)), a map of env variable to
        image repository. When set, O(version_var) is not used.
    type: dict
  services:
    description: Services to roll, in this order. Default is every service, dependencies first.
    type: list
    elements: str
  strategy:
    description:
      - V(auto) rolls start-first when safe and stop-first otherwise. V(rolling) forces start-first (refused for a
        service that cannot run twice). V(recreate) forces stop-first.
      - A dict of service name to strategy sets it per service; services not named use V(auto).
    type: raw
    default: auto
  stateful_services:
    description: Services that must never run twice at once (always stop-first).
    type: list
    elements: str
    default: []
  health_timeout:
    description: Seconds a new container has to become healthy.
    type: int
    default: 120
  readiness_delay:
    description: For a service without a healthcheck, seconds it must keep running (no restart) to pass.
    type: int
    default: 5
  drain_seconds:
    description: Seconds to wait after O(pre_stop_command) and before stopping old containers.
    type: float
    default: 0
  pre_stop_command:
    description: Command (argv list) run with C(docker exec) in each old container before it is stopped.
    type: list
    elements: str
  stop_timeout:
    description: Grace period in seconds between SIGTERM and SIGKILL when stopping old containers.
    type: int
    default: 10
  pull:
    description: Pull every image before touching any container; if a pull fails, nothing is changed.
    type: bool
    default: true
  pull_retries:
    description: Retries of a failed pull, with exponential backoff.
    type: int
    default: 2
  rollback_on_failure:
    description: Return every service rolled by this run to the previous version when one fails its gate.
    type: bool
    default: true
  scale:
    description: Replicas per service, for example C(api=4). Scaling up is start-first. Without it, services keep their count.
    type: dict
  lock:
    description: Take the project's deploy lock for the run.
    type: bool
    default: true
  lock_timeout:
    description: Seconds to wait for another run's lock before failing with its owner.
    type: int
    default: 0
  lock_ttl:
    description: Seconds after its last heartbeat when a lock is stale and taken over with a warning.
    type: int
    default: 600
  run_id:
    description:
      - Id of the release run. The lock is re-entrant for the same id, so a playbook-wide lock taken with it is this
        same lock. Default is a new id per call.
    type: str
  history_keep:
    description: Release history entries to keep (the last known good one is never pruned).
    type: int
    default: 20
  parallel:
    description:
      - Roll services that do not depend on each other together, in waves (a service always rolls after the
        services it depends on). With V(false), one service at a time in O(services) order.
      - A failure in any wave rolls back every service rolled so far.
    type: bool
    default: true
attributes:
  check_mode:
    support: full
    details: Returns the plan (per service old image, new image, strategy, action) and makes no change at all; it
      does not pull, so an image that is not on the host yet shows as to be pulled.
  diff_mode:
    support: full
    details: Shows the old and new image of every service.
  idempotent:
    support: full
    details: Rerunning with the deployed version is C(changed=false).
notes:
  - Compose 2.26 scales a service down by removing its highest-numbered containers; this module removes old
    containers by id instead, so the newest always stay.
  - Start-first needs the service to be reachable by name through something that re-resolves it (a reverse proxy
    using Docker's DNS with a short TTL), as in the sandbox's nginx.
  - Changes go through the C(docker compose) and C(docker) CLIs. Reads (container listings, inspections, image
    inspections, the health gate's polls) ask the local Docker Engine API on its unix socket directly when the CLI
    would ask that same engine (no C(DOCKER_HOST) other than C(unix://), no C(DOCKER_CONTEXT) or current context
    other than C(default)), which starts no process per question; otherwise, or if the socket fails, they use the
    CLI. The result's C(commands) lists both kinds.
seealso:
  - module: community.docker.docker_compose_v2
    description: General compose management (stops old containers before starting new ones).
"""

EXAMPLES = r"""
- name: Release v1.2.3 (zero-downtime, automatic rollback)
  runbook.release.compose_rollout:
    project_src: /opt/app
    version: v1.2.3

- name: Roll back to whatever ran before the current release
  runbook.release.compose_rollout:
    project_src: /opt/app
    rollback_to: previous

- name: Seed 000 style env file, one image variable per service
  runbook.release.compose_rollout:
    project_src: /opt/app
    version: "{{ version }}"
    image_vars:
      API_IMAGE: registry.example.com/app/api
      WEB_IMAGE: registry.example.com/app/web
    services: [api, web]
    health_timeout: 180
    drain_seconds: 5

- name: Scale the API to four replicas without downtime
  runbook.release.compose_rollout:
    project_src: /opt/app
    scale:
      api: 4

- name: Show the plan only
  runbook.release.compose_rollout:
    project_src: /opt/app
    version: v1.2.4
  check_mode: true
  register: plan
"""

RETURN = r"""
version:
  description: Version pinned after the run.
  returned: always
  type: str
  sample: v1.2.3
previous_version:
  description: Version pinned before the run.
  returned: always
  type: str
  sample: v1.2.2
rolled_back:
  description: Whether a failed service made the module roll the release back.
  returned: always
  type: bool
plan:
  description: What the run does (or, in check mode, would do) per service.
  returned: always
  type: list
  elements: dict
  contains:
    service: {description: Service name., type: str, returned: always}
    action: {description: "V(none), V(start), V(rolling), V(recreate), V(scale_up) or V(scale_down).", type: str,
             returned: always}
    strategy: {description: V(rolling) (start-first) or V(recreate) (stop-first)., type: str, returned: always}
    reason: {description: Why that strategy., type: str, returned: always}
    old_image: {description: Image of the containers being replaced., type: str, returned: always}
    new_image: {description: Image the service runs after the run., type: str, returned: always}
    replicas: {description: Replicas after the run., type: int, returned: always}
services:
  description: What happened per service that was acted on.
  returned: always
  type: list
  elements: dict
  contains:
    name: {description: Service name., type: str, returned: always}
    strategy: {description: Strategy used., type: str, returned: always}
    old_image: {description: Image before., type: str, returned: always}
    new_image: {description: Image after., type: str, returned: always}
    replicas: {description: Running replicas after., type: int, returned: always}
    duration_s: {description: Seconds the service took., type: float, returned: always}
    healthy: {description: Whether its new containers passed the gate., type: bool, returned: always}
failed_service:
  description: The service that failed its gate.
  returned: failure
  type: str
evidence:
  description: The failing container's state, health log and the tail of its log.
  returned: failure
  type: dict
history_file:
  description: Path of the release history.
  returned: always
  type: str
lock_file:
  description: Path of the deploy lock.
  returned: always
  type: str
release_data:
  description: The run's part of the release data contract (docs/release-data-contract.md).
  returned: always
  type: dict
  sample: {version: v1.2.3, previous_version: v1.2.2}
cmd:
  description: The command that failed, when a CLI call failed.
  returned: failure
  type: list
"""

import os
import tempfile
import time
import uuid

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.release.plugins.module_utils import _compose as compose_utils
from ansible_collections.runbook.release.plugins.module_utils import _rollout as rollout
from ansible_collections.runbook.release.plugins.module_utils._deploy_lock import DeployLock, LockError, default_lock_path
from ansible_collections.runbook.release.plugins.module_utils._release_history import (
    History, default_history_path, utc_now)


class ComposeRollout(object):

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.src = self.p["project_src"]
        self.env_path = os.path.join(self.src, self.p["env_file"])
        self.docker = compose_utils.Docker(module, self.src, self.p["files"], self.p["project_name"],
                                           self.p["profiles"])
        self.run_id = self.p["run_id"] or uuid.uuid4().hex
        self.lock = None
        self.lock_created = False
        self.last_heartbeat = float("-inf")
        self.tmpdir = None
        # The project's containers as last listed (`docker ps` + `docker inspect`), while nothing has changed them
        # since: the plan's listing serves the first wave, the last wave's serves the history record. Every change
        # to the containers sets it back to None.
        self.listing = None
        self.image_infos = {}  # image references inspected for the plan (after the pull): reused by the record
        self.result = {"changed": False, "rolled_back": False, "plan": [], "services": [],
                       "history_file": default_history_path(self.src), "lock_file": default_lock_path(self.src)}

    # --- entry ------------------------------------------------------------------------------------------------

    def fail(self, msg, **extra):
        self.cleanup()
        extra.setdefault("commands", self.docker.commands)
        self.module.fail_json(msg=msg, **dict(self.result, **extra))

    def cleanup(self):
        if self.tmpdir and os.path.isdir(self.tmpdir):
            for name in os.listdir(self.tmpdir):
                os.unlink(os.path.join(self.tmpdir, name))
            os.rmdir(self.tmpdir)
            self.tmpdir = None
        if self.lock is not None and self.lock_created:
            self.lock.release()
            self.lock_created = False

    def run(self):
        try:
            self.validate_input()
            self.load()
            self.take_lock()
            self.make_plan()
            if not self.module.check_mode and self.needs_change:
                self.execute()
        except compose_utils.CLIError as exc:
            self.fail(str(exc), **exc.as_result())
        except LockError as exc:
            self.fail(str(exc), lock_owner=exc.owner)
        self.cleanup()
        self.module.exit_json(**self.result)

    # --- input and current state ------------------------------------------------------------------------------------

    def validate_input(self):
        p = self.p
        for key in ("version", "rollback_to"):
            value = p[key]
            if value is not None and key == "rollback_to" and value == "previous":
                continue
            if value is not None and not rollout.VERSION_RE.match(value):
                self.fail("%s %r is not a valid version: use 1 to 128 letters, digits, '.', '_' or '-' (for example "
                          "v1.2.3)" % (key, value))
        if not os.path.isdir(self.src):
            self.fail("project_src %s is not a directory: point it at the compose project on the host" % self.src)
        if not os.path.isfile(self.env_path) and p["require_env_file"]:
            self.fail("env file %s does not exist (require_env_file): point project_src at the compose project whose "
                      "env file pins the version, or set env_file" % self.env_path)
        if not os.path.isfile(self.env_path) and (p["version"] is None and p["rollback_to"] is None):
            self.fail("env file %s does not exist: create it, or set env_file" % self.env_path)
        for service, replicas in (p["scale"] or {}).items():
            if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
                self.fail("scale for service %s is %r: use a whole number of replicas, 0 or more" % (service, replicas))
        strategy = p["strategy"]
        per_service = strategy if isinstance(strategy, dict) else {}
        if not isinstance(strategy, (dict, str)) or (isinstance(strategy, str) and strategy not in rollout.STRATEGIES):
            self.fail("strategy %r is not valid: use one of %s, or a dict of service to strategy"
                      % (strategy, ", ".join(rollout.STRATEGIES)))
        for service, value in per_service.items():
            if value not in rollout.STRATEGIES:
                self.fail("strategy for service %s is %r: use one of %s" % (service, value,
                                                                            ", ".join(rollout.STRATEGIES)))
        if p["image_vars"]:
            for var, repository in p["image_vars"].items():
                if not isinstance(repository, str) or not repository or ":" in repository.rsplit("/", 1)[-1]:
                    self.fail("image_vars.%s is %r: give the image repository without a tag (for example "
                              "registry.example.com/app/api)" % (var, repository))

    def load(self):
        version, text = self.docker.compose_version()
        if version is None or version < compose_utils.MIN_COMPOSE_VERSION:
            self.fail("compose_rollout needs Docker Compose %s or newer, not %r: install a newer compose plugin"
                      % (".".join(map(str, compose_utils.MIN_COMPOSE_VERSION)), text))
        self.env_before = ""
        if os.path.isfile(self.env_path):
            with open(self.env_path) as handle:
                self.env_before = handle.read()
        self.previous_version = rollout.pinned_version(self.env_before, self.p["version_var"], self.p["image_vars"])
        try:
            self.history = History(self.result["history_file"], keep=self.p["history_keep"])
        except ValueError as exc:
            self.fail(str(exc))
        self.snapshot_files = None
        self.target_version, self.env_after = self.target()
        self.tmpdir = tempfile.mkdtemp(prefix="compose_rollout.")
        self.env_after_path = os.path.join(self.tmpdir, "env")
        with open(self.env_after_path, "w") as handle:
            handle.write(self.env_after)
        try:
            self.config_after = self.docker.config(self.env_after_path)
        except compose_utils.CLIError as exc:
            self.fail("docker compose cannot read the project in %s with version %s pinned: %s"
                      % (self.src, self.target_version, (exc.stderr or exc.stdout or "").strip()), **exc.as_result())
        self.project = self.p["project_name"] or self.config_after.get("name")
        all_services = self.config_after.get("services") or {}
        wanted = self.p["services"] or rollout.dependency_order(all_services)
        unknown = [s for s in list(wanted) + list((self.p["scale"] or {}).keys()) if s not in all_services]
        if isinstance(self.p["strategy"], dict):
            unknown += [s for s in self.p["strategy"] if s not in all_services]
        if unknown:
            self.fail("unknown service(s) %s in project %s: the project has %s"
                      % (", ".join(sorted(set(unknown))), self.project, ", ".join(sorted(all_services))))
        if self.p["scale"]:
            wanted = wanted + [s for s in self.p["scale"] if s not in wanted]
        self.service_names = wanted

    def target(self):
        """(version, env text) the run should end with."""
        rollback_to = self.p["rollback_to"]
        if rollback_to == "previous":
            entry = self.history.entry_for_rollback(self.previous_version)
            if entry is None:
                self.fail("rollback_to=previous: the release history %s has no successful release of the pinned "
                          "version %s with a version before it; pass rollback_to=<version> instead"
                          % (self.result["history_file"], self.previous_version))
            self.snapshot_files = entry["snapshot"].get("files") or {}
            return entry["previous_version"], entry["snapshot"]["env"]
        version = rollback_to or self.p["version"]
        if version is None:
            return self.previous_version, self.env_before
        return version, rollout.pin_version(self.env_before, version, self.p["version_var"], self.p["image_vars"])

    def take_lock(self):
        if not self.p["lock"]:
            return
        self.lock = DeployLock(self.result["lock_file"], self.run_id, version=self.target_version,
                               ttl=self.p["lock_ttl"])
        if self.module.check_mode:
            holder = self.lock.read()
            if holder and holder.get("run_id") != self.run_id and not self.lock.is_stale(holder):
                self.module.warn("the deploy lock is held by run %s (owner %s); a real run would wait for it"
                                 % (holder.get("run_id"), holder.get("owner")))
            self.lock = None
            return
        self.lock_created = self.lock.acquire(timeout=self.p["lock_timeout"])
        for warning in self.lock.warnings:
            self.module.warn(warning)

    # --- plan ---------------------------------------------------------------------------------------------------------

    def make_plan(self):
        services_cfg = self.config_after["services"]
        if self.p["pull"] and not self.module.check_mode:
            to_pull = [s for s in self.service_names if services_cfg[s].get("image")]
            try:
                self.docker.pull(to_pull, self.env_after_path, retries=self.p["pull_retries"])
            except compose_utils.CLIError as exc:
                self.fail("pulling the images of %s failed, so no container was touched: %s"
                          % (self.target_version, (exc.stderr or exc.stdout or "").strip()[-600:]), **exc.as_result())
        containers = self.listing = self.docker.containers(self.project)
        known = self.history.container_fingerprints()
        strategy = self.p["strategy"]
        plan = []
        images = self.image_infos = self.docker.images([services_cfg[name].get("image") for name in self.service_names])
        for name in self.service_names:
            cfg = services_cfg[name]
            requested = strategy.get(name, "auto") if isinstance(strategy, dict) else strategy
            try:
                chosen, reason = rollout.choose_strategy(name, cfg, requested, self.p["stateful_services"])
            except ValueError as exc:
                self.fail(str(exc))
            image = images.get(cfg["image"]) if cfg.get("image") else None
            fingerprint = rollout.service_fingerprint(cfg)
            summaries = [rollout.container_summary(c) for c in containers.get(name, [])]
            for summary in summaries:
                # Containers this module never started are judged by their image alone.
                summary["config_hash"] = known.get(summary["id"], fingerprint)
            running = len([c for c in summaries if c["status"] == rollout.RUNNING])
            replicas = (self.p["scale"] or {}).get(name)
            if replicas is None:
                replicas = running or self.history.scale_of(name) or \
                    ((cfg.get("deploy") or {}).get("replicas")) or 1
            entry = rollout.plan_service(name, summaries, fingerprint, cfg.get("image"),
                                         image["id"] if image else None, replicas, chosen, reason)
            entry["image_present"] = image is not None
            entry["fingerprint"] = fingerprint
            plan.append(entry)
        self.plan = plan
        self.needs_change = any(e["action"] != "none" for e in plan) or self.env_after != self.env_before
        self.result["plan"] = [{k: e[k] for k in ("service", "action", "strategy", "reason", "old_image",
                                                  "new_image", "replicas")} for e in plan]
        self.result["changed"] = self.needs_change
        self.result["version"] = self.target_version
        self.result["previous_version"] = self.previous_version
        self.result["release_data"] = {"version": self.target_version, "previous_version": self.previous_version}
        if self.module._diff:
            self.result["diff"] = {
                "before": "".join("%s: %s\n" % (e["service"], e["old_image"]) for e in plan),
                "after": "".join("%s: %s x%s\n" % (e["service"], e["new_image"], e["replicas"]) for e in plan),
                "before_header": "%s (%s)" % (self.project, self.previous_version),
                "after_header": "%s (%s)" % (self.project, self.target_version),
            }

    # --- execution ----------------------------------------------------------------------------------------------------

    def write_text(self, path, text, mode=None):
        fd, tmp = tempfile.mkstemp(prefix=".rollout.", dir=os.path.dirname(path))
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        if os.path.exists(path):
            os.chmod(tmp, os.stat(path).st_mode & 0o7777)
        elif mode is not None:
            os.chmod(tmp, mode)
        self.module.atomic_move(tmp, path)

    def read_files(self):
        names = self.p["files"] or [os.path.basename(p) for p in self.config_files()]
        files = {}
        for name in names:
            path = os.path.join(self.src, name)
            if os.path.isfile(path):
                with open(path) as handle:
                    files[name] = handle.read()
        return files

    def config_files(self):
        for name in ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml"):
            path = os.path.join(self.src, name)
            if os.path.isfile(path):
                return [path]
        return []

    def heartbeat(self):
        """Refresh the deploy lock's heartbeat, at most once a second (the health gate calls this at every poll)."""
        now = time.monotonic()
        if self.lock is not None and now - self.last_heartbeat >= 1.0:
            self.lock.heartbeat()
            self.last_heartbeat = now

    def execute(self):
        started_at = utc_now()
        files_before = self.read_files()
        if self.snapshot_files:
            for name, text in self.snapshot_files.items():
                if files_before.get(name) != text:
                    self.write_text(os.path.join(self.src, name), text)
        self.write_text(self.env_path, self.env_after, mode=0o600)
        by_name = {e["service"]: e for e in self.plan}
        done = []
        try:
            for wave in rollout.waves(self.service_names, self.config_after["services"], self.p["parallel"]):
                active = [by_name[name] for name in wave if by_name[name]["action"] != "none"]
                if active:
                    done.extend(active)
                    self.result["services"].extend(self.apply_wave(active))
        except rollout.RolloutError as exc:
            self.handle_failure(exc, done, files_before, started_at)
        self.record(started_at, files_before, "success")

    def apply_wave(self, entries):
        """Bring a wave of independent services to their plan together; returns the per-service results."""
        began = time.monotonic()
        adding = [e for e in entries if e["action"] in ("rolling", "scale_up", "start")]
        recreating = [e for e in entries if e["action"] == "recreate"]
        # Stopped old containers serve nothing, and `up` would start them again: remove them first.
        stopped = [cid for e in adding for cid in e["stopped"]]
        if stopped:
            self.listing = None
        self.docker.remove(stopped)
        before = self.containers_by_service()
        self.listing = None  # the wave changes the containers from here on
        targets = {}
        for entry in adding:
            existing = before.get(entry["service"], [])
            grow = max(entry["replicas"] - len(entry["keep"]), 0) if entry["action"] != "start" else entry["replicas"]
            targets[entry["service"]] = len(existing) + grow
        self.docker.scale_up(targets, self.env_path)
        self.docker.recreate({e["service"]: e["replicas"] for e in recreating}, self.env_path)
        after = self.containers_by_service()
        for entry in adding:
            entry["new_ids"] = [cid for cid in after.get(entry["service"], []) if cid not in before.get(entry["service"], [])]
        for entry in recreating:
            entry["new_ids"] = list(after.get(entry["service"], []))
        self.gate(entries)
        retire = [cid for e in adding for cid in e["replace"]]
        for entry in adding:
            surplus = len(entry["keep"]) + len(entry["new_ids"]) - entry["replicas"]
            if surplus > 0:
                retire += entry["keep"][:surplus]
        for entry in entries:
            if entry["action"] == "scale_down":
                retire += entry["keep"][:len(entry["keep"]) - entry["replicas"]]  # the oldest go first
        self.retire(retire)
        self.listing = self.docker.containers(self.project)
        running = self.containers_by_service(running=True)
        duration = round(time.monotonic() - began, 2)
        return [{"name": e["service"], "strategy": e["strategy"], "action": e["action"], "old_image": e["old_image"],
                 "new_image": e["new_image"], "replicas": len(running.get(e["service"], [])), "duration_s": duration,
                 "healthy": True} for e in entries]

    def containers_by_service(self, running=False):
        """Container ids by service (only running ones if asked), from the current listing when nothing changed the
        containers since it was taken, else from a new one."""
        listing = self.listing if self.listing is not None else self.docker.containers(self.project)
        grouped = {}
        for service, infos in listing.items():
            grouped[service] = [i["Id"] for i in infos
                                if not running or (i.get("State") or {}).get("Status") == rollout.RUNNING]
        return grouped

    def gate(self, entries):
        owner = {cid: e["service"] for e in entries for cid in e.get("new_ids") or []}
        if not owner:
            return
        try:
            rollout.wait_healthy(self.docker, list(owner), self.p["health_timeout"], self.p["readiness_delay"],
                                 heartbeat=self.heartbeat)
        except rollout.RolloutError as exc:
            exc.service = owner.get(exc.evidence.get("container_id"), ", ".join(sorted(set(owner.values()))))
            raise

    def retire(self, ids):
        """Drain and remove old containers by id (never by scale-down, which picks by number)."""
        self.docker.retire(ids, self.p["stop_timeout"], self.p["pre_stop_command"], self.p["drain_seconds"])

    def handle_failure(self, exc, done, files_before, started_at):
        self.listing = None  # the failed wave and the undo change the containers
        evidence = exc.evidence
        self.result["failed_service"] = exc.service
        self.result["evidence"] = evidence
        if not self.p["rollback_on_failure"]:
            self.record(started_at, files_before, "failed", reason=str(exc))
            self.fail("service %s failed its gate: %s; rollback_on_failure is false, so the stack is left as it is"
                      % (exc.service, exc))
        try:
            for name, text in files_before.items():
                self.write_text(os.path.join(self.src, name), text)
            self.write_text(self.env_path, self.env_before)
            self.undo(done)
        except (compose_utils.CLIError, rollout.RolloutError) as undo_exc:
            self.record(started_at, files_before, "failed", reason="%s; rollback failed: %s" % (exc, undo_exc))
            self.fail("service %s failed its gate (%s) and the rollback failed too: %s. The env file is restored to "
                      "%s; check 'docker compose ps' in %s"
                      % (exc.service, exc, undo_exc, self.previous_version, self.src))
        self.result["rolled_back"] = True
        self.result["version"] = self.previous_version
        self.result["release_data"] = {
            "version": self.previous_version, "previous_version": self.previous_version, "outcome": "rolled_back",
            "rollback": {"trigger": "rollout", "reason": "%s: %s" % (exc.service, exc),
                         "rolled_back_to": self.previous_version}}
        self.record(started_at, files_before, "rolled_back", reason="%s: %s" % (exc.service, exc))
        self.fail("service %s failed its gate: %s. Rolled back %s to %s." % (
            exc.service, exc, ", ".join(e["service"] for e in reversed(done)), self.previous_version))

    def undo(self, done):
        """Return the services of this run to the previous env (already restored on disk) in the reverse order of
        the rollout: each service is back, and its old containers healthy, before the one rolled before it is
        touched, so a dependency never goes back under a dependent that still runs the new version."""
        for entry in reversed(done):
            self.undo_service(entry)

    def undo_service(self, entry):
        name = entry["service"]
        if entry["action"] in ("rolling", "scale_up", "start"):
            running = self.containers_by_service(running=True)
            old = entry["replace"] + entry["keep"]
            if entry["action"] == "rolling" and any(cid not in running.get(name, []) for cid in old):
                # The old containers were already retired: start them again from the restored env.
                before = self.containers_by_service()
                self.docker.scale_up({name: len(running.get(name, [])) + entry["old_replicas"]}, self.env_path)
                after = self.containers_by_service()
                self.gate([{"service": name, "new_ids": [c for c in after.get(name, []) if c not in before.get(name, [])]}])
            new_ids = entry.get("new_ids") or []
            self.docker.stop(new_ids, self.p["stop_timeout"])
            self.docker.remove(new_ids)
        elif entry["action"] == "recreate":
            self.docker.recreate({name: entry["old_replicas"] or entry["replicas"]}, self.env_path)
            after = self.containers_by_service()
            self.gate([{"service": name, "new_ids": after.get(name, [])}])

    def record(self, started_at, files_before, outcome, reason=None):
        images = {}
        containers = self.listing if self.listing is not None else self.docker.containers(self.project)
        wanted = [entry["new_image"] for entry in self.plan if entry["new_image"]]
        inspected = dict(self.image_infos)
        missing = [ref for ref in wanted if ref not in inspected]
        if missing:
            inspected.update(self.docker.images(missing))
        for entry in self.plan:
            image = inspected.get(entry["new_image"]) if entry["new_image"] else None
            running = [i["Id"] for i in containers.get(entry["service"], [])
                       if (i.get("State") or {}).get("Status") == rollout.RUNNING]
            images[entry["service"]] = {"image": entry["new_image"],
                                        "image_id": image["id"] if image else None,
                                        "repo_digests": image["repo_digests"] if image else [],
                                        "fingerprint": entry["fingerprint"] if outcome == "success" else None,
                                        "containers": running if outcome == "success" else []}
        self.history.append({
            "run_id": self.run_id, "version": self.target_version,
            "previous_version": self.previous_version, "started_at": started_at, "finished_at": utc_now(),
            "outcome": outcome, "reason": reason, "kind": "rollback" if self.p["rollback_to"] else "release",
            "services": images, "scale": {e["service"]: e["replicas"] for e in self.plan},
            "snapshot": {"env": self.env_before, "files": files_before},
        })
        self.history.save()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_src=dict(type="path", required=True),
            files=dict(type="list", elements="str"),
            project_name=dict(type="str"),
            env_file=dict(type="str", default=".env"),
            require_env_file=dict(type="bool", default=False),
            profiles=dict(type="list", elements="str"),
            version=dict(type="str"),
            rollback_to=dict(type="str"),
            version_var=dict(type="str", default="SERVICE_VERSION"),
            image_vars=dict(type="dict"),
            services=dict(type="list", elements="str"),
            strategy=dict(type="raw", default="auto"),
            stateful_services=dict(type="list", elements="str", default=[]),
            health_timeout=dict(type="int", default=120),
            readiness_delay=dict(type="int", default=5),
            drain_seconds=dict(type="float", default=0),
            pre_stop_command=dict(type="list", elements="str"),
            stop_timeout=dict(type="int", default=10),
            pull=dict(type="bool", default=True),
            pull_retries=dict(type="int", default=2),
            rollback_on_failure=dict(type="bool", default=True),
            scale=dict(type="dict"),
            lock=dict(type="bool", default=True),
            lock_timeout=dict(type="int", default=0),
            lock_ttl=dict(type="int", default=600),
            run_id=dict(type="str"),
            history_keep=dict(type="int", default=20),
            parallel=dict(type="bool", default=True),
        ),
        mutually_exclusive=[("version", "rollback_to")],
        supports_check_mode=True,
    )
    ComposeRollout(module).run()


if __name__ == "__main__":
    main()
