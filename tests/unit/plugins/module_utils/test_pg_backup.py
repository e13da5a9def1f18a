"""Pure parts of pg_backup / pg_restore: names, versions, space, archive listings, checksums, manifests, retention,
command lines and the restore plan. No PostgreSQL needed."""

import hashlib
import json
import os
from datetime import datetime, timedelta, timezone

import psycopg2.extensions
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.runbook.release.plugins.module_utils import _pg_backup as bk
from ansible_collections.runbook.release.plugins.module_utils import _release_data

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=timezone.utc)

LISTING = """;
; Archive created at 2026-11-23 04:46:02 UTC
;     dbname: appdb
;     TOC Entries: 26
;     Compression: -1
;     Dump Version: 1.14-0
;     Format: CUSTOM
;     Integer: 4 bytes
;     Offset: 8 bytes
;     Dumped from database version: 15.20 (Debian 15.20-0+deb12u1)
;     Dumped by pg_dump version: 15.20 (Debian 15.20-0+deb12u1)
;
;
; Selected TOC Entries:
;
219; 1259 16466 TABLE public items app
218; 1259 16465 SEQUENCE public items_id_seq app
3383; 0 0 SEQUENCE OWNED BY public items_id_seq app
3376; 0 16466 TABLE DATA public items app
3227; 2606 16475 CONSTRAINT public items items_pkey app
"""
EMPTY_LISTING = "\n".join(LISTING.splitlines()[:15]) + "\n"


# --- names, versions, space -------------------------------------------------------------------------------------------

def test_backup_id_sorts_by_time_and_names_the_database():
    assert bk.new_backup_id("appdb", NOW, "3f9a1c") == "appdb-20240501T120000Z-3f9a1c"
    odd = bk.new_backup_id("my db/ü", NOW, "abc")
    assert bk.ID_RE.match(odd) and odd.startswith("my_db__-")
    later = bk.new_backup_id("appdb", NOW + timedelta(seconds=1), "000000")
    assert later > bk.new_backup_id("appdb", NOW, "ffffff")
    assert bk.dump_name("x", "custom") == "x.dump" and bk.dump_name("x", "directory") == "x.dir"
    assert bk.manifest_name("x") == "x.manifest.json"


@pytest.mark.parametrize("text, expected", [
    ("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)\n", (150020, "15.20")),
    ("pg_dump (PostgreSQL) 16.0\n", (160000, "16.0")),
    ("pg_restore (PostgreSQL) 17devel\n", (170000, "17.0")),
    ("pg_dump (PostgreSQL) 9.6.24\n", (90624, "9.6.24")),
    ("bash: pg_dump: command not found", None),
])
def test_client_version_parsing(text, expected):
    assert bk.parse_client_version(text) == expected


def test_client_older_than_server_is_refused_with_both_versions_and_the_fix():
    msg = bk.client_too_old("/usr/bin/pg_dump", 140011, 150004)
    assert "pg_dump is version 14 but the server is PostgreSQL 15" in msg
    assert "/usr/lib/postgresql/15/bin" in msg and "pg_bin_dir" in msg
    assert bk.client_too_old("pg_dump", 150002, 150020) is None  # same major, older minor: fine
    assert bk.client_too_old("pg_dump", 160000, 150020) is None
    assert "9.6" in bk.client_too_old("pg_dump", 90500, 90624)


def test_space_problem_names_sizes_factor_and_path():
    gib = 1024 ** 3
    msg = bk.space_problem("/backups", 1 * gib, "appdb", 3 * gib, 1.0)
    assert "/backups" in msg and "appdb" in msg
    assert "1.0 GiB free" in msg and "3.0 GiB needed" in msg and "space_factor 1.0" in msg
    assert bk.space_problem("/backups", 2 * gib, "appdb", 3 * gib, 0.5) is None
    assert bk.space_problem("/backups", 0, "appdb", 3 * gib, 0) is None


def test_format_bytes():
    assert bk.format_bytes(512) == "512 B"
    assert bk.format_bytes(1536) == "1.5 KiB"
    assert bk.format_bytes(5 * 1024 ** 4) == "5.0 TiB"


# --- verification -----------------------------------------------------------------------------------------------------

def test_toc_counts_listed_objects_and_reads_the_header():
    toc = bk.parse_toc(LISTING)
    assert toc["objects"] == 5
    assert toc["header"]["Format"] == "CUSTOM" and toc["header"]["TOC Entries"] == "26"
    assert toc["header"]["dbname"] == "appdb"
    assert bk.parse_toc(EMPTY_LISTING)["objects"] == 0


@pytest.mark.parametrize("text", ["", "pg_restore: error: input file is too short\n",
                                  "219; 1259 16466 TABLE public items app\n",
                                  LISTING + "garbage that is not an entry\n"])
def test_toc_refuses_what_is_not_a_listing(text):
    with pytest.raises(ValueError):
        bk.parse_toc(text)


def test_file_checksum_streams_and_matches_hashlib(tmp_path):
    data = os.urandom(3 * bk.CHUNK + 17)
    path = tmp_path / "d.dump"
    path.write_bytes(data)
    assert bk.sha256_file(str(path)) == (hashlib.sha256(data).hexdigest(), len(data))
    assert bk.checksum(str(path), "custom") == (hashlib.sha256(data).hexdigest(), len(data), None)


def test_directory_checksum_is_the_sha256_of_a_sha256sum_listing(tmp_path):
    (tmp_path / "toc.dat").write_bytes(b"toc")
    (tmp_path / "3365.dat.gz").write_bytes(b"rows")
    digest, size, files = bk.sha256_tree(str(tmp_path))
    listing = "%s  3365.dat.gz\n%s  toc.dat\n" % (hashlib.sha256(b"rows").hexdigest(), hashlib.sha256(b"toc").hexdigest())
    assert digest == hashlib.sha256(listing.encode()).hexdigest()
    assert size == 7 and [f["name"] for f in files] == ["3365.dat.gz", "toc.dat"]
    (tmp_path / "toc.dat").write_bytes(b"toC")
    assert bk.sha256_tree(str(tmp_path))[0] != digest
    (tmp_path / "sub").mkdir()
    with pytest.raises(bk.BackupError, match="contains sub"):
        bk.sha256_tree(str(tmp_path))


def test_minimums():
    assert bk.minimum_problems(100, 5, 1, 1) == []
    assert bk.minimum_problems(0, 0, 1, 1) == ["the dump is 0 bytes, below min_size_bytes 1",
                                               "the archive lists 0 objects, below min_objects 1"]


# --- manifests --------------------------------------------------------------------------------------------------------

def manifest(backup_id="appdb-20240501T120000Z-aaaaaa", created=NOW, database="appdb", fmt="custom", verified=True):
    data = bk.build_manifest(backup_id, database, fmt, None, created - timedelta(seconds=3), created, 1234,
                             "ab" * 32, 22, "15.20 (Debian)", 150020, "15.20",
                             database_settings={"encoding": "UTF8", "lc_collate": "C", "lc_ctype": "C"})
    data["verified"] = verified
    return data


def test_manifest_has_every_field_the_brief_names_and_round_trips(tmp_path):
    data = manifest()
    for key in ("database", "server_version", "pg_dump_version", "created_at", "size_bytes", "sha256", "format",
                "object_count"):
        assert data[key] not in (None, "")
    assert data["created_at"] == "2024-05-01T12:00:00.000000Z" and data["duration_s"] == 3.0
    assert bk.manifest_problems(data) == []
    path = tmp_path / bk.manifest_name(data["backup_id"])
    path.write_text(bk.manifest_json(data))
    assert bk.load_manifest(str(path)) == json.loads(json.dumps(data))


@pytest.mark.parametrize("change, problem", [
    ({"tool": "other"}, "written by 'other'"),
    ({"format": "tar"}, "unknown format"),
    ({"backup_id": "../etc/passwd"}, "not a plain name"),
    ({"file": "other.dump"}, "does not match"),
    ({"sha256": "xyz"}, "64 hex"),
    ({"created_at": "yesterday"}, "not a UTC ISO-8601"),
])
def test_manifest_problems(change, problem):
    data = dict(manifest(), **change)
    assert any(problem in p for p in bk.manifest_problems(data))


def test_manifest_loading_names_the_file_and_the_problem(tmp_path):
    path = tmp_path / "x.manifest.json"
    path.write_text("{not json")
    with pytest.raises(bk.BackupError, match="cannot read backup manifest .*x.manifest.json"):
        bk.load_manifest(str(path))
    path.write_text("{}")
    with pytest.raises(bk.BackupError, match="missing backup_id"):
        bk.load_manifest(str(path))


def write_backup(directory, data, dump=True):
    (directory / bk.manifest_name(data["backup_id"])).write_text(bk.manifest_json(data))
    if dump:
        (directory / data["file"]).write_bytes(b"dump")


def test_local_backups_lists_own_manifests_of_the_database_newest_first(tmp_path):
    old = manifest("appdb-1", NOW - timedelta(days=2))
    new = manifest("appdb-2", NOW)
    other_db = manifest("otherdb-1", NOW, database="otherdb")
    for data in (old, new, other_db):
        write_backup(tmp_path, data)
    (tmp_path / "foreign.manifest.json").write_text(json.dumps({"tool": "something else"}))
    (tmp_path / "renamed.manifest.json").write_text(bk.manifest_json(manifest("appdb-3")))
    (tmp_path / ".hidden.manifest.json").write_text(bk.manifest_json(manifest("appdb-4")))
    found = bk.local_backups(str(tmp_path), "appdb")
    assert [b["backup_id"] for b in found] == ["appdb-2", "appdb-1"]
    assert found[0]["_dump_path"] == str(tmp_path / "appdb-2.dump")
    assert len(bk.local_backups(str(tmp_path))) == 3
    assert bk.local_backups(str(tmp_path / "missing"), "appdb") == []


# --- retention --------------------------------------------------------------------------------------------------------

def series(count, step_days=1, verified=True):
    return [manifest("db-%02d" % i, NOW - timedelta(days=step_days * i), verified=verified) for i in range(count)]


def ids(backups):
    return [b["backup_id"] for b in backups]


def test_keep_last_two_of_three_prunes_the_oldest():
    keep, prune = bk.select_prune(series(3), keep_last=2, now=NOW)
    assert ids(keep) == ["db-00", "db-01"] and ids(prune) == ["db-02"]


def test_keep_days_prunes_what_is_older():
    keep, prune = bk.select_prune(series(5), keep_days=2, now=NOW)
    assert ids(keep) == ["db-00", "db-01", "db-02"] and ids(prune) == ["db-03", "db-04"]


def test_both_rules_prune_only_what_neither_keeps():
    keep, prune = bk.select_prune(series(6), keep_last=4, keep_days=1, now=NOW)
    assert ids(prune) == ["db-04", "db-05"]
    keep, prune = bk.select_prune(series(6), keep_last=1, keep_days=3, now=NOW)
    assert ids(prune) == ["db-04", "db-05"]


def test_newest_verified_backup_is_kept_even_when_every_rule_lets_it_go():
    old = series(3, step_days=30)[1:]
    keep, prune = bk.select_prune(old, keep_days=1, now=NOW)
    assert ids(keep) == ["db-01"] and ids(prune) == ["db-02"]


def test_unverified_backups_are_never_candidates_and_no_rule_prunes_nothing():
    mixed = series(3) + [manifest("bad", NOW - timedelta(days=9), verified=False)]
    assert "bad" not in ids(bk.select_prune(mixed, keep_last=1, now=NOW)[1])
    assert bk.select_prune(series(4), now=NOW)[1] == []


@settings(max_examples=200, deadline=None)
@given(ages=st.lists(st.integers(min_value=0, max_value=400), min_size=0, max_size=25, unique=True),
       keep_last=st.one_of(st.none(), st.integers(min_value=1, max_value=10)),
       keep_days=st.one_of(st.none(), st.integers(min_value=0, max_value=60)))
def test_retention_properties(ages, keep_last, keep_days):
    backups = [manifest("db-%03d" % age, NOW - timedelta(days=age, hours=1)) for age in ages]
    keep, prune = bk.select_prune(backups, keep_last, keep_days, now=NOW)
    assert set(ids(keep)).isdisjoint(ids(prune))
    assert sorted(ids(keep) + ids(prune)) == sorted(ids(backups))
    if backups:
        assert ids(keep)[0] == "db-%03d" % min(ages)  # the newest is always kept
    if keep_last is not None:
        assert len(keep) >= min(keep_last, len(backups))
    for backup in prune:
        assert keep_days is None or bk.parse_iso(backup["created_at"]) < NOW - timedelta(days=keep_days)


def test_reuse_takes_only_a_recent_verified_backup_of_the_same_format():
    backups = [manifest("new", NOW - timedelta(seconds=100)), manifest("old", NOW - timedelta(hours=3))]
    assert bk.reusable(backups, "custom", 300, now=NOW)["backup_id"] == "new"
    assert bk.reusable(backups, "custom", 60, now=NOW) is None
    assert bk.reusable(backups, "directory", 300, now=NOW) is None
    unverified = [manifest("new", NOW - timedelta(seconds=10), verified=False)]
    assert bk.reusable(unverified, "custom", 300, now=NOW) is None


# --- command lines ----------------------------------------------------------------------------------------------------

def test_pg_dump_argv_has_no_connection_settings_at_all():
    argv = bk.pg_dump_argv("/usr/bin/pg_dump", "custom", "/b/.x.dump.partial", compression=6, lock_wait_timeout=30)
    assert argv == ["/usr/bin/pg_dump", "--format=custom", "--file=/b/.x.dump.partial", "--no-password",
                    "--compress=6", "--lock-wait-timeout=30s"]
    argv = bk.pg_dump_argv("pg_dump", "directory", "/b/d", jobs=4)
    assert "--jobs=4" in argv
    assert "--jobs=4" not in bk.pg_dump_argv("pg_dump", "custom", "/b/f", jobs=4)
    joined = " ".join(argv)
    for marker in ("password", "-W", "-h", "-U", "postgresql://", "--dbname"):
        assert marker not in joined.replace("--no-password", "")


def test_pg_restore_argv_stops_on_first_error_and_quotes_the_database():
    argv = bk.pg_restore_argv("pg_restore", "/b/x.dump", "app db's", jobs=3, no_owner=True, role="app",
                              no_privileges=True)
    assert argv[:4] == ["pg_restore", "--dbname=dbname='app db\\'s'", "--exit-on-error", "--no-password"]
    assert argv[4:] == ["--jobs=3", "--no-owner", "--role=app", "--no-privileges", "/b/x.dump"]
    assert "--single-transaction" in bk.pg_restore_argv("pg_restore", "x", "db", single_transaction=True)
    assert bk.pg_restore_argv("pg_restore", "-x.dump", "db")[-1] == "./-x.dump"
    assert bk.pg_restore_list_argv("pg_restore", "-x.dump") == ["pg_restore", "--list", "./-x.dump"]


@pytest.mark.parametrize("name", ["appdb", "app db", "we'ird", "back\\slash", "a=b", "postgresql://x"])
def test_conninfo_dbname_is_read_back_by_libpq_as_the_name_only(name):
    assert psycopg2.extensions.parse_dsn(bk.conninfo_dbname(name)) == {"dbname": name}


def test_restore_error_names_the_error_and_the_command():
    stderr = ('pg_restore: error: could not execute query: ERROR:  role "ghost" does not exist\n'
              'Command was: ALTER TABLE public.t OWNER TO ghost;\n\n')
    assert bk.restore_error(stderr) == ('could not execute query: ERROR:  role "ghost" does not exist (Command was: '
                                        'ALTER TABLE public.t OWNER TO ghost;)')
    assert bk.restore_error("") == "no error text"


# --- restore ----------------------------------------------------------------------------------------------------------

def test_locate_local_variants(tmp_path):
    old, new = manifest("appdb-1", NOW - timedelta(hours=1)), manifest("appdb-2", NOW)
    write_backup(tmp_path, old)
    write_backup(tmp_path, new)
    found, dump, fmt = bk.locate_local(str(tmp_path))
    assert (found["backup_id"], dump, fmt) == ("appdb-2", str(tmp_path / "appdb-2.dump"), "custom")
    assert bk.locate_local(str(tmp_path), backup_id="appdb-1")[0]["backup_id"] == "appdb-1"
    assert bk.locate_local(str(tmp_path / "appdb-1.dump"))[0]["backup_id"] == "appdb-1"
    assert bk.locate_local(str(tmp_path / "appdb-1.manifest.json"))[1] == str(tmp_path / "appdb-1.dump")
    (tmp_path / "appdb-2.dump").unlink()  # newest without its dump: the next one is taken
    assert bk.locate_local(str(tmp_path))[0]["backup_id"] == "appdb-1"
    with pytest.raises(bk.BackupError, match="no verified backup of otherdb"):
        bk.locate_local(str(tmp_path), database="otherdb")
    raw = tmp_path / "raw.dump"
    raw.write_bytes(b"x")
    assert bk.locate_local(str(raw)) == (None, str(raw), "custom")
    directory = tmp_path / "d.dir"
    directory.mkdir()
    (directory / "toc.dat").write_bytes(b"t")
    assert bk.locate_local(str(directory) + "/")[2] == "directory"
    with pytest.raises(bk.BackupError, match="does not exist"):
        bk.locate_local(str(tmp_path / "nope"))


@pytest.mark.parametrize("key, expected", [
    ("prod/appdb/appdb-1.dump", ("prod/appdb", "appdb-1")),
    ("prod/appdb/appdb-1.dir/", ("prod/appdb", "appdb-1")),
    ("prod/appdb/appdb-1.manifest.json", ("prod/appdb", "appdb-1")),
    ("prod/appdb/", ("prod/appdb", None)),
    ("", ("", None)),
    ("appdb-1.dump", ("", "appdb-1")),
])
def test_s3_target(key, expected):
    assert bk.s3_target(key) == expected


def test_restore_plan_refuses_and_explains():
    assert bk.restore_plan("db", True, "", None, False, False, "postgres") == ["restore"]
    assert bk.restore_plan("db", False, None, None, False, True, "postgres") == ["create", "restore"]
    assert bk.restore_plan("db", True, "3 tables", None, True, False, "postgres") == ["drop", "create", "restore"]
    with pytest.raises(bk.BackupError, match="db is not empty \\(3 tables\\).*clean: true"):
        bk.restore_plan("db", True, "3 tables", None, False, True, "postgres")
    with pytest.raises(bk.BackupError, match="does not exist: set create: true"):
        bk.restore_plan("db", False, None, None, True, False, "postgres")
    with pytest.raises(bk.BackupError, match="other sessions \\(2: app\\).*force_disconnect"):
        bk.restore_plan("db", True, "3 tables", "2: app", True, False, "postgres")
    with pytest.raises(bk.BackupError, match="maintenance database"):
        bk.restore_plan("postgres", True, "3 tables", None, True, False, "postgres")


def test_data_loss_window():
    assert bk.data_loss_window_s("2024-05-01T11:00:00Z", now=NOW) == 3600.0


def test_release_data_of_a_backup_follows_the_contract():
    data = manifest()
    fragment = {"backup": {"id": data["backup_id"], "location": "/b/" + data["file"], "s3_uri": None,
                           "sha256": data["sha256"], "size_bytes": data["size_bytes"], "verified": True,
                           "created_at": data["created_at"]}}
    assert _release_data.validate(fragment, partial=True) == []
