# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Release history of a compose project: the host's truth about what is deployed.

One JSON file in the project directory (mode 0600: the snapshots hold env files, which may hold secrets).
Each entry records a rollout: versions, per-service images and digests, outcome, and a snapshot of the env and
compose files as they were before the change, so ``rollback_to: previous`` can restore both. The last known good
entry and its snapshot are never pruned.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone

from ansible_collections.runbook.release.plugins.module_utils._atomic import write_json_atomic

SCHEMA = 1


def default_history_path(project_src):
    return os.path.join(project_src, ".runbook-release", "history.json")


def utc_now():
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class History(object):

    def __init__(self, path, keep=20):
        self.path = path
        self.keep = keep
        self.data = {"schema": SCHEMA, "releases": []}
        if os.path.exists(path):
            with open(path) as handle:
                loaded = json.load(handle)
            if not isinstance(loaded, dict) or not isinstance(loaded.get("releases"), list):
                raise ValueError("%s is not a release history file (no 'releases' list); move it away or fix it"
                                 % path)
            self.data = loaded

    @property
    def releases(self):
        return self.data["releases"]

    def last_known_good(self):
        for entry in reversed(self.releases):
            if entry.get("outcome") == "success":
                return entry
        return None

    def entry_for_rollback(self, current_version):
        """The newest successful release that brought ``current_version``: its snapshot is the state before it."""
        for entry in reversed(self.releases):
            if entry.get("outcome") == "success" and entry.get("kind") != "rollback" \
                    and entry.get("version") == current_version \
                    and entry.get("previous_version") and entry.get("previous_version") != current_version:
                return entry
        return None

    def scale_of(self, service):
        """The replicas last set for a service by a rollout, if any."""
        for entry in reversed(self.releases):
            replicas = (entry.get("scale") or {}).get(service)
            if replicas is not None and entry.get("outcome") == "success":
                return replicas
        return None

    def container_fingerprints(self):
        """Container id -> the config fingerprint it was started with, from every recorded rollout."""
        known = {}
        for entry in self.releases:
            for service in (entry.get("services") or {}).values():
                for cid in service.get("containers") or []:
                    known[cid] = service.get("fingerprint")
        return known

    def append(self, entry):
        self.releases.append(entry)
        self._prune()

    def _prune(self):
        if self.keep <= 0 or len(self.releases) <= self.keep:
            return
        keep_ids = {id(e) for e in self.releases[-self.keep:]}
        good = self.last_known_good()
        if good is not None:
            keep_ids.add(id(good))
        self.data["releases"] = [e for e in self.releases if id(e) in keep_ids]

    def save(self):
        write_json_atomic(self.path, self.data, mode=0o600)
