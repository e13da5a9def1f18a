"""module_utils/_smoke_runner: concurrency, retrying until the checks pass, and the window's sampling schedule.
The probe is a plain function that sleeps, so the timing is the runner's own."""

from __future__ import annotations

import threading
import time

import pytest

from ansible_collections.runbook.release.plugins.module_utils._smoke_runner import Runner


def sleeper(seconds, ok=True):
    def probe(check):
        time.sleep(seconds(check) if callable(seconds) else seconds)
        return {"ok": ok, "latency_ms": 1.0, "status": 200, "reason": None, "five_xx": False}
    return probe


# Every test here judges the runner's schedule by the clock: run alone (make test's unit-timing stage).
pytestmark = pytest.mark.timing


def test_fifty_checks_of_100_ms_take_about_four_rounds_with_16_threads():
    checks = [{"name": "c%d" % i} for i in range(50)]
    runner = Runner(sleeper(0.1), concurrency=16)
    began = time.monotonic()
    outcome = runner.run_once(checks)
    elapsed = time.monotonic() - began
    assert sorted(outcome) == sorted(c["name"] for c in checks)
    assert 0.35 < elapsed < 0.9, elapsed  # ceil(50 / 16) = 4 rounds of 0.1 s, far from 50 x 0.1 s
    assert all(len(samples) == 1 for samples, _elapsed in outcome.values())


def test_samples_of_one_check_are_taken_one_after_the_other():
    active, peak = [0], [0]
    lock = threading.Lock()

    def probe(check):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.02)
        with lock:
            active[0] -= 1
        return {"ok": True, "latency_ms": 20.0}

    outcome = Runner(probe, concurrency=8).run_once([{"name": "a", "samples": 5}])
    samples, elapsed = outcome["a"]
    assert len(samples) == 5 and peak[0] == 1 and elapsed >= 0.1


def test_run_until_retries_until_the_checks_pass():
    calls = []

    def probe(check):
        calls.append(check["name"])
        return {"ok": len(calls) > 2, "latency_ms": 1.0}

    runner = Runner(probe, concurrency=1)
    outcome, attempts = runner.run_until([{"name": "a"}], lambda o: all(s[0]["ok"] for s, _e in o.values()), 5, 0.01)
    assert attempts == 3 and outcome["a"][0][0]["ok"]


def test_run_until_gives_up_after_the_timeout():
    runner = Runner(sleeper(0, ok=False), concurrency=1)
    began = time.monotonic()
    outcome, attempts = runner.run_until([{"name": "a"}], lambda o: False, 0.3, 0.1)
    assert 2 <= attempts <= 4 and not outcome["a"][0][0]["ok"]
    assert time.monotonic() - began < 0.6


def test_a_window_samples_each_check_on_its_interval():
    runner = Runner(sleeper(0.005), concurrency=4)
    samples, elapsed, stopped = runner.run_window([{"name": "a"}, {"name": "b"}], 1.0, 0.1)
    assert stopped is None and 0.95 < elapsed < 1.3
    assert all(9 <= len(s) <= 12 for s in samples.values()), {k: len(v) for k, v in samples.items()}
    times = [s["at"] for s in samples["a"]]
    assert all(b - a >= 0.08 for a, b in zip(times, times[1:]))


def test_a_slow_check_gets_fewer_samples_and_does_not_hold_up_the_others():
    runner = Runner(sleeper(lambda c: 0.35 if c["name"] == "slow" else 0.005), concurrency=4)
    samples, _elapsed, _stopped = runner.run_window([{"name": "slow"}, {"name": "fast"}], 1.0, 0.1)
    assert len(samples["slow"]) <= 4 and len(samples["fast"]) >= 9


def test_a_window_stops_early_when_asked():
    runner = Runner(sleeper(0.01), concurrency=2)
    samples, elapsed, stopped = runner.run_window([{"name": "a"}], 5.0, 0.05,
                                                  stop=lambda s: "enough" if len(s["a"]) >= 3 else None)
    assert stopped == "enough" and elapsed < 1.0 and len(samples["a"]) >= 3
