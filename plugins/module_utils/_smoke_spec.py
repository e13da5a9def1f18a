# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""What a smoke_check task asks for, checked before any request: the pure parts of runbook.release.smoke_check.

- ``normalize_checks()`` turns the module's ``checks`` into plain dicts with compiled expectations, and
  collects every problem in the input (a missing URL, a bad regex, a negative duration, a scenario step that
  uses a value no earlier step captures) so the module can refuse the task before it sends anything.
- JSON paths (``items[0].id``), the comparison operators of ``expect_json``, ``expect_status`` rules and
  ``${name}`` placeholders live here, with the rules that decide which header values and captured values
  are secret, and the scrubbing of URLs and response snippets that may end up in a result.
"""

from __future__ import annotations

import json
import re
from urllib.parse import parse_qsl, urlencode, urljoin, urlsplit, urlunsplit

CHECK_TYPES = ("http", "tcp", "dns", "tls", "container", "logs", "postgres", "scenario")
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
MASK = "********"

# Headers whose values are credentials. Any header whose name contains one of SECRET_WORDS is secret too.
SECRET_HEADERS = frozenset(("authorization", "proxy-authorization", "cookie", "set-cookie"))
SECRET_WORDS = ("token", "secret", "password", "passwd", "api-key", "apikey", "api_key", "auth", "session",
                "cookie", "credential", "private-key")

DEFAULT_LOG_PATTERNS = (
    r'"level"\s*:\s*"(error|critical|fatal)"',
    r"(?i)\b(traceback|panic|fatal error|unhandled exception)\b",
    r"(?i)^\s*(error|fatal|critical)\b",
)

RELATIVE_SINCE_RE = re.compile(r"^\d+(\.\d+)?(s|m|h)$")
ISO_SINCE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?$")

# ---------------------------------------------------------------------------------------------- placeholders

PLACEHOLDER_RE = re.compile(r"\$(\$|\{([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z0-9_-]+)?)\})")
BUILTINS = ("unique",)


def placeholders(value):
    """Names of the ``${name}`` placeholders in a string, or anywhere inside lists and dicts (keys included)."""
    found = set()
    if isinstance(value, str):
        for match in PLACEHOLDER_RE.finditer(value):
            if match.group(2):
                found.add(match.group(2))
    elif isinstance(value, dict):
        for key, item in value.items():
            found |= placeholders(key) | placeholders(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            found |= placeholders(item)
    return found


class MissingValue(KeyError):
    """A placeholder has no value (a capture that did not happen)."""


def render(value, context):
    """Replace ``${name}`` in strings (recursively in lists and dicts); ``$$`` is a literal ``$``.

    A string that is exactly one placeholder becomes the value itself, so a captured number stays a number in
    a JSON body. ``context`` maps names (``token``, ``secrets.password``, ``unique``) to values.
    """
    if isinstance(value, str):
        whole = PLACEHOLDER_RE.fullmatch(value)
        if whole and whole.group(2):
            return _lookup(context, whole.group(2))
        return PLACEHOLDER_RE.sub(lambda m: "$" if m.group(1) == "$" else str(_lookup(context, m.group(2))), value)
    if isinstance(value, dict):
        return {render(k, context): render(v, context) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [render(item, context) for item in value]
    return value


def render_pattern(pattern, context):
    """A regular expression with its placeholders replaced by their values, matched literally."""
    if isinstance(pattern, re.Pattern):
        return pattern
    return re.compile(PLACEHOLDER_RE.sub(
        lambda m: re.escape("$") if m.group(1) == "$" else re.escape(str(_lookup(context, m.group(2)))), pattern))


def _pattern(source, where):
    """A compiled regex, or its source when it has placeholders (compiled once their values are known)."""
    if placeholders(source):
        try:
            render_pattern(source, dict.fromkeys(placeholders(source), "x"))
        except (re.error, TypeError) as exc:
            raise ValueError("%s: %r is not a valid regular expression (%s)" % (where, source, exc))
        return source
    return compile_regex(source, where)


def _lookup(context, name):
    if name not in context:
        raise MissingValue(name)
    return context[name]


# ---------------------------------------------------------------------------------------------- JSON paths

_PATH_TOKEN_RE = re.compile(r"""\.?([A-Za-z_$@][A-Za-z0-9_$@-]*)|\[(-?\d+)\]|\[(?:"((?:[^"\\]|\\.)*)"|'([^']*)')\]|\.(\d+)""")


def parse_path(path):
    """``a.b[0].c``, ``$.a``, ``items.0.id``, ``a["x.y"]`` -> tokens (str keys, int indexes). ValueError if invalid."""
    if not isinstance(path, str) or not path.strip():
        raise ValueError("a JSON path must be a non-empty string, like 'database' or 'items[0].id'")
    text = path.strip()
    if text == "$":
        return []
    if text.startswith("$."):
        text = text[2:]
    elif text.startswith("$["):
        text = text[1:]
    tokens, pos = [], 0
    while pos < len(text):
        match = _PATH_TOKEN_RE.match(text, pos)
        if not match or match.end() == pos or (pos == 0 and text.startswith(".")):
            raise ValueError("JSON path %r is not valid at %r: use keys separated by dots and [n] for list items, "
                             "like 'items[0].id' or 'a[\"key.with.dots\"]'" % (path, text[pos:]))
        key, index, dquoted, squoted, dotted_index = match.groups()
        if key is not None:
            tokens.append(key)
        elif index is not None:
            tokens.append(int(index))
        elif dotted_index is not None:
            tokens.append(int(dotted_index))
        else:
            tokens.append(re.sub(r"\\(.)", r"\1", dquoted) if dquoted is not None else squoted)
        pos = match.end()
    return tokens


def resolve(doc, tokens):
    """(True, value) when the path exists in doc, else (False, None). An int token also matches a string key."""
    current = doc
    for token in tokens:
        if isinstance(current, list) and isinstance(token, int):
            if -len(current) <= token < len(current):
                current = current[token]
                continue
            return False, None
        if isinstance(current, dict):
            key = token if token in current else str(token)
            if key in current:
                current = current[key]
                continue
        return False, None
    return True, current


# ---------------------------------------------------------------------------------------------- comparisons

OPS = ("eq", "ne", "lt", "le", "gt", "ge", "in", "not_in", "contains", "regex", "exists", "type")
OP_ALIASES = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge", "=~": "regex"}
JSON_TYPES = {"string": (str,), "number": (int, float), "integer": (int,), "boolean": (bool,), "list": (list,),
              "array": (list,), "object": (dict,), "dict": (dict,), "null": (type(None),)}


def _op_name(op):
    op = OP_ALIASES.get(op, op)
    return op if op in OPS else None


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def compare(actual, found, op, expected):
    """None when ``actual <op> expected`` holds, else the reason it does not (a short sentence)."""
    if op == "exists":
        return None if found == bool(expected) else ("is missing" if expected else "exists, expected it absent")
    if not found:
        return "is missing"
    if op == "type":
        types = JSON_TYPES[expected]
        ok = isinstance(actual, types) and not (isinstance(actual, bool) and bool not in types)
        return None if ok else "is %s, expected a %s" % (_json_type(actual), expected)
    if op in ("eq", "ne"):
        equal = _loose_equal(actual, expected)
        if (op == "eq") == equal:
            return None
        return "is %s, expected %s" % (_show(actual), _show(expected)) if op == "eq" else \
            "is %s, expected anything else" % _show(actual)
    if op in ("lt", "le", "gt", "ge"):
        if not (_is_number(actual) and _is_number(expected)):
            return "is %s, not a number to compare with %s" % (_show(actual), _show(expected))
        ok = {"lt": actual < expected, "le": actual <= expected, "gt": actual > expected, "ge": actual >= expected}[op]
        symbol = {"lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
        return None if ok else "is %s, expected %s %s" % (_show(actual), symbol, _show(expected))
    if op in ("in", "not_in"):
        inside = any(_loose_equal(actual, item) for item in expected)
        if (op == "in") == inside:
            return None
        return "is %s, expected %sone of %s" % (_show(actual), "" if op == "in" else "none ", _show(expected))
    if op == "contains":
        if isinstance(actual, str):
            ok = str(expected) in actual
        elif isinstance(actual, list):
            ok = any(_loose_equal(item, expected) for item in actual)
        elif isinstance(actual, dict):
            ok = expected in actual
        else:
            return "is %s, which cannot contain anything" % _show(actual)
        return None if ok else "is %s, expected it to contain %s" % (_show(actual), _show(expected))
    # regex
    if not isinstance(actual, (str, int, float)) or isinstance(actual, bool):
        return "is %s, not text to match /%s/" % (_show(actual), expected.pattern)
    return None if expected.search(str(actual)) else "is %s, does not match /%s/" % (_show(actual), expected.pattern)


def _loose_equal(actual, expected):
    """Equal, where a number and its string form also count as equal (YAML makes ``1`` and ``'1'`` easy to mix)."""
    if isinstance(actual, bool) or isinstance(expected, bool):
        return actual is expected  # True == 1 in Python, not in JSON
    if actual == expected:
        return True
    if _is_number(actual) and isinstance(expected, str) or _is_number(expected) and isinstance(actual, str):
        return str(actual) == str(expected)
    return actual == expected


def _json_type(value):
    for name, types in (("null", (type(None),)), ("boolean", (bool,)), ("number", (int, float)), ("string", (str,)),
                        ("list", (list,)), ("object", (dict,))):
        if isinstance(value, types):
            return name
    return type(value).__name__


def _show(value, limit=80):
    text = json.dumps(value, default=str, sort_keys=True) if not isinstance(value, re.Pattern) else value.pattern
    return text if len(text) <= limit else text[:limit - 3] + "..."


def json_rules(spec, where):
    """``expect_json`` in either form -> list of rules {path, tokens, op, value}; raises ValueError naming the problem.

    - full form, a list: ``[{path: database, op: eq, value: connected}, {path: items, op: ge, value: 1}]``
      (``op`` defaults to ``eq``);
    - compact form, a dict of path to expected value: ``{database: connected, "items": {">=": 1}}``, where a
      value that is a dict with exactly one operator key is that comparison.
    """
    if spec is None:
        return []
    items = []
    if isinstance(spec, dict):
        for path, value in spec.items():
            if isinstance(value, dict) and len(value) == 1 and _op_name(next(iter(value))):
                op, value = next(iter(value.items()))
                items.append({"path": path, "op": op, "value": value})
            else:
                items.append({"path": path, "op": "eq", "value": value})
    elif isinstance(spec, list):
        for number, item in enumerate(spec):
            if not isinstance(item, dict) or "path" not in item:
                raise ValueError("%s.expect_json[%d] must be a dict with path, op and value, not %s"
                                 % (where, number, _show(item)))
            unknown = set(item) - {"path", "op", "value"}
            if unknown:
                raise ValueError("%s.expect_json[%d] has unknown key(s) %s: use path, op and value"
                                 % (where, number, ", ".join(sorted(unknown))))
            items.append({"path": item["path"], "op": item.get("op", "eq"), "value": item.get("value")})
    else:
        raise ValueError("%s.expect_json must be a dict (path: expected value) or a list of {path, op, value}, not %s"
                         % (where, _json_type(spec)))
    rules = []
    for item in items:
        op = _op_name(item["op"])
        if op is None:
            raise ValueError("%s.expect_json: operator %r for path %r is not known; use one of %s"
                             % (where, item["op"], item["path"], ", ".join(OPS + tuple(OP_ALIASES))))
        value = item["value"]
        if op in ("in", "not_in") and not isinstance(value, list):
            raise ValueError("%s.expect_json: %s for path %r needs a list value, not %s"
                             % (where, op, item["path"], _show(value)))
        if op in ("lt", "le", "gt", "ge") and not _is_number(value):
            raise ValueError("%s.expect_json: %s for path %r needs a number, not %s" % (where, op, item["path"], _show(value)))
        if op == "type" and value not in JSON_TYPES:
            raise ValueError("%s.expect_json: type for path %r must be one of %s, not %s"
                             % (where, item["path"], ", ".join(JSON_TYPES), _show(value)))
        if op == "exists" and value is None:
            value = True
        if op == "regex":
            value = _pattern(value, "%s.expect_json %r" % (where, item["path"]))
        rules.append({"path": str(item["path"]), "tokens": parse_path(str(item["path"])), "op": op, "value": value})
    return rules


def check_json(doc, rules, context=None):
    """Reasons (one per failed rule) why ``doc`` does not meet ``rules``; empty when it does. Expected values may
    hold placeholders, replaced from ``context``."""
    reasons = []
    for rule in rules:
        found, actual = resolve(doc, rule["tokens"])
        expected = rule["value"]
        if context is not None:
            expected = render_pattern(expected, context) if rule["op"] == "regex" else render(expected, context)
        reason = compare(actual, found, rule["op"], expected)
        if reason:
            reasons.append("JSON %s %s" % (rule["path"], reason))
    return reasons


def compile_regex(pattern, where):
    try:
        return re.compile(pattern)
    except (re.error, TypeError) as exc:
        raise ValueError("%s: %r is not a valid regular expression (%s)" % (where, pattern, exc))


# ---------------------------------------------------------------------------------------------- status codes

_STATUS_RE = re.compile(r"^([1-5])(xx|XX)$")


def status_rules(spec, where):
    """``expect_status`` -> list of (low, high) ranges. Accepts 200, [200, 204], '2xx', ['2xx', 304], '200-299'."""
    if spec is None:
        return [(200, 299)]
    items = spec if isinstance(spec, list) else [spec]
    if not items:
        raise ValueError("%s.expect_status is an empty list: give at least one status, like 200 or '2xx'" % where)
    rules = []
    for item in items:
        text = str(item).strip()
        match = _STATUS_RE.match(text)
        if isinstance(item, bool):
            match = None
        elif match:
            base = int(match.group(1)) * 100
            rules.append((base, base + 99))
            continue
        low, sep, high = text.partition("-")
        if not isinstance(item, bool) and low.isdigit() and (not sep or high.isdigit()):
            low, high = int(low), int(high) if sep else int(low)
            if 100 <= low <= high <= 599:
                rules.append((low, high))
                continue
        raise ValueError("%s.expect_status: %s is not an HTTP status; use a number (200), a class ('2xx'), a range "
                         "('200-299') or a list of them" % (where, _show(item)))
    return rules


def status_ok(status, rules):
    return status is not None and any(low <= status <= high for low, high in rules)


def describe_status_rules(rules):
    return " or ".join(("%dxx" % (low // 100) if high - low == 99 and low % 100 == 0 else
                        str(low) if low == high else "%d-%d" % (low, high)) for low, high in rules)


# ---------------------------------------------------------------------------------------------- secrets


def is_secret_header(name):
    low = str(name).lower()
    return low in SECRET_HEADERS or any(word in low for word in SECRET_WORDS)


def is_secret_name(name):
    """Whether a capture or query parameter name says its value is a credential."""
    low = str(name).lower()
    return any(word in low for word in ("token", "secret", "password", "passwd", "session", "cookie", "auth",
                                        "api_key", "apikey", "credential", "jwt", "sid"))


_SNIPPET_PAIR_RE = re.compile(r"""(["']?)([A-Za-z0-9_.-]*(?:token|secret|password|passwd|session|cookie|auth|api_?key|"""
                              r"""credential|jwt)[A-Za-z0-9_.-]*)\1(\s*[:=]\s*)("[^"]*"|'[^']*'|[^\s,;&}\]]+)""", re.I)
_BEARER_RE = re.compile(r"(?i)\b(bearer|basic|token|oauth)\s+(?!\*{8})[A-Za-z0-9._~+/=-]{6,}")
_HEADER_LINE_RE = re.compile(r"(?im)\b(authorization|proxy-authorization|cookie|set-cookie)(\s*:\s*)[^\r\n]+")


def _mask_pair(match):
    quote, key, sep, value = match.groups()
    if value == MASK:
        return match.group(0)
    inner = value[:1] if value[:1] in "\"'" and len(value) > 1 else ""
    return quote + key + quote + sep + inner + MASK + inner


def scrub_text(text, limit=300):
    """A response snippet fit for a result: credential-looking pairs and bearer tokens masked, and shortened."""
    if text is None:
        return None
    text = str(text)
    text = _HEADER_LINE_RE.sub(lambda m: m.group(1) + m.group(2) + MASK, text)
    text = _BEARER_RE.sub(lambda m: m.group(1) + " " + MASK, text)
    text = _SNIPPET_PAIR_RE.sub(_mask_pair, text)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


def scrub_url(url):
    """A URL fit for a result: the password of ``user:pass@`` and credential-looking query values masked."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = "%s:%s@%s" % (user, MASK, host) if ":" in userinfo else "%s@%s" % (user, host)
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(is_secret_name(k) for k, _v in pairs):
            query = urlencode([(k, MASK if is_secret_name(k) else v) for k, v in pairs], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


# ---------------------------------------------------------------------------------------------- checks


class SpecError(ValueError):
    """Bad input; ``problems`` lists every one found."""

    def __init__(self, problems):
        super().__init__("; ".join(problems))
        self.problems = problems


def join_url(base_url, url):
    """``url`` as given when absolute, else resolved against ``base_url``; None when there is nothing to resolve."""
    if not url:
        return None
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", url) or not base_url:
        return url
    return urljoin(base_url.rstrip("/") + "/", url.lstrip("/"))


def _where(index, name):
    return "checks[%d]%s" % (index, " (%s)" % name if name else "")


def num(value):
    """A number as a person writes it: 1 rather than 1.0."""
    return "%g" % value if isinstance(value, float) else str(value)


def _positive(problems, where, params, names, allow_zero=False):
    for option in names:
        value = params.get(option)
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            problems.append("%s: %s=%s must be %s" % (where, option, num(value), "0 or more" if allow_zero else "more than 0"))


def _http_fields(raw, where, base_url, problems, inherited=None):
    """Validated HTTP request and expectation fields of a check or (with ``inherited``) a scenario step."""
    step = inherited is not None
    inherited = inherited or {}
    out = {}
    url = join_url(base_url, raw.get("url"))
    if not url:
        problems.append("%s: url is required for an HTTP request; give a full URL, or a path together with base_url"
                        % where)
    elif not re.match(r"^https?://[^/\s]+", url):
        problems.append("%s: url %r is not an http(s) URL (after base_url); use for example "
                        "http://127.0.0.1:8080/health, or set base_url for a path" % (where, scrub_url(url)))
    out["url"] = url
    method = (raw.get("method") or "GET").upper()
    if not re.match(r"^[A-Z]+$", method):
        problems.append("%s: method %r is not an HTTP method" % (where, raw.get("method")))
    out["method"] = method
    headers = raw.get("headers") or {}
    if not isinstance(headers, dict):
        problems.append("%s: headers must be a dict of header name to value" % where)
        headers = {}
    out["headers"] = {str(k): ("" if v is None else v if isinstance(v, str) else str(v)) for k, v in headers.items()}
    if raw.get("body") is not None and raw.get("json") is not None:
        problems.append("%s: give either body or json, not both" % where)
    out["body"] = raw.get("body")
    out["json"] = raw.get("json")
    try:
        out["status_rules"] = status_rules(raw.get("expect_status"), where)
    except ValueError as exc:
        problems.append(str(exc))
    try:
        out["json_rules"] = json_rules(raw.get("expect_json"), where)
    except ValueError as exc:
        problems.append(str(exc))
    out["body_re"] = None
    if raw.get("expect_body") is not None:
        try:
            out["body_re"] = _pattern(raw["expect_body"], where + ".expect_body")
        except ValueError as exc:
            problems.append(str(exc))
    out["header_rules"] = []
    for name, want in (raw.get("expect_headers") or {}).items():
        if isinstance(want, bool):
            out["header_rules"].append((name, want, None))
        else:
            try:
                out["header_rules"].append((name, True, _pattern(str(want), "%s.expect_headers %s" % (where, name))))
            except ValueError as exc:
                problems.append(str(exc))
    out["expectations"] = [raw.get("expect_json"), raw.get("expect_body"), raw.get("expect_headers")]
    out["expect_version"] = raw.get("expect_version")
    out["version_header"] = raw.get("version_header")
    out["version_field"] = raw.get("version_field") or "version"
    try:
        out["version_tokens"] = parse_path(out["version_field"])
    except ValueError as exc:
        problems.append("%s: version_field: %s" % (where, exc))
    for option in ("max_latency_ms", "timeout_s", "validate_certs", "ca_path", "follow_redirects"):
        value = raw.get(option)
        out[option] = inherited.get(option) if value is None else value
    if step:
        _positive(problems, where, raw, ("max_latency_ms", "timeout_s"))
    return out


CAPTURE_RE = re.compile(r"^(?:(json|header|status):)?(.*)$", re.S)


def _captures(raw, where, problems):
    """``capture`` of a step: {name: 'json:path' | 'path' | 'header:Name' | 'status' | {from: ..., secret: bool}}."""
    captures = {}
    for name, spec in (raw or {}).items():
        secret = None
        if isinstance(spec, dict):
            secret = spec.get("secret")
            spec = spec.get("from")
        if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", str(name)) or name in BUILTINS or name == "secrets":
            problems.append("%s: capture name %r must be letters, digits and _ (and not %s)"
                            % (where, name, ", ".join(BUILTINS + ("secrets",))))
            continue
        if not isinstance(spec, str) or not spec.strip():
            problems.append("%s: capture %s needs a source: a JSON path ('token'), 'header:Name' or 'status'"
                            % (where, name))
            continue
        kind, arg = CAPTURE_RE.match(spec.strip()).groups()
        kind = kind or "json"
        if kind == "status":
            arg = None
        elif kind == "json":
            try:
                arg = parse_path(arg)
            except ValueError as exc:
                problems.append("%s: capture %s: %s" % (where, name, exc))
                continue
        elif not arg:
            problems.append("%s: capture %s: header: needs a header name" % (where, name))
            continue
        captures[name] = {"kind": kind, "arg": arg, "source": spec.strip(),
                          "secret": bool(secret) if secret is not None else (is_secret_name(name) or (
                              kind == "header" and is_secret_header(arg)))}
    return captures


def _check_references(where, value, known, problems, later=None):
    for name in sorted(placeholders(value)):
        if name in known:
            continue
        if later and name in later:
            problems.append("%s: ${%s} is captured only by a later step (%s); reorder the steps"
                            % (where, name, later[name]))
        elif name.startswith("secrets."):
            problems.append("%s: ${%s} is not among the keys of secrets (%s)"
                            % (where, name, ", ".join(sorted(k for k in known if k.startswith("secrets."))) or "none"))
        else:
            problems.append("%s: ${%s} is not defined: no earlier step captures it, and it is not a builtin (%s) or "
                            "${secrets.<key>}" % (where, name, ", ".join(BUILTINS)))


def _request_values(fields):
    return [fields["url"], fields["headers"], fields["body"], fields["json"], fields["expect_version"],
            fields["expectations"]]


def _scenario(raw, where, base_url, known, problems):
    steps = raw.get("steps") or []
    if not steps:
        problems.append("%s: a scenario needs steps (a list of requests)" % where)
        return []
    inherited = {o: raw.get(o) for o in ("timeout_s", "validate_certs", "ca_path", "follow_redirects")}
    out, names, captured, later = [], set(), set(), {}
    parsed = []
    for number, step in enumerate(steps):
        step_where = "%s.steps[%d]%s" % (where, number, " (%s)" % step.get("name") if step.get("name") else "")
        fields = _http_fields(step, step_where, base_url, problems, inherited)
        fields["name"] = step.get("name") or "step%d" % (number + 1)
        if fields["name"] in names:
            problems.append("%s: step name %r is used twice" % (step_where, fields["name"]))
        names.add(fields["name"])
        fields["cleanup"] = bool(step.get("cleanup"))
        fields["capture"] = _captures(step.get("capture"), step_where, problems)
        parsed.append((step_where, fields))
        for name in fields["capture"]:
            later.setdefault(name, fields["name"])
    for step_where, fields in parsed:
        later_here = {k: v for k, v in later.items() if k not in captured}
        _check_references(step_where, _request_values(fields), known | captured, problems, later_here)
        captured |= set(fields["capture"])
        out.append(fields)
    return out


def _needs(problems, where, raw, options, kind):
    for option in options:
        if raw.get(option) in (None, "", []):
            problems.append("%s: %s is required for type %s" % (where, option, kind))


def _host_port(raw, where, problems, kind, default_port=None):
    host, port = raw.get("host"), raw.get("port")
    if raw.get("url"):
        parts = urlsplit(raw["url"] if "://" in raw["url"] else "//" + raw["url"])
        try:
            url_port = parts.port
        except ValueError:
            url_port = None
            problems.append("%s: url %r has an invalid port" % (where, raw["url"]))
        host = host or parts.hostname
        port = port or url_port or {"https": 443, "http": 80}.get(parts.scheme)
    port = port or default_port
    if not host:
        problems.append("%s: host (or url) is required for type %s" % (where, kind))
    if port is None:
        problems.append("%s: port (or a url with a port) is required for type %s" % (where, kind))
    elif not 0 < int(port) < 65536:
        problems.append("%s: port %s is not a TCP port (1-65535)" % (where, port))
    return host, port


def _since_ok(since):
    return bool(RELATIVE_SINCE_RE.match(since) or ISO_SINCE_RE.match(since) or re.match(r"^\d{9,}(\.\d+)?$", since))


def normalize_check(raw, index, base_url, secrets):
    """One check as the probes use it, and the problems found in it."""
    problems = []
    name = raw.get("name")
    where = _where(index, name)
    kind = raw.get("type") or "http"
    check = {"name": name, "type": kind, "critical": raw.get("critical", True) is not False,
             "samples": raw.get("samples") or 1, "max_p95_ms": raw.get("max_p95_ms"),
             "max_error_rate": raw.get("max_error_rate"), "timeout_s": raw.get("timeout_s") or 10.0}
    if not name or not str(name).strip():
        problems.append("%s: name is required (it names the check in results and in the release record)" % where)
    if kind not in CHECK_TYPES:
        problems.append("%s: type %r is not known; use one of %s" % (where, kind, ", ".join(CHECK_TYPES)))
        return check, problems
    _positive(problems, where, raw, ("timeout_s", "samples", "max_p95_ms", "max_latency_ms"))
    if raw.get("max_error_rate") is not None and not 0 <= raw["max_error_rate"] <= 1:
        problems.append("%s: max_error_rate=%s must be between 0 and 1 (0.01 is 1 %%)" % (where, raw["max_error_rate"]))
    known = set(BUILTINS) | {"secrets.%s" % key for key in secrets}
    if kind == "http":
        check.update(_http_fields(raw, where, base_url, problems))
        _check_references(where, _request_values(check), known, problems)
        safe = check["method"] in SAFE_METHODS
    elif kind == "scenario":
        check["steps"] = _scenario(raw, where, base_url, known, problems)
        check["max_latency_ms"] = raw.get("max_latency_ms")
        safe = all(step["method"] in SAFE_METHODS for step in check["steps"])
    else:
        safe = True
        for option in ("headers", "body", "json", "steps") + (("url",) if kind not in ("tcp", "tls", "dns") else ()):
            if raw.get(option) not in (None, "", {}, []):
                problems.append("%s: %s applies to http checks and scenario steps, not to type %s" % (where, option, kind))
        check.update(_other_fields(raw, where, kind, problems))
    check["safe"] = safe
    check["run_in_check_mode"] = safe if raw.get("run_in_check_mode") is None else bool(raw["run_in_check_mode"])
    return check, problems


def _other_fields(raw, where, kind, problems):
    out = {"max_latency_ms": raw.get("max_latency_ms")}
    if kind in ("tcp", "tls"):
        out["host"], out["port"] = _host_port(raw, where, problems, kind, 443 if kind == "tls" else None)
    if kind == "tls":
        out["server_name"] = raw.get("server_name") or out["host"]
        out["min_days"] = 14 if raw.get("min_days") is None else raw["min_days"]
        out["validate_certs"] = raw.get("validate_certs", True) is not False
        out["ca_path"] = raw.get("ca_path")
        _positive(problems, where, out, ("min_days",), allow_zero=True)
    elif kind == "dns":
        host = raw.get("host")
        if not host and raw.get("url"):
            host = urlsplit(raw["url"] if "://" in raw["url"] else "//" + raw["url"]).hostname
        if not host:
            problems.append("%s: host (the name to resolve) is required for type dns" % where)
        out["host"] = host
        out["expect_addresses"] = list(raw.get("expect_addresses") or [])
        out["family"] = raw.get("family") or "any"
    elif kind in ("container", "logs"):
        _needs(problems, where, raw, ("project",), kind)
        out["project"] = raw.get("project")
        out["services"] = list(raw.get("services") or [])
        if kind == "container":
            out["max_restarts"] = 0 if raw.get("max_restarts") is None else raw["max_restarts"]
            out["max_memory_ratio"] = raw.get("max_memory_ratio")
            out["require_healthy"] = raw.get("require_healthy", True) is not False
            _positive(problems, where, out, ("max_restarts",), allow_zero=True)
            ratio = out["max_memory_ratio"]
            if ratio is not None and not 0 < ratio <= 1:
                problems.append("%s: max_memory_ratio=%s must be above 0 and at most 1 (0.85 is 85 %% of the limit)"
                                % (where, ratio))
        else:
            since = str(raw.get("since") or "5m")
            if not _since_ok(since):
                problems.append("%s: since %r is not a time docker understands; use a duration like '10m' or '90s', "
                                "or a UTC time like 2031-03-01T10:00:00Z" % (where, since))
            out["since"] = since
            out["max_matches"] = raw.get("max_matches") or 0
            _positive(problems, where, out, ("max_matches",), allow_zero=True)
            out["patterns"], out["ignore_patterns"] = [], []
            for option in ("patterns", "ignore_patterns"):
                given = raw.get(option)
                for pattern in (DEFAULT_LOG_PATTERNS if option == "patterns" and given is None else given or []):
                    try:
                        out[option].append(compile_regex(pattern, "%s.%s" % (where, option)))
                    except ValueError as exc:
                        problems.append(str(exc))
    elif kind == "postgres":
        for option in ("max_query_s", "max_lock_wait_s", "max_connection_ratio"):
            out[option] = raw.get(option)
        out["max_query_s"] = 30.0 if out["max_query_s"] is None else out["max_query_s"]
        out["max_lock_wait_s"] = 30.0 if out["max_lock_wait_s"] is None else out["max_lock_wait_s"]
        out["max_connection_ratio"] = 0.8 if out["max_connection_ratio"] is None else out["max_connection_ratio"]
        out["all_databases"] = bool(raw.get("all_databases"))
        _positive(problems, where, out, ("max_query_s", "max_lock_wait_s"), allow_zero=True)
        if not 0 < out["max_connection_ratio"] <= 1:
            problems.append("%s: max_connection_ratio=%s must be above 0 and at most 1"
                            % (where, out["max_connection_ratio"]))
        out["connection"] = {k: v for k, v in raw.items() if k.startswith("login_") or k in (
            "dsn", "connect_timeout", "ssl_mode", "ca_cert", "ssl_cert", "ssl_key")}
    return out


def normalize_checks(raw_checks, base_url=None, secrets=None):
    """Every check as the probes use it. Raises SpecError listing every problem, before anything is sent."""
    secrets = secrets or {}
    problems, checks, seen = [], [], set()
    if not raw_checks:
        raise SpecError(["checks is empty: give at least one check"])
    if base_url and not re.match(r"^https?://[^/\s]+", base_url):
        problems.append("base_url %r is not an http(s) URL, like http://127.0.0.1:8080" % scrub_url(base_url))
    for key in secrets:
        if not re.match(r"^[A-Za-z0-9_-]+$", str(key)):
            problems.append("secrets key %r must be letters, digits, _ and - (it is used as ${secrets.%s})" % (key, key))
    for index, raw in enumerate(raw_checks):
        check, found = normalize_check(raw, index, base_url, secrets)
        problems.extend(found)
        if check["name"] in seen:
            problems.append("%s: the name %r is used by an earlier check; names must be unique"
                            % (_where(index, check["name"]), check["name"]))
        seen.add(check["name"])
        checks.append(check)
    if problems:
        raise SpecError(problems)
    return checks


def url_secret_values(url):
    """Credentials written into a URL: the password of ``user:pass@`` and values of credential-like query keys."""
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return []
    values = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rsplit("@", 1)[0]
        if ":" in userinfo:
            values.append(userinfo.split(":", 1)[1])
    values.extend(v for k, v in parse_qsl(parts.query, keep_blank_values=True) if is_secret_name(k) and v)
    return values


def literal_secrets(checks):
    """Credentials written literally into the checks (secret header values, URL credentials), to mask everywhere."""
    values = []
    for check in checks:
        for fields in check.get("steps") or [check]:
            if "headers" in fields:
                values.extend(v for v in secret_header_values(fields["headers"]) if not placeholders(v))
            if fields.get("url"):
                values.extend(v for v in url_secret_values(fields["url"]) if not placeholders(v))
    return values


def secret_header_values(headers):
    """Values of the secret headers among ``headers`` (rendered), and the credential part of each."""
    values = []
    for name, value in (headers or {}).items():
        if is_secret_header(name) and value:
            value = str(value)
            values.append(value)
            scheme, _sep, credential = value.partition(" ")
            if credential.strip() and scheme.lower() in ("bearer", "basic", "token", "oauth", "digest"):
                values.append(credential.strip())
    return values
