# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""The deployment record: what the ``runbook.release.deployment_record`` callback writes for every run.

``RecordBuilder`` turns the events of a run (tasks starting, host results, release data fragments, final
stats) into one record; it knows nothing about Ansible objects, so it is tested on its own. The file helpers
write the append-only journal (one JSON line per event, so a crash leaves a partial record) and the final
files (temp file, fsync, rename, mode 0600). ``git_info`` reads the project's commit without running git.
"""

from __future__ import annotations

import json
import os
import re
import struct
import tempfile
import time
import zlib
from datetime import datetime, timedelta, timezone

from ansible_collections.runbook.release.plugins.module_utils import _release_data as rd


RECORD_VERSION = 1
# Worst first: the status of a task over its hosts is the worst status any host had.
STATUS_ORDER = ("unreachable", "failed", "interrupted", "ignored", "changed", "ok", "skipped")
SECTIONS = ("pre_tasks", "tasks", "post_tasks", "handlers")
HANDOFF_VARS = {
    "release_handoff_watch_for": "watch_for",
    "release_handoff_known_issues": "known_issues",
    "release_handoff_dashboards": "dashboards",
    "release_escalation_contacts": "escalation_contacts",
    "release_changes": "changes",
    "release_rollback_command": "rollback_command",
}
DEFAULT_ROLLBACK_COMMAND = "ansible-playbook playbooks/rollback.yml -e rollback_to=previous"
_SAFE = re.compile(r"[^A-Za-z0-9._-]+")
_LINE_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


def safe_name(text, default="unknown", limit=64):
    """A file-name component made of letters, digits, '.', '_' and '-' only (no path tricks, no dotfiles)."""
    out = _SAFE.sub("-", str(text or "")).strip(".-")[:limit].strip(".-")
    return out or default


def plain(data):
    """Plain JSON-able Python data from whatever Ansible hands a callback (tagged strings, mappings, ...)."""
    if data is None or isinstance(data, bool):
        return data
    if isinstance(data, str):
        return str(data)
    if isinstance(data, int):
        return int(data)
    if isinstance(data, float):
        return float(data)
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    if isinstance(data, datetime):
        return iso(data)
    if hasattr(data, "items"):
        return {str(k): plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple, set, frozenset)):
        return [plain(v) for v in data]
    return str(data)


def utc_now():
    return datetime.now(timezone.utc)


def iso(moment):
    """UTC ISO-8601 with a Z, as the release data contract writes times."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text):
    """A datetime (UTC) from an ISO-8601 string ('Z' or an offset, fractions optional), or None."""
    if not isinstance(text, str) or not text:
        return None
    match = re.match(r"^(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:\.(\d{1,9}))?)?\s*(Z|[+-]\d\d:?\d\d)?$",
                     text.strip())
    if not match:
        return None
    year, month, day, hour, minute, sec, frac, zone = match.groups()
    micro = int((frac or "0").ljust(6, "0")[:6])
    moment = datetime(int(year), int(month), int(day), int(hour), int(minute), int(sec or 0), micro,
                      tzinfo=timezone.utc)
    if zone and zone != "Z":
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        moment -= sign * timedelta(hours=int(digits[:2]), minutes=int(digits[2:]))
    return moment


# ---------------------------------------------------------------------------------------------- files

def ensure_dir(path):
    os.makedirs(path, mode=0o700, exist_ok=True)
    return path


def write_atomic(path, text, mode=0o600):
    """Write text to path atomically: a temp file in the same directory, fsync, rename, then fsync the dir."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass
    return path


class Journal:
    """Append-only JSON lines, one write(2) per event, so whatever happened before a crash is on disk."""

    def __init__(self, path):
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

    def write(self, event):
        if self._fd is None:
            return
        os.write(self._fd, (_LINE_ENCODER.encode(event) + "\n").encode("utf-8"))

    def sync(self):
        if self._fd is not None:
            os.fsync(self._fd)

    def close(self, sync=True):
        if self._fd is None:
            return
        try:
            if sync:
                os.fsync(self._fd)
        finally:
            os.close(self._fd)
            self._fd = None


# ---------------------------------------------------------------------------------------------- project

def find_git_dir(start):
    """The .git directory of the repository holding start (a worktree's .git file is followed), or None."""
    path = os.path.abspath(start or ".")
    while True:
        candidate = os.path.join(path, ".git")
        if os.path.isdir(candidate):
            return candidate
        if os.path.isfile(candidate):
            with open(candidate, encoding="utf-8") as handle:
                line = handle.read().strip()
            if line.startswith("gitdir:"):
                return os.path.normpath(os.path.join(path, line[len("gitdir:"):].strip()))
        parent = os.path.dirname(path)
        if parent == path:
            return None
        path = parent


def _common_dir(git_dir):
    try:
        with open(os.path.join(git_dir, "commondir"), encoding="utf-8") as handle:
            return os.path.normpath(os.path.join(git_dir, handle.read().strip()))
    except OSError:
        return git_dir


def _resolve_ref(git_dir, ref):
    for base in (git_dir, _common_dir(git_dir)):
        try:
            with open(os.path.join(base, ref), encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError:
            continue
    try:
        with open(os.path.join(_common_dir(git_dir), "packed-refs"), encoding="utf-8") as handle:
            for line in handle:
                parts = line.split()
                if len(parts) == 2 and parts[1] == ref:
                    return parts[0]
    except OSError:
        pass
    return None


def _object_dirs(objects):
    """The objects directory and its alternates (clones made with --reference or --shared)."""
    dirs = [objects]
    try:
        with open(os.path.join(objects, "info", "alternates"), encoding="utf-8") as handle:
            for line in handle:
                line = line.strip()
                if line and not line.startswith("#"):
                    dirs.append(os.path.normpath(os.path.join(objects, line)))
    except OSError:
        pass
    return dirs


def _idx_offset(idx, want):
    """Offset of object want (20 bytes) in a pack with index idx (v2 format), or None."""
    if idx[:4] != b"\xfftOc" or struct.unpack(">I", idx[4:8])[0] != 2:
        return None
    fanout = struct.unpack(">256I", idx[8:8 + 1024])
    total = fanout[255]
    low = fanout[want[0] - 1] if want[0] else 0
    high = fanout[want[0]]
    shas = 8 + 1024
    while low < high:
        mid = (low + high) // 2
        here = idx[shas + 20 * mid:shas + 20 * mid + 20]
        if here < want:
            low = mid + 1
        elif here > want:
            high = mid
        else:
            offsets = shas + 20 * total + 4 * total
            offset = struct.unpack(">I", idx[offsets + 4 * mid:offsets + 4 * mid + 4])[0]
            if offset & 0x80000000:
                large = offsets + 4 * total + 8 * (offset & 0x7FFFFFFF)
                offset = struct.unpack(">Q", idx[large:large + 8])[0]
            return offset
    return None


def _inflate(pack, offset):
    """The zlib stream starting at offset in an open pack file, inflated."""
    pack.seek(offset)
    inflater = zlib.decompressobj()
    out = []
    while not inflater.eof:
        chunk = pack.read(16 * 1024)
        if not chunk:
            break
        out.append(inflater.decompress(chunk))
    return b"".join(out)


def _apply_delta(base, delta):
    """Git's delta format: two sizes, then copy-from-base and insert instructions."""
    pos = 0
    for _size in range(2):
        while delta[pos] & 0x80:
            pos += 1
        pos += 1
    out = bytearray()
    while pos < len(delta):
        op = delta[pos]
        pos += 1
        if op & 0x80:
            start = size = 0
            for bit in range(4):
                if op & (1 << bit):
                    start |= delta[pos] << (8 * bit)
                    pos += 1
            for bit in range(3):
                if op & (0x10 << bit):
                    size |= delta[pos] << (8 * bit)
                    pos += 1
            out += base[start:start + (size or 0x10000)]
        elif op:
            out += delta[pos:pos + op]
            pos += op
        else:
            raise ValueError("invalid delta instruction 0")
    return bytes(out)


def _pack_entry(pack, offset, dirs, depth=0):
    """(type, body) of the pack entry at offset, with OFS_DELTA and REF_DELTA chains resolved."""
    if depth > 64:
        return None
    pack.seek(offset)
    head = pack.read(32)
    kind = (head[0] >> 4) & 7
    pos = 1
    while head[pos - 1] & 0x80:
        pos += 1
    if kind in (1, 2, 3, 4):
        return kind, _inflate(pack, offset + pos)
    if kind == 6:  # OFS_DELTA: base at a negative offset in the same pack
        byte = head[pos]
        pos += 1
        distance = byte & 0x7F
        while byte & 0x80:
            byte = head[pos]
            pos += 1
            distance = ((distance + 1) << 7) | (byte & 0x7F)
        base = _pack_entry(pack, offset - distance, dirs, depth + 1)
    elif kind == 7:  # REF_DELTA: base named by its id
        base = _object(dirs, head[pos:pos + 20].hex(), depth + 1)
        pos += 20
    else:
        return None
    if base is None:
        return None
    return base[0], _apply_delta(base[1], _inflate(pack, offset + pos))


def _object(dirs, sha, depth=0):
    """(type, body) of object sha, loose or packed, in any of dirs; None when not found."""
    want = bytes.fromhex(sha)
    kinds = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}
    for objects in dirs:
        try:
            with open(os.path.join(objects, sha[:2], sha[2:]), "rb") as handle:
                header, body = zlib.decompress(handle.read()).split(b"\0", 1)
            return kinds.get(header.split(b" ", 1)[0]), body
        except OSError:
            pass
        pack_dir = os.path.join(objects, "pack")
        try:
            names = sorted(n for n in os.listdir(pack_dir) if n.endswith(".idx"))
        except OSError:
            continue
        for name in names:
            with open(os.path.join(pack_dir, name), "rb") as handle:
                offset = _idx_offset(handle.read(), want)
            if offset is not None:
                with open(os.path.join(pack_dir, name[:-4] + ".pack"), "rb") as pack:
                    return _pack_entry(pack, offset, dirs, depth)
    return None


def _commit_body(git_dir, sha):
    try:
        found = _object(_object_dirs(os.path.join(_common_dir(git_dir), "objects")), sha)
    except (OSError, ValueError, IndexError, zlib.error, struct.error):
        return None
    return found[1] if found and found[0] == 1 else None


def git_info(start):
    """{commit, committed_at, branch} of the repository holding start, read from .git; {} when unknown."""
    git_dir = find_git_dir(start)
    if not git_dir:
        return {}
    with open(os.path.join(git_dir, "HEAD"), encoding="utf-8") as handle:
        head = handle.read().strip()
    branch = None
    if head.startswith("ref:"):
        ref = head[4:].strip()
        branch = ref[len("refs/heads/"):] if ref.startswith("refs/heads/") else ref
        sha = _resolve_ref(git_dir, ref)
    else:
        sha = head
    if not sha or not re.match(r"^[0-9a-f]{40}$", sha):
        return {"branch": branch} if branch else {}
    info = {"commit": sha, "branch": branch, "committed_at": None}
    body = _commit_body(git_dir, sha)
    if body:
        match = re.search(rb"^committer .* (\d+) ([+-]\d{4})$", body, re.M)
        if match:
            info["committed_at"] = iso(datetime.fromtimestamp(int(match.group(1)), timezone.utc))
    return info


def collection_info(root):
    """namespace.name and version of the collection at root, from MANIFEST.json or galaxy.yml."""
    try:
        with open(os.path.join(root, "MANIFEST.json"), encoding="utf-8") as handle:
            meta = json.load(handle)["collection_info"]
        return {"name": "%s.%s" % (meta["namespace"], meta["name"]), "version": meta["version"]}
    except (OSError, ValueError, KeyError):
        pass
    found = {}
    try:
        with open(os.path.join(root, "galaxy.yml"), encoding="utf-8") as handle:
            for line in handle:
                match = re.match(r"^(namespace|name|version):\s*['\"]?([^'\"\s#]+)", line)
                if match:
                    found.setdefault(match.group(1), match.group(2))
    except OSError:
        return {}
    if not found:
        return {}
    return {"name": "%s.%s" % (found.get("namespace", "?"), found.get("name", "?")), "version": found.get("version")}


# ---------------------------------------------------------------------------------------------- builder

def _worst(statuses):
    for status in STATUS_ORDER:
        if status in statuses:
            return status
    return "ok"


def deep_merge(base, fragment):
    """Merge like ``set_stats`` with ``aggregate: true``: dictionaries recursively, anything else replaced."""
    out = dict(base)
    for key, value in fragment.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def merge_custom_stats(custom):
    """The run's release data from ``stats.custom``: the run-wide ``_run`` part, then each host's part.

    ansible-core keeps custom stats per host name, with ``_run`` for ``set_stats`` without ``per_host``.
    """
    release = {}
    if not custom:
        return release
    keys = ["_run"] + sorted(k for k in custom if k != "_run")
    for key in keys:
        part = (custom.get(key) or {}).get(rd.STATS_KEY)
        if isinstance(part, dict):
            release = deep_merge(release, plain(part))
    return release


class RecordBuilder:
    """Collects the events of one run and builds its record. Times come from a monotonic clock."""

    def __init__(self, record_id, clock=time.monotonic, wallclock=utc_now):
        self._clock = clock
        self._t0 = clock()
        self.started = wallclock()
        self.record_id = record_id
        self.meta = {}
        self.vars = {}
        self.handoff = {}
        self.tasks = []
        self._by_uid = {}
        self._current = None
        self.fragments = {}
        self.first_failure = None
        self.aborted = None
        self.finished_s = None

    def now_s(self):
        return round(self._clock() - self._t0, 6)

    def at(self, offset_s):
        return iso(self.started + timedelta(seconds=offset_s))

    def _close_current(self, now_s):
        if self._current is not None and self._current["end_s"] is None:
            self._current["end_s"] = now_s
        self._current = None

    def task_start(self, uid, name, action, phase, play=None):
        now_s = self.now_s()
        self._close_current(now_s)
        entry = {"uid": uid, "name": name, "action": action, "phase": phase, "play": play, "start_s": now_s,
                 "end_s": None, "hosts": {}, "changed": 0}
        self.tasks.append(entry)
        self._by_uid[uid] = entry
        self._current = entry
        return entry

    def task_result(self, uid, host, status, changed=False):
        entry = self._by_uid.get(uid)
        if entry is None:
            return None
        entry["hosts"][host] = _worst((status, entry["hosts"].get(host, "skipped")))
        if changed:
            entry["changed"] += 1
        if status in ("failed", "unreachable") and self.first_failure is None:
            self.first_failure = {"task": entry["name"], "action": entry["action"], "phase": entry["phase"],
                                  "host": host, "status": status, "at": self.at(self.now_s())}
        return entry

    def release_fragment(self, fragment):
        """A set_stats fragment seen as it happened (kept for runs that never reach their final stats)."""
        if isinstance(fragment, dict):
            self.fragments = deep_merge(self.fragments, plain(fragment))

    def abort(self, reason, signal_name=None):
        if self.aborted is None:
            self.aborted = {"reason": reason, "signal": signal_name, "at": self.at(self.now_s())}

    def _statuses(self, task):
        statuses = set(task["hosts"].values())
        if not statuses and self.aborted is not None and self.tasks and task is self.tasks[-1]:
            statuses.add("interrupted")
        return statuses

    def phases(self):
        out = {}
        for task in self.tasks:
            end = task["end_s"] if task["end_s"] is not None else self.now_s()
            phase = out.get(task["phase"])
            if phase is None:
                phase = out[task["phase"]] = {"name": task["phase"], "start_s": task["start_s"], "end_s": end,
                                              "duration_s": 0.0, "tasks": 0, "changed": 0, "statuses": set()}
            phase["end_s"] = max(phase["end_s"], end)
            phase["duration_s"] += end - task["start_s"]
            phase["tasks"] += 1
            phase["changed"] += task["changed"]
            phase["statuses"].update(self._statuses(task))
        result = []
        for phase in sorted(out.values(), key=lambda p: p["start_s"]):
            statuses = phase.pop("statuses")
            phase["status"] = _worst(statuses) if statuses else "skipped"
            phase["started_at"] = self.at(phase["start_s"])
            phase["finished_at"] = self.at(phase["end_s"])
            phase["start_s"] = round(phase["start_s"], 3)
            phase["end_s"] = round(phase["end_s"], 3)
            phase["duration_s"] = round(phase["duration_s"], 3)
            result.append(phase)
        return result

    def _outcome(self, release, host_stats):
        if self.aborted is not None:
            return "aborted"
        claimed = release.get("outcome")
        if claimed == "rolled_back":
            return "rolled_back"
        failed = any((s.get("failures") or 0) + (s.get("unreachable") or 0) for s in (host_stats or {}).values())
        if failed or (host_stats is None and self.first_failure is not None):
            return "failed"
        if claimed in rd.OUTCOMES:
            return claimed
        return "success"

    def build(self, host_stats=None, custom=None):
        """The record as it stands: final when host_stats (from the play's stats) are given."""
        now_s = self.now_s()
        if self._current is not None and self._current["end_s"] is None and (host_stats is not None or self.aborted):
            self._close_current(now_s)
        release = merge_custom_stats(custom) if custom else {}
        if not release:
            release = dict(self.fragments)
        warnings = rd.validate(release) if release else ["no release data: the playbook set no runbook_release stats"]
        meta, extra = self.meta, self.meta.get("extra_vars") or {}
        outcome = self._outcome(release, host_stats)
        rollback = release.get("rollback") if isinstance(release.get("rollback"), dict) else None
        if outcome == "rolled_back" and not rollback:
            rollback = {"trigger": "unknown", "reason": "the release data says rolled_back without a rollback reason"}
        finished_s = now_s
        record = {
            "record_version": RECORD_VERSION,
            "record_id": self.record_id,
            "run_id": release.get("run_id") or self.record_id,
            "job_id": meta.get("job_id"),
            "runbook": release.get("runbook") or meta.get("runbook"),
            "environment": release.get("environment") or self.vars.get("release_environment"),
            "service": release.get("service") or self.vars.get("release_service"),
            "version": release.get("version") or extra.get("version"),
            "previous_version": release.get("previous_version"),
            "operator": release.get("operator") or meta.get("operator"),
            "controller": meta.get("controller"),
            "ansible_core": meta.get("ansible_core"),
            "collection": meta.get("collection") or {},
            "project": meta.get("project") or {},
            "playbooks": meta.get("playbooks") or [],
            "inventory": meta.get("inventory") or [],
            "check_mode": bool(meta.get("check_mode")),
            "diff_mode": bool(meta.get("diff_mode")),
            "limit": meta.get("limit"),
            "tags": meta.get("tags") or [],
            "skip_tags": meta.get("skip_tags") or [],
            "extra_vars": extra,
            "started_at": iso(self.started),
            "finished_at": self.at(finished_s),
            "duration_s": round(finished_s, 3),
            "complete": host_stats is not None,
            "outcome": outcome,
            "rollback": rollback,
            "aborted": self.aborted,
            "first_failure": self.first_failure,
            "phases": self.phases(),
            "hosts": host_stats or {},
            "tasks": [self._task_view(t, now_s) for t in self.tasks],
            "release": release,
            "release_warnings": warnings,
            "handoff": dict(self.handoff),
        }
        return record

    def _task_view(self, task, now_s):
        end = task["end_s"] if task["end_s"] is not None else now_s
        statuses = self._statuses(task)
        return {"name": task["name"], "action": task["action"], "phase": task["phase"], "play": task["play"],
                "started_at": self.at(task["start_s"]), "start_s": round(task["start_s"], 3),
                "duration_s": round(end - task["start_s"], 3),
                "status": _worst(statuses) if statuses else "skipped", "changed": task["changed"],
                "hosts": dict(task["hosts"])}


def handoff_from_vars(variables):
    """The on-call handoff fields an inventory sets (see docs/deployment-record.md), as plain data."""
    out = {}
    for var, field in HANDOFF_VARS.items():
        value = variables.get(var)
        if value in (None, "", [], {}):
            continue
        if field != "rollback_command" and not isinstance(value, list):
            value = [value]
        out[field] = plain(value)
    return out


# ---------------------------------------------------------------------------------------------- history table

_COLUMNS = ("run_id", "record_id", "job_id", "runbook", "environment", "service", "version", "previous_version",
            "operator", "outcome", "started_at", "finished_at", "duration_s", "check_mode")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def store_history(dsn, table, record, connect_timeout=5):
    """Upsert the record into a PostgreSQL history table (created when missing). Raises on failure."""
    if not _IDENT.match(table or ""):
        raise ValueError("history table name %r is not a plain SQL identifier (letters, digits, _)" % (table,))
    try:  # imported here: most runs have no history table, and the import costs more than the rest of a record
        import psycopg2
        from psycopg2.extras import Json
    except ImportError:
        raise RuntimeError("psycopg2 is not installed on the controller: pip install psycopg2-binary, or unset the DSN")
    conn = psycopg2.connect(dsn, connect_timeout=connect_timeout, application_name="runbook.release record")
    try:
        with conn:
            with conn.cursor() as cur:
                cur.execute("SET LOCAL statement_timeout = '10s'")
                cur.execute(
                    "CREATE TABLE IF NOT EXISTS %s (run_id text NOT NULL, record_id text PRIMARY KEY, job_id text, "
                    "runbook text, environment text, service text, version text, previous_version text, operator text, "
                    "outcome text, started_at timestamptz, finished_at timestamptz, duration_s double precision, "
                    "check_mode boolean, record jsonb NOT NULL)" % table)
                cur.execute("CREATE INDEX IF NOT EXISTS %s_env_service_idx ON %s (environment, service, started_at)"
                            % (table, table))
                values = [record.get(c) for c in _COLUMNS]
                cur.execute(
                    "INSERT INTO %s (%s, record) VALUES (%s) ON CONFLICT (record_id) DO UPDATE SET %s"
                    % (table, ", ".join(_COLUMNS), ", ".join(["%s"] * (len(_COLUMNS) + 1)),
                       ", ".join("%s = EXCLUDED.%s" % (c, c) for c in _COLUMNS[:1] + _COLUMNS[2:] + ("record",))),
                    values + [Json(record)])
    finally:
        conn.close()
