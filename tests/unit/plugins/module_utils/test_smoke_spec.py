"""module_utils/_smoke_spec: JSON paths, comparisons, status rules, placeholders, secrets, and the refusal of bad
input before anything is sent."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ansible_collections.runbook.release.plugins.module_utils import _smoke_spec as spec


def check(**fields):
    base = {"name": "c", "type": "http", "url": "http://127.0.0.1:1/health", "method": "GET"}
    base.update(fields)
    return base


def problems_of(checks, base_url=None, secrets=None):
    with pytest.raises(spec.SpecError) as info:
        spec.normalize_checks(checks, base_url, secrets)
    return info.value.problems


# --- JSON paths -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("path, tokens", [
    ("database", ["database"]),
    ("items[0].id", ["items", 0, "id"]),
    ("$.items[-1].name", ["items", -1, "name"]),
    ("items.0.id", ["items", 0, "id"]),
    ('a["key.with.dots"].b', ["a", "key.with.dots", "b"]),
    ("a['x y']", ["a", "x y"]),
    ("$", []),
    ("X-App-Version", ["X-App-Version"]),
])
def test_parse_path(path, tokens):
    assert spec.parse_path(path) == tokens


@pytest.mark.parametrize("path", ["", "a..b", "a[", ".a", "a[x]", "a b"])
def test_parse_path_rejects_bad_paths(path):
    with pytest.raises(ValueError):
        spec.parse_path(path)


def test_resolve_finds_values_and_says_when_missing():
    doc = {"items": [{"id": 7}, {"id": 8}], "a": {"1": "one"}, "n": None}
    assert spec.resolve(doc, spec.parse_path("items[1].id")) == (True, 8)
    assert spec.resolve(doc, spec.parse_path("items[-1].id")) == (True, 8)
    assert spec.resolve(doc, spec.parse_path("a.1")) == (True, "one")
    assert spec.resolve(doc, spec.parse_path("n")) == (True, None)
    assert spec.resolve(doc, spec.parse_path("items[5].id")) == (False, None)
    assert spec.resolve(doc, spec.parse_path("items.x")) == (False, None)
    assert spec.resolve("text", spec.parse_path("a")) == (False, None)


# --- comparisons ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("actual, op, expected, ok", [
    ("connected", "eq", "connected", True),
    ("unavailable", "eq", "connected", False),
    (500, "eq", "500", True),  # YAML makes 500 and '500' easy to mix up
    (True, "eq", "true", False),
    (True, "eq", True, True),
    (1, "eq", True, False),
    (3, "gt", 1, True),
    (3, "lt", 1, False),
    (2.5, "le", 2.5, True),
    ("3", "gt", 1, False),  # text is not a number
    ("ok", "in", ["ok", "ready"], True),
    ("bad", "not_in", ["ok"], True),
    ("abc", "contains", "b", True),
    ([1, 2], "contains", 2, True),
    ({"k": 1}, "contains", "k", True),
    ("v1.2.3", "regex", re.compile(r"^v1\.2\."), True),
    ("v2.0.0", "regex", re.compile(r"^v1\."), False),
    (None, "type", "null", True),
    (True, "type", "number", False),
    (3, "type", "integer", True),
])
def test_compare(actual, op, expected, ok):
    assert (spec.compare(actual, True, op, expected) is None) == ok


def test_compare_missing_and_exists():
    assert spec.compare(None, False, "eq", 1) == "is missing"
    assert spec.compare(None, False, "exists", False) is None
    assert spec.compare(1, True, "exists", False) == "exists, expected it absent"


def test_json_rules_compact_and_full_forms_agree():
    compact = spec.json_rules({"database": "connected", "items": {">=": 1}}, "w")
    full = spec.json_rules([{"path": "database", "value": "connected"}, {"path": "items", "op": "ge", "value": 1}], "w")
    strip = [{k: r[k] for k in ("path", "op", "value")} for r in compact]
    assert strip == [{k: r[k] for k in ("path", "op", "value")} for r in full]
    assert spec.check_json({"database": "connected", "items": 500}, compact) == []
    reasons = spec.check_json({"database": "unavailable", "items": 0}, compact)
    assert reasons == ['JSON database is "unavailable", expected "connected"', "JSON items is 0, expected >= 1"]


def test_compact_form_keeps_a_dict_value_that_is_not_an_operator():
    rules = spec.json_rules({"meta": {"a": 1, "b": 2}}, "w")
    assert rules[0]["op"] == "eq" and rules[0]["value"] == {"a": 1, "b": 2}


@pytest.mark.parametrize("rules, message", [
    ([{"path": "a", "op": "~~", "value": 1}], "operator '~~'"),
    ([{"path": "a", "op": "in", "value": 1}], "needs a list"),
    ([{"path": "a", "op": "gt", "value": "x"}], "needs a number"),
    ([{"path": "a", "op": "type", "value": "date"}], "type for path"),
    ([{"path": "a", "op": "regex", "value": "("}], "not a valid regular expression"),
    ([{"op": "eq"}], "must be a dict with path"),
    ([{"path": "a", "valeu": 1}], "unknown key(s) valeu"),
    ("database", "must be a dict"),
])
def test_json_rules_reject_bad_rules(rules, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        spec.json_rules(rules, "checks[0]")


# --- statuses ---------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("given_, status, ok", [
    (None, 204, True), (None, 301, False), (200, 200, True), (200, 201, False), ("2xx", 299, True),
    ([200, "3xx"], 302, True), ("200-204", 204, True), ("200-204", 205, False), ([401, 403], 403, True),
])
def test_status_rules(given_, status, ok):
    assert spec.status_ok(status, spec.status_rules(given_, "w")) == ok


@pytest.mark.parametrize("bad", ["abc", 99, 600, "300-200", [], True, "6xx"])
def test_status_rules_reject_bad_values(bad):
    with pytest.raises(ValueError, match="expect_status"):
        spec.status_rules(bad, "checks[0]")


def test_status_rules_describe_themselves():
    assert spec.describe_status_rules(spec.status_rules([200, "3xx", "400-404"], "w")) == "200 or 3xx or 400-404"


# --- placeholders -----------------------------------------------------------------------------------------------

def test_placeholders_and_render():
    value = {"url": "/api/items/${id}", "h": {"Authorization": "Bearer ${token}"}, "n": ["${secrets.pw}", 3]}
    assert spec.placeholders(value) == {"id", "token", "secrets.pw"}
    context = {"id": 512, "token": "abc", "secrets.pw": "pw"}
    assert spec.render(value, context) == {"url": "/api/items/512", "h": {"Authorization": "Bearer abc"},
                                           "n": ["pw", 3]}
    assert spec.render("${id}", context) == 512, "a whole-string placeholder keeps the value's type"
    assert spec.render("cost: $$5 for ${id}", context) == "cost: $5 for 512"
    with pytest.raises(spec.MissingValue):
        spec.render("${nope}", context)


def test_render_pattern_matches_values_literally():
    pattern = spec.render_pattern(r"^name,${name}$", {"name": "a.b+c"})
    assert pattern.search("name,a.b+c") and not pattern.search("name,aXb+c")


@given(st.text().filter(lambda t: "$" not in t))
def test_render_leaves_text_without_placeholders_alone(text):
    assert spec.render(text, {}) == text


# --- secrets ----------------------------------------------------------------------------------------------------

def test_secret_headers_and_names():
    assert spec.is_secret_header("Authorization") and spec.is_secret_header("X-Api-Key")
    assert spec.is_secret_header("cookie") and not spec.is_secret_header("Content-Type")
    assert spec.secret_header_values({"Authorization": "Bearer abcdef", "Accept": "x"}) == ["Bearer abcdef", "abcdef"]
    assert spec.is_secret_name("session_id") and not spec.is_secret_name("item_id")


def test_scrub_url_and_text():
    assert spec.scrub_url("https://u:pw@h/x?api_key=k1&limit=5") == "https://u:********@h/x?api_key=********&limit=5"
    assert spec.scrub_url("http://h/x?limit=5") == "http://h/x?limit=5"
    assert spec.url_secret_values("https://u:pw@h/x?token=t1&a=b") == ["pw", "t1"]
    text = spec.scrub_text('{"token":"abc123","name":"x"} Authorization: Bearer zzzzzzzz')
    assert "abc123" not in text and "zzzzzzzz" not in text and '"name":"x"' in text


def test_literal_secrets_come_from_headers_and_urls_but_not_placeholders():
    checks = [check(headers={"Authorization": "Bearer lit-123456"}, url="http://h/?token=q1"),
              {"name": "s", "type": "scenario", "steps": [{"headers": {"Cookie": "${cookie}"}, "url": "http://h/"}]}]
    assert sorted(spec.literal_secrets(checks)) == sorted(["Bearer lit-123456", "lit-123456", "q1"])


# --- checks: bad input is refused before anything is sent --------------------------------------------------------

def test_a_valid_set_of_checks_normalizes():
    checks = spec.normalize_checks([
        check(name="health", url="/health", expect_status="2xx"),
        {"name": "tls", "type": "tls", "url": "https://localhost:8443", "min_days": 1},
        {"name": "pg", "type": "postgres", "login_host": "h", "login_password": "pw"},
        {"name": "s", "type": "scenario", "steps": [
            {"name": "login", "method": "POST", "url": "/api/login", "capture": {"token": "token"}},
            {"name": "get", "url": "/api/items", "headers": {"Authorization": "Bearer ${token}"}}]},
    ], base_url="http://127.0.0.1:8080")
    assert checks[0]["url"] == "http://127.0.0.1:8080/health"
    assert (checks[1]["host"], checks[1]["port"], checks[1]["server_name"]) == ("localhost", 8443, "localhost")
    assert checks[2]["connection"]["login_password"] == "pw"
    assert checks[3]["steps"][0]["capture"]["token"]["secret"] is True
    assert [c["run_in_check_mode"] for c in checks] == [True, True, True, False]


@pytest.mark.parametrize("checks, message", [
    ([check(url=None)], "url is required"),
    ([check(url="/health")], "is not an http(s) URL (after base_url)"),  # a path without base_url
    ([check(type="ftp")], "type 'ftp' is not known"),
    ([check(timeout_s=-1)], "timeout_s=-1 must be more than 0"),
    ([check(samples=0)], "samples=0 must be more than 0"),
    ([check(max_error_rate=2)], "max_error_rate=2 must be between 0 and 1"),
    ([check(expect_body="(")], "not a valid regular expression"),
    ([check(version_field="a..b")], "version_field"),
    ([check(), check()], "used by an earlier check"),
    ([check(name="")], "name is required"),
    ([check(body="x", json={"a": 1})], "either body or json"),
    ([check(url="http://h/${secrets.nope}")], "${secrets.nope} is not among the keys of secrets"),
    ([check(url="http://h/${token}")], "${token} is not defined"),
    ([{"name": "t", "type": "tcp", "host": "h"}], "port (or a url with a port) is required"),
    ([{"name": "t", "type": "tls", "host": "h", "min_days": -1}], "min_days=-1 must be 0 or more"),
    ([{"name": "d", "type": "dns"}], "host (the name to resolve) is required"),
    ([{"name": "c", "type": "container"}], "project is required"),
    ([{"name": "c", "type": "container", "project": "p", "max_memory_ratio": 1.5}], "max_memory_ratio=1.5"),
    ([{"name": "l", "type": "logs", "project": "p", "since": "yesterday"}], "since 'yesterday'"),
    ([{"name": "l", "type": "logs", "project": "p", "patterns": ["("]}], "not a valid regular expression"),
    ([{"name": "p", "type": "postgres", "max_connection_ratio": 0}], "max_connection_ratio=0"),
    ([{"name": "c", "type": "tcp", "host": "h", "port": 1, "headers": {"a": "b"}}], "headers applies to http"),
    ([{"name": "s", "type": "scenario"}], "a scenario needs steps"),
])
def test_bad_input_is_refused_with_a_clear_message(checks, message):
    problems = problems_of(checks)
    assert any(message in p for p in problems), problems


def test_a_scenario_step_using_an_undefined_capture_is_refused():
    steps = [{"name": "create", "method": "POST", "url": "http://h/api/items", "headers": {"Authorization": "Bearer ${token}"},
              "capture": {"item": "id"}},
             {"name": "login", "method": "POST", "url": "http://h/api/login", "capture": {"token": "token"}},
             {"name": "get", "url": "http://h/api/items/${itme}"}]
    problems = problems_of([{"name": "s", "type": "scenario", "steps": steps}])
    assert any("${token} is captured only by a later step (login)" in p for p in problems), problems
    assert any("${itme} is not defined" in p for p in problems), problems


def test_every_problem_is_listed_at_once():
    problems = problems_of([check(url=None), check(name="b", timeout_s=0), check(name="d", type="nope")])
    assert len(problems) == 3, problems


def test_base_url_and_secret_keys_are_checked():
    assert any("base_url" in p for p in problems_of([check()], base_url="ftp://x"))
    assert any("secrets key" in p for p in problems_of([check()], secrets={"a b": "x"}))


def test_placeholders_in_expectations_must_be_defined_too():
    problems = problems_of([check(expect_json={"name": "${missing}"})])
    assert any("${missing} is not defined" in p for p in problems)
