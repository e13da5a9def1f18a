# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Connection options shared by the PostgreSQL modules (spec: module_utils/_postgres.connection_argument_spec)."""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  login_host:
    description:
      - Host name or IP address of the PostgreSQL server.
      - When neither this nor O(login_unix_socket) nor O(dsn) is set, libpq's default applies (E(PGHOST), else the
        local Unix socket), as for C(psql).
      - Mutually exclusive with O(dsn) and O(login_unix_socket).
    type: str
  login_port:
    description:
      - Server port. Default is libpq's (E(PGPORT), else 5432).
      - Mutually exclusive with O(dsn).
    type: int
  login_user:
    description:
      - Role to connect as. Default is libpq's (E(PGUSER), else the user the task runs as).
      - Mutually exclusive with O(dsn).
    type: str
  login_password:
    description:
      - Password of O(login_user). When not set, libpq reads E(PGPASSWORD) or C(~/.pgpass).
      - It is handed to libpq inside the module process, and to client programs through E(PGPASSWORD), never on a
        command line. It never appears in results, errors or warnings; a wrong password fails with a message that
        names the user, host and database and says to check it.
      - Mutually exclusive with O(dsn).
    type: str
  login_db:
    description:
      - Database to connect to. Default is libpq's (E(PGDATABASE), else the user name).
      - Mutually exclusive with O(dsn).
    type: str
  login_unix_socket:
    description:
      - Directory of the server's Unix socket, for local connections (for example V(/var/run/postgresql)).
      - Mutually exclusive with O(dsn) and O(login_host).
    type: str
  dsn:
    description:
      - A whole libpq connection string instead of the C(login_*) options, either C(key=value) pairs
        (C(host=db1 port=5432 dbname=app user=deploy password=...)) or a URI
        (C(postgresql://deploy:...@db1:5432/app?sslmode=verify-full)).
      - Treated as a secret (it may hold a password). O(ssl_mode), O(ca_cert), O(ssl_cert), O(ssl_key) and
        O(connect_timeout) given beside it override the same settings inside it.
      - Mutually exclusive with every C(login_*) option.
    type: str
  connect_timeout:
    description:
      - Seconds to wait for the connection to be established.
    type: int
    default: 10
  ssl_mode:
    description:
      - libpq C(sslmode), see U(https://www.postgresql.org/docs/current/libpq-ssl.html). Default is libpq's
        (E(PGSSLMODE), else V(prefer)). Use V(verify-full) with O(ca_cert) across untrusted networks.
    type: str
    choices: [disable, allow, prefer, require, verify-ca, verify-full]
  ca_cert:
    description:
      - File of certificate authorities the server's certificate must be signed by (libpq C(sslrootcert)).
    type: path
  ssl_cert:
    description:
      - Client certificate file (libpq C(sslcert)).
    type: path
  ssl_key:
    description:
      - Private key of O(ssl_cert) (libpq C(sslkey)).
    type: path
requirements:
  - psycopg2 2.8 or newer on the host the task runs on (Debian C(python3-psycopg2), pip C(psycopg2-binary)).
notes:
  - The options are named as in community.postgresql, so C(module_defaults) written for it mostly carry over;
    unlike there, unset options fall back to libpq's environment defaults instead of V(postgres)@localhost.
"""
