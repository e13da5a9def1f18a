# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Planning and running a release of a compose project, service by service, with whole-release rollback.

Planning is pure (unit-tested without Docker): env-file edits, strategy choice, dependency order and the
per-service action. Running drives the Docker CLI through ``_compose.Docker``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time

VERSION_RE = re.compile(r"^[A-Za-z0-9_.-]{1,128}$")
STRATEGIES = ("auto", "rolling", "recreate")
RUNNING = "running"


class RolloutError(Exception):
    """A service failed its gate; carries the evidence."""

    def __init__(self, message, service=None, evidence=None):
        super().__init__(message)
        self.service = service
        self.evidence = evidence or {}


# --- env files ---------------------------------------------------------------------------------------------------

_LINE_RE_CACHE = {}


def _line_re(var):
    if var not in _LINE_RE_CACHE:
        _LINE_RE_CACHE[var] = re.compile(r"^(\s*(?:export\s+)?%s\s*=\s*)(.*?)\s*$" % re.escape(var))
    return _LINE_RE_CACHE[var]


def _unquote(value):
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def env_get(content, var):
    """The value of ``var`` in an env file's text (last assignment wins, as compose reads it), or None."""
    value = None
    for line in content.splitlines():
        match = _line_re(var).match(line)
        if match:
            value = _unquote(match.group(2))
    return value


def env_set(content, var, value):
    """Return the text with ``var`` set to ``value``: every assignment replaced, or one line appended."""
    lines = content.splitlines()
    found = False
    for index, line in enumerate(lines):
        match = _line_re(var).match(line)
        if match:
            lines[index] = match.group(1) + value
            found = True
    if not found:
        lines.append("%s=%s" % (var, value))
    return "\n".join(lines) + "\n"


def image_tag(reference):
    """The tag of an image reference (``registry:5000/name:tag`` -> ``tag``), or None."""
    if not reference or "@" in reference:
        return None
    last = reference.rsplit("/", 1)[-1]
    return last.rsplit(":", 1)[1] if ":" in last else None


def pin_version(content, version, version_var=None, image_vars=None):
    """Pin ``version`` in env text: ``version_var=version`` or, per image var, ``VAR=repository:version``."""
    if image_vars:
        for var, repository in sorted(image_vars.items()):
            content = env_set(content, var, "%s:%s" % (repository, version))
        return content
    return env_set(content, version_var, version)


def pinned_version(content, version_var=None, image_vars=None):
    if image_vars:
        tags = {image_tag(env_get(content, var)) for var in image_vars}
        tags.discard(None)
        return tags.pop() if len(tags) == 1 else (", ".join(sorted(tags)) or None)
    return env_get(content, version_var)


# --- planning ---------------------------------------------------------------------------------------------------

def fixed_host_ports(service_config):
    ports = []
    for port in service_config.get("ports") or []:
        if isinstance(port, dict) and port.get("published"):
            ports.append(str(port["published"]))
    return ports


def choose_strategy(name, service_config, requested="auto", stateful=()):
    """(strategy, reason): ``rolling`` (start-first) or ``recreate`` (stop-first). Raises ValueError when a
    requested rolling update cannot work."""
    blockers = []
    ports = fixed_host_ports(service_config)
    if ports:
        blockers.append("publishes fixed host port %s" % ", ".join(ports))
    if service_config.get("container_name"):
        blockers.append("sets container_name %s" % service_config["container_name"])
    if name in stateful:
        blockers.append("is listed in stateful_services")
    order = ((service_config.get("deploy") or {}).get("update_config") or {}).get("order")
    if requested == "rolling":
        if blockers:
            raise ValueError("strategy 'rolling' is impossible for service %s: it %s (two containers cannot run at "
                             "once); use strategy 'recreate' or 'auto'" % (name, " and ".join(blockers)))
        return "rolling", "requested"
    if requested == "recreate":
        return "recreate", "requested"
    if blockers:
        return "recreate", "stop-first because it " + " and ".join(blockers)
    if order == "stop-first":
        return "recreate", "stop-first because deploy.update_config.order is stop-first"
    return "rolling", "start-first: the new container is healthy before the old one stops"


def service_fingerprint(service_config):
    """Our own hash of a service's resolved config (compose's config-hash label is not reproducible from its CLI)."""
    return hashlib.sha256(json.dumps(service_config, sort_keys=True).encode("utf-8")).hexdigest()


def dependency_order(services_config):
    """Services ordered so that dependencies come first; ties in name order."""
    remaining = {name: set((cfg.get("depends_on") or {}).keys()) & set(services_config)
                 for name, cfg in services_config.items()}
    order = []
    while remaining:
        ready = sorted(name for name, deps in remaining.items() if not deps - set(order))
        if not ready:  # a cycle: compose itself rejects those, keep going deterministically
            ready = [sorted(remaining)[0]]
        for name in ready:
            order.append(name)
            del remaining[name]
    return order


def waves(order, services_config, parallel=True):
    """Group services into waves that roll together: a service is always in a later wave than the selected
    services it depends on, directly or through others. Without ``parallel``, one service per wave, in order."""
    if not parallel:
        return [[name] for name in order]
    selected = set(order)
    memo = {}

    def level(name, path=()):
        if name in memo:
            return memo[name]
        result = 0
        for dep in (services_config.get(name, {}).get("depends_on") or {}):
            if dep in services_config and dep not in path:
                result = max(result, level(dep, path + (name,)) + (1 if dep in selected else 0))
        memo[name] = result
        return result

    grouped = {}
    for name in order:
        grouped.setdefault(level(name), []).append(name)
    return [grouped[key] for key in sorted(grouped)]


def container_summary(info):
    state = info.get("State") or {}
    health = (state.get("Health") or {}).get("Status")
    labels = (info.get("Config") or {}).get("Labels") or {}
    return {
        "id": info["Id"],
        "name": info.get("Name", "").lstrip("/"),
        "image": (info.get("Config") or {}).get("Image"),
        "image_id": info.get("Image"),
        "status": state.get("Status"),
        "health": health,
        "restarts": info.get("RestartCount", 0),
        "config_hash": labels.get("com.docker.compose.config-hash"),
        "number": int(labels.get("com.docker.compose.container-number", "0")),
    }


def plan_service(name, containers, desired_hash, target_ref, target_image_id, replicas, strategy, reason):
    """Decide what one service needs. ``containers`` are container_summary() dicts."""
    current = [c for c in containers if c["status"] == RUNNING and c["config_hash"] == desired_hash
               and (target_image_id is None or c["image_id"] == target_image_id)]
    outdated = [c for c in containers if c not in current]
    old_images = sorted({c["image"] for c in outdated if c["image"]}) or sorted({c["image"] for c in current})
    if not containers:
        action = "start"
    elif outdated:
        action = strategy
    elif len(current) < replicas:
        action = "scale_up"
    elif len(current) > replicas:
        action = "scale_down"
    else:
        action = "none"
    return {
        "service": name,
        "action": action,
        "strategy": strategy,
        "reason": reason,
        "old_image": ", ".join(old_images) or None,
        "new_image": target_ref,
        "old_replicas": len([c for c in containers if c["status"] == RUNNING]),
        "replicas": replicas,
        "replace": [c["id"] for c in outdated if c["status"] == RUNNING],
        "stopped": [c["id"] for c in outdated if c["status"] != RUNNING],
        "keep": [c["id"] for c in current],
    }


# --- health gate --------------------------------------------------------------------------------------------------

def gate_verdict(summary, has_healthcheck, started, now, readiness_delay):
    """'ok', 'wait' or a failure reason for one new container."""
    if summary["status"] in ("exited", "dead") or summary["restarts"] > 0 or summary["status"] == "restarting":
        return "container %s exited or restarted (status %s, %s restarts)" % (
            summary["name"], summary["status"], summary["restarts"])
    if has_healthcheck:
        if summary["health"] == "healthy":
            return "ok"
        if summary["health"] == "unhealthy":
            return "container %s is unhealthy" % summary["name"]
        return "wait"
    if summary["status"] == RUNNING and now - started >= readiness_delay:
        return "ok"
    return "wait"


def wait_healthy(docker, ids, timeout, readiness_delay, heartbeat=None, poll=None, clock=time.monotonic):
    """Wait until every container passes its gate; raise RolloutError with the evidence otherwise.

    Asked every ``poll`` seconds: by default 0.1 s when the engine's API answers (a question costs well under a
    millisecond), 0.25 s when each is a ``docker inspect`` process."""
    if poll is None:
        poll = 0.1 if getattr(docker, "api", None) is not None else 0.25
    started = clock()
    while True:
        infos = docker.inspect(ids)
        found = {info["Id"]: info for info in infos}
        verdicts = {}
        for cid in ids:
            info = found.get(cid)
            if info is None:
                raise RolloutError("container %s disappeared while starting" % cid[:12], evidence={"container": cid})
            summary = container_summary(info)
            has_check = bool((info.get("Config") or {}).get("Healthcheck"))
            verdicts[cid] = (gate_verdict(summary, has_check, started, clock(), readiness_delay), info)
        failed = [(cid, v) for cid, v in verdicts.items() if v[0] not in ("ok", "wait")]
        if failed:
            cid, (reason, info) = failed[0]
            raise RolloutError(reason, evidence=_evidence(docker, info))
        if all(v[0] == "ok" for v in verdicts.values()):
            return clock() - started
        if clock() - started > timeout:
            waiting = [v[1] for v in verdicts.values() if v[0] == "wait"]
            raise RolloutError("container %s did not become healthy within %s s" % (
                waiting[0].get("Name", "").lstrip("/"), timeout), evidence=_evidence(docker, waiting[0]))
        if heartbeat is not None:
            heartbeat()
        time.sleep(poll)


def _evidence(docker, info):
    health = ((info.get("State") or {}).get("Health") or {}).get("Log") or []
    return {
        "container": info.get("Name", "").lstrip("/"),
        "container_id": info["Id"],
        "state": (info.get("State") or {}).get("Status"),
        "exit_code": (info.get("State") or {}).get("ExitCode"),
        "restarts": info.get("RestartCount", 0),
        "health_log": [{"exit_code": h.get("ExitCode"), "output": (h.get("Output") or "").strip()[-300:]}
                       for h in health[-5:]],
        "container_log": docker.logs_tail(info["Id"]),
    }
