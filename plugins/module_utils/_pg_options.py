# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""The PostgreSQL connection options every runbook.release module shares, without importing psycopg2.

``_postgres`` re-exports these names. A module whose PostgreSQL use is optional (smoke_check's ``postgres``
checks) declares its options from here, so its runs without a database check never pay for importing the
driver; it imports ``_postgres`` only when a check needs it.
"""

from __future__ import annotations

LOGIN_OPTIONS = ("login_host", "login_port", "login_user", "login_password", "login_db", "login_unix_socket")
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


def connection_argument_spec():
    """The options every PostgreSQL module shares, with their constraints (doc fragment: runbook.release.postgres)."""
    return {
        "argument_spec": {
            "login_host": {"type": "str"},
            "login_port": {"type": "int"},
            "login_user": {"type": "str"},
            "login_password": {"type": "str", "no_log": True},
            "login_db": {"type": "str"},
            "login_unix_socket": {"type": "str"},
            "connect_timeout": {"type": "int", "default": 10},
            "dsn": {"type": "str", "no_log": True},
            "ssl_mode": {"type": "str", "choices": list(SSL_MODES)},
            "ca_cert": {"type": "path"},
            "ssl_cert": {"type": "path"},
            "ssl_key": {"type": "path"},
        },
        "mutually_exclusive": [["dsn", option] for option in LOGIN_OPTIONS] + [["login_host", "login_unix_socket"]],
    }
