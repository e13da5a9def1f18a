"""module_utils/_smoke_judge: percentiles, summaries, smoke verdicts and the monitoring window's rollback rules."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.runbook.release.plugins.module_utils import _smoke_judge as judge

WINDOW = {"interval_s": 1, "max_error_rate": 0.01, "max_p95_ms": None, "consecutive_failures": 3, "min_samples": 3,
          "no_data": "fail", "critical_5xx": True, "p95_baseline_factor": 3.0, "baseline_p95_floor_ms": 50,
          "min_throughput_ratio": 0.8}


def ok(ms=10.0):
    return {"ok": True, "latency_ms": ms, "status": 200, "reason": None, "five_xx": False}


def bad(status=500, ms=10.0, reason=None):
    return {"ok": False, "latency_ms": ms, "status": status, "reason": reason or "status %s, expected 2xx" % status,
            "five_xx": status is not None and status >= 500}


def check(name="api", critical=True, **extra):
    return dict({"name": name, "critical": critical}, **extra)


def verdict(samples_by_name, checks=None, window=None, baseline=None, elapsed=10.0):
    checks = checks or [check(name) for name in samples_by_name]
    summaries = {n: judge.summarize(s, elapsed) for n, s in samples_by_name.items()}
    return judge.judge_window(checks, summaries, samples_by_name, dict(WINDOW, **(window or {})), baseline)


# --- percentiles ---------------------------------------------------------------------------------------------

def test_percentile_is_nearest_rank():
    values = list(range(1, 21))  # 1..20
    assert judge.percentile(values, 95) == 19
    assert judge.percentile(values, 50) == 10
    assert judge.percentile(values, 100) == 20
    assert judge.percentile([5], 95) == 5
    assert judge.percentile([], 95) is None
    assert judge.percentile([None, 3], 95) == 3


def test_one_slow_answer_in_twenty_does_not_move_p95_but_two_do():
    assert judge.percentile([10] * 19 + [1500], 95) == 10
    assert judge.percentile([10] * 18 + [1500, 1500], 95) == 1500


@given(st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1), st.floats(min_value=1, max_value=100))
def test_percentile_is_one_of_the_values_and_grows_with_pct(values, pct):
    value = judge.percentile(values, pct)
    assert value in values
    assert judge.percentile(values, min(100, pct + 1)) >= value
    assert sum(1 for v in values if v <= value) >= pct / 100.0 * len(values)


# --- summaries and smoke verdicts ------------------------------------------------------------------------------

def test_summarize_counts_streaks_statuses_and_throughput():
    summary = judge.summarize([ok(), bad(), bad(), ok(), bad(503), ok(20)], elapsed_s=2.0)
    assert summary["samples"] == 6 and summary["failures"] == 3 and summary["error_rate"] == 0.5
    assert summary["max_consecutive_failures"] == 2 and summary["current_failure_streak"] == 0
    assert summary["statuses"] == {"200": 3, "500": 2, "503": 1} and summary["five_xx"] == 3
    assert summary["throughput_rps"] == 1.5
    assert summary["example_failures"] == ["status 500, expected 2xx", "status 503, expected 2xx"]


def test_check_verdict():
    assert judge.check_verdict(check(), judge.summarize([ok()])) == (True, None)
    passed, reason = judge.check_verdict(check(), judge.summarize([ok(), bad(404)]))
    assert not passed and reason == "status 404, expected 2xx (1 of 2 samples failed)"
    tolerant = check(max_error_rate=0.5)
    assert judge.check_verdict(tolerant, judge.summarize([ok(), bad()]))[0]
    slow = check(max_p95_ms=100)
    passed, reason = judge.check_verdict(slow, judge.summarize([ok(10)] * 18 + [ok(500)] * 2))
    assert not passed and "p95 500.0 ms over 20 samples is above max_p95_ms 100" in reason
    assert judge.check_verdict(check(), judge.summarize([])) == (False, "no sample was taken")


# --- the window ------------------------------------------------------------------------------------------------

def test_a_healthy_window_passes():
    result = verdict({"api": [ok()] * 20, "web": [ok(30)] * 20})
    assert not result["rollback_recommended"] and result["reason"] is None and result["error_rate"] == 0.0
    assert result["p95_ms"] == 30.0


def test_any_5xx_of_a_critical_check_recommends_rollback():
    result = verdict({"api": [ok()] * 99 + [bad(502)]}, window={"max_error_rate": 0.5})
    assert result["rollback_recommended"]
    assert result["reason"] == "critical check api answered 5xx (502 x1) in 1 of 100 samples"
    assert result["check_reasons"] == {"api": [result["reason"]]}


def test_a_non_critical_check_is_judged_by_error_rate():
    samples = {"api": [ok()] * 95 + [bad()] * 5}
    checks = [check(critical=False)]
    result = verdict(samples, checks=checks, window={"consecutive_failures": 0})
    assert result["rollback_recommended"] and result["reason"].startswith("error rate 5.00 % (5 of 100 samples failed)")
    assert not verdict(samples, checks=checks, window={"consecutive_failures": 0, "max_error_rate": 0.06})["rollback_recommended"]
    # A 404 on a critical check is no 5xx: it counts towards the error rate only.
    spread = {"api": ([ok()] * 19 + [bad(404)]) * 5}
    assert not verdict(spread, window={"max_error_rate": 0.1})["rollback_recommended"]


def test_consecutive_failures():
    samples = {"api": [ok()] * 50 + [bad(None, reason="connection refused")] * 3 + [ok()] * 50}
    result = verdict(samples, window={"max_error_rate": 0.5})
    assert result["reason"] == "check api failed 3 times in a row (limit 3); first failure: connection refused"
    assert not verdict(samples, window={"max_error_rate": 0.5, "consecutive_failures": 4})["rollback_recommended"]


def test_p95_limits_of_the_window_and_of_a_check():
    samples = {"api": [ok(10)] * 18 + [ok(900)] * 2}
    assert verdict(samples, window={"max_p95_ms": 500})["reason"].startswith("p95 latency 900.0 ms is above max_p95_ms 500")
    result = verdict(samples, checks=[check(max_p95_ms=200)])
    assert result["reason"] == "p95 of api is 900.0 ms, above its limit of 200 ms"


def test_p95_relative_to_the_baseline_with_a_floor():
    baseline = {"interval_s": 1, "checks": {"api": {"samples": 30, "p95_ms": 4.0, "throughput_rps": 1.0}}}
    # 3 x 4 ms would be 12 ms: a 40 ms p95 is noise, kept under the 50 ms floor (limit 150 ms).
    assert not verdict({"api": [ok(40)] * 20}, baseline=baseline, elapsed=20)["rollback_recommended"]
    result = verdict({"api": [ok(10)] * 17 + [ok(1500)] * 3}, baseline=baseline, elapsed=20)
    assert result["reason"] == ("p95 of api is 1500.0 ms, more than 3.0x its baseline of 4.0 ms (limit 150.0 ms, "
                                "with the 50 ms floor)")
    high = {"interval_s": 1, "checks": {"api": {"samples": 30, "p95_ms": 600.0}}}
    assert not verdict({"api": [ok(10)] * 17 + [ok(1500)] * 3}, baseline=high, elapsed=20)["rollback_recommended"]


def test_throughput_relative_to_the_baseline_only_at_the_same_interval():
    baseline = {"interval_s": 1, "checks": {"api": {"samples": 10, "p95_ms": 10.0, "throughput_rps": 1.0}}}
    slow = {"api": [ok()] * 7}  # 7 answers in 10 s: 0.7/s, 30 % down
    result = verdict(slow, baseline=baseline, elapsed=10)
    assert result["reason"] == "throughput of api fell to 0.7/s, 30 % below its baseline of 1.0/s (limit 20 %)"
    other = dict(baseline, interval_s=5)
    result = verdict(slow, baseline=other, elapsed=10)
    assert not result["rollback_recommended"]
    assert any("throughput was not compared" in n for n in result["notes"])


@pytest.mark.parametrize("policy, rollback, failure", [("fail", False, True), ("rollback", True, False),
                                                       ("pass", False, False)])
def test_no_data_policy(policy, rollback, failure):
    result = verdict({"api": [ok()] * 10, "db": [ok()]}, window={"no_data": policy})
    assert result["no_data"] == ["db"]
    assert result["rollback_recommended"] == rollback and result["no_data_failure"] == failure


def test_reasons_are_ordered_by_severity():
    samples = {"api": [bad()] * 3 + [ok()] * 17, "web": [ok(10)] * 17 + [ok(900)] * 3}
    checks = [check("api"), check("web", critical=False, max_p95_ms=100)]
    reasons = verdict(samples, checks=checks)["reasons"]
    assert reasons[0].startswith("critical check api answered 5xx")
    assert reasons[1].startswith("check api failed 3 times in a row")
    assert reasons[2].startswith("error rate")
    assert reasons[3].startswith("p95 of web")


def test_decisive_reasons_are_only_the_ones_later_samples_cannot_undo():
    summaries = {"api": judge.summarize([ok()] * 5 + [bad(500)]), "web": judge.summarize([bad(404)] * 2)}
    reasons = judge.decisive_reasons([check("api"), check("web")], summaries, WINDOW)
    assert reasons == ["critical check api answered 5xx (500 x1) in 1 of 6 samples"]


# --- baselines -------------------------------------------------------------------------------------------------

def test_build_baseline_and_its_validation():
    summaries = {"api": judge.summarize([ok(5)] * 10, 10.0)}
    baseline = judge.build_baseline(summaries, 1, 10.0, "2031-01-01T00:00:00Z")
    assert baseline["checks"]["api"] == {"samples": 10, "error_rate": 0.0, "p95_ms": 5.0, "throughput_rps": 1.0}
    assert judge.baseline_problems(baseline) == []
    assert judge.baseline_problems({"api": 1}) and "register that task" in judge.baseline_problems([])[0]
    assert judge.baseline_problems({"checks": {"api": {"p95_ms": -1}}}) == [
        "baseline.checks.api.p95_ms must be a number of 0 or more, not -1"]


def test_a_window_stopped_early_has_no_no_data_failure():
    samples = {"api": [bad(500)], "db": []}
    summaries = {n: judge.summarize(s, 1.0) for n, s in samples.items()}
    result = judge.judge_window([check("api"), check("db")], summaries, samples, WINDOW, stopped_early=True)
    assert result["rollback_recommended"] and not result["no_data_failure"]
    assert result["reason"].startswith("critical check api answered 5xx")
