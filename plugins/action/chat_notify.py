# -*- coding: utf-8 -*-
# Copyright: (c) 2026, runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Runs runbook.release.chat_notify in the worker process on a local connection (see plugin_utils/_in_worker.py)."""

from __future__ import annotations

from ansible_collections.runbook.release.plugins.plugin_utils._in_worker import InWorkerActionModule as ActionModule
from ansible_collections.runbook.release.plugins.plugin_utils._in_worker import preload

__all__ = ["ActionModule"]

preload("chat_notify")
