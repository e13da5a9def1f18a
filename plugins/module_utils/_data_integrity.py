# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Data integrity checks before and after a release (seed 002, "Data Integrity Checks": record counts within ±5 % of
the pre-deployment baseline, no orphaned records).

- ``normalize_checks()`` and ``check_baseline()`` refuse bad input (no name, two statements in a query, a negative
  tolerance, a baseline value that is not a number) before anything is asked, listing every problem.
- ``run_checks()`` asks each query in its own READ ONLY transaction with a statement_timeout, over one psycopg2
  connection in autocommit mode, and turns its answer into one number (``to_number()``), or a problem naming the
  check and the fix.
- ``judge()`` compares the numbers with their bounds and with the baseline, and words every violation as
  ``<name>: 1040 is +8.0 % from 963 (tolerance ±5 %)``.

Everything but ``run_checks()`` is pure, so every verdict is unit tested without a database.
"""

from __future__ import annotations

import math
import time
from decimal import Decimal
from fractions import Fraction

from ansible_collections.runbook.release.plugins.module_utils._migration_db import TIMEOUT_RE
from ansible_collections.runbook.release.plugins.module_utils._migrations import MigrationError, split_statements

DEFAULT_TOLERANCE_PCT = 5.0
APPLICATION_NAME = "runbook.release data_integrity"
READ_ONLY_SQL_TRANSACTION = "25006"
QUERY_CANCELED = "57014"
EXAMPLE = "for example SELECT count(*) FROM items"


class IntegrityInputError(Exception):
    """Bad input: every problem found, each naming the check (or option) and the fix."""

    def __init__(self, problems):
        self.problems = list(problems)
        super().__init__("; ".join(self.problems))


# --- numbers in messages -----------------------------------------------------------------------------------------

def is_number(value):
    """A finite int, float or Decimal (not a bool, NaN or infinity)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
        return False
    return value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)


def as_number(value):
    """An int when the value is whole (counts stay counts), else a float; Decimal answers of numeric columns too."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def num(value):
    """A number as an operator reads it: 963, 2.5, 0.125."""
    value = as_number(value)
    if isinstance(value, int):
        return str(value)
    return ("%.3f" % value).rstrip("0").rstrip(".")


def change_text(change, tolerance):
    """A signed percentage with one decimal, or more when one decimal would hide that it is beyond the tolerance
    (+5.04 % against ±5 % must not read +5.0 %)."""
    for decimals in range(1, 7):
        text = "%+.*f" % (decimals, change)
        if abs(float(text)) > tolerance:
            return text + " %"
    return "%+.12g %%" % change


# --- input ---------------------------------------------------------------------------------------------------------

def _bound(check, key, label, problems):
    value = check.get(key)
    if value is None:
        return None
    if not is_number(value):
        problems.append("check %s: %s=%r is not a number" % (label, key, value))
        return None
    return as_number(value)


def check_timeout(value):
    """Problems with a statement_timeout (a PostgreSQL duration)."""
    if TIMEOUT_RE.match(str(value).strip()):
        return []
    return ["statement_timeout=%r is not a PostgreSQL duration: use a number with ms, s, min, h or d (for example 30s), "
            "or 0 for none" % (value,)]


def normalize_checks(checks, default_tolerance_pct=DEFAULT_TOLERANCE_PCT):
    """The checks, each ``{name, query, tolerance_pct, max, min}``, with the tolerance each is judged by: its own, else
    ``default_tolerance_pct`` for a check without bounds. A check with ``max`` or ``min`` (an orphan count) is compared
    with the baseline only when it sets its own ``tolerance_pct``. Raises IntegrityInputError listing every problem."""
    problems = []
    if not is_number(default_tolerance_pct) or default_tolerance_pct < 0:
        problems.append("tolerance_pct=%r must be a number, 0 or more (5 means +/- 5 %%)" % (default_tolerance_pct,))
        default_tolerance_pct = DEFAULT_TOLERANCE_PCT
    if not checks:
        problems.append("checks is empty: give at least one {name, query}, %s" % EXAMPLE)
    out, seen = [], set()
    for index, check in enumerate(checks or []):
        if not isinstance(check, dict):
            problems.append("checks[%d] is not a dict: give {name, query, tolerance_pct, max, min}" % index)
            continue
        name = str(check.get("name") or "").strip()
        label = name or "checks[%d]" % index
        if not name:
            problems.append("checks[%d] has no name: every check needs a unique name (the baseline is keyed by it)"
                            % index)
        elif name in seen:
            problems.append("check %s: the name is used twice; names must be unique (the baseline is keyed by them)"
                            % name)
        seen.add(name)
        query = str(check.get("query") or "").strip()
        if not query:
            problems.append("check %s has no query: give one SELECT that returns one row with one number, %s"
                            % (label, EXAMPLE))
        else:
            try:
                statements = split_statements(query)
            except MigrationError as exc:
                statements = None
                problems.append("check %s: the query cannot be read as SQL: %s" % (label, exc))
            if statements is not None and len(statements) != 1:
                problems.append("check %s: the query holds %d statements; give exactly one SELECT that returns one row "
                                "with one number" % (label, len(statements)))
        tolerance = _bound(check, "tolerance_pct", label, problems)
        if tolerance is not None and tolerance < 0:
            problems.append("check %s: tolerance_pct=%s must be 0 or more (5 means +/- 5 %%)" % (label, num(tolerance)))
        high = _bound(check, "max", label, problems)
        low = _bound(check, "min", label, problems)
        if high is not None and low is not None and low > high:
            problems.append("check %s: min=%s is above max=%s; no value could pass" % (label, num(low), num(high)))
        if tolerance is None and high is None and low is None:
            tolerance = as_number(default_tolerance_pct)
        out.append({"name": name, "query": query.rstrip().rstrip(";").rstrip(), "tolerance_pct": tolerance,
                    "max": high, "min": low})
    if problems:
        raise IntegrityInputError(problems)
    return out


def check_baseline(baseline, checks):
    """(baseline with numbers, notes). A value that is not a number raises IntegrityInputError; a compared check
    missing from the baseline is a note (it is judged by its bounds only)."""
    if baseline is None:
        return None, []
    if not isinstance(baseline, dict):
        raise IntegrityInputError(["baseline must be a dict of check name to number (the baseline or values an "
                                   "earlier run returned), not %s" % type(baseline).__name__])
    problems, out = [], {}
    for name, value in baseline.items():
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if not is_number(value):
            problems.append("baseline[%s]=%r is not a number: pass the baseline an earlier run of this module returned"
                            % (name, value))
            continue
        out[str(name)] = as_number(value)
    if problems:
        raise IntegrityInputError(problems)
    notes = ["check %s has no value in the baseline (the earlier run did not have it): it is judged by its max/min only"
             % c["name"] for c in checks if c["tolerance_pct"] is not None and c["name"] not in out]
    return out, notes


# --- answers -------------------------------------------------------------------------------------------------------

def to_number(name, rows, columns):
    """The one number a query answered. ``rows``: at most two rows fetched; ``columns``: the column names, or None
    when the statement returns no rows at all. Raises ValueError with the problem, naming the check and the fix."""
    if columns is None:
        raise ValueError("check %s: the query returns no rows (it is not a SELECT); give one SELECT that returns one row "
                         "with one number, %s" % (name, EXAMPLE))
    if len(columns) != 1:
        raise ValueError("check %s: the query returned %d columns (%s); select only the number, %s"
                         % (name, len(columns), ", ".join(columns) or "none", EXAMPLE))
    if not rows:
        raise ValueError("check %s: the query returned no row; it must return one row with one number - an aggregate "
                         "such as count(*) always does" % name)
    if len(rows) > 1:
        raise ValueError("check %s: the query returned more than one row; it must return one row with one number - "
                         "use an aggregate such as count(*) or sum(...)" % name)
    value = rows[0][0]
    if value is None:
        raise ValueError("check %s: the query returned NULL; wrap the number in coalesce(..., 0)" % name)
    if isinstance(value, bool):
        raise ValueError("check %s: the query returned a boolean (%s), not a number; count the rows instead, for "
                         "example SELECT count(*) FROM t WHERE ..." % (name, str(value).lower()))
    if not is_number(value):
        shown = repr(value) if not isinstance(value, (bytes, memoryview)) else "binary data"
        raise ValueError("check %s: the query returned %s (%s), not a number; select a number, %s"
                         % (name, shown[:80], type(value).__name__, EXAMPLE))
    return as_number(value)


def explain_query_error(name, sqlstate, message, statement_timeout):
    """A failed query as a problem that names the check and says what to do."""
    if sqlstate == READ_ONLY_SQL_TRANSACTION:
        return ("check %s: the query tries to change data (%s); checks run in a READ ONLY transaction and must only "
                "read" % (name, message))
    if sqlstate == QUERY_CANCELED:
        return ("check %s: the query ran longer than statement_timeout=%s and was canceled; make it cheaper (an index, "
                "a narrower WHERE) or raise statement_timeout" % (name, statement_timeout))
    return "check %s: the query failed: %s (SQLSTATE %s); fix the query" % (name, message, sqlstate or "unknown")


def _error_parts(exc):
    diag = getattr(exc, "diag", None)
    lines = str(exc).strip().splitlines()
    message = getattr(diag, "message_primary", None) or (lines[0] if lines else type(exc).__name__)
    return getattr(exc, "pgcode", None), message


def run_checks(conn, checks, statement_timeout, error_class):
    """Ask every check's query, each in its own READ ONLY transaction with ``statement_timeout``, over ``conn`` (a
    psycopg2 connection in autocommit mode). Returns (values, problems, durations_ms); a failed query is a problem
    and the next check still runs. ``error_class``: the driver's base exception (psycopg2.Error)."""
    values, problems, durations = {}, [], {}
    cur = conn.cursor()
    # Every later transaction of the session is read only too, whatever a query does to its own.
    cur.execute("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY")
    for position, check in enumerate(checks):
        started = time.monotonic()
        try:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            cur.execute("SELECT set_config('statement_timeout', %s, true)", (statement_timeout,))
            cur.execute(check["query"])
            columns = [column[0] for column in cur.description] if cur.description is not None else None
            rows = cur.fetchmany(2) if columns is not None else []
            values[check["name"]] = to_number(check["name"], rows, columns)
        except ValueError as exc:
            problems.append(str(exc))
        except error_class as exc:
            sqlstate, message = _error_parts(exc)
            problems.append(explain_query_error(check["name"], sqlstate, message, statement_timeout))
        durations[check["name"]] = round((time.monotonic() - started) * 1000.0, 1)
        try:
            cur.execute("ROLLBACK")
        except error_class as exc:
            rest = [c["name"] for c in checks[position + 1:]]
            problems.append("the connection to PostgreSQL was lost after check %s (%s)%s; check the server and run again"
                            % (check["name"], _error_parts(exc)[1], "; not run: " + ", ".join(rest) if rest else ""))
            break
    return values, problems, durations


# --- verdict -------------------------------------------------------------------------------------------------------

def judge(checks, values, baseline):
    """Per check results and every violation, in the order of the checks. ``baseline``: name -> number, or None."""
    results, violations = [], []
    for check in checks:
        name, value = check["name"], values[check["name"]]
        found = []
        if check["max"] is not None and value > check["max"]:
            found.append("%s: %s is above the maximum %s" % (name, num(value), num(check["max"])))
        if check["min"] is not None and value < check["min"]:
            found.append("%s: %s is below the minimum %s" % (name, num(value), num(check["min"])))
        base = change = None
        compared = check["tolerance_pct"] is not None and baseline is not None and name in baseline
        if compared:
            base, tolerance = baseline[name], check["tolerance_pct"]
            if base == 0:
                change = 0.0 if value == 0 else None
                if value != 0:
                    found.append("%s: %s is a change from 0, which no percentage measures (tolerance ±%s %%)"
                                 % (name, num(value), num(tolerance)))
            else:
                change = (value - base) * 100.0 / abs(base)
                # Exact arithmetic: 1050 against 1000 is inside ±5 %, and 1000000001 against 10^9 beyond ±0 %.
                if abs(Fraction(value) - Fraction(base)) * 100 > Fraction(tolerance) * abs(Fraction(base)):
                    found.append("%s: %s is %s from %s (tolerance ±%s %%)"
                                 % (name, num(value), change_text(change, tolerance), num(base), num(tolerance)))
        results.append({"name": name, "value": value, "baseline": base,
                        "change_pct": round(change, 3) if change is not None else None,
                        "tolerance_pct": check["tolerance_pct"], "max": check["max"], "min": check["min"],
                        "compared": compared, "passed": not found, "violations": found})
        violations.extend(found)
    return results, violations


def verdict_message(violations, checks_count):
    if not violations:
        return "data integrity: %d check(s) passed" % checks_count
    return "data integrity: %d violation(s): %s" % (len(violations), "; ".join(violations))


def release_fragment(passed, violations, values, baseline, checked_at):
    """The run's part of the release data contract (``integrity``)."""
    return {"integrity": {"passed": passed, "violations": list(violations), "values": dict(values),
                          "baseline": dict(baseline) if baseline is not None else None, "checked_at": checked_at}}
