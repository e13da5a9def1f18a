# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""When runbook.release.smoke_check takes its samples: all checks at once (``run_once``), again until they pass
(``run_until``), or on a schedule for a monitoring window (``run_window``). ``probe(check)`` takes one sample;
a thread pool of ``concurrency`` workers runs the probes, so 50 checks of 100 ms take about 4 x 100 ms with
the default 16, not 5 s.
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait


class Runner:

    def __init__(self, probe, concurrency=16, clock=time.monotonic, sleep=time.sleep):
        self.probe = probe
        self.concurrency = max(1, int(concurrency))
        self.clock = clock
        self.sleep = sleep
        self.started = clock()

    def _series(self, check):
        """The check's ``samples`` samples, one after the other; (samples, seconds they took)."""
        began = self.clock()
        samples = []
        for _number in range(check.get("samples") or 1):
            sample = self.probe(check)
            sample["at"] = round(self.clock() - self.started, 3)
            samples.append(sample)
        return samples, self.clock() - began

    def run_once(self, checks):
        """Every check once (each with its own ``samples``), concurrently: {name: (samples, elapsed_s)}."""
        if not checks:
            return {}
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(checks))) as pool:
            return dict(zip([c["name"] for c in checks], pool.map(self._series, checks)))

    def run_until(self, checks, passed, timeout_s, interval_s):
        """``run_once`` again every ``interval_s`` until ``passed(outcome)`` or ``timeout_s``; (outcome, attempts)."""
        deadline = self.clock() + timeout_s
        attempts = 0
        while True:
            began = self.clock()
            outcome = self.run_once(checks)
            attempts += 1
            if passed(outcome) or self.clock() + interval_s > deadline:
                return outcome, attempts
            self.sleep(max(0.0, interval_s - (self.clock() - began)))

    def run_window(self, checks, duration_s, interval_s, stop=None):
        """Sample each check every ``interval_s`` for ``duration_s``.

        A check's next sample is sent ``interval_s`` after its previous one was sent, or as soon as that one
        returns when it took longer: a slow service gets fewer samples, which is what the throughput figure
        shows. ``stop(samples_by_name)`` may return a reason to end the window early. Returns
        (samples_by_name, elapsed_s, stop reason or None).
        """
        samples = {c["name"]: [] for c in checks}
        by_name = {c["name"]: c for c in checks}
        start = self.clock()
        due = {name: start for name in samples}
        running = {}
        stopped = None
        last = start
        with ThreadPoolExecutor(max_workers=min(self.concurrency, max(1, len(checks)))) as pool:
            while True:
                now = self.clock()
                for future in [f for f in running if f.done()]:
                    sample = future.result()
                    sample["at"] = round(self.clock() - self.started, 3)
                    samples[running.pop(future)].append(sample)
                    last = self.clock()
                if stop is not None and stopped is None:
                    stopped = stop(samples)
                if stopped or now - start >= duration_s:
                    break
                busy = set(running.values())
                for name, when in due.items():
                    if name not in busy and now >= when:
                        running[pool.submit(self.probe, by_name[name])] = name
                        due[name] = now + interval_s
                idle = [due[n] for n in due if n not in set(running.values())]
                pause = min(idle + [start + duration_s]) - self.clock()
                if running:
                    wait(list(running), timeout=max(0.0, pause), return_when=FIRST_COMPLETED)
                elif pause > 0:
                    self.sleep(pause)
            for future in running:
                future.cancel()
            for future, name in list(running.items()):
                if not future.cancelled():
                    sample = future.result()
                    sample["at"] = round(self.clock() - self.started, 3)
                    samples[name].append(sample)
                    last = self.clock()
        return samples, max(last, min(self.clock(), start + duration_s)) - start, stopped
