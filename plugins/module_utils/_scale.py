# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Scaling the services of a compose project up or down (seed 004 section 6), for ``compose_scale``.

Planning and the capacity judgement are pure functions (unit-tested without Docker). ``ComposeScale`` drives the
Docker CLI through ``_compose.Docker``: scale-up adds containers next to the running ones (``up --no-recreate
--scale``) and waits for their health gate, removing them again when they never pass; scale-down stops the
highest-numbered replicas gracefully, by id.
"""

from __future__ import annotations

import os
import re
import time

from ansible_collections.runbook.release.plugins.module_utils import _compose as compose_utils
from ansible_collections.runbook.release.plugins.module_utils import _rollout as rollout
from ansible_collections.runbook.release.plugins.module_utils._host_checks import mem_available_mb

MIB = 1024 * 1024
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?\s*$", re.I)
_UNITS = {"": 1, "k": 1024, "m": MIB, "g": 1024 * MIB, "t": 1024 * 1024 * MIB}


class ScaleError(Exception):
    """Scaling is refused or failed; the message says what, the value, and what to do."""

    def __init__(self, message, **extra):
        super().__init__(message)
        self.extra = extra


# --- pure planning ------------------------------------------------------------------------------------------------

def parse_bytes(value):
    """Bytes of a compose size (``67108864`` as compose config prints it, or ``64m``, ``1g``, ``512MiB``), or None."""
    if value in (None, "", 0, "0"):
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value)
    match = _SIZE_RE.match(str(value))
    if not match:
        return None
    return int(float(match.group(1)) * _UNITS[match.group(2).lower()])


def parse_cpus(value):
    try:
        cpus = float(value)
    except (TypeError, ValueError):
        return None
    return cpus if cpus > 0 else None


def service_memory(service_config):
    """(bytes, source) of one replica's memory: its limit, else its reservation; (None, None) without either."""
    resources = (service_config.get("deploy") or {}).get("resources") or {}
    candidates = (
        ("mem_limit", service_config.get("mem_limit")),
        ("deploy.resources.limits.memory", (resources.get("limits") or {}).get("memory")),
        ("mem_reservation", service_config.get("mem_reservation")),
        ("deploy.resources.reservations.memory", (resources.get("reservations") or {}).get("memory")),
    )
    for source, value in candidates:
        size = parse_bytes(value)
        if size:
            return size, source
    return None, None


def service_cpus(service_config):
    """CPUs one replica may use (``cpus`` or ``deploy.resources.limits.cpus``), or None without a limit."""
    resources = (service_config.get("deploy") or {}).get("resources") or {}
    return parse_cpus(service_config.get("cpus")) or parse_cpus((resources.get("limits") or {}).get("cpus"))


def scale_blockers(name, service_config):
    """Why a service cannot run more than one replica (empty when it can)."""
    blockers = []
    ports = rollout.fixed_host_ports(service_config)
    if ports:
        blockers.append("it publishes fixed host port %s (a second replica cannot bind it)" % ", ".join(ports))
    if service_config.get("container_name"):
        blockers.append("it sets container_name %s (container names are unique)" % service_config["container_name"])
    if (service_config.get("deploy") or {}).get("mode") == "global":
        blockers.append("its deploy.mode is global (one replica per node)")
    return blockers


def validate_targets(targets, services_config, max_replicas=None):
    """Problems with the requested counts: unknown services, counts that are not whole numbers >= 0, above the
    maximum, or more than one replica of a service that cannot scale."""
    problems = []
    for name in sorted(targets):
        count = targets[name]
        if name not in services_config:
            problems.append("service %s is not in the project (it has %s): use one of those names"
                            % (name, ", ".join(sorted(services_config))))
            continue
        if not isinstance(count, int) or isinstance(count, bool) or count < 0:
            problems.append("the count for service %s is %r: use a whole number of replicas, 0 or more" % (name, count))
            continue
        if max_replicas is not None and count > max_replicas:
            problems.append("the count for service %s is %d, above the maximum of %d replicas (max_replicas): ask "
                            "for %d or fewer, or raise the maximum" % (name, count, max_replicas, max_replicas))
            continue
        blockers = scale_blockers(name, services_config[name])
        if count > 1 and blockers:
            problems.append("service %s cannot scale to %d replicas: %s; remove that from its compose definition to "
                            "scale it" % (name, count, " and ".join(blockers)))
    return problems


def plan(targets, running):
    """Per service (sorted): {service, before, after, action} with action none, scale_up or scale_down.
    ``running`` maps a service to its running replica count."""
    entries = []
    for name in sorted(targets):
        before = running.get(name, 0)
        after = targets[name]
        action = "none" if after == before else ("scale_up" if after > before else "scale_down")
        entries.append({"service": name, "before": before, "after": after, "action": action})
    return entries


def surplus(containers, count):
    """The ids to stop to leave ``count`` replicas: the highest container numbers first.
    ``containers`` are ``_rollout.container_summary`` dicts of running containers."""
    ordered = sorted(containers, key=lambda c: c["number"], reverse=True)
    return [c["id"] for c in ordered[:max(len(ordered) - count, 0)]]


def judge_capacity(entries, services_config, running, mem_available, host_cpus, min_free_memory_mb=256,
                   default_memory_mb=256, max_cpu_ratio=1.0):
    """(problems, figures) for the scale-up entries of a plan.

    Memory: the added replicas times each one's memory (limit, else reservation, else ``default_memory_mb``) must
    leave ``min_free_memory_mb`` of the host's available memory. CPU: the CPUs every running replica of the project
    may use after the change (services with a ``cpus`` limit) must not exceed ``max_cpu_ratio`` times the host's
    CPUs. ``running`` maps every service of the project to its running replica count."""
    problems = []
    figures = {"memory_available_mb": mem_available, "min_free_memory_mb": min_free_memory_mb, "host_cpus": host_cpus,
               "max_cpu_ratio": max_cpu_ratio, "memory_needed_mb": 0, "services": {}}
    counts_after = dict(running)
    needed_mb = 0.0
    for entry in entries:
        counts_after[entry["service"]] = entry["after"]
        if entry["action"] != "scale_up":
            continue
        size, source = service_memory(services_config[entry["service"]])
        per_replica = round(size / float(MIB), 1) if size else float(default_memory_mb)
        added = entry["after"] - entry["before"]
        needed_mb += per_replica * added
        figures["services"][entry["service"]] = {
            "added": added, "memory_per_replica_mb": per_replica,
            "memory_source": source or "default_memory_mb (no memory limit or reservation)",
            "cpus_per_replica": service_cpus(services_config[entry["service"]])}
    figures["memory_needed_mb"] = round(needed_mb, 1)
    if needed_mb and mem_available is not None and mem_available - needed_mb < min_free_memory_mb:
        detail = ", ".join("%s +%d x %s MiB (%s)" % (name, f["added"], f["memory_per_replica_mb"], f["memory_source"])
                           for name, f in sorted(figures["services"].items()))
        problems.append("not enough memory: the new replicas need %.0f MiB (%s), the host has %.0f MiB available and "
                        "must keep %s MiB free (min_free_memory_mb); ask for fewer replicas, free memory or add a "
                        "host" % (needed_mb, detail, mem_available, min_free_memory_mb))
    cpus_after = 0.0
    for name, count in counts_after.items():
        cpus = service_cpus(services_config.get(name) or {})
        if cpus:
            cpus_after += cpus * count
    figures["cpus_allotted_after"] = round(cpus_after, 2)
    grows_cpu = any(e["action"] == "scale_up" and service_cpus(services_config[e["service"]]) for e in entries)
    if grows_cpu and host_cpus and cpus_after > max_cpu_ratio * host_cpus:
        problems.append("not enough CPU: after scaling, the replicas with a cpus limit may use %.2f CPUs, above %s x %d "
                        "host CPUs (max_cpu_ratio); ask for fewer replicas, lower their cpus limit or add a host"
                        % (cpus_after, max_cpu_ratio, host_cpus))
    return problems, figures


def read_mem_available_mb(path="/proc/meminfo"):
    try:
        with open(path) as handle:
            return mem_available_mb(handle.read())
    except (IOError, OSError):
        return None


# --- the manager -------------------------------------------------------------------------------------------------

class ComposeScale(object):
    """Bring services of a compose project to the requested replica counts. ``params`` are the module's."""

    def __init__(self, module, docker=None, meminfo=read_mem_available_mb, cpu_count=os.cpu_count, sleep=time.sleep):
        self.module = module
        self.p = module.params
        self.src = self.p["project_src"]
        env_file = os.path.join(self.src, self.p["env_file"]) if self.p["env_file"] else None
        self.env_path = env_file if env_file and os.path.isfile(env_file) else None
        self.docker = docker or compose_utils.Docker(module, self.src, self.p["files"], self.p["project_name"],
                                                     self.p["profiles"])
        self.meminfo = meminfo
        self.cpu_count = cpu_count
        self.sleep = sleep
        self.result = {"changed": False, "plan": [], "replicas_before": {}, "replicas_after": {}, "capacity": {},
                       "reverted": False}

    # --- reading ---------------------------------------------------------------------------------------------

    def running_summaries(self):
        grouped = {}
        for service, infos in self.docker.containers(self.project).items():
            grouped[service] = [rollout.container_summary(i) for i in infos]
        return grouped

    def load(self):
        if not os.path.isdir(self.src):
            raise ScaleError("project_src %s is not a directory: point it at the compose project on the host" % self.src)
        try:
            self.config = self.docker.config(self.env_path)
        except compose_utils.CLIError as exc:
            raise ScaleError("docker compose cannot read the project in %s: %s"
                             % (self.src, (exc.stderr or exc.stdout or "").strip()[-600:]), **exc.as_result())
        self.project = self.p["project_name"] or self.config.get("name")
        self.services_config = self.config.get("services") or {}
        problems = validate_targets(self.p["replicas"], self.services_config, self.p["max_replicas"])
        if problems:
            raise ScaleError("cannot scale project %s: %s. Nothing was changed." % (self.project, "; ".join(problems)))
        self.summaries = self.running_summaries()
        self.running = {name: len([c for c in self.summaries.get(name, []) if c["status"] == rollout.RUNNING])
                        for name in self.services_config}

    def check_images(self, entries):
        """A new replica must run what the others run: refuse when the project now names another image."""
        for entry in entries:
            if entry["action"] != "scale_up" or not entry["before"]:
                continue
            wanted = self.services_config[entry["service"]].get("image")
            images = sorted({c["image"] for c in self.summaries.get(entry["service"], [])
                             if c["status"] == rollout.RUNNING and c["image"]})
            if wanted and images and images != [wanted]:
                raise ScaleError("service %s runs %s but the project now names %s: new replicas would run another "
                                 "version. Release first (playbooks/release.yml), then scale. Nothing was changed."
                                 % (entry["service"], ", ".join(images), wanted))

    def check_capacity(self, entries):
        problems, figures = judge_capacity(
            entries, self.services_config, self.running, self.meminfo(), self.cpu_count(),
            min_free_memory_mb=self.p["min_free_memory_mb"], default_memory_mb=self.p["default_memory_mb"],
            max_cpu_ratio=self.p["max_cpu_ratio"])
        figures["checked"] = self.p["capacity_check"]
        figures["problems"] = problems
        self.result["capacity"] = figures
        if problems and self.p["capacity_check"]:
            raise ScaleError("capacity check refused scaling project %s: %s. Nothing was changed."
                             % (self.project, "; ".join(problems)))

    # --- entry -------------------------------------------------------------------------------------------------

    def run(self):
        """The module's result; raises ScaleError (with the result so far in ``extra``) on refusal or failure."""
        self.load()
        entries = plan(self.p["replicas"], self.running)
        self.result["plan"] = entries
        self.result["replicas_before"] = {e["service"]: e["before"] for e in entries}
        self.result["replicas_after"] = {e["service"]: e["after"] for e in entries}
        self.result["project"] = self.project
        self.check_images(entries)
        self.check_capacity(entries)
        changing = [e for e in entries if e["action"] != "none"]
        self.result["changed"] = bool(changing)
        if self.module._diff:
            self.result["diff"] = {
                "before": "".join("%s: %d\n" % (e["service"], e["before"]) for e in entries),
                "after": "".join("%s: %d\n" % (e["service"], e["after"]) for e in entries),
                "before_header": "%s replicas" % self.project, "after_header": "%s replicas" % self.project}
        if changing and not self.module.check_mode:
            self.scale_down([e for e in changing if e["action"] == "scale_down"])
            self.scale_up([e for e in changing if e["action"] == "scale_up"])
            running = self.running_summaries()
            self.result["replicas_after"] = {
                e["service"]: len([c for c in running.get(e["service"], []) if c["status"] == rollout.RUNNING])
                for e in entries}
        self.result["replicas"] = self.describe_replicas() if not self.module.check_mode else {}
        return self.result

    def describe_replicas(self):
        """Running replicas of the scaled services: name, number, health and network addresses."""
        described = {}
        for service, infos in self.docker.containers(self.project).items():
            if service not in self.p["replicas"]:
                continue
            for info in infos:
                summary = rollout.container_summary(info)
                if summary["status"] != rollout.RUNNING:
                    continue
                networks = ((info.get("NetworkSettings") or {}).get("Networks") or {})
                described.setdefault(service, []).append({
                    "name": summary["name"], "id": summary["id"][:12], "number": summary["number"],
                    "health": summary["health"], "image": summary["image"],
                    "addresses": sorted(n.get("IPAddress") for n in networks.values() if n.get("IPAddress"))})
        return described

    # --- changing ----------------------------------------------------------------------------------------------

    def scale_down(self, entries):
        ids = []
        for entry in entries:
            running = [c for c in self.summaries.get(entry["service"], []) if c["status"] == rollout.RUNNING]
            entry["stopped"] = [c["name"] for c in sorted(running, key=lambda c: -c["number"])][
                :max(len(running) - entry["after"], 0)]
            ids += surplus(running, entry["after"])
        self.docker.retire(ids, self.p["stop_timeout"], self.p["pre_stop_command"], self.p["drain_seconds"],
                           sleep=self.sleep)

    def ids_by_service(self):
        return {service: [i["Id"] for i in infos] for service, infos in self.docker.containers(self.project).items()}

    def scale_up(self, entries):
        if not entries:
            return
        # Stopped containers serve nothing, and `up` would start them again instead of new ones: remove them first.
        stale = [c["id"] for e in entries for c in self.summaries.get(e["service"], []) if c["status"] != rollout.RUNNING]
        self.docker.remove(stale)
        before = self.ids_by_service()
        try:
            self.docker.scale_up({e["service"]: e["after"] for e in entries}, self.env_path)
        except compose_utils.CLIError as exc:
            after = self.ids_by_service()
            new_ids = [cid for e in entries for cid in after.get(e["service"], []) if cid not in before.get(e["service"], [])]
            self.revert(new_ids)
            raise ScaleError("docker compose could not add the replicas (%s); removed the %d new container(s), the "
                             "services are back to their previous counts" % (exc, len(new_ids)), **exc.as_result())
        after = self.ids_by_service()
        owner = {}
        for entry in entries:
            entry["added"] = [cid for cid in after.get(entry["service"], []) if cid not in before.get(entry["service"], [])]
            owner.update({cid: entry["service"] for cid in entry["added"]})
        if not owner:
            return
        try:
            rollout.wait_healthy(self.docker, list(owner), self.p["health_timeout"], self.p["readiness_delay"])
        except rollout.RolloutError as exc:
            self.revert(list(owner))
            service = owner.get(exc.evidence.get("container_id"), ", ".join(sorted(set(owner.values()))))
            raise ScaleError("a new replica of service %s failed its health gate: %s. Removed the %d new replica(s), "
                             "back to the previous counts (%s). Read the evidence, fix the service, then scale again"
                             % (service, exc, len(owner), ", ".join("%s=%d" % (e["service"], e["before"]) for e in entries)),
                             failed_service=service, evidence=exc.evidence)

    def revert(self, new_ids):
        self.result["reverted"] = True
        self.docker.stop(new_ids, self.p["stop_timeout"])
        self.docker.remove(new_ids)
        running = self.running_summaries()
        self.result["replicas_after"] = {
            name: len([c for c in running.get(name, []) if c["status"] == rollout.RUNNING]) for name in self.p["replicas"]}
