"""End to end: the database migration runbook (playbooks/migrate.yml) on the sandbox, judged from outside.

`ansible-playbook playbooks/migrate.yml -e version=v1.2.3` against the sandbox's PostgreSQL (appdb, at V003 with a
Supabase-style history after a reset), moto S3, the demo stack's proxy (maintenance page) and the Statuspage/chat
stand-ins. The tests read what psql, the proxy, the stand-ins and the deployment records show: the schema and
history of appdb, row counts, pg_database (the rehearsal's scratch database must be gone), the connection limit
and the maintenance flag after a drain, the record's outcome and migrations.

The module starts from a freshly reset sandbox (v1.2.2 serving, schema V003) and resets it again at the end: the
migration to V006 renames items.name, which v1.2.2 cannot use (a DB-only migration of a breaks-previous change), so
after the good migration /api/items of v1.2.2 fails by design until the reset.

Order matters and is the file's order: refusals first (nothing changes), then the good migration and its rerun,
then a migration that fails in its rehearsal on top of V006.
"""

# pytest fixtures are parameters named like the module-level fixture functions.
# pylint: disable=redefined-outer-name

import re

import pytest
import requests

from runbook_e2e import (BASE, CHAT, DB, FLAG, HOME, RECORDS, REPO, STATUSPAGE, admin_vars_file, chat_texts,
                         check_secrets_absent, flat, fresh_sandbox, item_columns, last_seq, psql, recap, record_of,
                         requests_of, run, served_version)

# fresh_sandbox (v1.2.2, schema V003 before and after the module) is a fixture: named, so the import is used.
pytestmark = pytest.mark.usefixtures(fresh_sandbox.__name__)

VERSION = "v1.2.3"


# --- helpers ------------------------------------------------------------------------------------------------------

def history():
    """appdb's migration history, `version:kind` of the successful rows in order ('' before the first run)."""
    if psql("SELECT to_regclass('runbook_release.schema_history') IS NULL") == "t":
        return ""
    return psql("SELECT coalesce(string_agg(version || ':' || kind, ',' ORDER BY id), '') "
                "FROM runbook_release.schema_history WHERE success")


def counts():
    return {table: int(psql(f"SELECT count(*) FROM {table}")) for table in ("users", "items", "sessions")}


def rehearsal_databases():
    return psql(f"SELECT count(*) FROM pg_database WHERE datname LIKE '{DB}\\_rehearsal\\_%'", database="postgres")


@pytest.fixture(scope="module")
def admin(tmp_path_factory):
    """The admin connection (CREATEDB for the rehearsal, superuser for the drain): the local inventory's
    release_db_admin_user/_password when it sets them, else the same settings from a vars file (no secret in argv:
    the file holds a lookup of the sandbox's 0600 secret)."""
    inventory = (REPO / "inventories" / "local" / "group_vars" / "all" / "main.yml").read_text()
    if "release_db_admin_user" in inventory:
        return []
    return ["-e", "@" + admin_vars_file(tmp_path_factory.mktemp("migrate"))]


@pytest.fixture(scope="module")
def outputs():
    """Everything every run printed, for the secrets test at the end."""
    return []


# --- refusals: nothing changes --------------------------------------------------------------------------------------

@pytest.mark.parametrize("extra, message", [
    ((), "version is required: pass -e version=v1.2.3"),
    (("-e", '{"version": "v1.2.3; touch /tmp/pwned"}'), 'version "v1.2.3; touch /tmp/pwned" is not valid'),
    (("-e", "version=v9.9.9"), "there are no migrations of v9.9.9 at"),
    (("-e", "version=v1.2.3", "-e", "migrate_drain=maybe"), 'migrate_drain "maybe" is not true or false'),
    (("-e", "version=v1.2.3", "-e", "migrate_drain_grace_s=-1"), 'migrate_drain_grace_s "-1" is not a whole number'),
    (("-e", "version=v1.2.3", "-e", "target_environment=production"), "pick the inventory"),
])
def test_bad_input_stops_before_anything_changes(extra, message, admin, outputs):
    before, columns, chat_from = history(), item_columns(), last_seq(CHAT)
    proc, _run_id, _wall = run("migrate.yml", *admin, *extra)
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    assert message in flat(proc), proc.stdout[-3000:]
    assert "Nothing was changed." in flat(proc)
    assert recap(proc.stdout)["changed"] == 0
    assert history() == before and item_columns() == columns
    assert not chat_texts(chat_from)


def test_a_breaks_previous_migration_is_refused_while_the_old_version_serves(admin, outputs):
    assert served_version() == "v1.2.2"
    before, columns = history(), item_columns()
    proc, run_id, _wall = run("migrate.yml", *admin, "-e", f"version={VERSION}")
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    text = flat(proc)
    assert "FAILED in phase preflight" in text, proc.stdout[-4000:]
    assert "V006 is marked breaks-previous" in text and "version v1.2.2 is serving" in text
    assert "-e migrate_allow_breaking=true" in text and "Nothing was changed." in text
    assert history() == before and item_columns() == columns
    assert "name" in columns and "title" not in columns
    assert rehearsal_databases() == "0"
    assert recap(proc.stdout)["changed"] == 0
    assert record_of(run_id)["outcome"] == "failed"


# --- the good path: rehearsal, drain, migration, ANALYZE, re-enable; then a rerun with nothing pending ---------------

def test_a_migration_with_rehearsal_and_drain(admin, outputs):
    rows = counts()
    chat_from, page_from = last_seq(CHAT), last_seq(STATUSPAGE)
    proc, run_id, _wall = run("migrate.yml", *admin, "-e", f"version={VERSION}", "-e", "migrate_allow_breaking=true",
                              "-e", "migrate_drain=true", "-e", "migrate_drain_grace_s=2")
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode == 0, proc.stdout[-6000:]
    text = flat(proc)

    # The rehearsal: a scratch copy named after the run, up -> down -> up there, dropped.
    scratch = f"{DB}_rehearsal_{run_id[:8]}"
    assert f"Created {scratch} from backup {DB}-" in text, proc.stdout[-6000:]
    assert re.search(rf"Rehearsed on {scratch} .* dropped after: up \d+ ms, down \d+ ms, up again \d+ ms, "
                     r"integrity unchanged", text), text[-4000:]
    assert rehearsal_databases() == "0"

    # The real database: at V006 (adopted V001-V003, applied V004-V006 by this run), the same rows.
    assert history() == "V001:baseline,V002:baseline,V003:baseline,V004:up,V005:up,V006:up"
    assert psql("SELECT count(*) FROM runbook_release.schema_history WHERE kind = 'up' AND success "
                f"AND applied_by = '{run_id}'") == "3"
    columns = item_columns()
    assert "title" in columns and "slug" in columns and "name" not in columns
    assert psql("SELECT indisvalid FROM pg_index WHERE indexrelid = to_regclass('items_owner_idx')") == "t"
    assert counts() == rows
    assert "WARNING: migrate_allow_breaking is true - V006 (breaks-previous)" in text
    assert "ANALYZE of the touched tables: items" in text
    assert psql("SELECT last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL FROM pg_stat_user_tables "
                "WHERE relname = 'items'") == "t"

    # The drain was undone: connection limit back, maintenance page off, the site answers.
    assert f"Drained {DB}: maintenance page on, CONNECTION LIMIT 0 (was -1)" in text
    assert f"Re-enabled {DB}: CONNECTION LIMIT back to -1, maintenance page off" in text
    assert psql(f"SELECT datconnlimit FROM pg_database WHERE datname = '{DB}'", database="postgres") == "-1"
    assert not FLAG.exists()
    assert requests.get(f"{BASE}/health", timeout=5).status_code == 200

    # Announced (maintenance in progress, then completed) and recorded.
    texts = chat_texts(chat_from)
    assert any("Maintenance In Progress" in t and DB in t for t in texts), texts
    assert any("Maintenance Completed" in t for t in texts), texts
    assert requests_of(STATUSPAGE, run_id=run_id, since=page_from), "the status page heard nothing of the run"
    record = record_of(run_id)
    release = record["release"]
    assert record["outcome"] == "success" and record["runbook"] == "migrate"
    assert [m["version"] for m in release["migrations"]["applied"]] == ["V004", "V005", "V006"]
    assert release["migrations"]["schema_version"] == "V006" and release["migrations"]["breaks_previous"] == ["V006"]
    assert release["backup"]["verified"] is True and release["backup"]["s3_uri"].startswith("s3://")
    assert release["integrity"]["passed"] is True
    assert not record["release_warnings"], record["release_warnings"]

    # A rerun finds nothing pending: it only checks.
    again, again_id, _wall = run("migrate.yml", *admin, "-e", f"version={VERSION}", "-e", "migrate_drain=true")
    outputs.append(again.stdout + again.stderr)
    assert again.returncode == 0, again.stdout[-5000:]
    assert f"Nothing to migrate: {DB} is at V006" in flat(again)
    assert recap(again.stdout)["changed"] == 0
    assert history() == "V001:baseline,V002:baseline,V003:baseline,V004:up,V005:up,V006:up"
    assert record_of(again_id)["outcome"] == "success"


# --- a migration that fails in its rehearsal: the real database is not touched --------------------------------------

def test_a_migration_that_fails_in_rehearsal_stops_before_the_real_database(tmp_path, admin, outputs):
    bad = tmp_path / "migrations"
    bad.mkdir()
    for path in (HOME / "artifacts" / VERSION / "migrations").iterdir():
        (bad / path.name).write_text(path.read_text())
    (bad / "V007__broken.sql").write_text("ALTER TABLE items ADD COLUMN broken integer REFERENCES nowhere (id);\n")
    before, columns, rows = history(), item_columns(), counts()
    proc, run_id, _wall = run("migrate.yml", *admin, "-e", f"version={VERSION}", "-e", f"release_migrations_path={bad}")
    outputs.append(proc.stdout + proc.stderr)
    assert proc.returncode != 0
    text = flat(proc)
    scratch = f"{DB}_rehearsal_{run_id[:8]}"
    assert "FAILED in phase rehearsal" in text, proc.stdout[-5000:]
    assert "V007__broken.sql failed at line 1" in text and 'relation "nowhere" does not exist' in text
    assert f"{DB} was not touched (still at V006) and {scratch} was dropped" in text
    assert rehearsal_databases() == "0"
    assert history() == before
    assert psql("SELECT count(*) FROM runbook_release.schema_history WHERE version = 'V007'") == "0"
    assert item_columns() == columns and "broken" not in columns
    assert counts() == rows
    assert record_of(run_id)["outcome"] == "failed"


# --- secrets ------------------------------------------------------------------------------------------------------

def test_secrets_are_absent_from_output_and_records(outputs, secret_of):
    assert outputs, "no run was recorded"
    files = [p.read_text(errors="replace") for p in RECORDS.iterdir() if p.is_file()]
    check_secrets_absent(outputs + files, secret_of)
