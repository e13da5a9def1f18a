"""migration_apply's pure half: file names, directives, the statement splitter, transaction modes, the
destructive-operation gate and planning against a history."""

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ansible_collections.runbook.release.plugins.module_utils import _migrations as m
from ansible_collections.runbook.release.plugins.module_utils._release_data import validate

REPO = Path(__file__).resolve().parents[4]
SANDBOX_MIGRATIONS = REPO / "sandbox" / "app" / "migrations"


def texts(sql):
    return [s.text for s in m.split_statements(sql)]


def stmt(sql):
    statements = m.split_statements(sql)
    assert len(statements) == 1, statements
    return statements[0]


def write(tmp_path, files):
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return str(tmp_path)


# --- versions -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text,key", [("V004", (4,)), ("004", (4,)), ("4", (4,)), ("v4", (4,)), ("1.2", (1, 2)),
                                      ("1_2", (1, 2)), ("1.2.0", (1, 2)), ("0", (0,)), ("V20240101120000", (20240101120000,))])
def test_version_key(text, key):
    assert m.version_key(text) == key


@pytest.mark.parametrize("text", ["", "V", "latest", "1..2", "V4a", "-1"])
def test_version_key_rejects(text):
    with pytest.raises(ValueError, match="is not a migration version"):
        m.version_key(text)


def test_versions_compare_numerically_not_as_text():
    assert m.version_key("V10") > m.version_key("V9")
    assert m.version_key("1.10") > m.version_key("1.9")
    assert m.leading_version_key("20240101120000_init") == (20240101120000,)
    assert m.leading_version_key("init") is None


# --- splitting ------------------------------------------------------------------------------------------------------

def test_split_simple_statements_with_lines():
    sql = "-- header\n\nCREATE TABLE a (id int);\n\nINSERT INTO a\nVALUES (1);\nSELECT 1"
    statements = m.split_statements(sql)
    assert [s.text for s in statements] == ["CREATE TABLE a (id int)", "INSERT INTO a\nVALUES (1)", "SELECT 1"]
    assert [s.line for s in statements] == [3, 5, 7]


def test_split_respects_quotes_comments_and_identifiers():
    sql = ("INSERT INTO t VALUES ('a;b', 'it''s; fine');\n"
           "SELECT \"semi;colon\" FROM t; -- trailing; comment\n"
           "/* block; /* nested; */ still comment; */ SELECT 2;\n"
           "SELECT E'escaped \\' quote; here';\n")
    assert texts(sql) == ["INSERT INTO t VALUES ('a;b', 'it''s; fine')", 'SELECT "semi;colon" FROM t',
                          "SELECT 2", "SELECT E'escaped \\' quote; here'"]


def test_split_respects_dollar_quoting():
    sql = ("CREATE FUNCTION f() RETURNS int LANGUAGE plpgsql AS $body$\nBEGIN\n  PERFORM 1; RETURN $$x;$$::int;\nEND\n"
           "$body$;\nDO $$ BEGIN RAISE NOTICE 'a;b'; END $$;\nSELECT $1, a$b FROM t;\n")
    out = texts(sql)
    assert len(out) == 3
    assert out[0].endswith("$body$") and "PERFORM 1; RETURN" in out[0]
    assert out[1] == "DO $$ BEGIN RAISE NOTICE 'a;b'; END $$"
    assert out[2] == "SELECT $1, a$b FROM t"


def test_split_keeps_parenthesised_semicolons_and_begin_atomic_bodies():
    rule = "CREATE RULE r AS ON INSERT TO t DO ALSO (INSERT INTO log VALUES (1); INSERT INTO log VALUES (2))"
    atomic = ("CREATE OR REPLACE FUNCTION add(a int, b int) RETURNS int LANGUAGE sql\nBEGIN ATOMIC\n"
              "  SELECT CASE WHEN a > 0 THEN a ELSE 0 END;\n  SELECT a + b;\nEND")
    assert texts(rule + ";\n" + atomic + ";\nSELECT 1;") == [rule, atomic, "SELECT 1"]
    # Outside a routine, BEGIN/END are ordinary statements.
    assert texts("BEGIN; SELECT 1; END;") == ["BEGIN", "SELECT 1", "END"]


def test_split_drops_empty_statements_and_comment_only_text():
    assert texts(";;\n-- nothing\n;/* x */") == []
    assert texts("") == []


def test_split_refuses_psql_meta_commands_with_line():
    with pytest.raises(m.MigrationError, match=r"line 2: psql meta-command \\set is not SQL"):
        m.split_statements("SELECT 1;\n\\set x 1\n")


@pytest.mark.parametrize("sql,what,line", [("SELECT 1;\nSELECT 'abc;\n", "unterminated string", 2),
                                           ("SELECT \"x;\n", "unterminated quoted identifier", 1),
                                           ("\n\nSELECT $a$ x;", "unterminated dollar-quoted string", 3),
                                           ("/* /* */", "unterminated /\\* comment", 1)])
def test_split_reports_unterminated_quotes(sql, what, line):
    with pytest.raises(m.MigrationError, match="%s .*line %d" % (what, line)):
        m.split_statements(sql)


def test_error_position_maps_to_a_line_inside_the_statement():
    s = m.split_statements("\n\nINSERT INTO c (id)\nVALUES (nope);\n")[0]
    assert s.line == 3
    assert s.line_of(s.text.index("nope") + 1) == 4
    assert s.line_of(None) == 3


_FRAGMENT = st.sampled_from(["SELECT 1", "SELECT 'a;b'", "SELECT \"x;y\" FROM t", "SELECT $$;$$", "SELECT $t$ ';' $t$",
                             "INSERT INTO t VALUES (';')", "SELECT /* ; */ 2", "SELECT E'\\';'", "SELECT (1; 2)"])


@settings(max_examples=200, deadline=None)
@given(st.lists(_FRAGMENT, min_size=1, max_size=8), st.sampled_from([";\n", "; ", ";\n\n-- note;\n"]))
def test_split_round_trips_joined_statements(parts, separator):
    assert texts(separator.join(parts) + ";") == parts


def test_split_the_sandbox_migrations():
    counts = {}
    for path in sorted(SANDBOX_MIGRATIONS.glob("V*.sql")):
        counts[path.name] = len(m.split_statements(path.read_text()))
    assert counts["V001__create_schema.sql"] == 3
    assert counts["V002__seed_data.sql"] == 2
    assert counts["V005__items_slug_backfill.sql"] == 2
    assert counts["V001__create_schema.down.sql"] == 3


# --- directives and files -------------------------------------------------------------------------------------------

def test_directives_at_the_top():
    text = "-- runbook: no-transaction, breaks-previous\n-- runbook: irreversible\n-- comment\n\nSELECT 1;\n"
    assert m.parse_directives(text, "V1__x.sql") == ["no-transaction", "breaks-previous", "irreversible"]
    assert m.parse_directives("--runbook:allow-destructive allow-destructive\nSELECT 1;", "f") == ["allow-destructive"]


def test_unknown_or_misplaced_directive_is_an_error():
    with pytest.raises(m.MigrationError, match="V1__x.sql line 1: unknown directive 'no-transation'"):
        m.parse_directives("-- runbook: no-transation\nSELECT 1;", "V1__x.sql")
    with pytest.raises(m.MigrationError, match="line 3: a '-- runbook:' directive below the first statement"):
        m.parse_directives("SELECT 1;\n\n-- runbook: no-transaction\n", "V1__x.sql")


def test_scan_orders_numerically_and_pairs_companions(tmp_path):
    path = write(tmp_path, {"V10__ten.sql": "SELECT 10;", "V9__nine.sql": "SELECT 9;", "V9__nine.down.sql": "SELECT 0;",
                            "V9__nine.verify.sql": "SELECT true;", "README.md": "not sql"})
    found = m.scan(path)
    assert [x.version for x in found] == ["V9", "V10"]
    assert found[0].down.filename == "V9__nine.down.sql" and found[0].verify.filename == "V9__nine.verify.sql"
    assert found[1].down is None and found[1].verify is None
    assert found[0].up.sha256 == __import__("hashlib").sha256(b"SELECT 9;").hexdigest()


def test_scan_lists_every_problem(tmp_path):
    path = write(tmp_path, {"V004__a.sql": "", "V4__b.sql": "", "v5_bad.sql": "", "V6__c.down.sql": "",
                            "V7__d.sql": "", "V7__other.verify.sql": ""})
    with pytest.raises(m.MigrationError) as info:
        m.scan(path)
    msg = info.value.msg
    assert "file names not understood: v5_bad.sql" in msg
    assert "duplicate version V004: V004__a.sql, V4__b.sql" in msg
    assert "V6__c.down.sql has no migration V6__c.sql" in msg
    assert "V7__other.verify.sql has no migration V7__other.sql" in msg


def test_scan_needs_a_directory(tmp_path):
    with pytest.raises(m.MigrationError, match="is not a directory"):
        m.scan(str(tmp_path / "nope"))


def test_non_utf8_file_is_named(tmp_path):
    (tmp_path / "V1__x.sql").write_bytes(b"SELECT '\xff';")
    with pytest.raises(m.MigrationError, match="V1__x.sql is not UTF-8"):
        m.scan(str(tmp_path))[0].up.statements


# --- transaction modes ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sql,reason", [
    ("CREATE INDEX CONCURRENTLY i ON t (a)", "CREATE INDEX CONCURRENTLY"),
    ("create unique index concurrently if not exists i on t (a)", "CREATE INDEX CONCURRENTLY"),
    ("DROP INDEX CONCURRENTLY IF EXISTS i", "DROP INDEX CONCURRENTLY"),
    ("REINDEX INDEX CONCURRENTLY i", "REINDEX CONCURRENTLY"),
    ("REINDEX (VERBOSE, CONCURRENTLY) TABLE t", "REINDEX CONCURRENTLY"),
    ("REINDEX DATABASE app", "REINDEX DATABASE/SYSTEM"),
    ("VACUUM (ANALYZE) t", "VACUUM"),
    ("ALTER SYSTEM SET work_mem = '64MB'", "ALTER SYSTEM"),
    ("CREATE DATABASE other", "CREATE DATABASE"),
    ("DROP DATABASE other", "DROP DATABASE"),
    ("ALTER TABLE p DETACH PARTITION p1 CONCURRENTLY", "ALTER TABLE ... DETACH PARTITION ... CONCURRENTLY"),
    ("CLUSTER VERBOSE", "CLUSTER without a table"),
])
def test_autocommit_reason(sql, reason):
    assert m.autocommit_reason(stmt(sql)) == reason


@pytest.mark.parametrize("sql", ["CREATE INDEX i ON t (a)", "DROP INDEX i", "REINDEX TABLE t", "CLUSTER t USING i",
                                 "SELECT 'CREATE INDEX CONCURRENTLY'", "ALTER TYPE mood ADD VALUE 'meh'",
                                 "-- VACUUM\nSELECT 1", "ANALYZE t"])
def test_no_autocommit_needed(sql):
    assert m.autocommit_reason(stmt(sql)) is None


def test_alter_type_add_value_needs_autocommit_only_before_pg12():
    s = stmt("ALTER TYPE mood ADD VALUE 'meh'")
    assert m.autocommit_reason(s, 110000) == "ALTER TYPE ... ADD VALUE (before PostgreSQL 12)"
    assert m.autocommit_reason(s, 120000) is None


def test_transaction_mode_from_directive_or_detection(tmp_path):
    path = write(tmp_path, {"V1__a.sql": "CREATE TABLE a (id int);\n\nCREATE INDEX CONCURRENTLY a_i ON a (id);\n",
                            "V2__b.sql": "-- runbook: no-transaction\nSELECT 1;\n", "V3__c.sql": "SELECT 1;\n"})
    a, b, c = m.scan(path)
    assert m.transaction_mode(a.up) == ("none", "detected CREATE INDEX CONCURRENTLY at line 3")
    assert m.transaction_mode(b.up) == ("none", "no-transaction directive")
    assert m.transaction_mode(c.up)[0] == "transaction"


@pytest.mark.parametrize("sql,name", [("BEGIN", "BEGIN"), ("COMMIT", "COMMIT"), ("START TRANSACTION", "START TRANSACTION"),
                                      ("ROLLBACK", "ROLLBACK"), ("END", "END"), ("SELECT 1", None),
                                      ("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END", None)])
def test_transaction_control(sql, name):
    assert m.transaction_control(stmt(sql)) == name


# --- the gate -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("sql,rule", [
    ("DROP TABLE IF EXISTS legacy", "drop_table"),
    ("DROP SCHEMA old CASCADE", "drop_schema"),
    ("DROP DATABASE other", "drop_database"),
    ("ALTER TABLE items DROP COLUMN slug", "drop_column"),
    ("ALTER TABLE ONLY public.items DROP slug", "drop_column"),
    ("ALTER TABLE items ADD COLUMN x int, DROP COLUMN IF EXISTS y", "drop_column"),
    ("TRUNCATE items", "truncate"),
    ("DELETE FROM items", "delete_without_where"),
    ("WITH gone AS (SELECT 1) DELETE FROM items", "delete_without_where"),
    ("UPDATE items SET a = (SELECT b FROM c WHERE c.id = 1)", "update_without_where"),
    ("ALTER TABLE items ALTER COLUMN owner TYPE varchar(10)", "alter_column_type"),
    ("ALTER TABLE items ALTER owner SET DATA TYPE varchar(10)", "alter_column_type"),
    ("ALTER TABLE items ALTER COLUMN owner SET NOT NULL", "set_not_null"),
    ("CREATE INDEX items_owner ON items (owner)", "create_index_blocking"),
    ("CREATE UNIQUE INDEX ON public.items (owner)", "create_index_blocking"),
    ("ALTER TABLE items RENAME COLUMN name TO title", "rename_column"),
    ("ALTER TABLE items RENAME name TO title", "rename_column"),
    ("ALTER TABLE items RENAME TO things", "rename_table"),
])
def test_gate_rules(sql, rule):
    assert [r for r, _detail in m.statement_findings(stmt(sql))] == [rule]


@pytest.mark.parametrize("sql", [
    "DELETE FROM items WHERE id = 1",
    "UPDATE items SET slug = lower(name) WHERE slug IS NULL",
    "UPDATE items SET a = 1 FROM other WHERE other.id = items.id",
    "INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = 2",
    "ALTER TABLE items DROP CONSTRAINT items_pkey",
    "ALTER TABLE items ALTER COLUMN owner DROP DEFAULT",
    "ALTER TABLE items ALTER COLUMN owner DROP NOT NULL",
    "ALTER TABLE items RENAME CONSTRAINT a TO b",
    "ALTER TABLE items ADD COLUMN status text NOT NULL DEFAULT 'active'",
    "CREATE INDEX CONCURRENTLY IF NOT EXISTS items_owner_idx ON items (owner)",
    "INSERT INTO audit VALUES ('DROP TABLE items; DELETE FROM items')",
    "-- DROP TABLE items\nSELECT 1",
    "DROP INDEX CONCURRENTLY items_owner_idx",
    "SELECT * FROM items",
])
def test_gate_leaves_safe_statements_alone(sql):
    assert m.statement_findings(stmt(sql)) == []


def test_index_on_a_table_created_earlier_in_the_run_is_not_blocking(tmp_path):
    path = write(tmp_path, {"V1__a.sql": "CREATE TABLE IF NOT EXISTS app.things (id int);\n",
                            "V2__b.sql": "CREATE INDEX things_id ON things (id);\nCREATE INDEX other_id ON other (id);\n"})
    a, b = m.scan(path)
    created = set()
    assert m.gate_findings(a.up, created_tables=created) == [] and created == {"things"}
    findings = m.gate_findings(b.up, created_tables=created)
    assert [(f["rule"], f["line"]) for f in findings] == [("create_index_blocking", 2)]


def test_index_target():
    assert m.index_target(stmt("CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS i ON ONLY s.\"T\" (a)")) == \
        ("i", 's."T"', "T", True)
    assert m.index_target(stmt("CREATE INDEX ON t (a)")) == (None, "t", "t", False)
    assert m.index_target(stmt("CREATE TABLE t (a int)")) is None


def test_gate_allowances(tmp_path):
    path = write(tmp_path, {"V1__a.sql": "-- runbook: breaks-previous\nALTER TABLE t RENAME a TO b;\nDROP TABLE old;\n",
                            "V2__b.sql": "-- runbook: allow-destructive\nDROP TABLE old;\n"})
    a, b = m.scan(path)
    first = m.gate_findings(a.up)
    assert [(f["rule"], f["line"], f["allowed_by"]) for f in first] == [("rename_column", 2, "breaks-previous directive"),
                                                                        ("drop_table", 3, None)]
    assert [f["allowed_by"] for f in m.gate_findings(b.up)] == ["allow-destructive directive"]
    assert [f["allowed_by"] for f in m.gate_findings(a.up, allow_destructive=True)] == ["allow_destructive option"] * 2


# --- history and plans ----------------------------------------------------------------------------------------------

def row(version, kind="up", success=True, sha256=None, error=None):
    return {"version": version, "name": "x", "kind": kind, "success": success, "sha256": sha256, "error": error}


def test_fold_history():
    applied, failures = m.fold_history([row("V1"), row("V2"), row("V3", success=False, error="boom"), row("V2", "down"),
                                        row("V4", success=False), row("V4"), row("V0", "baseline")])
    assert sorted(applied) == [(0,), (1,), (4,)]
    assert list(failures) == [(3,)] and failures[(3,)]["error"] == "boom"


@pytest.fixture
def five(tmp_path):
    files = {}
    for i in range(1, 6):
        files["V%03d__m%d.sql" % (i, i)] = "CREATE TABLE t%d (id int);\n" % i
        files["V%03d__m%d.down.sql" % (i, i)] = "-- runbook: allow-destructive\nDROP TABLE t%d;\n" % i
    files["V003__m3.verify.sql"] = "SELECT true;\n"
    return m.scan(write(tmp_path, files))


def applied_rows(migrations, upto):
    return m.fold_history([dict(row(x.version, sha256=x.up.sha256), name=x.name) for x in migrations if x.key <= (upto,)])


def test_plan_applies_pending_in_order(five):
    plan = m.make_plan(five, {})
    assert plan.errors == [] and plan.direction == "up"
    assert [(x.version, action) for x, action in plan.steps] == [("V%03d" % i, "apply") for i in range(1, 6)]
    assert plan.entries[2]["verify"] == "V003__m3.verify.sql" and plan.entries[0]["transaction"] == "transaction"


def test_plan_up_to_target_and_nothing_when_current(five):
    applied, failures = applied_rows(five, 2)
    plan = m.make_plan(five, applied, failures, target="V4")
    assert [x.version for x, _a in plan.steps] == ["V003", "V004"]
    applied, failures = applied_rows(five, 5)
    plan = m.make_plan(five, applied, failures)
    assert plan.steps == [] and plan.direction == "none" and plan.errors == []


def test_plan_down_runs_down_scripts_newest_first(five):
    applied, failures = applied_rows(five, 5)
    plan = m.make_plan(five, applied, failures, target="2")
    assert plan.direction == "down"
    assert [(x.version, action) for x, action in plan.steps] == [("V005", "revert"), ("V004", "revert"), ("V003", "revert")]
    assert plan.entries[0]["file"] == "V005__m5.down.sql" and plan.entries[0]["gate"][0]["allowed"]
    assert plan.entries[0]["verify"] is None
    everything = m.make_plan(five, applied, failures, target="0")
    assert [x.version for x, _a in everything.steps] == ["V005", "V004", "V003", "V002", "V001"]


def test_plan_down_refuses_irreversible_missing_down_and_missing_file(tmp_path):
    path = write(tmp_path, {"V1__a.sql": "SELECT 1;", "V1__a.down.sql": "SELECT 1;",
                            "V2__b.sql": "-- runbook: irreversible\nSELECT 1;", "V2__b.down.sql": "SELECT 1;",
                            "V3__c.sql": "SELECT 1;"})
    migrations = m.scan(path)
    applied, failures = m.fold_history([row("V1"), row("V2"), row("V3"), row("V4")])
    plan = m.make_plan(migrations, applied, failures, target="V1")
    assert len(plan.errors) == 3
    assert "cannot revert V4: it is applied but its files are not in path" in plan.errors[0]
    assert "cannot revert V3__c.sql: it has no V3__c.down.sql" in plan.errors[1]
    assert "cannot revert V2__b.sql: it is marked '-- runbook: irreversible'" in plan.errors[2]
    assert plan.missing == ["V4"]


def test_unknown_target_is_an_error(five):
    plan = m.make_plan(five, {}, target="V9")
    assert plan.errors and "target V9 is not a migration in path" in plan.errors[0]


def test_drift_fails_or_warns(five):
    rows = [dict(row(x.version, sha256=x.up.sha256), name=x.name) for x in five[:2]]
    rows[0]["sha256"] = "0" * 64
    applied, failures = m.fold_history(rows)
    plan = m.make_plan(five, applied, failures)
    assert plan.drift[0]["file"] == "V001__m1.sql" and plan.drift[0]["recorded_sha256"] == "0" * 64
    assert "applied migrations were edited after they ran: V001__m1.sql" in plan.errors[0]
    warned = m.make_plan(five, applied, failures, on_drift="warn")
    assert warned.errors == [] and "V001__m1.sql" in warned.warnings[0] and len(warned.steps) == 3


def test_out_of_order_pending_is_an_error_unless_allowed(five):
    rows = [dict(row(x.version, sha256=x.up.sha256), name=x.name) for x in five if x.version != "V002"]
    applied, failures = m.fold_history(rows)
    plan = m.make_plan(five, applied, failures)
    assert "V002__m2.sql not applied, but later versions are (up to V005)" in plan.errors[0]
    assert [x.version for x, _a in m.make_plan(five, applied, failures, out_of_order=True).steps] == ["V002"]


def test_baseline_records_versions_up_to_it(five):
    plan = m.make_plan(five, {}, baseline=m.version_key("V3"))
    assert [x.version for x in plan.baseline] == ["V001", "V002", "V003"]
    assert [x.version for x, _a in plan.steps] == ["V004", "V005"]
    applied, failures = applied_rows(five, 5)
    assert m.make_plan(five, applied, failures, baseline=(3,)).baseline == []
    applied, failures = applied_rows(five, 1)
    assert "the history already records versions up to V001" in m.make_plan(five, applied, failures, baseline=(3,)).errors[0]
    assert "above the last migration" in m.make_plan(five, {}, baseline=(9,)).errors[0]


def test_plan_refuses_gated_statements_with_file_line_rule(tmp_path):
    path = write(tmp_path, {"V1__a.sql": "CREATE TABLE a (id int);\n", "V2__b.sql": "SELECT 1;\n\nDROP TABLE a;\n"})
    plan = m.make_plan(m.scan(path), {})
    assert len(plan.errors) == 1
    assert plan.errors[0].startswith("V2__b.sql line 3: refused by rule drop_table (DROP TABLE: DROP TABLE a)")
    assert "-- runbook: allow-destructive" in plan.errors[0]
    assert m.make_plan(m.scan(path), {}, allow_destructive=True).errors == []


def test_plan_refuses_transaction_control_in_a_transactional_file(tmp_path):
    path = write(tmp_path, {"V1__a.sql": "BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n",
                            "V2__b.sql": "-- runbook: no-transaction\nBEGIN;\nSELECT 1;\nCOMMIT;\n"})
    plan = m.make_plan(m.scan(path), {})
    assert len(plan.errors) == 1 and plan.errors[0].startswith("V1__a.sql line 1: BEGIN: each migration already runs")


def test_plan_reports_unparseable_files(tmp_path):
    path = write(tmp_path, {"V1__a.sql": "SELECT 'oops;\n"})
    plan = m.make_plan(m.scan(path), {})
    assert plan.errors == ["V1__a.sql: unterminated string starting at line 1"]


def test_the_sandbox_release_plans_cleanly():
    migrations = m.scan(str(SANDBOX_MIGRATIONS))
    plan = m.make_plan(migrations, {})
    assert plan.errors == []
    modes = dict((e["version"], e["transaction"]) for e in plan.entries)
    assert modes == {"V001": "transaction", "V002": "transaction", "V003": "transaction", "V004": "none",
                     "V005": "transaction", "V006": "transaction"}
    v006 = plan.entries[-1]
    assert v006["markers"] == ["breaks-previous"]
    assert [(f["rule"], f["allowed_by"]) for f in v006["gate"]] == [("rename_column", "breaks-previous directive")]
    applied, failures = m.fold_history([dict(row(x.version, sha256=x.up.sha256), name=x.name) for x in migrations])
    down = m.make_plan(migrations, applied, failures, target="V003")
    assert down.errors == [] and [x.version for x, _a in down.steps] == ["V006", "V005", "V004"]


def test_contract_fragment_is_valid_release_data():
    fragment = m.contract_fragment([{"version": "V004", "name": "idx", "duration_ms": 12, "extra": 1}], ["V006"], "V005",
                                   [])
    assert validate(fragment, partial=True) == []
    assert fragment["migrations"]["applied"] == [{"version": "V004", "name": "idx", "duration_ms": 12}]


def test_password_literals_are_hidden_in_messages():
    s = stmt("ALTER ROLE app LOGIN PASSWORD 'it''s secret'")
    assert s.summary() == "ALTER ROLE app LOGIN PASSWORD '<hidden>'"
    assert m.mask_sql_secrets("CREATE USER MAPPING FOR u SERVER s OPTIONS (password E'x')") == \
        "CREATE USER MAPPING FOR u SERVER s OPTIONS (password '<hidden>')"
    assert m.mask_sql_secrets("SELECT 'password'") == "SELECT 'password'"
