# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""The error every wrapper of a command-line program raises (docker, docker compose, pg_dump, pg_restore)."""

from __future__ import annotations


class CLIError(Exception):
    """A CLI call failed; carries what an operator needs to see (callers scrub secrets before raising)."""

    def __init__(self, msg, cmd=None, rc=None, stdout=None, stderr=None):
        super().__init__(msg)
        self.msg = msg
        self.cmd = cmd
        self.rc = rc
        self.stdout = stdout
        self.stderr = stderr

    def as_result(self):
        """The keys a failed module returns for a failed command: cmd, rc, stdout, stderr."""
        return {"cmd": self.cmd, "rc": self.rc, "stdout": self.stdout, "stderr": self.stderr}
