"""Benchmark: runbook.release.migration_apply against the seeds' psql loop, side by side in one run.

500 small generated migrations (alternately a CREATE TABLE and an INSERT into it), each side on its own fresh
scratch database on the sandbox's PostgreSQL:
  (a) the seeds' loop, one psql process per file: `for f in *.sql; do psql -f $f; done` (given -X -q
      -v ON_ERROR_STOP=1 --single-transaction, so it at least stops on errors and uses a transaction per file
      like (b); it still records nothing);
  (b) one `ansible-playbook` run of migration_apply over the same files (the whole command: Ansible's start-up,
      the module, one connection, history table, advisory lock, gate and plan included).
Prints both wall times and the ratio (b)/(a). Target: at most 0.5x, i.e. at least twice as fast.
Both databases are checked to hold the same tables and rows afterwards, then dropped.
"""

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg2

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv" / "bin"
HOME = Path(os.environ.get("RUNBOOK_SANDBOX_HOME", "/var/lib/runbook-sandbox"))
HOST, PORT, USER = "127.0.0.1", 55432, "postgres"
PASSWORD_FILE = HOME / "secrets" / "postgres_password"
COUNT = int(os.environ.get("BENCH_MIGRATIONS", "500"))


def admin(database="postgres"):
    conn = psycopg2.connect(host=HOST, port=PORT, user=USER, password=PASSWORD_FILE.read_text().strip(),
                            dbname=database, connect_timeout=10)
    conn.autocommit = True
    return conn


def generate(directory):
    for i in range(1, COUNT + 1):
        table = "t%04d" % ((i + 1) // 2)
        if i % 2:
            sql = "CREATE TABLE %s (id int PRIMARY KEY, note text NOT NULL DEFAULT 'x');\n" % table
        else:
            sql = "INSERT INTO %s (id, note) SELECT g, 'row ' || g FROM generate_series(1, 10) AS g;\n" % table
        (directory / ("V%04d__step_%d.sql" % (i, i))).write_text(sql)


def psql_loop(directory, database):
    env = dict(os.environ, PGHOST=HOST, PGPORT=str(PORT), PGUSER=USER, PGDATABASE=database,
               PGPASSWORD=PASSWORD_FILE.read_text().strip())
    for path in sorted(directory.glob("*.sql")):
        subprocess.run(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "--single-transaction", "-f", str(path)],
                       env=env, check=True, capture_output=True)


def migration_apply(directory, database):
    play = [{"name": "bench", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": {"ansible_python_interpreter": "{{ ansible_playbook_python }}"},
             "tasks": [{"name": "apply", "register": "out", "runbook.release.migration_apply": {
                 "path": str(directory), "login_host": HOST, "login_port": PORT, "login_user": USER,
                 "login_password": "{{ lookup('ansible.builtin.file', '%s') }}" % PASSWORD_FILE,
                 "login_db": database}},
                 {"name": "result", "ansible.builtin.copy": {"content": "{{ out | to_json }}",
                                                             "dest": str(directory.parent / "result.json"),
                                                             "mode": "0600"}}]}]
    playbook = directory.parent / "play.json"
    playbook.write_text(json.dumps(play))
    subprocess.run([str(VENV / "ansible-playbook"), str(playbook)], cwd=REPO, check=True, capture_output=True,
                   text=True, env=dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg")))
    return json.loads((directory.parent / "result.json").read_text())


def content(database):
    with admin(database) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
        tables = cur.fetchone()[0]
        cur.execute("SELECT sum((xpath('/row/c/text()', query_to_xml('SELECT count(*) AS c FROM ' || tablename, "
                    "false, true, '')))[1]::text::int) FROM pg_tables WHERE schemaname = 'public'")
        rows = cur.fetchone()[0]
    return tables, rows


def timed(action):
    started = time.monotonic()
    out = action()
    return time.monotonic() - started, out


def main():
    run = secrets.token_hex(3)
    names = {"psql": "bench_migration_apply_%s_psql" % run, "module": "bench_migration_apply_%s_module" % run}
    conn = admin()
    try:
        for name in names.values():
            conn.cursor().execute('CREATE DATABASE "%s"' % name)
        with tempfile.TemporaryDirectory(prefix="bench_migration_apply.") as tmp:
            directory = Path(tmp) / "migrations"
            directory.mkdir()
            generate(directory)
            psql_s, _out = timed(lambda: psql_loop(directory, names["psql"]))
            module_s, result = timed(lambda: migration_apply(directory, names["module"]))
        same = content(names["psql"]) == content(names["module"])
        applied = len(result["applied"])
        module_only = sum(a["duration_ms"] for a in result["applied"]) / 1000.0
    finally:
        for name in names.values():
            conn.cursor().execute('DROP DATABASE IF EXISTS "%s" WITH (FORCE)' % name)
        conn.close()
    print("%d generated migrations, each side on a fresh database" % COUNT)
    print("%-46s %8s" % ("case", "wall_s"))
    print("%-46s %8.2f" % ("(a) psql -f loop (one process per file)", psql_s))
    print("%-46s %8.2f" % ("(b) ansible-playbook migration_apply", module_s))
    print("    of which inside migrations (sum duration_ms)  %8.2f" % module_only)
    ratio = module_s / psql_s
    print("ratio (b)/(a) wall time: %.2fx (target <= 0.5x): %s" % (ratio, "met" if ratio <= 0.5 else "NOT met"))
    print("same tables and rows on both databases: %s; applied and recorded by (b): %d" % (same, applied))
    print(json.dumps({"migrations": COUNT, "psql_loop_s": round(psql_s, 2), "migration_apply_s": round(module_s, 2),
                      "ratio": round(ratio, 3), "same_content": same, "applied": applied}, sort_keys=True))
    return 0 if same and applied == COUNT else 1


if __name__ == "__main__":
    sys.exit(main())
