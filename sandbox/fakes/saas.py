"""Local stand-in for Atlassian Statuspage (REST API v1) and Slack incoming webhooks.

The release automation talks to two SaaS APIs that tests and the demo cannot
reach.  This server imitates their public contracts closely enough that the
client code under test cannot tell the difference, and it records every
request it receives so tests can assert on what the client actually sent.

Two listeners run in one process:

* the Statuspage port serves ``/v1/pages/{page_id}/...`` (auth, rate limit,
  incidents, incident updates, scheduled maintenances, components);
* the webhook port serves ``POST /hooks/<name>`` like a Slack incoming webhook.

Both ports also serve ``/_sandbox/...`` inspection endpoints (no auth) that are
NOT part of any public API: recorded requests, fault injection, reset, state.

Standard library only, so it runs anywhere Python 3.11 does.  See README.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import hashlib
import ipaddress
import json
import math
import os
import re
import secrets
import signal
import socket
import socketserver
import string
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlsplit

# --------------------------------------------------------------------------
# Contract constants (values taken from the public Statuspage v1 reference)
# --------------------------------------------------------------------------

REALTIME_STATUSES = ("investigating", "identified", "monitoring", "resolved")
SCHEDULED_STATUSES = ("scheduled", "in_progress", "verifying", "completed")
INCIDENT_STATUSES = REALTIME_STATUSES + SCHEDULED_STATUSES
IMPACTS = ("none", "maintenance", "minor", "major", "critical")
COMPONENT_STATUSES = (
    "operational",
    "under_maintenance",
    "degraded_performance",
    "partial_outage",
    "major_outage",
)
# Statuspage derives an incident's impact from its worst affected component
# unless impact_override is set; this is that mapping.
IMPACT_FROM_COMPONENT = {
    "major_outage": "critical",
    "partial_outage": "major",
    "degraded_performance": "minor",
}
IMPACT_RANK = {name: rank for rank, name in enumerate(IMPACTS)}
SEED_COMPONENTS = ("API", "Web App", "Worker", "Database")
INCIDENT_BOOL_FIELDS = (
    "deliver_notifications",
    "scheduled_remind_prior",
    "scheduled_auto_in_progress",
    "scheduled_auto_completed",
    "auto_transition_to_maintenance_state",
    "auto_transition_to_operational_state",
    "auto_transition_deliver_notifications_at_start",
    "auto_transition_deliver_notifications_at_end",
)
FAULT_STATUSES = (429, 500, 502, 503, 504)
ID_ALPHABET = string.ascii_lowercase + string.digits
MAX_BODY_BYTES = 1 << 20  # a status update is tiny; refuse anything absurd
MAX_RECORDS_PER_PORT = 5000  # keeps the state file (rewritten per request) bounded
STATE_VERSION = 1
STATUSPAGE, WEBHOOK = "statuspage", "webhook"

# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


def iso(moment: dt.datetime) -> str:
    """Format like the real API: UTC, millisecond precision, trailing Z."""
    moment = moment.astimezone(dt.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def now_iso() -> str:
    return iso(dt.datetime.now(dt.timezone.utc))


def random_id() -> str:
    return "".join(secrets.choice(ID_ALPHABET) for _i in range(12))


def component_id_for(name: str) -> str:
    # Deterministic so that playbooks and tests can hard-code component ids
    # and keep them across restarts and resets.
    return hashlib.sha1(name.encode("utf-8")).hexdigest()[:12]


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class BodyError(Exception):
    """The request body could not be read (bad framing or too large)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


class ApiError(Exception):
    """Raised by handlers; turned into ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "application/json; charset=utf-8"
    headers: dict = field(default_factory=dict)


def json_response(status: int, payload, headers: dict | None = None) -> Response:
    body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    return Response(status, body, headers=headers or {})


def text_response(status: int, text: str) -> Response:
    return Response(status, text.encode("utf-8"), "text/plain; charset=utf-8")


def error_response(status: int, message: str, headers: dict | None = None) -> Response:
    return json_response(status, {"error": message}, headers)


def parse_rails_form(text: str) -> dict:
    """Parse ``incident[name]=x&incident[component_ids][]=a`` style bodies.

    The real API is a Rails app and its own docs show curl examples with this
    encoding, so clients that use form encoding must keep working here.
    """
    result: dict = {}
    for key, value in parse_qsl(text, keep_blank_values=True):
        match = re.fullmatch(r"([^\[\]]+)((?:\[[^\[\]]*\])*)", key)
        if not match:
            continue
        segments = [match.group(1)] + re.findall(r"\[([^\[\]]*)\]", match.group(2))
        append = segments[-1] == "" and len(segments) > 1
        if append:
            segments.pop()
        node = result
        for segment in segments[:-1]:
            child = node.setdefault(segment, {})
            if not isinstance(child, dict):
                break
            node = child
        else:
            if append:
                node.setdefault(segments[-1], [])
                if isinstance(node[segments[-1]], list):
                    node[segments[-1]].append(value)
            else:
                node[segments[-1]] = value
    return result


def as_bool(field_name: str, value) -> bool:
    # Form-encoded bodies deliver booleans as strings; JSON delivers real ones.
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "false", "0"):
        return value.lower() in ("true", "1")
    raise ApiError(422, f"{field_name} must be a boolean")


def as_time(field_name: str, value) -> str | None:
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ApiError(422, f"{field_name} is not a valid ISO-8601 timestamp")
    try:
        parsed = dt.datetime.fromisoformat(value.strip())
    except ValueError:
        raise ApiError(422, f"{field_name} is not a valid ISO-8601 timestamp") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return iso(parsed)


def paginate(items: list, query: dict) -> list:
    """Apply the list endpoints' ``limit``/``per_page``/``page`` parameters."""

    def int_param(name: str, default: int) -> int:
        try:
            return max(1, int(query.get(name, [default])[-1]))
        except (TypeError, ValueError):
            return default

    per_page = int_param("per_page", int_param("limit", 100))
    page = int_param("page", 1)
    start = (page - 1) * per_page
    return items[start:start + per_page]


# --------------------------------------------------------------------------
# Store: all mutable state behind one lock, persisted atomically
# --------------------------------------------------------------------------


class Store:
    """Statuspage data, recorded requests, faults and rate limiters.

    One re-entrant lock guards everything: traffic is tiny, and a single lock
    makes every request atomic with respect to the recordings tests read.
    """

    def __init__(self, page_id: str, keys: list[str], rate_per_s: float, state_file: str | None,
                 rate_window_s: float = 60.0):
        self.lock = threading.RLock()
        self.page_id = page_id
        self.keys = set(keys)
        # As Statuspage documents it: rate_per_s "as measured on a rolling window" of rate_window_s seconds.
        self.rate_window = rate_window_s
        self.rate_budget = max(1, int(rate_per_s * rate_window_s + 1e-9))
        if self.rate_budget == 1:
            self.rate_window = 1.0 / rate_per_s
        self.state_file = state_file
        self.records: dict[str, list] = {STATUSPAGE: [], WEBHOOK: []}
        self.next_seq = {STATUSPAGE: 1, WEBHOOK: 1}
        self.faults: dict[str, list] = {STATUSPAGE: [], WEBHOOK: []}
        # key sha256 -> time.monotonic() of the requests accepted in the current window, oldest first.
        self.accepted: dict[str, collections.deque] = {}
        created = now_iso()
        self.page = {
            "id": page_id,
            "created_at": created,
            "updated_at": created,
            "name": "Runbook Sandbox",
            "page_description": "Local Statuspage stand-in for runbook.release tests",
            "headline": None,
            "branding": "basic",
            "subdomain": page_id,
            "domain": None,
            "url": "https://status.sandbox.invalid",
            "support_url": None,
            "hidden_from_search": True,
            "allow_page_subscribers": True,
            "allow_incident_subscribers": True,
            "allow_email_subscribers": True,
            "allow_sms_subscribers": False,
            "allow_rss_atom_feeds": True,
            "allow_webhook_subscribers": True,
            "notifications_from_email": None,
            "notifications_email_footer": None,
            "activity_score": 0,
            "twitter_username": None,
            "viewers_must_be_team_members": False,
            "ip_restrictions": None,
            "city": None,
            "state": None,
            "country": None,
            "time_zone": "Etc/UTC",
        }
        self.components: dict[str, dict] = {}
        self.incidents: dict[str, dict] = {}  # insertion order == creation order
        self.seed_components()

    # ---- seeding / reset ----------------------------------------------

    def seed_components(self) -> None:
        now = now_iso()
        self.components = {}
        for position, name in enumerate(SEED_COMPONENTS, start=1):
            cid = component_id_for(name)
            self.components[cid] = {
                "id": cid,
                "page_id": self.page_id,
                "group_id": None,
                "name": name,
                "description": None,
                "position": position,
                "status": "operational",
                "showcase": True,
                "group": False,
                "created_at": now,
                "updated_at": now,
                "only_show_if_degraded": False,
                "automation_email": f"component+{cid}@notifications.statuspage.io",
                "start_date": now[:10],
            }

    def reset(self) -> None:
        with self.lock:
            self.incidents = {}
            self.seed_components()
            self.accepted = {}
            for port in (STATUSPAGE, WEBHOOK):
                self.records[port] = []
                self.faults[port] = []
            self.save()

    # ---- persistence ----------------------------------------------------

    def snapshot(self) -> dict:
        return {
            "version": STATE_VERSION,
            "page": self.page,
            "components": list(self.components.values()),
            "incidents": list(self.incidents.values()),
            "records": self.records,
            "next_seq": self.next_seq,
        }

    def save(self) -> None:
        """Write the state file atomically (temp file in the same dir + os.replace).

        A reader (a test, or this server after a crash/restart) therefore sees
        either the old or the new file, never a torn one.  No fsync: we guard
        against process death, not power loss, and fsync per request is slow.
        """
        if not self.state_file:
            return
        with self.lock:
            data = json.dumps(self.snapshot(), indent=1, ensure_ascii=False)
            directory = os.path.dirname(os.path.abspath(self.state_file))
            fd, tmp_path = tempfile.mkstemp(prefix=".saas-state-", suffix=".tmp", dir=directory)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(data)
                os.replace(tmp_path, self.state_file)
            except BaseException:
                if os.path.exists(tmp_path):
                    os.unlink(tmp_path)
                raise

    def load(self) -> None:
        with open(self.state_file, encoding="utf-8") as handle:
            data = json.load(handle)
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError("unsupported state file format")
        if data["page"]["id"] != self.page_id:
            raise ValueError(f"state file belongs to page {data['page']['id']!r}, not {self.page_id!r}")
        self.page = data["page"]
        self.components = {c["id"]: c for c in data["components"]}
        self.incidents = {i["id"]: i for i in data["incidents"]}
        for port in (STATUSPAGE, WEBHOOK):
            self.records[port] = list(data["records"].get(port, []))
            self.next_seq[port] = int(data["next_seq"].get(port, 1))

    # ---- recordings, faults, rate limit ----------------------------------

    def record(self, port: str, entry: dict) -> None:
        with self.lock:
            entry["seq"] = self.next_seq[port]
            self.next_seq[port] += 1
            records = self.records[port]
            records.append(entry)
            del records[:-MAX_RECORDS_PER_PORT]
            try:
                self.save()
            except OSError as exc:
                # Still answer the client; the in-memory records stay correct.
                sys.stderr.write(f"[saas-fake] cannot write state file: {exc}\n")

    def add_fault(self, port: str, status: int, count: int, path_prefix: str | None) -> dict:
        with self.lock:
            fault = {"status": status, "remaining": count, "path_prefix": path_prefix}
            self.faults[port].append(fault)
            return dict(fault)

    def take_fault(self, port: str, path: str) -> int | None:
        """Consume one matching pending fault (first registered wins)."""
        with self.lock:
            for fault in self.faults[port]:
                prefix = fault["path_prefix"]
                if prefix is None or path.startswith(prefix):
                    fault["remaining"] -= 1
                    if fault["remaining"] <= 0:
                        self.faults[port].remove(fault)
                    return fault["status"]
        return None

    def allow_request(self, key_hash: str) -> float:
        """Per-key rolling window: 0 when the request is accepted, else the seconds until one would be.

        Rejected requests are not counted.
        """
        with self.lock:
            now = time.monotonic()
            window = self.accepted.setdefault(key_hash, collections.deque())
            while window and window[0] <= now - self.rate_window:
                window.popleft()
            if len(window) >= self.rate_budget:
                return max(window[0] + self.rate_window - now, 0.001)
            window.append(now)
            return 0.0


# --------------------------------------------------------------------------
# HTTP request model
# --------------------------------------------------------------------------


@dataclass
class Request:
    method: str
    path: str
    query: dict  # name -> list of values, as parse_qs returns
    headers: dict  # lower-cased name -> value
    raw_body: bytes
    # Filled in by the Statuspage auth step; only ever held in memory.
    presented_key: str | None = None
    auth_ok: bool | None = None
    injected_fault: bool = False

    def text(self) -> str:
        return self.raw_body.decode("utf-8", errors="replace")


def route(method: str, pattern: str, handler):
    return method, re.compile(pattern), handler


def dispatch(routes, method: str, path: str):
    """Return (handler, params, allowed_methods) for the first matching route."""
    allowed = []
    for route_method, pattern, handler in routes:
        match = pattern.fullmatch(path)
        if match:
            if route_method == method:
                return handler, match.groupdict(), allowed
            allowed.append(route_method)
    return None, {}, allowed


def parse_api_body(req: Request) -> dict:
    """Decode a Statuspage request body.

    Like the real API, a JSON body is accepted whatever the Content-Type says;
    a form-encoded body (Rails-style nested keys) is accepted too.
    """
    text = req.text().strip()
    if not text:
        return {}
    content_type = req.headers.get("content-type", "")
    if "application/x-www-form-urlencoded" in content_type and not text.startswith(("{", "[")):
        return parse_rails_form(text)
    try:
        payload = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"Malformed JSON in request body: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "Request body must be a JSON object")
    return payload


def unwrap(payload: dict, root: str) -> dict:
    # Rails' params.require(:incident) answers 400 when the wrapper is absent.
    inner = payload.get(root)
    if not isinstance(inner, dict) or not inner:
        raise ApiError(400, f"param is missing or the value is empty: {root}")
    return inner


# --------------------------------------------------------------------------
# Statuspage domain logic
# --------------------------------------------------------------------------


class Statuspage:
    """Incidents, incident updates and components of the single seeded page."""

    def __init__(self, store: Store):
        self.store = store

    # ---- rendering --------------------------------------------------------

    def render_incident(self, incident: dict) -> dict:
        # Stored incidents keep their component ids privately; the API shows
        # the components' *current* objects, as Statuspage does.
        public = {k: v for k, v in incident.items() if not k.startswith("_")}
        public["components"] = [
            dict(self.store.components[cid])
            for cid in incident["_component_ids"]
            if cid in self.store.components
        ]
        public["incident_updates"] = [dict(u) for u in incident["incident_updates"]]
        return public

    def find_incident(self, incident_id: str) -> dict:
        incident = self.store.incidents.get(incident_id)
        if incident is None:
            raise ApiError(404, "Not found")
        return incident

    def find_component(self, component_id: str) -> dict:
        component = self.store.components.get(component_id)
        if component is None:
            raise ApiError(404, "Not found")
        return component

    # ---- validation -------------------------------------------------------

    def validate_incident_input(self, fields: dict, existing: dict | None) -> dict:
        """Check and normalise the writable incident fields present in ``fields``.

        Unknown fields are ignored, as Rails strong parameters do.
        """
        changes: dict = {}
        if "name" in fields or existing is None:
            name = fields.get("name")
            if not isinstance(name, str) or not name.strip():
                raise ApiError(422, "name can't be blank")
            if len(name) > 255:
                raise ApiError(422, "name is too long (maximum is 255 characters)")
            changes["name"] = name

        if fields.get("status") not in (None, ""):
            status = fields["status"]
            if status not in INCIDENT_STATUSES:
                raise ApiError(422, f"status is not included in the list ({', '.join(INCIDENT_STATUSES)})")
            if existing is not None:
                was_scheduled = existing["status"] in SCHEDULED_STATUSES
                if was_scheduled != (status in SCHEDULED_STATUSES):
                    allowed = SCHEDULED_STATUSES if was_scheduled else REALTIME_STATUSES
                    raise ApiError(422, f"status must be one of {', '.join(allowed)} for this incident")
            changes["status"] = status

        if "impact_override" in fields:
            impact = fields["impact_override"]
            if impact in ("", None):
                changes["impact_override"] = None
            elif impact not in IMPACTS:
                raise ApiError(422, f"impact_override is not included in the list ({', '.join(IMPACTS)})")
            else:
                changes["impact_override"] = impact

        if fields.get("body") is not None:
            if not isinstance(fields["body"], str):
                raise ApiError(422, "body must be a string")
            changes["body"] = fields["body"]

        if "component_ids" in fields:
            ids = fields["component_ids"] or []
            if isinstance(ids, str):
                ids = [ids]
            if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
                raise ApiError(422, "component_ids must be a list of component ids")
            unknown = [i for i in ids if i not in self.store.components]
            if unknown:
                raise ApiError(422, f"component_ids contains unknown component(s): {', '.join(unknown)}")
            changes["component_ids"] = list(dict.fromkeys(ids))

        if fields.get("components") is not None:
            mapping = fields["components"]
            if not isinstance(mapping, dict):
                raise ApiError(422, "components must be an object mapping component id to status")
            for cid, status in mapping.items():
                if cid not in self.store.components:
                    raise ApiError(422, f"components contains unknown component: {cid}")
                if status not in COMPONENT_STATUSES:
                    raise ApiError(
                        422,
                        f"components[{cid}] status is not included in the list ({', '.join(COMPONENT_STATUSES)})",
                    )
            changes["components"] = dict(mapping)

        if "metadata" in fields:
            metadata = fields["metadata"]
            if metadata is None:
                metadata = {}
            if not isinstance(metadata, dict):
                raise ApiError(422, "metadata must be a JSON object")
            changes["metadata"] = metadata

        for name in INCIDENT_BOOL_FIELDS:
            if fields.get(name) is not None:
                changes[name] = as_bool(name, fields[name])

        for name in ("scheduled_for", "scheduled_until"):
            if name in fields:
                changes[name] = as_time(name, fields[name])
        return changes

    @staticmethod
    def check_schedule(incident: dict) -> None:
        if incident["status"] not in SCHEDULED_STATUSES:
            return
        if not incident["scheduled_for"]:
            raise ApiError(422, "scheduled_for can't be blank")
        if not incident["scheduled_until"]:
            raise ApiError(422, "scheduled_until can't be blank")
        if incident["scheduled_until"] <= incident["scheduled_for"]:  # same format: text order == time order
            raise ApiError(422, "scheduled_until must be after scheduled_for")

    # ---- mutation -----------------------------------------------------------

    def apply_component_statuses(self, mapping: dict, now: str) -> list:
        """Set component statuses; return Statuspage-style affected_components."""
        affected = []
        for cid, new_status in mapping.items():
            component = self.store.components[cid]
            old_status = component["status"]
            if old_status != new_status:
                component["status"] = new_status
                component["updated_at"] = now
            affected.append({"code": cid, "name": component["name"], "old_status": old_status, "new_status": new_status})
        return affected

    def compute_impact(self, incident: dict) -> str:
        if incident["impact_override"]:
            return incident["impact_override"]
        if incident["status"] in SCHEDULED_STATUSES:
            return "maintenance"
        worst = "none"
        for cid in incident["_component_ids"]:
            component = self.store.components.get(cid)
            impact = IMPACT_FROM_COMPONENT.get(component["status"], "none") if component else "none"
            if IMPACT_RANK[impact] > IMPACT_RANK[worst]:
                worst = impact
        return worst

    def apply_incident_changes(self, incident: dict, changes: dict, now: str, creating: bool) -> None:
        old_status = None if creating else incident["status"]
        for name in ("name", "status", "impact_override", "metadata", "scheduled_for", "scheduled_until"):
            if name in changes:
                incident[name] = changes[name]
        for name in INCIDENT_BOOL_FIELDS:
            if name in changes and name != "deliver_notifications":
                incident[name] = changes[name]
        self.check_schedule(incident)

        status_changed = incident["status"] != old_status
        component_statuses = dict(changes.get("components", {}))
        ids = changes.get("component_ids", incident["_component_ids"])
        ids = list(dict.fromkeys(list(ids) + list(component_statuses)))
        incident["_component_ids"] = ids

        # Maintenance auto transitions move the attached components, unless
        # the request set their status explicitly.
        if status_changed and incident["status"] == "in_progress" and incident["auto_transition_to_maintenance_state"]:
            for cid in ids:
                component_statuses.setdefault(cid, "under_maintenance")
        if status_changed and incident["status"] == "completed" and incident["auto_transition_to_operational_state"]:
            for cid in ids:
                component_statuses.setdefault(cid, "operational")
        affected = self.apply_component_statuses(component_statuses, now)

        if status_changed:
            if incident["status"] == "monitoring" and not incident["monitoring_at"]:
                incident["monitoring_at"] = now
            if incident["status"] in ("resolved", "completed"):
                incident["resolved_at"] = now
            elif old_status in ("resolved", "completed"):
                incident["resolved_at"] = None  # reopened
        incident["impact"] = self.compute_impact(incident)
        incident["updated_at"] = now

        # Statuspage adds an incident update whenever the status moves or a
        # message is posted; creation always produces the first one.
        if creating or status_changed or "body" in changes:
            incident["incident_updates"].insert(0, {
                "id": random_id(),
                "incident_id": incident["id"],
                "status": incident["status"],
                "body": changes.get("body", ""),
                "created_at": now,
                "updated_at": now,
                "display_at": now,
                "affected_components": affected,
                "deliver_notifications": changes.get("deliver_notifications", True),
                "custom_tweet": None,
                "tweet_id": None,
                "twitter_updated_at": None,
                "wants_twitter_update": False,
            })

    # ---- handlers: page and components ----------------------------------

    def get_page(self, req: Request, page_id: str) -> Response:
        return json_response(200, self.store.page)

    def list_components(self, req: Request, page_id: str) -> Response:
        ordered = sorted(self.store.components.values(), key=lambda c: c["position"])
        return json_response(200, paginate(ordered, req.query))

    def get_component(self, req: Request, page_id: str, component_id: str) -> Response:
        return json_response(200, self.find_component(component_id))

    def update_component(self, req: Request, page_id: str, component_id: str) -> Response:
        component = self.find_component(component_id)
        fields = unwrap(parse_api_body(req), "component")
        changes = {}
        if "name" in fields:
            if not isinstance(fields["name"], str) or not fields["name"].strip():
                raise ApiError(422, "name can't be blank")
            changes["name"] = fields["name"]
        if "description" in fields:
            if fields["description"] is not None and not isinstance(fields["description"], str):
                raise ApiError(422, "description must be a string")
            changes["description"] = fields["description"]
        if "status" in fields:
            if fields["status"] not in COMPONENT_STATUSES:
                raise ApiError(422, f"status is not included in the list ({', '.join(COMPONENT_STATUSES)})")
            changes["status"] = fields["status"]
        for name in ("only_show_if_degraded", "showcase"):
            if fields.get(name) is not None:
                changes[name] = as_bool(name, fields[name])
        if fields.get("group_id") not in (None, ""):
            # The seeded page has no component groups, so no group id can be valid.
            raise ApiError(422, "group_id does not refer to a component group")
        if "start_date" in fields:
            try:
                changes["start_date"] = dt.date.fromisoformat(str(fields["start_date"])).isoformat()
            except ValueError:
                raise ApiError(422, "start_date is not a valid date (YYYY-MM-DD)") from None
        component.update(changes)
        component["updated_at"] = now_iso()
        return json_response(200, component)

    # ---- handlers: incidents --------------------------------------------

    def _incident_list(self, req: Request, keep) -> Response:
        newest_first = reversed(list(self.store.incidents.values()))
        return json_response(200, paginate([self.render_incident(i) for i in newest_first if keep(i)], req.query))

    def list_incidents(self, req: Request, page_id: str) -> Response:
        needle = req.query.get("q", [""])[-1].lower()

        def matches(incident: dict) -> bool:
            haystack = [incident["name"]] + [u["body"] or "" for u in incident["incident_updates"]]
            return not needle or any(needle in text.lower() for text in haystack)

        return self._incident_list(req, matches)

    def list_unresolved(self, req: Request, page_id: str) -> Response:
        return self._incident_list(req, lambda i: i["status"] not in ("resolved", "completed", "scheduled"))

    def list_scheduled(self, req: Request, page_id: str) -> Response:
        return self._incident_list(req, lambda i: i["status"] == "scheduled")

    def list_upcoming(self, req: Request, page_id: str) -> Response:
        return self._incident_list(req, lambda i: i["status"] == "scheduled")

    def list_active_maintenance(self, req: Request, page_id: str) -> Response:
        return self._incident_list(req, lambda i: i["status"] in ("in_progress", "verifying"))

    def create_incident(self, req: Request, page_id: str) -> Response:
        fields = unwrap(parse_api_body(req), "incident")
        changes = self.validate_incident_input(fields, existing=None)
        if "status" not in changes:
            # Scheduling data without a status means a scheduled maintenance.
            changes["status"] = "scheduled" if changes.get("scheduled_for") else "investigating"
        now = now_iso()
        incident = {
            "id": random_id(),
            "name": changes["name"],
            "status": changes["status"],
            "impact": "none",
            "impact_override": None,
            "created_at": now,
            "updated_at": now,
            "monitoring_at": None,
            "resolved_at": None,
            "started_at": now,
            "shortlink": f"http://stspg.io/{secrets.token_hex(4)}",
            "scheduled_for": None,
            "scheduled_until": None,
            "scheduled_remind_prior": False,
            "scheduled_reminded_at": None,
            "scheduled_auto_in_progress": False,
            "scheduled_auto_completed": False,
            "auto_transition_to_maintenance_state": False,
            "auto_transition_to_operational_state": False,
            "auto_transition_deliver_notifications_at_start": False,
            "auto_transition_deliver_notifications_at_end": False,
            "page_id": self.store.page_id,
            "metadata": {},
            "postmortem_body": None,
            "postmortem_body_last_updated_at": None,
            "postmortem_ignored": False,
            "postmortem_published_at": None,
            "postmortem_notified_subscribers": False,
            "postmortem_notified_twitter": False,
            "incident_updates": [],
            "_component_ids": [],
        }
        self.apply_incident_changes(incident, changes, now, creating=True)
        self.store.incidents[incident["id"]] = incident
        return json_response(201, self.render_incident(incident))

    def get_incident(self, req: Request, page_id: str, incident_id: str) -> Response:
        return json_response(200, self.render_incident(self.find_incident(incident_id)))

    def update_incident(self, req: Request, page_id: str, incident_id: str) -> Response:
        incident = self.find_incident(incident_id)
        fields = unwrap(parse_api_body(req), "incident")
        changes = self.validate_incident_input(fields, existing=incident)
        # Validate against a copy so a 422 leaves the stored incident untouched.
        candidate = json.loads(json.dumps(incident))
        for name in ("scheduled_for", "scheduled_until", "status"):
            if name in changes:
                candidate[name] = changes[name]
        self.check_schedule(candidate)
        self.apply_incident_changes(incident, changes, now_iso(), creating=False)
        return json_response(200, self.render_incident(incident))

    def delete_incident(self, req: Request, page_id: str, incident_id: str) -> Response:
        incident = self.find_incident(incident_id)
        del self.store.incidents[incident_id]
        return json_response(200, self.render_incident(incident))

    def update_incident_update(self, req: Request, page_id: str, incident_id: str, incident_update_id: str) -> Response:
        incident = self.find_incident(incident_id)
        update = next((u for u in incident["incident_updates"] if u["id"] == incident_update_id), None)
        if update is None:
            raise ApiError(404, "Not found")
        fields = unwrap(parse_api_body(req), "incident_update")
        changes = {}
        if "body" in fields:
            if not isinstance(fields["body"], str):
                raise ApiError(422, "body must be a string")
            changes["body"] = fields["body"]
        if "display_at" in fields:
            changes["display_at"] = as_time("display_at", fields["display_at"])
        for name in ("deliver_notifications", "wants_twitter_update"):
            if fields.get(name) is not None:
                changes[name] = as_bool(name, fields[name])
        if "custom_tweet" in fields:
            changes["custom_tweet"] = fields["custom_tweet"]
        now = now_iso()
        update.update(changes)
        update["updated_at"] = now
        incident["updated_at"] = now
        return json_response(200, update)

    def routes(self):
        page = r"/v1/pages/(?P<page_id>[^/]+)"
        component = page + r"/components/(?P<component_id>[^/]+)"
        incident = page + r"/incidents/(?P<incident_id>[^/]+)"
        update = incident + r"/incident_updates/(?P<incident_update_id>[^/]+)"
        # Order matters: the fixed /incidents/<word> lists come before /incidents/{id}.
        return [
            route("GET", page, self.get_page),
            route("GET", page + r"/components", self.list_components),
            route("GET", component, self.get_component),
            route("PATCH", component, self.update_component),
            route("PUT", component, self.update_component),
            route("GET", page + r"/incidents", self.list_incidents),
            route("POST", page + r"/incidents", self.create_incident),
            route("GET", page + r"/incidents/unresolved", self.list_unresolved),
            route("GET", page + r"/incidents/scheduled", self.list_scheduled),
            route("GET", page + r"/incidents/upcoming", self.list_upcoming),
            route("GET", page + r"/incidents/active_maintenance", self.list_active_maintenance),
            route("GET", incident, self.get_incident),
            route("PATCH", incident, self.update_incident),
            route("PUT", incident, self.update_incident),
            route("DELETE", incident, self.delete_incident),
            route("PATCH", update, self.update_incident_update),
            route("PUT", update, self.update_incident_update),
        ]


# --------------------------------------------------------------------------
# Port applications: request -> response (faults, auth, limits, routing)
# --------------------------------------------------------------------------


class StatuspageApp:
    port_name = STATUSPAGE

    def __init__(self, store: Store):
        self.store = store
        self.statuspage = Statuspage(store)
        self.routes = self.statuspage.routes()

    def authenticate(self, req: Request) -> None:
        """Find the presented key (header first, then ?api_key) and check it."""
        header = req.headers.get("authorization")
        if header:
            scheme, _sep, credential = header.strip().partition(" ")
            req.presented_key = credential.strip() or None
            req.auth_ok = scheme.lower() == "oauth" and req.presented_key in self.store.keys
        elif req.query.get("api_key"):
            req.presented_key = req.query["api_key"][-1]
            req.auth_ok = req.presented_key in self.store.keys
        else:
            req.auth_ok = False

    def handle(self, req: Request) -> Response:
        self.authenticate(req)  # always, so the record says whether auth passed
        fault = self.store.take_fault(STATUSPAGE, req.path)
        if fault is not None:
            req.injected_fault = True
            return statuspage_fault_response(fault)
        if req.path != "/v1" and not req.path.startswith("/v1/"):
            return error_response(404, "Not found")
        if not req.auth_ok:
            return error_response(401, "Could not authenticate")
        wait = self.store.allow_request(sha256_hex(req.presented_key))
        if wait:
            return error_response(429, "Rate limit exceeded", {"Retry-After": str(max(1, math.ceil(wait)))})

        handler, params, allowed = dispatch(self.routes, req.method, req.path)
        if handler is None:
            if allowed:
                return error_response(405, "Method not allowed", {"Allow": ", ".join(allowed)})
            return error_response(404, "Not found")
        if params.get("page_id") != self.store.page_id:
            return error_response(404, "Not found")
        try:
            with self.store.lock:
                return handler(req, **params)
        except ApiError as exc:
            return error_response(exc.status, exc.message)


def statuspage_fault_response(status: int) -> Response:
    if status == 429:
        return error_response(429, "Rate limit exceeded", {"Retry-After": "1"})
    return error_response(status, HTTPStatus(status).phrase)


class WebhookApp:
    """Slack incoming webhook: ``ok`` or a short plain-text error code."""

    port_name = WEBHOOK
    HOOK_PATH = re.compile(r"/hooks/[A-Za-z0-9_-]+")

    def __init__(self, store: Store):
        self.store = store

    def handle(self, req: Request) -> Response:
        fault = self.store.take_fault(WEBHOOK, req.path)
        if fault is not None:
            req.injected_fault = True
            if fault == 429:
                response = text_response(429, "rate_limited")
                response.headers["Retry-After"] = "1"
                return response
            return text_response(fault, "internal_error" if fault == 500 else "service_unavailable")
        if not self.HOOK_PATH.fullmatch(req.path):
            return text_response(404, "no_service")
        if req.method != "POST":
            return text_response(405, "invalid_method")
        payload = self.parse_payload(req)
        if payload is None or not self.has_content(payload):
            return text_response(400, "invalid_payload")
        return text_response(200, "ok")

    @staticmethod
    def parse_payload(req: Request):
        text = req.text()
        # Slack also accepts a form post whose `payload` field holds the JSON.
        if "application/x-www-form-urlencoded" in req.headers.get("content-type", ""):
            form = parse_qs(text)
            if "payload" in form:
                text = form["payload"][-1]
        try:
            payload = json.loads(text)
        except json.JSONDecodeError:
            return None
        return payload if isinstance(payload, dict) else None

    @staticmethod
    def has_content(payload: dict) -> bool:
        text, blocks, attachments = payload.get("text"), payload.get("blocks"), payload.get("attachments")
        if text is not None and not isinstance(text, str):
            return False
        if blocks is not None and not isinstance(blocks, list):
            return False
        if attachments is not None and not isinstance(attachments, list):
            return False
        return bool(text) or bool(blocks) or bool(attachments)


# --------------------------------------------------------------------------
# /_sandbox inspection endpoints (not part of any public API)
# --------------------------------------------------------------------------


def sandbox_handle(store: Store, app, req: Request) -> Response:
    port = app.port_name
    path = req.path.rstrip("/")
    if path == "/_sandbox/health" and req.method == "GET":
        return json_response(200, {"status": "ok"})
    if path == "/_sandbox/requests" and req.method == "GET":
        with store.lock:
            return json_response(200, store.records[port])
    if path == "/_sandbox/requests" and req.method == "DELETE":
        with store.lock:
            store.records[port] = []
            store.save()
        return json_response(200, {"cleared": port})
    if path == "/_sandbox/reset" and req.method == "POST":
        store.reset()
        return json_response(200, {"reset": True})
    if path == "/_sandbox/faults" and req.method == "GET":
        with store.lock:
            return json_response(200, store.faults[port])
    if path == "/_sandbox/faults" and req.method == "DELETE":
        with store.lock:
            store.faults[port] = []
        return json_response(200, [])
    if path == "/_sandbox/faults" and req.method == "POST":
        try:
            spec = json.loads(req.text() or "{}")
        except json.JSONDecodeError:
            return error_response(400, "Malformed JSON")
        status, count = spec.get("status"), spec.get("count", 1)
        prefix = spec.get("path_prefix")
        if status not in FAULT_STATUSES:
            return error_response(400, f"status must be one of {list(FAULT_STATUSES)}")
        if not isinstance(count, int) or isinstance(count, bool) or count < 1:
            return error_response(400, "count must be a positive integer")
        if prefix is not None and not isinstance(prefix, str):
            return error_response(400, "path_prefix must be a string")
        return json_response(201, store.add_fault(port, status, count, prefix))
    if path == "/_sandbox/state" and req.method == "GET" and port == STATUSPAGE:
        with store.lock:
            sp = app.statuspage
            return json_response(200, {
                "page": store.page,
                "components": sorted(store.components.values(), key=lambda c: c["position"]),
                "incidents": [sp.render_incident(i) for i in store.incidents.values()],
            })
    return error_response(404, "Not found")


# --------------------------------------------------------------------------
# Recording: what the tests read.  Secrets never leave this function.
# --------------------------------------------------------------------------


def redact_secrets(value, secrets_to_hide: list[str]):
    """Replace any occurrence of a secret inside strings, recursively."""
    if isinstance(value, str):
        for secret in secrets_to_hide:
            value = value.replace(secret, "***")
        return value
    if isinstance(value, list):
        return [redact_secrets(v, secrets_to_hide) for v in value]
    if isinstance(value, dict):
        return {k: redact_secrets(v, secrets_to_hide) for k, v in value.items()}
    return value


def build_record(store: Store, req: Request, resp: Response) -> dict:
    headers = dict(req.headers)
    if "authorization" in headers:
        # Keep the scheme (useful to assert "OAuth" vs "Bearer"), drop the credential.
        scheme, _sep, credential = headers["authorization"].strip().partition(" ")
        headers["authorization"] = f"{scheme} ***" if credential else "***"
    for name in ("proxy-authorization", "cookie"):
        if name in headers:
            headers[name] = "***"
    query = {k: (["***"] * len(v) if k == "api_key" else v) for k, v in req.query.items()}

    text = req.text()
    try:
        body = json.loads(text) if text.strip() else None
    except json.JSONDecodeError:
        body = text

    record = {
        "seq": None,  # assigned by Store.record under the lock
        "time": now_iso(),
        "method": req.method,
        "path": req.path,
        "query": query,
        "status": resp.status,
        "headers": headers,
        "body": body,
    }
    # Belt and braces: a key pasted anywhere else (body, path, a header) is
    # masked too, whether or not it was accepted.
    hide = sorted(store.keys | ({req.presented_key} if req.presented_key else set()), key=len, reverse=True)
    record = redact_secrets(record, hide)
    record["key_sha256"] = sha256_hex(req.presented_key) if req.presented_key else None
    record["auth_ok"] = req.auth_ok
    record["fault_injected"] = req.injected_fault
    return record


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """One handler class for both ports; the server carries the port's app."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real services
    server_version = "saas-fake/1"
    sys_version = ""

    def do_GET(self):
        self.handle_any()

    # Every method goes through the router so unsupported ones get a proper
    # 405/404 from the app instead of http.server's HTML 501 page.
    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = do_GET

    def read_body(self) -> bytes:
        """Read the whole body (Content-Length or chunked); BodyError if unusable."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks, total = [], 0
            while True:
                try:
                    size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                except ValueError:
                    raise BodyError(400, "Malformed chunked body") from None
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # discard trailers
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    raise BodyError(413, "Request body too large")
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            raise BodyError(400, "Invalid Content-Length") from None
        if length > MAX_BODY_BYTES:
            raise BodyError(413, "Request body too large")
        return self.rfile.read(length) if length > 0 else b""

    def handle_any(self) -> None:
        app, store = self.server.app, self.server.store
        url = urlsplit(self.path)
        try:
            raw = self.read_body()
        except BodyError as exc:
            self.close_connection = True  # the unread rest of the body would poison keep-alive
            self.send(error_response(exc.status, exc.message))
            return
        req = Request(
            method=self.command,
            path=url.path or "/",
            query=parse_qs(url.query, keep_blank_values=True),
            headers={name.lower(): ", ".join(self.headers.get_all(name)) for name in self.headers.keys()},
            raw_body=raw,
        )
        if req.path.startswith("/_sandbox/"):
            # Inspection traffic is deliberately not recorded: it would pollute
            # the very list tests are asserting on.
            self.send(sandbox_handle(store, app, req))
            return
        try:
            resp = app.handle(req)
        except Exception:  # a bug here must still produce a response and a record
            traceback.print_exc()
            resp = error_response(500, "Internal Server Error")
        store.record(app.port_name, build_record(store, req, resp))
        self.send(resp)

    def send(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(resp.body)

    def log_message(self, fmt, *args):
        # The request line can carry ?api_key=...; never echo a key to the log.
        line = fmt % args
        line = re.sub(r"(api_key=)[^&\s\"]*", r"\1***", line)
        for key in self.server.store.keys:
            line = line.replace(key, "***")
        sys.stderr.write(f"[saas-fake {self.server.app.port_name}] {line}\n")


class FakeServer(ThreadingHTTPServer):
    daemon_threads = True  # never let a hung keep-alive client block shutdown

    def __init__(self, address, app, store: Store):
        # Must be set before TCPServer.__init__ creates the socket.
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.app, self.store = app, store
        super().__init__(address, Handler)

    def server_bind(self):
        # HTTPServer.server_bind does a reverse DNS lookup (getfqdn), which can
        # stall in sandboxes; we only ever bind literal loopback addresses.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", maxsplit=1)[0])
    parser.add_argument("--statuspage-port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--webhook-port", type=int, required=True, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address only (127.0.0.0/8 or ::1)")
    parser.add_argument("--keys-file", required=True, help="accepted API keys, one per line")
    parser.add_argument("--page-id", required=True)
    parser.add_argument("--state-file", help="persist records and Statuspage state here (JSON)")
    parser.add_argument("--rate-limit-per-s", type=float, default=1.0, help="per key (default 1.0)")
    parser.add_argument("--rate-limit-window-s", type=float, default=60.0,
                        help="the rolling window the rate is measured over (default 60, as Statuspage documents)")
    args = parser.parse_args(argv)

    try:
        is_loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        is_loopback = False
    if not is_loopback:
        # This fake accepts any request from anyone who can reach it; never
        # expose it beyond the local machine.
        parser.error(f"--host {args.host!r} refused: only loopback addresses (127.0.0.0/8 or ::1) may be bound")
    if args.rate_limit_per_s <= 0:
        parser.error("--rate-limit-per-s must be positive")
    if args.rate_limit_window_s <= 0:
        parser.error("--rate-limit-window-s must be positive")
    for name in ("statuspage_port", "webhook_port"):
        if not 0 <= getattr(args, name) <= 65535:
            parser.error(f"--{name.replace('_', '-')} must be between 0 and 65535")
    if not re.fullmatch(r"[a-z0-9]+", args.page_id):
        parser.error("--page-id must be lowercase alphanumeric")

    try:
        with open(args.keys_file, encoding="utf-8") as handle:
            args.keys = [line.strip() for line in handle if line.strip()]
    except OSError as exc:
        parser.error(f"cannot read --keys-file {args.keys_file}: {exc.strerror}")
    if not args.keys:
        parser.error(f"--keys-file {args.keys_file} contains no API keys")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    store = Store(args.page_id, args.keys, args.rate_limit_per_s, args.state_file, args.rate_limit_window_s)
    if args.state_file and os.path.exists(args.state_file):
        try:
            store.load()
        except (OSError, ValueError, KeyError, TypeError) as exc:
            print(f"saas.py: error: cannot load --state-file {args.state_file}: {exc}", file=sys.stderr)
            return 2

    servers = []
    try:
        for app, port in ((StatuspageApp(store), args.statuspage_port), (WebhookApp(store), args.webhook_port)):
            servers.append(FakeServer((args.host, port), app, store))
    except OSError as exc:
        print(f"saas.py: error: cannot bind {args.host}: {exc}", file=sys.stderr)
        for server in servers:
            server.server_close()
        return 2

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    # serve_forever runs in threads so the main thread stays free to receive
    # signals and to call shutdown() (which would deadlock from the serving thread).
    threads = [threading.Thread(target=s.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True) for s in servers]
    for thread in threads:
        thread.start()
    store.save()
    print(json.dumps({"statuspage_port": servers[0].server_port, "webhook_port": servers[1].server_port}), flush=True)
    sys.stderr.write(f"[saas-fake] page {args.page_id} on {args.host}: statuspage :{servers[0].server_port}, "
                     f"webhook :{servers[1].server_port}\n")

    while not stop.wait(0.5):
        pass
    for server in servers:
        server.shutdown()
        server.server_close()
    store.save()
    sys.stderr.write("[saas-fake] stopped\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
