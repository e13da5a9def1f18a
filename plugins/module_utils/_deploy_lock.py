# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""The deploy lock: one per compose project on a host, shared by every module and by the playbook-wide lock.

The lock is a JSON file (run id, owner, host, pid, version, start time, heartbeat). It is re-entrant for the
same run id, so a playbook that holds it can call modules that take it again; re-entry refreshes the heartbeat
and keeps the holder's owner, version, start time and ttl, so the lock keeps naming the operator who started
the run and stays stale-able on the schedule that run chose. A lock whose heartbeat is older than its ttl is stale (its run was killed) and is taken
over with a warning. A short ``flock`` on a sidecar file makes every read-modify-write of the lock file atomic
between concurrent runs. Breaking a lock by force leaves a ``.broken`` note beside it (who, when, why, and the
record), so the run that lost it can say why.
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


def heartbeat_age(record, now):
    """Seconds since the record's last heartbeat (None when it has none)."""
    heartbeat = (record or {}).get("heartbeat")
    if not isinstance(heartbeat, (int, float)) or isinstance(heartbeat, bool):
        return None
    return max(0, int(round(now - heartbeat)))


def describe_holder(record, now):
    """``run R (owner O on H, pid P, deploying V since S, last heartbeat N s ago)`` for messages."""
    age = heartbeat_age(record, now)
    return "run %s (owner %s on %s, pid %s, deploying %s since %s, last heartbeat %s)" % (
        record.get("run_id"), record.get("owner"), record.get("host"), record.get("pid"), record.get("version"),
        record.get("started_at"), "%s s ago" % age if age is not None else "unknown")


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
        self.action = None
        self.record = None
        self.taken_over = None

    @contextmanager
    def _guard(self, dry_run=False):
        directory = os.path.dirname(self.path)
        guard_path = self.path + ".guard"
        if dry_run and not os.path.exists(guard_path):
            # A dry run creates nothing; without a guard file nobody has written a lock here yet.
            yield
            return
        if not os.path.isdir(directory):
            os.makedirs(directory, 0o755)
        with open(guard_path, "a", encoding="utf-8") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(guard, fcntl.LOCK_UN)

    def read(self):
        """The current holder's record, or None."""
        try:
            with open(self.path, encoding="utf-8") as handle:
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

    def _refreshed(self, current):
        """This run's record refreshed: the holder's owner, version, start and ttl stay (a module re-entering a
        playbook-wide lock, or a heartbeat, must not rename its owner nor change when a killed run's lock goes
        stale: the run that took the lock chose its ttl)."""
        record = self._record(started_at=current.get("started_at"))
        for key in ("owner", "version"):
            if current.get(key):
                record[key] = current[key]
        ttl = current.get("ttl")
        if isinstance(ttl, (int, float)) and not isinstance(ttl, bool):
            record["ttl"] = ttl
        return record

    def is_stale(self, record):
        heartbeat = record.get("heartbeat")
        ttl = record.get("ttl", self.ttl)
        return not isinstance(heartbeat, (int, float)) or self.clock() - heartbeat > ttl

    def decide(self, current):
        """What acquiring does with the current record: ``create``, ``reenter``, ``takeover`` or ``held``."""
        if current is None:
            return "create"
        if current.get("run_id") == self.run_id:
            return "reenter"
        return "takeover" if self.is_stale(current) else "held"

    def try_acquire(self, dry_run=False):
        """One attempt. Returns (created, holder_record_or_None_when_we_hold_it).

        ``action`` is left on the object (see decide()), ``record`` is the record written (or that would be, with
        ``dry_run``, which writes nothing) and ``taken_over`` the stale record replaced, if any.
        """
        with self._guard(dry_run):
            current = self.read()
            self.action = self.decide(current)
            if self.action == "held":
                return False, current
            if self.action == "reenter":
                self.record = self._refreshed(current)
            else:
                self.record = self._record()
            if self.action == "takeover":
                self.taken_over = current
                self.warnings.append(
                    "%s a stale deploy lock held by run %s (owner %s on %s, pid %s, version %s); its last "
                    "heartbeat was %s, older than the %s s ttl" % (
                        "would take over" if dry_run else "took over",
                        current.get("run_id"), current.get("owner"), current.get("host"), current.get("pid"),
                        current.get("version"), current.get("heartbeat_at"), current.get("ttl", self.ttl)))
            if not dry_run:
                self._write(self.record)
            return self.action != "reenter", None

    def acquire(self, timeout=0, poll=1.0, dry_run=False):
        deadline = self.clock() + timeout
        while True:
            created, holder = self.try_acquire(dry_run=dry_run)
            if holder is None:
                return created
            if self.clock() >= deadline:
                ttl = holder.get("ttl", self.ttl)
                age = heartbeat_age(holder, self.clock())
                raise LockError(
                    "the deploy lock %s is held by %s; waited %s s. Wait for that run to finish, or if it died, the "
                    "lock becomes stale %s s after its last heartbeat (%s%s)." % (
                        self.path, describe_holder(holder, self.clock()), timeout, ttl, holder.get("heartbeat_at"),
                        ", in about %s s" % max(0, int(ttl - age)) if age is not None and isinstance(ttl, (int, float))
                        else ""), owner=holder)
            time.sleep(poll)

    def heartbeat(self, dry_run=False):
        """Refresh the heartbeat if we still hold the lock; returns whether we do."""
        with self._guard(dry_run):
            current = self.read()
            if current is None or current.get("run_id") != self.run_id:
                return False
            self.record = self._refreshed(current)
            if not dry_run:
                self._write(self.record)
            return True

    def release(self, dry_run=False):
        """Remove the lock if this run holds it; returns whether it did (or would, with ``dry_run``)."""
        with self._guard(dry_run):
            current = self.read()
            if current is None or current.get("run_id") != self.run_id:
                return False
            if not dry_run:
                os.unlink(self.path)
            return True

    def break_lock(self, reason, by=None, dry_run=False):
        """Remove the lock whoever holds it, leaving a ``.broken`` note; returns the record removed, or None."""
        with self._guard(dry_run):
            current = self.read()
            if current is None or dry_run:
                return current
            now = self.clock()
            write_json_atomic(self.broken_note_path, {
                "broken_at": _now_iso(now), "broken_by": by or self.owner, "host": socket.gethostname(),
                "reason": reason, "lock": current}, mode=0o644)
            os.unlink(self.path)
            return current

    @property
    def broken_note_path(self):
        return self.path + ".broken"

    def broken_note(self):
        """The note the last break left (who, when, why, and the record it removed), or None."""
        try:
            with open(self.broken_note_path, encoding="utf-8") as handle:
                return json.load(handle)
        except (IOError, OSError, ValueError):
            return None
