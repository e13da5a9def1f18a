# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Atlassian Statuspage REST API v1 for runbook.release modules.

What lives here: the shared connection options (``connection_argument_spec()``, documented by the
``runbook.release.statuspage`` doc fragment), a client that paces requests per API key across processes,
retries what is safe to retry and never shows the key, the lookup of an incident by the change id stored in
its metadata, and the pure planning functions that compare an incident with what a task asks for.
Standard library and ansible.module_utils only: this runs on bare targets.
"""

from __future__ import annotations

import datetime
import fcntl
import hashlib
import http.client
import json
import os
import re
import socket
import tempfile
import time
from contextlib import contextmanager
from urllib.error import HTTPError, URLError
from urllib.parse import quote, urlencode, urlsplit

from ansible.module_utils.basic import env_fallback
from ansible.module_utils.urls import ConnectionError as UrlsConnectionError
from ansible.module_utils.urls import SSLValidationError, open_url

from ansible_collections.runbook.release.plugins.module_utils._retry import retry_delay

DEFAULT_API_URL = "https://api.statuspage.io/v1"
API_KEY_ENV = "STATUSPAGE_API_KEY"
USER_AGENT = "runbook.release-statuspage/0.1.0"
METADATA_KEY = "runbook_release"

INCIDENT_STATUSES = ("investigating", "identified", "monitoring")
REALTIME_STATUSES = INCIDENT_STATUSES + ("resolved",)
MAINTENANCE_STATUSES = ("scheduled", "in_progress", "verifying", "completed")
COMPONENT_STATUSES = ("operational", "under_maintenance", "degraded_performance", "partial_outage", "major_outage")
IMPACTS = ("none", "minor", "major", "critical")

# Where an incident of each kind can be while it is still open, as list endpoints under /incidents.
OPEN_LISTS = {"realtime": ("unresolved",), "maintenance": ("scheduled", "active_maintenance")}
KIND_STATUSES = {"realtime": REALTIME_STATUSES, "maintenance": MAINTENANCE_STATUSES}
RECENT_LIMIT = 100  # how far back a resolved/completed incident is looked for
LIST_PAGE_SIZE = 100
MAX_LIST_PAGES = 10

DEFAULT_RATE_WINDOW_S = 60.0  # Statuspage measures its per-key limit over a 60-second rolling window
PACE_KEY_CHARS = 8  # the pacing file name derives from this many leading characters of the key, hashed
MAX_BACKOFF_S = 30.0
MAX_RETRY_AFTER_S = 60.0
MAX_ERROR_BODY = 2000


class StatuspageError(Exception):
    """A failure to report as is: ``msg`` says what and how to fix it; ``details`` never hold the key."""

    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


def connection_argument_spec():
    """The options every Statuspage module shares, with their constraints (doc fragment: runbook.release.statuspage)."""
    return {
        "argument_spec": {
            "api_key": {"type": "str", "no_log": True, "fallback": (env_fallback, [API_KEY_ENV])},
            "page_id": {"type": "str", "required": True},
            "api_url": {"type": "str", "default": DEFAULT_API_URL},
            "timeout": {"type": "int", "default": 30},
            "validate_certs": {"type": "bool", "default": True},
            "retries": {"type": "int", "default": 5},
            "requests_per_second": {"type": "float", "default": 1.0},
            "rate_limit_window": {"type": "float", "default": DEFAULT_RATE_WINDOW_S},
        },
    }


def client_from_params(params):
    """Check the connection options and build a client; StatuspageError names the option and the fix."""
    key = (params.get("api_key") or "").strip()
    if not key:
        raise StatuspageError(
            "api_key is not set: pass api_key (for example from a vault variable or a file lookup) or set %s in the "
            "environment of the task" % API_KEY_ENV)
    if re.search(r"\s", key):
        raise StatuspageError("api_key contains whitespace inside it (the value is not shown); check how the key is read")
    page_id = (params.get("page_id") or "").strip()
    if not re.match(r"^[A-Za-z0-9_-]+$", page_id):
        raise StatuspageError("page_id %r is not a Statuspage page id; use the id from the page's API settings, "
                              "for example 'kctbh9vrtdwd'" % params.get("page_id"))
    api_url = params.get("api_url") or DEFAULT_API_URL
    parts = urlsplit(api_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment or "@" in parts.netloc:
        raise StatuspageError("api_url %r is not an http(s) base URL; use for example %s" % (api_url, DEFAULT_API_URL))
    checks = (("timeout", 1, "seconds"), ("retries", 0, "retries"), ("requests_per_second", 0.001, "requests per second"),
              ("rate_limit_window", 1, "seconds"))
    for name, low, unit in checks:
        if params[name] < low:
            raise StatuspageError("%s=%s is too small: give at least %s %s" % (name, params[name], low, unit))
    return StatuspageClient(
        key, page_id, api_url=api_url, timeout=params["timeout"], validate_certs=params["validate_certs"],
        retries=params["retries"], requests_per_second=params["requests_per_second"],
        rate_limit_window=params["rate_limit_window"])


# ---------------------------------------------------------------------------------------------- pacing


class Pacer:
    """At most ``rate`` requests per second per API key on this host, measured over a rolling ``window``.

    Statuspage limits each key to 1 request per second "as measured on a 60 second rolling window": up to 60
    requests may go out at once, and the next one only when the oldest of them is a minute old. This pacer
    keeps the same books, so a burst (an announcement is a few requests) is not spread over seconds, and a
    long run never meets a 429. Each task may be a separate process, so the books live in a small file in the
    temp directory - the times of the requests of the last window, nothing else - locked with fcntl while a
    request is in flight. Its name derives from a hash of the API URL and the first characters of the key,
    never from the key itself.
    """

    def __init__(self, api_key, api_url, rate, window=DEFAULT_RATE_WINDOW_S, directory=None, sleep=time.sleep):
        seed = "%s\n%s" % (api_url.rstrip("/"), api_key[:PACE_KEY_CHARS])
        digest = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:24]
        self.path = os.path.join(directory or tempfile.gettempdir(), "runbook-release-statuspage-%s.pace" % digest)
        self.window = float(window)
        # How many requests fit in one window; at least one, so a tiny rate still makes progress.
        self.budget = max(1, int(rate * self.window + 1e-9))
        if self.budget == 1:
            self.window = 1.0 / rate  # one request per 1/rate seconds: the plain interval
        self.warning = None
        self._sleep = sleep
        self._stamps = []  # used when the file cannot be

    def _open(self):
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
        except OSError as exc:
            self.warning = ("cannot use the pacing file %s (%s): requests are paced within this task only"
                            % (self.path, exc.strerror))
            return None

    @staticmethod
    def _read(fd):
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
        stamps = []
        for line in b"".join(chunks).decode("ascii", errors="replace").split():
            try:
                stamps.append(float(line))
            except ValueError:
                continue  # a damaged line is one request forgotten, not a stalled run
        return sorted(stamps)

    def wait_for(self, stamps, now):
        """Seconds to wait before one more request, given the times of the earlier ones."""
        recent = [stamp for stamp in stamps if stamp > now - self.window]
        if len(recent) < self.budget:
            return 0.0
        # min(): a clock that jumped backwards must not stall the run for longer than one window.
        return min(recent[-self.budget] + self.window - now, self.window)

    @contextmanager
    def slot(self):
        """Wait until the window has room and hold the books while the request runs."""
        fd = self._open()
        stamps = list(self._stamps)
        try:
            if fd is not None:
                fcntl.flock(fd, fcntl.LOCK_EX)
                stamps = self._read(fd)
            wait = self.wait_for(stamps, time.time())
            if wait > 0:
                self._sleep(wait)
            yield
        finally:
            # Stamped after the answer arrived: the server counted the request before this moment.
            now = time.time()
            stamps = [stamp for stamp in stamps if stamp > now - self.window] + [now]
            self._stamps = stamps[-self.budget:]
            if fd is not None:
                try:
                    os.lseek(fd, 0, os.SEEK_SET)
                    os.ftruncate(fd, 0)
                    os.write(fd, "".join("%.6f\n" % stamp for stamp in self._stamps).encode("ascii"))
                finally:
                    os.close(fd)  # also releases the lock


# ---------------------------------------------------------------------------------------------- client


class _Answer:
    def __init__(self, status=None, headers=None, body=b"", error=None):
        self.status, self.headers, self.body, self.error = status, headers, body, error


class StatuspageClient:
    """Statuspage API v1 for one page: paced, retried, and silent about the key."""

    def __init__(self, api_key, page_id, api_url=DEFAULT_API_URL, timeout=30, validate_certs=True, retries=5,
                 requests_per_second=1.0, rate_limit_window=DEFAULT_RATE_WINDOW_S, pacer=None, sleep=time.sleep):
        self._key = api_key
        self.page_id = page_id
        self.base = api_url.rstrip("/")
        self.base_path = urlsplit(self.base).path
        self.timeout = timeout
        self.validate_certs = validate_certs
        self.retries = retries
        self.pacer = pacer or Pacer(api_key, api_url, requests_per_second, window=rate_limit_window, sleep=sleep)
        self._sleep = sleep
        self.calls = []  # "METHOD /path -> status", what the operator sees in the result

    # ---- transport ------------------------------------------------------------------------------------

    def page_path(self, *parts):
        return "/pages/" + "/".join(quote(p, safe="") for p in (self.page_id,) + parts)

    def scrub(self, text):
        return text.replace(self._key, "***") if self._key and isinstance(text, str) else text

    def _send(self, method, path, payload, query):
        url = self.base + path + ("?" + urlencode(query) if query else "")
        shown = self.base_path + path
        headers = {"Authorization": "OAuth " + self._key, "Accept": "application/json"}
        data = None
        if payload is not None:
            data = json.dumps(payload).encode("utf-8")
            headers["Content-Type"] = "application/json"
        with self.pacer.slot():
            try:
                resp = open_url(url, data=data, headers=headers, method=method, timeout=self.timeout,
                                validate_certs=self.validate_certs, http_agent=USER_AGENT,
                                follow_redirects="none", use_netrc=False)
                answer = _Answer(resp.getcode(), resp.headers, resp.read())
            except HTTPError as exc:
                try:
                    body = exc.read()
                except (OSError, http.client.HTTPException):
                    body = b""
                answer = _Answer(exc.code, exc.headers, body)
            except SSLValidationError as exc:
                raise StatuspageError("TLS verification of %s failed: %s; fix the certificate, or set validate_certs=false "
                                      "for a test endpoint only" % (self.base, self.scrub(str(exc))), path=shown) from None
            except (URLError, UrlsConnectionError, socket.timeout, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", None) or exc
                answer = _Answer(error="%s: %s" % (type(exc).__name__, self.scrub(str(reason))))
        self.calls.append("%s %s -> %s" % (method, shown, answer.status if answer.status else "no answer"))
        return answer

    @staticmethod
    def _delay(answer, attempt):
        """Retry-After when the server sent one, else exponential backoff (1, 2, 4, ... s, capped)."""
        return retry_delay(answer.headers, attempt, MAX_RETRY_AFTER_S, MAX_BACKOFF_S)

    def request(self, method, path, payload=None, query=None, verify=None):
        """Send one API request; return its decoded JSON body.

        Retries 420, 429, 5xx answers and connection errors up to ``retries`` times. A write that failed
        ambiguously (5xx or a lost connection: it may have been applied) calls ``verify()`` before it is sent
        again; when that returns the result, the write took effect and is not repeated (no duplicate incident,
        no second notification).
        """
        attempt = 0
        while True:
            attempt += 1
            answer = self._send(method, path, payload, query)
            if answer.status is not None and 200 <= answer.status < 300:
                return self._decode(method, path, answer)
            retryable = answer.status is None or answer.status in (420, 429) or answer.status >= 500
            if not retryable or attempt > self.retries:
                raise self._failure(method, path, answer, attempt)
            self._sleep(self._delay(answer, attempt))
            if method != "GET" and answer.status not in (420, 429) and verify is not None:
                applied = verify()
                if applied is not None:
                    return applied

    def _body_text(self, answer):
        text = answer.body.decode("utf-8", errors="replace") if answer.body else ""
        text = self.scrub(text)
        return text if len(text) <= MAX_ERROR_BODY else text[:MAX_ERROR_BODY] + "..."

    def _decode(self, method, path, answer):
        if not answer.body or not answer.body.strip():
            return None
        try:
            return json.loads(answer.body.decode("utf-8"))
        except ValueError:
            raise StatuspageError("Statuspage API %s %s answered HTTP %s with a body that is not JSON: %s"
                                  % (method, self.base_path + path, answer.status, self._body_text(answer)),
                                  http_status=answer.status, path=self.base_path + path, response_body=self._body_text(answer))

    def _failure(self, method, path, answer, attempts):
        shown = self.base_path + path
        tries = " after %d attempts" % attempts if attempts > 1 else ""
        if answer.status is None:
            return StatuspageError("Statuspage API %s %s failed%s: %s; check api_url (%s) and the network, or raise "
                                   "retries or timeout" % (method, shown, tries, answer.error, self.base),
                                   http_status=None, path=shown, response_body=None, attempts=attempts)
        body = self._body_text(answer)
        hints = {
            401: "check api_key (the key is not shown) and that it belongs to this page",
            403: "the API key may not change this page; check its permissions",
            404: "check page_id (%s) and api_url (%s)" % (self.page_id, self.base),
            420: "rate limited: raise retries or lower requests_per_second",
            422: "the API rejected the request as invalid",
            429: "rate limited: raise retries or lower requests_per_second",
        }
        hint = hints.get(answer.status, "the API may be down: retry later or raise retries" if answer.status >= 500 else "")
        return StatuspageError("Statuspage API %s %s answered HTTP %s%s: %s%s"
                               % (method, shown, answer.status, tries, body or "(empty body)", "; " + hint if hint else ""),
                               http_status=answer.status, path=shown, response_body=body, attempts=attempts)

    # ---- endpoints --------------------------------------------------------------------------------------

    def _list(self, path, query=None, pages=MAX_LIST_PAGES):
        items = []
        for number in range(1, pages + 1):
            batch = self.request("GET", path, query=dict(query or {}, page=number, per_page=LIST_PAGE_SIZE)) or []
            items.extend(batch)
            if len(batch) < LIST_PAGE_SIZE:
                break
        return items

    def list_components(self):
        return self._list(self.page_path("components"))

    def list_incidents(self, which=None):
        """``which``: unresolved, scheduled, active_maintenance; None for the most recent incidents (newest first)."""
        if which is None:
            return self._list(self.page_path("incidents"), query={"limit": RECENT_LIMIT}, pages=1)
        return self._list(self.page_path("incidents", which))

    def find_incident(self, change_id, kind, recent=False):
        """The newest incident of ``kind`` carrying ``change_id``, and how many carried it.

        Looks among the still open ones (unresolved, or scheduled and active maintenances); ``recent`` looks among
        the most recent incidents instead, where resolved and completed ones are.
        """
        found = {}
        for which in ((None,) if recent else OPEN_LISTS[kind]):
            for incident in self.list_incidents(which):
                if change_id_of(incident) == change_id and incident.get("status") in KIND_STATUSES[kind]:
                    found.setdefault(incident["id"], incident)
        ordered = sorted(found.values(), key=lambda i: i.get("created_at") or "", reverse=True)
        return (ordered[0] if ordered else None), len(ordered)

    def get_incident(self, incident_id):
        return self.request("GET", self.page_path("incidents", incident_id))

    def create_incident(self, fields, change_id, kind):
        def verify():
            return self.find_incident(change_id, kind)[0]

        return self.request("POST", self.page_path("incidents"), {"incident": fields}, verify=verify)

    def update_incident(self, incident_id, fields, desired, components):
        def verify():
            current = self.get_incident(incident_id)
            # Applied when nothing is left to change (a body already posted is the newest update).
            return current if not plan_incident(current, desired, components)[0] else None

        return self.request("PATCH", self.page_path("incidents", incident_id), {"incident": fields}, verify=verify)

    def update_component(self, component_id, status):
        # Setting a status twice is harmless, so a failed attempt is simply sent again.
        return self.request("PATCH", self.page_path("components", component_id), {"component": {"status": status}})


# ---------------------------------------------------------------------------------------------- planning


def change_id_of(incident):
    metadata = incident.get("metadata")
    ours = metadata.get(METADATA_KEY) if isinstance(metadata, dict) else None
    return ours.get("change_id") if isinstance(ours, dict) else None


def change_metadata(change_id):
    # The API requires metadata values to be objects.
    return {METADATA_KEY: {"change_id": change_id}}


def newest_update_body(incident):
    updates = [u for u in incident.get("incident_updates") or [] if isinstance(u, dict)]
    if not updates:
        return ""
    # The API lists updates newest first; max() keeps the first of equal timestamps, so that order still wins.
    newest = max(updates, key=lambda u: u.get("created_at") or "")
    return newest.get("body") or ""


_ISO_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,6})\d*)?)?\s*(Z|z|[+-]\d{2}(?::?\d{2})?)?$")


def parse_time(value):
    """ISO-8601 with an explicit zone -> aware UTC datetime; ValueError (with the reason) otherwise."""
    match = _ISO_RE.match(str(value).strip())
    if not match:
        raise ValueError("not an ISO-8601 date and time")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    if zone is None:
        raise ValueError("no time zone")
    if zone in ("Z", "z"):
        offset = datetime.timedelta(0)
    else:
        digits = zone[1:].replace(":", "")
        offset = datetime.timedelta(hours=int(digits[:2]), minutes=int(digits[2:4] or 0))
        offset = -offset if zone[0] == "-" else offset
    moment = datetime.datetime(int(year), int(month), int(day), int(hour), int(minute), int(second or 0),
                               int((fraction or "0").ljust(6, "0")), tzinfo=datetime.timezone(offset))
    return moment.astimezone(datetime.timezone.utc)


def format_time(moment):
    """How the API writes times: UTC, milliseconds, trailing Z."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


def api_time(value):
    """A time as the API gave it -> aware datetime, or None when absent or unreadable."""
    try:
        return parse_time(value) if value else None
    except ValueError:
        return None


def _shown_time(value):
    moment = api_time(value)
    return format_time(moment) if moment else value


def incident_view(incident):
    """What a task controls of an incident, as diff and results show it."""
    view = {
        "name": incident.get("name"),
        "status": incident.get("status"),
        "body": newest_update_body(incident),
        "impact": incident.get("impact_override"),
        "components": {c.get("name"): c.get("status") for c in incident.get("components") or []},
    }
    if incident.get("status") in MAINTENANCE_STATUSES:
        view["scheduled_for"] = _shown_time(incident.get("scheduled_for"))
        view["scheduled_until"] = _shown_time(incident.get("scheduled_until"))
    return view


def _same_text(one, other):
    # YAML block scalars add a trailing newline the API may drop: compare without edge whitespace.
    return (one or "").strip() == (other or "").strip()


def plan_incident(current, desired, components):
    """Compare an incident (None: not there yet) with what is asked.

    ``desired`` may hold name, status, body, impact, scheduled_for/until (aware datetimes) and components
    (component id -> status); a missing or None entry means "leave as is". With ``body_once``, a body that any
    update already carries is not posted again (opening tasks run again after later updates). ``components`` are the page's
    components by id (their current status). Returns ``(fields, before, after)``: the API fields to send
    (empty: nothing to change) and the views before and after.
    """
    before = incident_view(current) if current else {}
    after = dict(before, components=dict(before.get("components", {}))) if current else {
        "name": None, "status": None, "body": "", "impact": None, "components": {}}
    fields = {}

    for option in ("name", "status"):
        wanted = desired.get(option)
        if wanted is not None and (current is None or wanted != current.get(option)):
            fields[option] = after[option] = wanted

    body = desired.get("body")
    posted = [before.get("body")]
    if current and desired.get("body_once"):
        posted = [u.get("body") for u in current.get("incident_updates") or [] if isinstance(u, dict)]
    # A status change posts a new incident update: the body goes with it, or the update is empty.
    if body is not None and (current is None or "status" in fields or not any(_same_text(body, p) for p in posted)):
        fields["body"] = after["body"] = body
    elif "status" in fields:
        after["body"] = ""

    impact = desired.get("impact")
    if impact is not None and (current is None or impact != current.get("impact_override")):
        fields["impact_override"] = after["impact"] = impact

    for option in ("scheduled_for", "scheduled_until"):
        wanted = desired.get(option)
        if wanted is None:
            continue
        if current is None or api_time(current.get(option)) != wanted:
            fields[option] = after[option] = format_time(wanted)

    attached = {c.get("id") for c in (current or {}).get("components") or []}
    changing = {}
    for component_id, status in (desired.get("components") or {}).items():
        page_status = components.get(component_id, {}).get("status")
        if component_id not in attached or page_status != status:
            changing[component_id] = status
        after["components"][components.get(component_id, {}).get("name", component_id)] = status
    if changing:
        fields["components"] = changing
    return fields, before, after


def plan_components(desired, components):
    """``desired``: component id -> status. Returns (changes by id, before by name, after by name)."""
    changes, before, after = {}, {}, {}
    for component_id, status in desired.items():
        component = components[component_id]
        before[component["name"]] = component.get("status")
        after[component["name"]] = status
        if component.get("status") != status:
            changes[component_id] = status
    return changes, before, after


def resolve_components(wanted, page_components):
    """Component names -> ids, keeping the asked status; unknown names fail listing the known ones."""
    by_name = {}
    for component in page_components:
        if not component.get("group"):
            by_name.setdefault(component.get("name"), component["id"])
    unknown = sorted(name for name in wanted if name not in by_name)
    if unknown:
        raise StatuspageError(
            "components: unknown component name(s) %s on this page; known names: %s (names are case-sensitive)"
            % (", ".join(repr(n) for n in unknown), ", ".join(repr(n) for n in sorted(by_name))),
            unknown=unknown, known=sorted(by_name))
    return {by_name[name]: status for name, status in wanted.items()}


# ---------------------------------------------------------------------------------------------- options

STATES = ("incident_open", "incident_update", "incident_resolved", "maintenance_scheduled",
          "maintenance_in_progress", "maintenance_completed", "component")
# Options that only mean something for some states: giving them elsewhere is a mistake worth stopping for.
ONLY_FOR = {
    "incident_status": ("incident_open", "incident_update"),
    "scheduled_for": ("maintenance_scheduled", "maintenance_in_progress", "maintenance_completed"),
    "scheduled_until": ("maintenance_scheduled", "maintenance_in_progress", "maintenance_completed"),
    "name": STATES[:-1],
    "body": STATES[:-1],
    "impact": STATES[:-1],
    "change_id": STATES[:-1],
}
REQUIRED_FOR = {
    "incident_open": ("change_id", "name"),
    "maintenance_scheduled": ("change_id", "name", "scheduled_for", "scheduled_until"),
    "component": ("components",),
}
EXAMPLE_VALUES = {
    "change_id": "'{{ release_run_id }}-incident'",
    "name": "'Release v1.2.3'",
    "scheduled_for": "'2031-03-01T01:00:00Z'",
    "scheduled_until": "'2031-03-01T02:00:00Z'",
    "components": "{'API': 'operational'}",
}


def check_update_options(params):
    """Check the statuspage_update options against each other before any request.

    Returns the parsed scheduled times ``{"scheduled_for": datetime or None, "scheduled_until": ...}``.
    Raises StatuspageError naming the option, its value and the fix.
    """
    state = params["state"]
    for option, states in ONLY_FOR.items():
        if params.get(option) is not None and state not in states:
            raise StatuspageError("%s=%r does not apply to state=%s; it is used with state %s. Remove it from the task"
                                  % (option, params[option], state, " or ".join(states)))
    required = REQUIRED_FOR.get(state, ("change_id",))
    for option in required:
        value = params.get(option)
        if value is None or (isinstance(value, str) and not value.strip()) or value == {}:
            raise StatuspageError("state=%s needs %s (got %r); add for example %s: %s"
                                  % (state, option, value, option, EXAMPLE_VALUES.get(option, "...")))
    if params.get("name") is not None and len(params["name"]) > 255:
        raise StatuspageError("name is %d characters long; Statuspage allows 255 at most: shorten it" % len(params["name"]))
    for name, status in (params.get("components") or {}).items():
        if status not in COMPONENT_STATUSES:
            raise StatuspageError("components: %r has status %r, which is not a component status; use one of %s"
                                  % (name, status, ", ".join(COMPONENT_STATUSES)))
    times = {}
    for option in ("scheduled_for", "scheduled_until"):
        value = params.get(option)
        try:
            times[option] = parse_time(value) if value is not None else None
        except ValueError as exc:
            raise StatuspageError("%s=%r is not a usable time (%s); give ISO-8601 with a zone, for example "
                                  "'2031-03-01T01:00:00Z' (for a naive UTC time, append Z)" % (option, value, exc)) from None
    check_window(times["scheduled_for"], times["scheduled_until"])
    return times


def check_window(starts, ends):
    if starts is not None and ends is not None and ends <= starts:
        raise StatuspageError("scheduled_until (%s) must be after scheduled_for (%s); fix the maintenance window"
                              % (format_time(ends), format_time(starts)))
