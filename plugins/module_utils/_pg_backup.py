# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Backups made by runbook.release.pg_backup and read by pg_restore: names, manifests, verification, retention.

A backup is a dump (``<backup_id>.dump``, custom format, or ``<backup_id>.dir/``, directory format) and a JSON
manifest beside it (``<backup_id>.manifest.json``) that says what it is: database, versions, time, size,
sha256, object count, and whether it was verified. Everything here is pure (or reads local files only), so it is
unit-tested without PostgreSQL; running the client programs lives in ``_pg_client.py`` and S3 in ``_pg_s3.py``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from datetime import datetime, timedelta, timezone

TOOL = "runbook.release.pg_backup"
MANIFEST_VERSION = 1
MANIFEST_SUFFIX = ".manifest.json"
FORMATS = {"custom": ".dump", "directory": ".dir"}
CHUNK = 1024 * 1024
ID_RE = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


class BackupError(Exception):
    """Something about a backup is wrong; ``msg`` says what and what to do, ``details`` go into the result."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


# --- time and names ---------------------------------------------------------------------------------------------------

def utc_now():
    return datetime.now(timezone.utc)


def iso(when):
    """A time as the release data contract writes it: UTC ISO-8601 with a Z (microseconds, so that backups taken
    within one second still sort in the order they were taken)."""
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_iso(text):
    """A contract time (``2024-05-01T12:00:00Z``, fractions allowed) as an aware datetime."""
    value = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith("Z") else text)
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


def new_backup_id(database, when, token):
    """``<database>-<UTC time>-<token>``: sorts by time, names the database, unique within a second."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", database)[:64] or "db"
    return "%s-%s-%s" % (safe, when.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ"), token)


def dump_name(backup_id, fmt):
    return backup_id + FORMATS[fmt]


def manifest_name(backup_id):
    return backup_id + MANIFEST_SUFFIX


def format_bytes(value):
    value = float(value)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return ("%d %s" % (value, unit)) if unit == "B" else ("%.1f %s" % (value, unit))
        value /= 1024
    return "%.1f TiB" % value  # not reached


# --- versions ---------------------------------------------------------------------------------------------------------

def parse_client_version(text):
    """``pg_dump (PostgreSQL) 15.4 (Debian 15.4-1)`` -> (150004, '15.4'); None when it is not a version line."""
    match = re.search(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?(?:\.(\d+))?", text or "")
    if not match:
        return None
    major, minor, patch = (int(part) if part else 0 for part in match.groups())
    if major >= 10:
        num, text_version = major * 10000 + minor, "%d.%d" % (major, minor)
    else:
        num, text_version = major * 10000 + minor * 100 + patch, "%d.%d.%d" % (major, minor, patch)
    return num, text_version


def major_of(version_num):
    """The major version of a ``server_version_num``: 150004 -> 15, 90624 -> 9.6 (as 906)."""
    version_num = int(version_num)
    return version_num // 10000 if version_num >= 100000 else version_num // 100


def major_text(version_num):
    major = major_of(version_num)
    return str(major) if int(version_num) >= 100000 else "%d.%d" % (major // 100, major % 100)


def client_too_old(program, client_num, server_num):
    """A message when ``program`` cannot handle a server of ``server_num`` (older major), else None."""
    if major_of(client_num) >= major_of(server_num):
        return None
    return ("%s is version %s but the server is PostgreSQL %s: a client program older than the server cannot dump "
            "or restore it; install the PostgreSQL %s client programs and point pg_bin_dir at them (for example "
            "/usr/lib/postgresql/%s/bin)" % (program, major_text(client_num), major_text(server_num),
                                             major_text(server_num), major_text(server_num)))


# --- space ------------------------------------------------------------------------------------------------------------

def free_bytes(path):
    stat = os.statvfs(path)
    return stat.f_bavail * stat.f_frsize


def space_problem(path, free, database, database_size, factor):
    """A message when ``free`` bytes at ``path`` are fewer than the estimated dump size, else None."""
    needed = int(database_size * factor)
    if free >= needed:
        return None
    return ("not enough space for the backup of %s in %s: %s free, an estimated %s needed (pg_database_size %s x "
            "space_factor %s); free space there, choose another dest, or lower space_factor if you know the dump "
            "compresses better" % (database, path, format_bytes(free), format_bytes(needed),
                                   format_bytes(database_size), factor))


# --- verification -----------------------------------------------------------------------------------------------------

def parse_toc(text):
    """The output of ``pg_restore --list`` as ``{"objects": n, "header": {...}}``.

    Raises ValueError when it is not a listing (no archive header), so a truncated or foreign file is never taken
    for a verified backup. ``objects`` counts the entries listed (tables, data, indexes, ...), not the few
    bookkeeping entries (ENCODING, STDSTRINGS, ...) that ``TOC Entries`` in the header includes.
    """
    header = {}
    objects = 0
    for line in (text or "").splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(";"):
            key, sep, value = stripped[1:].strip().partition(":")
            if sep and key and value.strip():
                header[key.strip()] = value.strip()
            continue
        if re.match(r"^-?\d+;\s*\d+\s+\d+\s+\S", stripped):
            objects += 1
        else:
            raise ValueError("unexpected line in the archive listing: %r" % stripped[:120])
    if "Format" not in header or "TOC Entries" not in header:
        raise ValueError("no archive header (Format, TOC Entries) in the listing")
    return {"objects": objects, "header": header}


def sha256_file(path, chunk=CHUNK):
    """(hex sha256, size) of a file, read in chunks so memory stays flat for any size."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as handle:
        while True:
            block = handle.read(chunk)
            if not block:
                break
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def tree_listing_sha256(files):
    """The checksum of a directory-format dump: sha256 of its ``sha256sum``-style listing (sorted by name)."""
    listing = "".join("%s  %s\n" % (f["sha256"], f["name"]) for f in sorted(files, key=lambda f: f["name"]))
    return hashlib.sha256(listing.encode("utf-8")).hexdigest()


def sha256_tree(path):
    """(checksum, total size, per-file list) of a directory-format dump. Subdirectories are not expected."""
    files = []
    for name in sorted(os.listdir(path)):
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            raise BackupError("%s is not a directory-format dump: it contains %s, which is not a file" % (path, name))
        digest, size = sha256_file(full)
        files.append({"name": name, "size_bytes": size, "sha256": digest})
    return tree_listing_sha256(files), sum(f["size_bytes"] for f in files), files


def checksum(path, fmt):
    """(sha256, size, files) of a dump of either format; files is None for a single-file dump."""
    if fmt == "directory":
        return sha256_tree(path)
    digest, size = sha256_file(path)
    return digest, size, None


def minimum_problems(size, objects, min_size_bytes, min_objects):
    problems = []
    if size < min_size_bytes:
        problems.append("the dump is %d bytes, below min_size_bytes %d" % (size, min_size_bytes))
    if objects < min_objects:
        problems.append("the archive lists %d objects, below min_objects %d" % (objects, min_objects))
    return problems


# --- manifests --------------------------------------------------------------------------------------------------------

MANIFEST_KEYS = ("manifest_version", "tool", "backup_id", "database", "format", "file", "created_at", "size_bytes",
                 "sha256", "object_count", "verified")


def build_manifest(backup_id, database, fmt, compression, started_at, created_at, size, digest, object_count,
                   server_version, server_version_num, pg_dump_version, files=None, database_settings=None):
    return {
        "manifest_version": MANIFEST_VERSION,
        "tool": TOOL,
        "backup_id": backup_id,
        "database": database,
        "format": fmt,
        "compression": compression,
        "file": dump_name(backup_id, fmt),
        "started_at": iso(started_at),
        "created_at": iso(created_at),
        "duration_s": round((created_at - started_at).total_seconds(), 3),
        "server_version": server_version,
        "server_version_num": int(server_version_num),
        "pg_dump_version": pg_dump_version,
        "size_bytes": int(size),
        "sha256": digest,
        "object_count": int(object_count),
        "verified": True,
        "files": files,
        "database_settings": database_settings or {},
        "s3": None,
    }


def manifest_problems(data):
    """What makes ``data`` unusable as a manifest of this tool (empty list when it is fine)."""
    if not isinstance(data, dict):
        return ["not a JSON object"]
    problems = ["missing %s" % key for key in MANIFEST_KEYS if key not in data]
    if problems:
        return problems
    if data["tool"] != TOOL:
        problems.append("written by %r, not %s" % (data["tool"], TOOL))
    if data["format"] not in FORMATS:
        problems.append("unknown format %r" % data["format"])
    if not isinstance(data["backup_id"], str) or not ID_RE.match(data["backup_id"]):
        problems.append("backup_id %r is not a plain name" % data["backup_id"])
    elif data["format"] in FORMATS and data["file"] != dump_name(data["backup_id"], data["format"]):
        problems.append("file %r does not match backup_id and format" % data["file"])
    if not re.match(r"^[0-9a-f]{64}$", str(data["sha256"])):
        problems.append("sha256 is not 64 hex digits")
    try:
        parse_iso(data["created_at"])
    except (TypeError, ValueError):
        problems.append("created_at %r is not a UTC ISO-8601 time" % data["created_at"])
    return problems


def manifest_json(data):
    return json.dumps(data, indent=2, sort_keys=True) + "\n"


def load_manifest(path):
    """A manifest file, checked; raises BackupError naming the file and the problem."""
    try:
        with open(path) as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise BackupError("cannot read backup manifest %s: %s" % (path, exc))
    problems = manifest_problems(data)
    if problems:
        raise BackupError("%s is not a usable pg_backup manifest: %s" % (path, "; ".join(problems)))
    return data


def local_backups(directory, database=None):
    """Manifests of this tool in ``directory`` (of ``database`` when given), newest first, with ``_path``s.

    Unreadable or foreign ``*.manifest.json`` files are skipped: retention only ever touches what it can prove
    is one of its own backups.
    """
    found = []
    try:
        names = os.listdir(directory)
    except OSError:
        return found
    for name in names:
        if not name.endswith(MANIFEST_SUFFIX) or name.startswith("."):
            continue
        try:
            data = load_manifest(os.path.join(directory, name))
        except BackupError:
            continue
        if name != manifest_name(data["backup_id"]) or (database is not None and data["database"] != database):
            continue
        data["_manifest_path"] = os.path.join(directory, name)
        data["_dump_path"] = os.path.join(directory, data["file"])
        found.append(data)
    return sort_newest_first(found)


def sort_newest_first(backups):
    return sorted(backups, key=lambda b: (parse_iso(b["created_at"]), b["backup_id"]), reverse=True)


# --- retention --------------------------------------------------------------------------------------------------------

def select_prune(backups, keep_last=None, keep_days=None, now=None):
    """Which backups retention removes: ``(keep, prune)``, both newest first.

    Only verified backups are candidates (anything else is left alone). A backup is pruned only when every rule
    given lets it go: it is not among the ``keep_last`` newest and not younger than ``keep_days``. The newest
    verified backup is always kept, whatever the rules say. With no rule, nothing is pruned.
    """
    verified = sort_newest_first([b for b in backups if b.get("verified") is True])
    if not verified or (keep_last is None and keep_days is None):
        return verified, []
    now = now or utc_now()
    keep, prune = [], []
    for index, backup in enumerate(verified):
        kept = index == 0
        if keep_last is not None and index < keep_last:
            kept = True
        if keep_days is not None and parse_iso(backup["created_at"]) >= now - timedelta(days=keep_days):
            kept = True
        (keep if kept else prune).append(backup)
    return keep, prune


def reusable(backups, fmt, max_age_s, now=None):
    """The newest verified backup of ``fmt`` younger than ``max_age_s`` seconds, or None."""
    now = now or utc_now()
    for backup in sort_newest_first(backups):
        if backup.get("verified") is not True or backup["format"] != fmt:
            continue
        age = (now - parse_iso(backup["created_at"])).total_seconds()
        return backup if 0 <= age <= max_age_s else None  # older ones are older still
    return None


# --- command lines (never any secret: the password travels in the environment or a pgpass file) ---------------------

def pg_dump_argv(pg_dump, fmt, target, compression=None, jobs=None, lock_wait_timeout=None):
    argv = [pg_dump, "--format=%s" % fmt, "--file=%s" % target, "--no-password"]
    if compression is not None:
        argv.append("--compress=%d" % compression)
    if fmt == "directory" and jobs and jobs > 1:
        argv.append("--jobs=%d" % jobs)
    if lock_wait_timeout:
        argv.append("--lock-wait-timeout=%ds" % lock_wait_timeout)
    return argv


def _operand(path):
    """A path as a positional argument: never mistaken for an option."""
    return "./" + path if path.startswith("-") else path


def pg_restore_list_argv(pg_restore, path):
    return [pg_restore, "--list", _operand(path)]


def conninfo_dbname(name):
    """``dbname='...'`` for a client's -d option: any database name, quoted, and nothing else in it."""
    return "dbname='%s'" % name.replace("\\", "\\\\").replace("'", "\\'")


def pg_restore_argv(pg_restore, path, database, jobs=None, no_owner=False, role=None, no_privileges=False,
                    single_transaction=False):
    argv = [pg_restore, "--dbname=%s" % conninfo_dbname(database), "--exit-on-error", "--no-password"]
    if jobs and jobs > 1:
        argv.append("--jobs=%d" % jobs)
    if single_transaction:
        argv.append("--single-transaction")
    if no_owner:
        argv.append("--no-owner")
    if role:
        argv.append("--role=%s" % role)
    if no_privileges:
        argv.append("--no-privileges")
    argv.append(_operand(path))
    return argv


def restore_error(stderr):
    """The first error pg_restore reports, with the command it ran, as one line for a message."""
    lines = (stderr or "").splitlines()
    for index, line in enumerate(lines):
        if "error:" in line:
            text = line.split("error:", 1)[1].strip()
            rest = " ".join(part.strip() for part in lines[index + 1:index + 4] if part.strip())
            if rest.startswith("Command was:"):
                text += " (%s)" % rest[:300]
            return text
    return (stderr or "").strip()[-500:] or "no error text"


# --- restore ----------------------------------------------------------------------------------------------------------

def _stem(name, fmt):
    suffix = FORMATS[fmt]
    return name[:-len(suffix)] if name.endswith(suffix) else None


def locate_local(path, backup_id=None, database=None):
    """What ``path`` names: ``(manifest or None, dump path, format)``.

    A manifest file; a custom-format dump file or a directory-format dump (its manifest beside it, when there is
    one); or a directory of backups, of which the newest verified one (of ``database``, or ``backup_id``) whose dump
    is present is taken. Raises BackupError saying what was looked for.
    """
    path = path.rstrip("/") or "/"
    if os.path.isfile(path) and path.endswith(MANIFEST_SUFFIX):
        manifest = load_manifest(path)
        return manifest, os.path.join(os.path.dirname(path), manifest["file"]), manifest["format"]
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, "toc.dat")):
        fmt = "directory"
    elif os.path.isfile(path):
        fmt = "custom"
    elif os.path.isdir(path):
        return _newest_local(path, backup_id, database)
    else:
        raise BackupError("path %s does not exist: give a backup file, a backup's manifest, or a directory of "
                          "backups" % path)
    stem = _stem(os.path.basename(path), fmt)
    manifest_path = os.path.join(os.path.dirname(path), manifest_name(stem)) if stem else None
    if manifest_path and os.path.isfile(manifest_path):
        return load_manifest(manifest_path), path, fmt
    return None, path, fmt


def _newest_local(directory, backup_id, database):
    backups = local_backups(directory, database)
    if backup_id:
        backups = [b for b in backups if b["backup_id"] == backup_id]
    usable = [b for b in backups if b.get("verified") is True and os.path.exists(b["_dump_path"])]
    if not usable:
        what = "backup %s" % backup_id if backup_id else "verified backup" + (" of %s" % database if database else "")
        raise BackupError("no %s with its dump in %s (manifests found: %d): check path, source_database and "
                          "backup_id" % (what, directory, len(backups)))
    return usable[0], usable[0]["_dump_path"], usable[0]["format"]


def s3_target(key):
    """What an S3 key names: ``(prefix, backup_id)`` for one backup, or ``(prefix, None)`` for a prefix."""
    key = key or ""
    trimmed = key.rstrip("/")
    prefix, _sep, name = trimmed.rpartition("/")
    for suffix in (MANIFEST_SUFFIX,) + tuple(FORMATS.values()):
        if name.endswith(suffix) and len(name) > len(suffix):
            return prefix, name[:-len(suffix)]
    return trimmed, None


def restore_plan(database, exists, objects, sessions, clean, create, maintenance_db):
    """What a restore does to the target: a list of actions from ``drop``, ``create``, ``restore``.

    Refuses (BackupError) a non-empty database without ``clean``, a missing one without ``create``, and dropping a
    database that others are connected to (``sessions``: a description, or None) or that is the maintenance one.
    """
    actions = []
    if exists and objects:
        if not clean:
            raise BackupError("database %s is not empty (%s): restoring into it would mix two states; set clean: true "
                              "to drop and recreate it, or restore into another database" % (database, objects))
        if database == maintenance_db:
            raise BackupError("database %s is the maintenance database this module connects to, so it cannot drop "
                              "it: set maintenance_db to another database (for example postgres)" % database)
        if sessions:
            raise BackupError("database %s has other sessions (%s): stop the application first, or set "
                              "force_disconnect: true to end them" % (database, sessions))
        actions += ["drop", "create"]
    elif not exists:
        if not create:
            raise BackupError("database %s does not exist: set create: true to create it (for a disaster recovery or a "
                              "scratch copy), or check database" % database)
        actions.append("create")
    actions.append("restore")
    return actions


def data_loss_window_s(created_at, now=None):
    """Seconds between the backup and now: what a restore of it loses at most."""
    now = now or utc_now()
    return round((now - parse_iso(created_at)).total_seconds(), 1)
