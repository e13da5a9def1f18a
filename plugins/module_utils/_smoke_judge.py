# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Figures and verdicts of runbook.release.smoke_check: percentiles, per-check summaries, the monitoring window's
rollback rules (seed 002: any 5xx on a critical endpoint, error rate, p95 more than 3x baseline; seed 003:
throughput down 20 %), and the baseline a run hands to a later one. Pure functions; no I/O.

A sample is a dict: ``ok`` (bool), ``latency_ms`` (float or None), ``status`` (HTTP status or None), ``reason``
(why it failed, or None), ``five_xx`` (bool) and ``at`` (seconds since the run started).
"""

from __future__ import annotations

import math

NO_DATA_POLICIES = ("fail", "rollback", "pass")


def percentile(values, pct):
    """Nearest-rank percentile (the smallest value with at least ``pct`` % of the values at or below it).

    ``None`` for no values. Nearest-rank never interpolates, so p95 of 20 samples is the 19th smallest: one
    slow answer in 20 does not move it, two do.
    """
    ordered = sorted(v for v in values if v is not None)
    if not ordered:
        return None
    rank = max(1, int(math.ceil(pct / 100.0 * len(ordered))))
    return ordered[rank - 1]


def _round(value, digits=1):
    return None if value is None else round(float(value), digits)


def summarize(samples, elapsed_s=None):
    """Figures of one check's samples: counts, error rate, latency percentiles, statuses, throughput, streaks.

    ``throughput_rps`` is successful answers per second of ``elapsed_s`` (the time the samples were taken over);
    None when elapsed_s is not given or zero.
    """
    latencies = [s["latency_ms"] for s in samples if s.get("latency_ms") is not None]
    failures = [s for s in samples if not s["ok"]]
    statuses = {}
    streak = longest = 0
    for sample in samples:
        if sample.get("status") is not None:
            key = str(sample["status"])
            statuses[key] = statuses.get(key, 0) + 1
        streak = 0 if sample["ok"] else streak + 1
        longest = max(longest, streak)
    reasons = []
    for sample in failures:
        if sample.get("reason") and sample["reason"] not in reasons:
            reasons.append(sample["reason"])
    count = len(samples)
    ok = count - len(failures)
    return {
        "samples": count,
        "failures": len(failures),
        "error_rate": round(len(failures) / float(count), 4) if count else None,
        "p50_ms": _round(percentile(latencies, 50)),
        "p95_ms": _round(percentile(latencies, 95)),
        "max_ms": _round(max(latencies) if latencies else None),
        "throughput_rps": round(ok / float(elapsed_s), 3) if elapsed_s else None,
        "statuses": statuses,
        "five_xx": sum(1 for s in samples if s.get("five_xx")),
        "max_consecutive_failures": longest,
        "current_failure_streak": streak,
        "example_failures": reasons[:3],
    }


def pooled(summaries_samples):
    """(error rate, p95) over every sample of every check; each None when there are no samples."""
    samples = [s for group in summaries_samples for s in group]
    if not samples:
        return None, None
    failures = sum(1 for s in samples if not s["ok"])
    return round(failures / float(len(samples)), 4), _round(percentile([s.get("latency_ms") for s in samples], 95))


# ---------------------------------------------------------------------------------------------- baseline


def build_baseline(summaries, interval_s, duration_s, measured_at):
    """What a later window compares with: per check p95, error rate and throughput, and how they were measured."""
    return {
        "measured_at": measured_at,
        "interval_s": interval_s,
        "duration_s": _round(duration_s, 3),
        "checks": {name: {k: s[k] for k in ("samples", "error_rate", "p95_ms", "throughput_rps")}
                   for name, s in summaries.items()},
    }


def baseline_problems(baseline):
    """What is wrong with a baseline passed in (it must look like a returned ``baseline``)."""
    if baseline is None:
        return []
    if not isinstance(baseline, dict) or not isinstance(baseline.get("checks"), dict):
        return ["baseline must be the 'baseline' returned by an earlier smoke_check run (a dict with 'checks'); "
                "register that task and pass its .baseline"]
    problems = []
    for name, figures in baseline["checks"].items():
        if not isinstance(figures, dict):
            problems.append("baseline.checks.%s must be a dict of figures, not %r" % (name, figures))
            continue
        for key in ("p95_ms", "throughput_rps", "error_rate"):
            value = figures.get(key)
            if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
                problems.append("baseline.checks.%s.%s must be a number of 0 or more, not %r" % (name, key, value))
    return problems


# ---------------------------------------------------------------------------------------------- judging


def _pct(rate):
    return "%.2f %%" % (100.0 * rate)


def _decisive(check, summary, window):
    """Reasons that cannot be undone by later samples (a 5xx on a critical check, a failure streak)."""
    reasons = []
    if check["critical"] and window.get("critical_5xx", True) and summary["five_xx"]:
        codes = ", ".join("%s x%d" % (code, n) for code, n in sorted(summary["statuses"].items()) if code.startswith("5"))
        reasons.append("critical check %s answered 5xx (%s) in %d of %d samples"
                       % (check["name"], codes, summary["five_xx"], summary["samples"]))
    limit = window.get("consecutive_failures") or 0
    if limit and summary["max_consecutive_failures"] >= limit:
        reasons.append("check %s failed %d times in a row (limit %d); first failure: %s"
                       % (check["name"], summary["max_consecutive_failures"], limit,
                          (summary["example_failures"] or ["?"])[0]))
    return reasons


def decisive_reasons(checks, summaries, window):
    """For stopping a window early: reasons already certain to recommend a rollback."""
    out = []
    for check in checks:
        if check["name"] in summaries:
            out.extend(_decisive(check, summaries[check["name"]], window))
    return out


def _relative(check, summary, figures, window, same_interval):
    reasons = []
    factor = window.get("p95_baseline_factor")
    base_p95 = figures.get("p95_ms")
    if factor and base_p95 is not None and summary["p95_ms"] is not None:
        floor = window.get("baseline_p95_floor_ms") or 0
        limit = factor * max(base_p95, floor)
        if summary["p95_ms"] > limit:
            reasons.append("p95 of %s is %s ms, more than %sx its baseline of %s ms (limit %s ms%s)"
                           % (check["name"], summary["p95_ms"], factor, base_p95, _round(limit),
                              ", with the %s ms floor" % floor if floor > base_p95 else ""))
    ratio = window.get("min_throughput_ratio")
    base_rps = figures.get("throughput_rps")
    if ratio and base_rps and summary["throughput_rps"] is not None and same_interval:
        if summary["throughput_rps"] < ratio * base_rps:
            drop = 1.0 - summary["throughput_rps"] / base_rps
            reasons.append("throughput of %s fell to %s/s, %.0f %% below its baseline of %s/s (limit %.0f %%)"
                           % (check["name"], summary["throughput_rps"], 100 * drop, base_rps, 100 * (1 - ratio)))
    return reasons


def judge_window(checks, summaries, samples_by_check, window, baseline=None, stopped_early=False):
    """The verdict of a monitoring window.

    Returns {rollback_recommended, reason, reasons, check_reasons (check name -> the reasons that name it), no_data
    (check names), no_data_failure (bool), error_rate, p95_ms, notes}.

    Rules, most severe first: a 5xx on a critical check; ``consecutive_failures`` failures in a
    row; the error rate of the window (all samples) above ``max_error_rate``, or of a check above its own
    ``max_error_rate``; the p95 of the window above ``max_p95_ms``, or of a check above its own; per check, p95
    above ``p95_baseline_factor`` x its baseline p95 (not below ``baseline_p95_floor_ms``), and throughput below
    ``min_throughput_ratio`` x its baseline (only when the baseline was sampled at the same interval); checks
    with fewer than ``min_samples`` samples as the ``no_data`` policy says (not when the window was
    ``stopped_early`` by a decisive rule).
    """
    decisive, per_check, relative, notes, no_data = [], [], [], [], []
    base_checks = (baseline or {}).get("checks") or {}
    same_interval = baseline is not None and baseline.get("interval_s") == window.get("interval_s")
    if baseline is not None and window.get("min_throughput_ratio") and not same_interval:
        notes.append("throughput was not compared with the baseline: it was sampled every %s s, this window every %s s"
                     % (baseline.get("interval_s"), window.get("interval_s")))
    min_samples = window.get("min_samples") or 1
    by_check = {}
    for check in checks:
        summary = summaries[check["name"]]
        if summary["samples"] < min_samples:
            no_data.append(check["name"])
        found = _decisive(check, summary, window)
        decisive.extend(found)
        mark = len(per_check), len(relative)
        if check.get("max_error_rate") is not None and summary["error_rate"] is not None and \
                summary["error_rate"] > check["max_error_rate"]:
            per_check.append(
                "error rate of %s is %s (%d of %d samples failed), above its limit %s; first failure: %s"
                % (check["name"], _pct(summary["error_rate"]), summary["failures"], summary["samples"],
                   _pct(check["max_error_rate"]), (summary["example_failures"] or ["?"])[0]))
        if check.get("max_p95_ms") is not None and summary["p95_ms"] is not None and \
                summary["p95_ms"] > check["max_p95_ms"]:
            per_check.append("p95 of %s is %s ms, above its limit of %s ms"
                             % (check["name"], summary["p95_ms"], check["max_p95_ms"]))
        figures = base_checks.get(check["name"])
        if figures and (figures.get("samples") or 0) >= min_samples and summary["samples"] >= min_samples:
            relative.extend(_relative(check, summary, figures, window, same_interval))
        elif baseline is not None and summary["samples"]:
            notes.append("check %s has no usable baseline (not in it, or fewer than %d samples there)"
                         % (check["name"], min_samples))
        found = found + per_check[mark[0]:] + relative[mark[1]:]
        if found:
            by_check[check["name"]] = found
    error_rate, p95 = pooled(samples_by_check[c["name"]] for c in checks)
    overall = []
    if error_rate is not None and window.get("max_error_rate") is not None and error_rate > window["max_error_rate"]:
        failed = sum(s["failures"] for s in summaries.values())
        total = sum(s["samples"] for s in summaries.values())
        worst = max(checks, key=lambda c: summaries[c["name"]]["failures"])
        overall.append("error rate %s (%d of %d samples failed) is above max_error_rate %s; most failures: %s (%s)"
                       % (_pct(error_rate), failed, total, _pct(window["max_error_rate"]), worst["name"],
                          (summaries[worst["name"]]["example_failures"] or ["?"])[0]))
    if p95 is not None and window.get("max_p95_ms") is not None and p95 > window["max_p95_ms"]:
        slowest = max(checks, key=lambda c: summaries[c["name"]]["p95_ms"] or 0)
        overall.append("p95 latency %s ms is above max_p95_ms %s ms; slowest: %s (p95 %s ms)"
                       % (p95, window["max_p95_ms"], slowest["name"], summaries[slowest["name"]]["p95_ms"]))
    reasons = decisive + overall + per_check + relative
    # A window stopped early by a decisive rule has its verdict: checks it had no time to sample are not "no data".
    policy = "pass" if stopped_early else window.get("no_data") or "fail"
    if no_data:
        text = "no data: %s had fewer than %d samples in the window" % (", ".join(no_data), min_samples)
        if policy == "rollback":
            reasons.append(text)
        else:
            notes.append(text + (" (no_data=pass: judged on what there is)" if policy == "pass" else ""))
    return {
        "rollback_recommended": bool(reasons),
        "reason": reasons[0] if reasons else None,
        "reasons": reasons,
        "check_reasons": by_check,
        "no_data": no_data,
        "no_data_failure": bool(no_data) and policy == "fail",
        "error_rate": error_rate,
        "p95_ms": p95,
        "notes": notes,
    }


def check_verdict(check, summary):
    """(passed, reason) of a smoke check from the summary of its samples.

    Any failed sample fails the check, unless the check sets ``max_error_rate`` and the share of failed samples is
    within it; with ``max_p95_ms``, the p95 of the samples must be within it too.
    """
    if not summary["samples"]:
        return False, "no sample was taken"
    limit = check.get("max_error_rate")
    if summary["failures"] and (limit is None or summary["error_rate"] > limit):
        reason = (summary["example_failures"] or ["failed"])[0]
        if summary["samples"] > 1:
            reason += " (%d of %d samples failed)" % (summary["failures"], summary["samples"])
        return False, reason
    if check.get("max_p95_ms") is not None and summary["p95_ms"] is not None and summary["p95_ms"] > check["max_p95_ms"]:
        return False, "p95 %s ms over %d samples is above max_p95_ms %s" % (
            summary["p95_ms"], summary["samples"], check["max_p95_ms"])
    return True, None
