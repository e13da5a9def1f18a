# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""PostgreSQL client programs (pg_dump, pg_restore) for pg_backup and pg_restore, run with ``module.run_command``.

The connection settings come from ``_postgres`` (the shared options): ``pg_env()`` turns them into PG* variables.
The password reaches the program only through the environment (PGPASSWORD) or, with ``password_via=pgpass``, a
0600 pgpass file in a 0700 directory that is removed afterwards; it is never in argv, so never in a process
listing or in the ``cmd`` a failure returns. Output is scrubbed of secrets before it leaves this file.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time

from ansible_collections.runbook.release.plugins.module_utils import _postgres as pg
from ansible_collections.runbook.release.plugins.module_utils._cli import CLIError as ClientError
from ansible_collections.runbook.release.plugins.module_utils._pg_backup import parse_client_version


def _quote_keyword(value):
    return "'%s'" % str(value).replace("\\", "\\\\").replace("'", "\\'")


def with_database(params, database):
    """A copy of the connection options pointing at ``database`` (also when they are a ``dsn``).

    _postgres has no way to say "these settings, another database"; a dsn is rewritten as keyword=value pairs,
    which libpq and ``_postgres.parse_dsn`` both read.
    """
    out = dict(params)
    if params.get("dsn"):
        keywords = pg.parse_dsn(params["dsn"])
        keywords["dbname"] = database
        out["dsn"] = " ".join("%s=%s" % (key, _quote_keyword(value)) for key, value in keywords.items())
    else:
        out["login_db"] = database
    return out


def pgpass_line(password):
    """A ~/.pgpass line that matches any server, database and user: the password with ':' and '\\' escaped."""
    return "*:*:*:*:%s\n" % password.replace("\\", "\\\\").replace(":", "\\:")


def connection_failure(stderr, params):
    """A client program's connection failure explained the way _postgres explains psycopg2's, or None."""
    text = stderr or ""
    low = text.lower()
    if "connection to server" not in low and "fatal:" not in low and "could not connect" not in low:
        return None
    return pg.explain_connect_error(text, params)


def stop(proc, grace=10):
    """Terminate a child program, killing it if it does not exit within ``grace`` seconds."""
    if proc.poll() is not None:
        return
    proc.terminate()
    deadline = time.monotonic() + grace
    while proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    if proc.poll() is None:
        proc.kill()
        proc.wait()


class PgClient(object):
    """pg_dump and pg_restore for one set of connection options. ``commands`` lists every argv run."""

    def __init__(self, module, params, secrets, bin_dir=None, password_via="env", application_name=None):
        self.module = module
        self.params = params
        self.secrets = secrets
        self.bin_dir = bin_dir
        self.password_via = password_via
        self.application_name = application_name
        self.commands = []
        self.tmpdir = None

    def cleanup(self):
        if self.tmpdir and os.path.isdir(self.tmpdir):
            shutil.rmtree(self.tmpdir, ignore_errors=True)
        self.tmpdir = None

    def program(self, name):
        if self.bin_dir:
            path = os.path.join(self.bin_dir, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
            raise ClientError("%s is not in pg_bin_dir %s: point pg_bin_dir at the bin directory of the PostgreSQL "
                              "client programs (for example /usr/lib/postgresql/15/bin)" % (name, self.bin_dir))
        path = self.module.get_bin_path(name)
        if not path:
            raise ClientError("%s is not installed on this host (not on PATH): install the PostgreSQL client programs "
                              "(Debian: postgresql-client) or set pg_bin_dir" % name)
        return path

    def env(self, database):
        """PG* variables for ``database``; with password_via=pgpass the password sits in a 0600 file instead."""
        try:
            env = pg.pg_env(with_database(self.params, database), self.application_name)
        except pg.PostgresError as exc:
            raise ClientError(exc.msg)
        env["LC_ALL"] = "C"  # messages in English, so failures can be explained
        if self.password_via == "pgpass":
            password = env.pop("PGPASSWORD", None) or os.environ.get("PGPASSWORD")
            if password:
                env["PGPASSFILE"] = self._pgpass_file(password)
            env["PGPASSWORD"] = ""  # libpq ignores an empty PGPASSWORD and reads PGPASSFILE
        return env

    def _pgpass_file(self, password):
        if "\n" in password or "\r" in password:
            raise ClientError("the password contains a line break, which a pgpass file cannot hold: use "
                              "password_via=env")
        if self.tmpdir is None:
            self.tmpdir = tempfile.mkdtemp(prefix="runbook-pg.")  # 0700
        path = os.path.join(self.tmpdir, "pgpass")
        if not os.path.exists(path):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(pgpass_line(password))
        return path

    def run(self, argv, database, check=True):
        """Run a client program against ``database``; raise ClientError (scrubbed) when it fails.

        If the module is interrupted meanwhile (a signal handler raises), the program is stopped before the exception
        goes on, so that nothing keeps writing into a dump the module is about to remove.
        """
        self.commands.append(" ".join(argv))
        env = self.env(database)
        started = []
        try:
            rc, out, err = self.module.run_command(argv, environ_update=env, umask=0o077, check_rc=False,
                                                   handle_exceptions=False, before_communicate_callback=started.append)
        except BaseException:
            for proc in started:
                stop(proc)
            raise
        out, err = self.secrets.scrub(out), self.secrets.scrub(err)
        if check and rc != 0:
            explained = connection_failure(err, with_database(self.params, database))
            detail = (err or out).strip()
            msg = "%s failed (rc=%s): %s" % (os.path.basename(argv[0]), rc, explained or detail[-800:])
            if explained and detail:
                msg += " (%s said: %s)" % (os.path.basename(argv[0]), detail.splitlines()[-1][:300])
            raise ClientError(msg, cmd=list(argv), rc=rc, stdout=out, stderr=err)
        return rc, out, err

    def version(self, name):
        """(version_num, text) of a client program, from ``<program> --version``."""
        path = self.program(name)
        self.commands.append("%s --version" % path)
        rc, out, err = self.module.run_command([path, "--version"], check_rc=False)
        parsed = parse_client_version(out)
        if rc != 0 or parsed is None:
            raise ClientError("cannot tell the version of %s from %r: check that it is a PostgreSQL client program"
                              % (path, (out or err).strip()[:200]), cmd=[path, "--version"], rc=rc, stdout=out,
                              stderr=err)
        return parsed
