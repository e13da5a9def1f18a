# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""The Docker Compose v2 CLI and the Docker CLI, driven with argv lists through ``module.run_command``.

What compose already resolves (interpolation, profiles, defaults) is read from ``docker compose config
--format json``; containers and images are read as the JSON of ``docker inspect``, ``docker ps`` and ``docker image
inspect``, asked of the local engine's API directly when the CLI would ask that engine too (``_docker_api``, no
process per question), else through the CLI. Nothing here parses human-readable output.
"""

from __future__ import annotations

import json
import re
import time

from ansible_collections.runbook.release.plugins.module_utils._cli import CLIError  # noqa: F401 (re-exported)
from ansible_collections.runbook.release.plugins.module_utils._docker_api import EngineAPI, EngineError

MIN_COMPOSE_VERSION = (2, 20, 0)
PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
NUMBER_LABEL = "com.docker.compose.container-number"


def parse_version(text):
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", text or "")
    return tuple(int(part) for part in match.groups()) if match else None


class Docker(object):
    """The docker CLI and its compose plugin for one compose project."""

    def __init__(self, module, project_src, files=None, project_name=None, profiles=None, docker_cli=None,
                 engine_api=None):
        self.module = module
        self.project_src = project_src
        self.files = files or []
        self.project_name = project_name
        self.profiles = profiles or []
        self.docker = docker_cli or module.get_bin_path("docker", required=True)
        self.commands = []
        # Reads go to the local engine's API unless told otherwise (engine_api=False) or a docker CLI of the
        # caller's own is given (it may be a wrapper that talks to another engine).
        if engine_api is None:
            engine_api = not docker_cli
        self.api = EngineAPI.local() if engine_api else None
        self.api_fallback = None  # why the API was given up for the CLI, if it was

    def _api(self, what, *args):
        """Ask the engine's API (recorded in ``commands`` like a CLI call); None when it cannot be asked, after
        which every read uses the CLI."""
        if self.api is None:
            return None
        shown = [" ".join(a) if isinstance(a, list) else str(a) for a in args]
        self.commands.append("Docker Engine API (%s): %s %s" % (self.api.path, what, " ".join(shown)))
        try:
            return getattr(self.api, what)(*args)
        except EngineError as exc:
            self.api.close()
            self.api = None
            self.api_fallback = str(exc)
            return None

    # --- plumbing -------------------------------------------------------------------------------------------

    def run(self, argv, check=True, data=None):
        self.commands.append(" ".join(argv))
        rc, out, err = self.module.run_command(argv, data=data, check_rc=False, environ_update={"LC_ALL": "C"})
        if check and rc != 0:
            raise CLIError("%s failed (rc=%s): %s" % (" ".join(argv[:4]), rc, (err or out).strip()[-800:]),
                           cmd=argv, rc=rc, stdout=out, stderr=err)
        return rc, out, err

    def compose_args(self, env_file):
        argv = [self.docker, "compose", "--project-directory", self.project_src]
        for name in self.files:
            argv += ["-f", name]
        if self.project_name:
            argv += ["-p", self.project_name]
        if env_file:
            argv += ["--env-file", env_file]
        for profile in self.profiles:
            argv += ["--profile", profile]
        return argv

    def compose(self, args, env_file, check=True):
        return self.run(self.compose_args(env_file) + list(args), check=check)

    # --- reading ----------------------------------------------------------------------------------------------

    def compose_version(self):
        _rc, out, _err = self.run([self.docker, "compose", "version", "--short"])
        return parse_version(out), out.strip()

    def config(self, env_file):
        """The project as compose resolves it, for the given env file."""
        _rc, out, _err = self.compose(["config", "--format", "json"], env_file)
        return json.loads(out)

    def containers(self, project_name):
        """Every container of the project (running or not), inspected, grouped by service."""
        label = "%s=%s" % (PROJECT_LABEL, project_name)
        ids = self._api("container_ids", label)
        if ids is None:
            _rc, out, _err = self.run([self.docker, "ps", "-aq", "--no-trunc", "--filter", "label=%s" % label])
            ids = out.split()
        grouped = {}
        for info in self.inspect(ids):
            service = info["Config"]["Labels"].get(SERVICE_LABEL)
            grouped.setdefault(service, []).append(info)
        for infos in grouped.values():
            infos.sort(key=lambda i: int(i["Config"]["Labels"].get(NUMBER_LABEL, "0")))
        return grouped

    def inspect(self, ids):
        """The inspection of each container that exists (one that is gone is left out)."""
        if not ids:
            return []
        infos = self._api("inspect_containers", list(ids))
        if infos is not None:
            return infos
        rc, out, _err = self.run([self.docker, "inspect", "--type", "container"] + list(ids), check=False)
        if rc != 0 and not out.strip():
            return []
        return json.loads(out)

    def image(self, ref):
        """Local image id, repo digests and labels of an image reference, or None when absent."""
        if not ref:
            return None
        if self.api is not None:
            info = self._api("inspect_image", ref)
            if self.api is not None:
                return self._image_info(info) if info is not None else None
        rc, out, _err = self.run([self.docker, "image", "inspect", ref], check=False)
        if rc != 0:
            return None
        return self._image_info(json.loads(out)[0])

    @staticmethod
    def _image_info(info):
        return {"id": info["Id"], "repo_digests": info.get("RepoDigests") or [],
                "labels": (info.get("Config") or {}).get("Labels") or {}}

    def images(self, refs):
        """``image()`` for several references in one ``docker image inspect``: {ref: info or None}.

        A reference the batch cannot map back (absent, or named differently by Docker, such as an image from
        Docker Hub without its registry) is asked again on its own, so the answer is the same as ``image()``'s."""
        wanted = sorted(set(r for r in refs if r))
        if self.api is not None:  # no process per question: ask for each
            return {ref: self.image(ref) for ref in wanted}
        found = {}
        if wanted:
            _rc, out, _err = self.run([self.docker, "image", "inspect"] + wanted, check=False)
            try:
                infos = json.loads(out) if out.strip() else []
            except ValueError:
                infos = []
            for info in infos:
                names = set(info.get("RepoTags") or []) | set(info.get("RepoDigests") or []) | {info.get("Id")}
                for ref in wanted:
                    if ref in names:
                        found[ref] = self._image_info(info)
        return {ref: found[ref] if ref in found else self.image(ref) for ref in wanted}

    def logs_tail(self, container_id, lines=40):
        _rc, out, err = self.run([self.docker, "logs", "--tail", str(lines), container_id], check=False)
        return (out + err).splitlines()[-lines:]

    # --- changing ---------------------------------------------------------------------------------------------

    def pull(self, services, env_file, retries=3, delay=2.0):
        """Pull the services' images, retrying; raise the last failure."""
        last = None
        for attempt in range(retries + 1):
            try:
                self.compose(["pull", "--quiet"] + list(services), env_file)
                return attempt
            except CLIError as exc:
                last = exc
                if attempt < retries:
                    time.sleep(delay * (2 ** attempt))
        raise last

    def scale_up(self, replicas, env_file):
        """Add containers (with the current config) next to the running ones: nothing is recreated or stopped.
        ``replicas`` maps each service to its total container count; one compose call serves them all."""
        self._up(replicas, env_file, ["--no-recreate"])

    def recreate(self, replicas, env_file):
        """Stop-first: compose stops the old containers of these services and starts new ones."""
        self._up(replicas, env_file, ["--force-recreate"])

    def _up(self, replicas, env_file, extra):
        if not replicas:
            return
        args = ["up", "--detach", "--no-deps", "--no-build", "--pull", "never"] + extra
        for service in sorted(replicas):
            args += ["--scale", "%s=%d" % (service, replicas[service])]
        self.compose(args + sorted(replicas), env_file)

    def exec_in(self, container_id, argv):
        return self.run([self.docker, "exec", container_id] + list(argv), check=False)

    def stop(self, ids, timeout):
        if ids:
            self.run([self.docker, "stop", "--time", str(int(timeout))] + list(ids), check=False)

    def remove(self, ids):
        if ids:
            self.run([self.docker, "rm", "--force"] + list(ids), check=False)

    def retire(self, ids, stop_timeout, pre_stop_command=None, drain_seconds=0, sleep=time.sleep):
        """Take containers out gracefully: the pre-stop command in each, the drain pause, then SIGTERM with
        stop_timeout seconds before SIGKILL, then removal. compose_rollout and compose_scale retire the same way."""
        if not ids:
            return
        if pre_stop_command:
            for cid in ids:
                self.exec_in(cid, pre_stop_command)
        if drain_seconds:
            sleep(drain_seconds)
        self.stop(ids, stop_timeout)
        self.remove(ids)
