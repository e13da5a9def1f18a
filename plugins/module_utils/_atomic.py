# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Crash-safe file writes for state files kept outside Ansible's own file handling (locks, histories)."""

from __future__ import annotations

import json
import os
import tempfile


def write_atomic(path, text, mode=0o600):
    """Write ``text`` to ``path`` so readers see the old or the new content, never a part: temp file in the
    same directory, fsync, chmod, rename. The temp file is removed on any failure."""
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", dir=directory)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.rename(tmp, path)
    except Exception:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path, data, mode=0o600):
    write_atomic(path, json.dumps(data, indent=2, sort_keys=True) + "\n", mode)
