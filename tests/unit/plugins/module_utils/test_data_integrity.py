"""module_utils/_data_integrity: input checks, turning answers into numbers, the verdict, and the read-only runner."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.runbook.release.plugins.module_utils import _data_integrity as di


def checks(*items, tolerance=5):
    return di.normalize_checks(list(items), tolerance)


COUNT = {"name": "items", "query": "SELECT count(*) FROM items"}
ORPHANS = {"name": "orphans", "query": "SELECT count(*) FROM c LEFT JOIN p ON p.id = c.parent_id WHERE p.id IS NULL",
           "max": 0}


# --- input ---------------------------------------------------------------------------------------------------------

def test_a_count_takes_the_default_tolerance_and_a_bounded_check_is_not_compared():
    out = checks(COUNT, ORPHANS)
    assert out[0] == {"name": "items", "query": "SELECT count(*) FROM items", "tolerance_pct": 5, "max": None,
                      "min": None}
    assert out[1]["tolerance_pct"] is None
    assert out[1]["max"] == 0 and isinstance(out[1]["max"], int)


def test_a_bounded_check_with_its_own_tolerance_is_compared_too():
    out = checks(dict(ORPHANS, max=10.0, tolerance_pct=50.0))
    assert out[0]["tolerance_pct"] == 50 and out[0]["max"] == 10


def test_the_trailing_semicolon_is_dropped_and_percent_signs_stay():
    out = checks({"name": "pct", "query": "SELECT count(*) FROM t WHERE name LIKE 'a%' ;  "})
    assert out[0]["query"] == "SELECT count(*) FROM t WHERE name LIKE 'a%'"


def test_every_problem_is_listed_at_once():
    with pytest.raises(di.IntegrityInputError) as info:
        di.normalize_checks([
            {"name": "", "query": "SELECT 1"},
            {"name": "items", "query": ""},
            {"name": "two", "query": "SELECT 1; DELETE FROM items"},
            {"name": "items", "query": "SELECT 1"},
            {"name": "neg", "query": "SELECT 1", "tolerance_pct": -1},
            {"name": "range", "query": "SELECT 1", "min": 5, "max": 1},
            {"name": "quote", "query": "SELECT 'unterminated"},
        ], 5)
    problems = info.value.problems
    assert "checks[0] has no name: every check needs a unique name (the baseline is keyed by it)" in problems
    assert any(p.startswith("check items has no query: give one SELECT") for p in problems)
    assert "check two: the query holds 2 statements; give exactly one SELECT that returns one row with one number" \
        in problems
    assert any(p.startswith("check items: the name is used twice") for p in problems)
    assert "check neg: tolerance_pct=-1 must be 0 or more (5 means +/- 5 %)" in problems
    assert "check range: min=5 is above max=1; no value could pass" in problems
    assert any(p.startswith("check quote: the query cannot be read as SQL") for p in problems)
    assert len(problems) == 7


def test_a_semicolon_inside_quotes_or_a_comment_is_one_statement():
    out = checks({"name": "q", "query": "SELECT count(*) FROM t WHERE a = ';' -- no; second\n"})
    assert len(out) == 1


def test_no_checks_and_a_negative_default_tolerance_are_refused():
    with pytest.raises(di.IntegrityInputError) as info:
        di.normalize_checks([], -2)
    assert len(info.value.problems) == 2
    assert info.value.problems[1].startswith("checks is empty")


@pytest.mark.parametrize("value, ok", [("30s", True), ("15min", True), ("0", True), ("500 ms", True), ("soon", False),
                                       ("-1s", False)])
def test_statement_timeout(value, ok):
    assert (di.check_timeout(value) == []) is ok


def test_baseline_values_must_be_numbers_and_missing_names_are_notes():
    out = checks(COUNT, ORPHANS, {"name": "users", "query": "SELECT count(*) FROM users"})
    baseline, notes = di.check_baseline({"items": 963, "orphans": 0, "gone": 4}, out)
    assert baseline == {"items": 963, "orphans": 0, "gone": 4}
    assert notes == ["check users has no value in the baseline (the earlier run did not have it): it is judged by its "
                     "max/min only"]
    assert di.check_baseline({"items": "963"}, out)[0] == {"items": 963}
    with pytest.raises(di.IntegrityInputError) as info:
        di.check_baseline({"items": "many", "users": True}, out)
    assert len(info.value.problems) == 2
    assert info.value.problems[0].startswith("baseline[items]='many' is not a number")
    with pytest.raises(di.IntegrityInputError):
        di.check_baseline([963], out)
    assert di.check_baseline(None, out) == (None, [])


# --- answers -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("rows, columns, expected", [
    ([(963,)], ["count"], 963),
    ([(Decimal("12"),)], ["sum"], 12),
    ([(Decimal("2.50"),)], ["avg"], 2.5),
    ([(3.0,)], ["x"], 3),
    ([(0.25,)], ["x"], 0.25),
])
def test_one_number(rows, columns, expected):
    value = di.to_number("c", rows, columns)
    assert value == expected and type(value) is type(expected)


@pytest.mark.parametrize("rows, columns, fragment", [
    ([], ["count"], "check c: the query returned no row; it must return one row with one number"),
    ([(1,), (2,)], ["id"], "check c: the query returned more than one row"),
    ([(1, 2)], ["a", "b"], "check c: the query returned 2 columns (a, b); select only the number"),
    ([()], [], "check c: the query returned 0 columns (none)"),
    ([(None,)], ["sum"], "check c: the query returned NULL; wrap the number in coalesce(..., 0)"),
    ([(True,)], ["ok"], "check c: the query returned a boolean (true), not a number"),
    ([("abc",)], ["name"], "check c: the query returned 'abc' (str), not a number"),
    ([(float("nan"),)], ["x"], "check c: the query returned nan (float), not a number"),
    ([(Decimal("NaN"),)], ["x"], "check c: the query returned Decimal('NaN') (Decimal), not a number"),
    ([], None, "check c: the query returns no rows (it is not a SELECT)"),
])
def test_answers_that_are_not_one_number(rows, columns, fragment):
    with pytest.raises(ValueError) as info:
        di.to_number("c", rows, columns)
    assert str(info.value).startswith(fragment)


def test_query_errors_say_what_to_do():
    assert di.explain_query_error("x", "25006", "cannot execute DELETE in a read-only transaction", "30s") == (
        "check x: the query tries to change data (cannot execute DELETE in a read-only transaction); checks run in a "
        "READ ONLY transaction and must only read")
    assert "ran longer than statement_timeout=2s and was canceled" in di.explain_query_error("x", "57014", "c", "2s")
    assert di.explain_query_error("x", "42P01", 'relation "nope" does not exist', "30s") == (
        'check x: the query failed: relation "nope" does not exist (SQLSTATE 42P01); fix the query')


# --- verdict -------------------------------------------------------------------------------------------------------

def test_the_seed_example_wording():
    results, violations = di.judge(checks(COUNT), {"items": 1040}, {"items": 963})
    assert violations == ["items: 1040 is +8.0 % from 963 (tolerance ±5 %)"]
    assert results[0]["change_pct"] == pytest.approx(7.996, abs=0.001)
    assert results[0]["compared"] and not results[0]["passed"]


def test_within_tolerance_both_ways_and_exactly_at_it():
    ok = checks(COUNT)
    assert di.judge(ok, {"items": 1020}, {"items": 1000})[1] == []
    assert di.judge(ok, {"items": 950}, {"items": 1000})[1] == []
    assert di.judge(ok, {"items": 1050}, {"items": 1000})[1] == []
    assert di.judge(ok, {"items": 949}, {"items": 1000})[1] == ["items: 949 is -5.1 % from 1000 (tolerance ±5 %)"]


def test_a_change_just_beyond_the_tolerance_never_reads_as_inside_it():
    violations = di.judge(checks(COUNT), {"items": 10504}, {"items": 10000})[1]
    assert violations == ["items: 10504 is +5.04 % from 10000 (tolerance ±5 %)"]


def test_the_smallest_change_beyond_the_tolerance_counts():
    violations = di.judge(checks(dict(COUNT, tolerance_pct=0)), {"items": 10 ** 9 + 1}, {"items": 10 ** 9})[1]
    assert violations == ["items: 1000000001 is +1e-07 % from 1000000000 (tolerance ±0 %)"]
    assert di.judge(checks(dict(COUNT, tolerance_pct=2.5)), {"items": 1025}, {"items": 1000})[1] == []


def test_bounds_are_judged_without_a_baseline():
    out = checks(COUNT, ORPHANS, {"name": "users", "query": "SELECT count(*) FROM users", "min": 3})
    results, violations = di.judge(out, {"items": 5, "orphans": 1, "users": 2}, None)
    assert violations == ["orphans: 1 is above the maximum 0", "users: 2 is below the minimum 3"]
    assert [r["compared"] for r in results] == [False, False, False]
    assert results[0]["passed"] and results[0]["baseline"] is None and results[0]["change_pct"] is None


def test_an_orphan_count_is_not_compared_with_its_baseline():
    results, violations = di.judge(checks(ORPHANS), {"orphans": 0}, {"orphans": 7})
    assert violations == [] and not results[0]["compared"]


def test_a_zero_baseline_allows_only_zero():
    out = checks({"name": "archived", "query": "SELECT count(*) FROM archived"})
    assert di.judge(out, {"archived": 0}, {"archived": 0})[1] == []
    assert di.judge(out, {"archived": 3}, {"archived": 0})[1] == [
        "archived: 3 is a change from 0, which no percentage measures (tolerance ±5 %)"]


def test_zero_tolerance_and_fractional_values():
    out = checks({"name": "ratio", "query": "SELECT 0.5", "tolerance_pct": 0})
    assert di.judge(out, {"ratio": 0.5}, {"ratio": 0.5})[1] == []
    assert di.judge(out, {"ratio": 0.625}, {"ratio": 0.5})[1] == ["ratio: 0.625 is +25.0 % from 0.5 (tolerance ±0 %)"]


def test_both_violations_of_one_check_are_listed():
    out = checks(dict(ORPHANS, tolerance_pct=10))
    assert di.judge(out, {"orphans": 2}, {"orphans": 1})[1] == [
        "orphans: 2 is above the maximum 0", "orphans: 2 is +100.0 % from 1 (tolerance ±10 %)"]


def test_a_check_missing_from_the_baseline_is_judged_by_its_bounds_only():
    results, violations = di.judge(checks(COUNT), {"items": 5000}, {"other": 1})
    assert violations == [] and not results[0]["compared"]


@given(base=st.integers(min_value=1, max_value=10 ** 9), value=st.integers(min_value=0, max_value=10 ** 9),
       tolerance=st.integers(min_value=0, max_value=100))
def test_a_violation_exactly_when_the_change_is_beyond_the_tolerance(base, value, tolerance):
    out = checks(dict(COUNT, tolerance_pct=tolerance))
    violations = di.judge(out, {"items": value}, {"items": base})[1]
    beyond = abs(value - base) * 100 > tolerance * base
    assert bool(violations) is beyond
    if beyond:
        shown = float(violations[0].split(" is ")[1].split(" %")[0])
        assert abs(shown) > tolerance


def test_verdict_message_and_release_fragment():
    assert di.verdict_message([], 3) == "data integrity: 3 check(s) passed"
    assert di.verdict_message(["a: x", "b: y"], 3) == "data integrity: 2 violation(s): a: x; b: y"
    assert di.release_fragment(True, [], {"items": 1}, None, "2031-03-01T10:00:00.000000Z") == {
        "integrity": {"passed": True, "violations": [], "values": {"items": 1}, "baseline": None,
                      "checked_at": "2031-03-01T10:00:00.000000Z"}}


@pytest.mark.parametrize("value, text", [(963, "963"), (2.5, "2.5"), (0.125, "0.125"), (5.0, "5"), (Decimal("7"), "7")])
def test_num(value, text):
    assert di.num(value) == text


# --- the runner, with a stand-in for a psycopg2 connection ---------------------------------------------------------

class FakeError(Exception):
    def __init__(self, message, pgcode=None):
        super().__init__(message)
        self.pgcode = pgcode


class FakeCursor(object):
    def __init__(self, answers, log, fail_rollback=False):
        self.answers, self.log, self.fail_rollback = answers, log, fail_rollback
        self.description, self.rows = None, []

    def execute(self, sql, params=None):
        self.log.append((sql, params))
        self.description, self.rows = None, []
        if sql == "ROLLBACK" and self.fail_rollback:
            raise FakeError("server closed the connection unexpectedly")
        answer = self.answers.get(sql)
        if isinstance(answer, Exception):
            raise answer
        if answer is not None:
            columns, self.rows = answer
            self.description = [(name,) for name in columns]

    def fetchmany(self, size):
        return self.rows[:size]


class FakeConnection(object):
    def __init__(self, answers, fail_rollback=False):
        self.log = []
        self.cur = FakeCursor(answers, self.log, fail_rollback)

    def cursor(self):
        return self.cur


def test_each_query_runs_in_its_own_read_only_transaction_with_the_timeout():
    conn = FakeConnection({"SELECT count(*) FROM items": (["count"], [(963,)]),
                           ORPHANS["query"]: (["count"], [(0,)])})
    values, problems, durations = di.run_checks(conn, checks(COUNT, ORPHANS), "30s", FakeError)
    assert values == {"items": 963, "orphans": 0} and problems == []
    assert set(durations) == {"items", "orphans"}
    assert conn.log[0] == ("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY", None)
    assert conn.log[1:5] == [("BEGIN TRANSACTION READ ONLY", None),
                             ("SELECT set_config('statement_timeout', %s, true)", ("30s",)),
                             ("SELECT count(*) FROM items", None), ("ROLLBACK", None)]
    assert conn.log[5:] == [("BEGIN TRANSACTION READ ONLY", None),
                            ("SELECT set_config('statement_timeout', %s, true)", ("30s",)),
                            (ORPHANS["query"], None), ("ROLLBACK", None)]


def test_a_failed_or_bad_query_is_a_problem_and_the_others_still_run():
    out = checks({"name": "write", "query": "UPDATE items SET name = 'x' WHERE id = 1"},
                 {"name": "slow", "query": "SELECT pg_sleep(9)"}, {"name": "two", "query": "SELECT 1, 2"},
                 COUNT)
    conn = FakeConnection({
        "UPDATE items SET name = 'x' WHERE id = 1": FakeError("cannot execute UPDATE in a read-only transaction", "25006"),
        "SELECT pg_sleep(9)": FakeError("canceling statement due to statement timeout", "57014"),
        "SELECT 1, 2": (["a", "b"], [(1, 2)]),
        "SELECT count(*) FROM items": (["count"], [(5,)]),
    })
    values, problems, _durations = di.run_checks(conn, out, "1s", FakeError)
    assert values == {"items": 5}
    assert problems[0].startswith("check write: the query tries to change data (cannot execute UPDATE")
    assert problems[1].startswith("check slow: the query ran longer than statement_timeout=1s")
    assert problems[2].startswith("check two: the query returned 2 columns (a, b)")
    assert sum(1 for sql, _params in conn.log if sql == "ROLLBACK") == 4


def test_a_lost_connection_stops_the_run_and_names_what_did_not_run():
    conn = FakeConnection({"SELECT count(*) FROM items": (["count"], [(1,)])}, fail_rollback=True)
    values, problems, _durations = di.run_checks(conn, checks(COUNT, ORPHANS), "30s", FakeError)
    assert values == {"items": 1}
    assert problems == ["the connection to PostgreSQL was lost after check items (server closed the connection "
                        "unexpectedly); not run: orphans; check the server and run again"]
