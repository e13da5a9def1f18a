"""smoke_check's import cost: a task without a ``postgres`` check must not pay for the PostgreSQL driver.

The module declares its PostgreSQL options from ``_pg_options`` and imports ``_postgres`` (and so psycopg2) only
when a check needs it. Checked in a fresh interpreter, since this test process may have imported psycopg2 already.
"""

import subprocess
import sys
from pathlib import Path

COLLECTIONS = Path(__file__).resolve().parents[4] / "collections"

PROBE = """
import sys
import ansible_collections.runbook.release.plugins.modules.smoke_check as m
heavy = sorted(name for name in ("psycopg2", "uuid") if name in sys.modules)
print(",".join(heavy) or "none")
"""


def test_importing_smoke_check_imports_neither_psycopg2_nor_uuid():
    proc = subprocess.run([sys.executable, "-c", PROBE], cwd=COLLECTIONS, capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "none", proc.stdout + proc.stderr


def test_the_postgres_options_are_the_same_through_postgres_and_pg_options():
    from ansible_collections.runbook.release.plugins.module_utils import _pg_options, _postgres

    assert _postgres.connection_argument_spec() == _pg_options.connection_argument_spec()
    spec = _pg_options.connection_argument_spec()["argument_spec"]
    assert spec["login_password"]["no_log"] is True and spec["dsn"]["no_log"] is True
