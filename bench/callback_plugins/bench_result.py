# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark helper: writes the ``duration_ms`` a task reports to the file named by BENCH_RESULT_FILE.

bench_smoke_check.py enables it for every playbook it times, so the smoke_check playbook can stay one task
(no debug task to print the module's own duration) and both sides of the comparison carry the same callback.
"""

from __future__ import annotations

import json
import os

from ansible.plugins.callback import CallbackBase

DOCUMENTATION = r"""
name: bench_result
type: aggregate
short_description: Write the duration_ms a task reports to BENCH_RESULT_FILE (benchmarks only)
description: [Used by bench/bench_smoke_check.py; not part of the collection.]
requirements: [enabled by the benchmark through ANSIBLE_CALLBACKS_ENABLED]
"""


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_result"
    CALLBACK_NEEDS_ENABLED = True

    def v2_runner_on_ok(self, result):
        path = os.environ.get("BENCH_RESULT_FILE")
        data = result._result
        if path and "duration_ms" in data:
            with open(path, "w") as handle:
                json.dump({"duration_ms": data["duration_ms"], "passed": data.get("passed")}, handle)
