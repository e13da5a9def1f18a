# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""The deploy lock: one per compose project on a host, shared by every module and by the playbook-wide lock.

The lock is a JSON file (run id, owner, host, pid, version, start time, heartbeat). It is re-entrant for the
same run id, so a playbook that holds it can call modules that take it again. A lock whose heartbeat is older
than its ttl is stale (its run was killed) and is taken over with a warning. A short ``flock`` on a sidecar
file makes every read-modify-write of the lock file atomic between concurrent runs.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from datetime import datetime, timezone

from ansible_collections.runbook.release.plugins.module_utils._atomic import write_json_atomic


class LockError(Exception):
    """The lock could not be taken; the message names the owner."""

    def __init__(self, message, owner=None):
        super().__init__(message)
        self.owner = owner


def _now_iso(ts=None):
    return datetime.fromtimestamp(ts if ts is not None else time.time(), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def default_lock_path(project_src):
    return os.path.join(project_src, ".runbook-release", "deploy.lock")


class DeployLock(object):
    """A re-entrant, heartbeat-based lock file.

    ``acquire()`` returns True when this call created the lock (so the caller should release it) and False when
    the same run id already held it (re-entry: the holder releases it).
    """

    def __init__(self, path, run_id, owner=None, version=None, ttl=600, clock=time.time):
        self.path = path
        self.run_id = run_id
        self.owner = owner or os.environ.get("USER") or "unknown"
        self.version = version
        self.ttl = ttl
        self.clock = clock
        self.warnings = []

    @contextmanager
    def _guard(self):
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        with open(self.path + ".guard", "a") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    def read(self):
        """The current holder's record, or None."""
        try:
            with open(self.path) as handle:
                return json.load(handle)
        except (IOError, OSError, ValueError):
            return None

    def _write(self, record):
        write_json_atomic(self.path, record, mode=0o644)

    def _record(self, started_at=None):
        now = self.clock()
        return {
            "run_id": self.run_id,
            "owner": self.owner,
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "version": self.version,
            "started_at": started_at or _now_iso(now),
            "heartbeat": now,
            "heartbeat_at": _now_iso(now),
            "ttl": self.ttl,
        }

    def is_stale(self, record):
        heartbeat = record.get("heartbeat")
        ttl = record.get("ttl", self.ttl)
        return not isinstance(heartbeat, (int, float)) or self.clock() - heartbeat > ttl

    def try_acquire(self):
        """One attempt. Returns (created, holder_record_or_None_when_we_hold_it)."""
        with self._guard():
            current = self.read()
            if current is None:
                self._write(self._record())
                return True, None
            if current.get("run_id") == self.run_id:
                self._write(self._record(started_at=current.get("started_at")))
                return False, None
            if self.is_stale(current):
                self.warnings.append(
                    "took over a stale deploy lock held by run %s (owner %s on %s, pid %s, version %s); its last "
                    "heartbeat was %s, older than the %s s ttl" % (
                        current.get("run_id"), current.get("owner"), current.get("host"), current.get("pid"),
                        current.get("version"), current.get("heartbeat_at"), current.get("ttl", self.ttl)))
                self._write(self._record())
                return True, None
            return False, current

    def acquire(self, timeout=0, poll=1.0):
        deadline = self.clock() + timeout
        while True:
            created, holder = self.try_acquire()
            if holder is None:
                return created
            if self.clock() >= deadline:
                raise LockError(
                    "the deploy lock %s is held by run %s (owner %s on %s, pid %s, deploying %s since %s); waited "
                    "%s s. Wait for that run to finish, or if it died, the lock becomes stale %s s after its last "
                    "heartbeat (%s)." % (
                        self.path, holder.get("run_id"), holder.get("owner"), holder.get("host"), holder.get("pid"),
                        holder.get("version"), holder.get("started_at"), timeout, holder.get("ttl", self.ttl),
                        holder.get("heartbeat_at")), owner=holder)
            time.sleep(poll)

    def heartbeat(self):
        """Refresh the heartbeat if we still hold the lock; returns whether we do."""
        with self._guard():
            current = self.read()
            if current is None or current.get("run_id") != self.run_id:
                return False
            self._write(self._record(started_at=current.get("started_at")))
            return True

    def release(self):
        """Remove the lock if this run holds it; returns whether it did."""
        with self._guard():
            current = self.read()
            if current is None or current.get("run_id") != self.run_id:
                return False
            os.unlink(self.path)
            return True
