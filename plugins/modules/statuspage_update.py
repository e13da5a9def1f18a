#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: statuspage_update
short_description: Open, update and resolve Statuspage incidents and maintenances of a release
version_added: 0.1.0
author:
  - runbook.release maintainers (@runbook-release)
description:
  - Announces a release on an Atlassian Statuspage page through its REST API v1 - realtime incidents
    (open, update, resolve), scheduled maintenances (schedule, start, complete) and component statuses.
  - Every incident and maintenance the module creates carries O(change_id) in its metadata, under
    C(runbook_release.change_id), and later tasks find it again by that id. So a task can be
    run again, after a failure or in a rerun of the whole runbook, without opening a second incident or
    notifying subscribers twice.
  - Nothing is written when it already matches - the same status, the same text as the newest incident
    update, the same impact, and the same component statuses. That case reports C(changed=false).
  - Bad input (a missing O(name), missing or reversed maintenance times, an unknown component name, an
    invalid status) fails before any write request. The error names the option, the value and the fix.
extends_documentation_fragment:
  - runbook.release.statuspage
attributes:
  check_mode:
    description: Can run in check mode and report what would change without changing it.
    support: full
    details:
      - Check mode sends only GET requests. It reports the incident's state before and after as it would be.
  diff_mode:
    description: Reports what changed, or what would change in check mode.
    support: full
    details:
      - Before and after of the incident's name, status, newest update text (body), impact, component statuses
        and, for maintenances, the scheduled window; for O(state=component), the components' statuses.
  idempotent:
    description: Running the same task again changes nothing.
    support: full
    details:
      - The incident is found again by O(change_id) among unresolved incidents, scheduled and active
        maintenances, and for O(state=incident_resolved) and O(state=maintenance_completed) also among the
        100 most recent incidents.
      - O(state=incident_open) and O(state=maintenance_scheduled) create a new incident when no open one carries
        O(change_id), even if a resolved one does. Use a new O(change_id) per release and purpose.
options:
  state:
    description:
      - What to do.
      - V(incident_open) makes sure a realtime incident with O(change_id) is open. It creates the incident with
        status O(incident_status) (default V(investigating)), or updates an open one where it differs. It never
        moves an open incident back to V(investigating) unless O(incident_status) says so.
      - V(incident_update) posts to the open incident with O(change_id) - a new O(incident_status), O(body),
        O(impact) or O(components). It fails if no open incident carries O(change_id).
      - V(incident_resolved) resolves the incident with O(change_id), posting O(body) and setting
        O(components) if given. An incident that is already resolved gets no new message; only O(components),
        O(name) and O(impact) are still set where they differ.
      - V(maintenance_scheduled) makes sure a scheduled maintenance with O(change_id) exists for the window
        O(scheduled_for) to O(scheduled_until). A maintenance already in progress is updated but not moved back
        to V(scheduled), and the statuses of components already attached to it are left as they are.
      - V(maintenance_in_progress) starts the maintenance with O(change_id). When there is none, it starts a new
        one if O(name), O(scheduled_for) and O(scheduled_until) are given, and fails otherwise.
      - V(maintenance_completed) completes the maintenance with O(change_id). A completed one gets no new message,
        as with V(incident_resolved).
      - V(component) sets the status of each component in O(components), without an incident.
      - Components only change when O(components) says so. Statuspage's automatic maintenance transitions are
        not used, so check mode and diff show exactly what happens.
    type: str
    required: true
    choices:
      - incident_open
      - incident_update
      - incident_resolved
      - maintenance_scheduled
      - maintenance_in_progress
      - maintenance_completed
      - component
  change_id:
    description:
      - Stable id of the change this incident or maintenance announces, for example the release run id plus the
        purpose (C({{ run_id }}-maintenance)). Stored in the incident's metadata and used to find it again.
      - Required for every O(state) except V(component), which does not use it.
    type: str
  name:
    description:
      - Title of the incident or maintenance (at most 255 characters).
      - Required for O(state=incident_open) and O(state=maintenance_scheduled). With other states, renames the
        incident when it differs.
    type: str
  body:
    description:
      - Text of the incident update to post. It is posted only when it differs from the newest update, or
        together with a status change.
      - With O(state=incident_open) and O(state=maintenance_scheduled), a text that any update of the existing
        incident already carries is not posted again, so rerunning a runbook from the start does not repeat its
        opening message.
    type: str
  impact:
    description:
      - Impact shown for the incident, sent as the API's C(impact_override). When not set, Statuspage derives it
        from the affected components.
    type: str
    choices: [none, minor, major, critical]
  incident_status:
    description:
      - Status of a realtime incident, for O(state=incident_open) and O(state=incident_update).
      - When not set, O(state=incident_open) creates the incident as V(investigating) and keeps the status of an
        open one.
      - To resolve, use O(state=incident_resolved).
    type: str
    choices: [investigating, identified, monitoring]
  components:
    description:
      - "Component B(name) to component status, for example C(API: degraded_performance)."
      - Names are resolved to ids with the page's component list. An unknown name fails, listing the known
        names.
      - With an incident or maintenance, the components are attached to it and set to the status given. To
        attach a component to a scheduled maintenance without changing it, give its current status (usually
        V(operational)), and set V(under_maintenance) with O(state=maintenance_in_progress).
      - Required for O(state=component).
      - "Statuses: V(operational), V(under_maintenance), V(degraded_performance), V(partial_outage),
        V(major_outage)."
    type: dict
  scheduled_for:
    description:
      - Start of the maintenance window, ISO-8601 with a time zone, for example C(2031-03-01T01:00:00Z).
        A time without a zone is refused, because it is not clear which zone it is in.
      - Required for O(state=maintenance_scheduled).
    type: str
  scheduled_until:
    description:
      - End of the maintenance window, after O(scheduled_for), in the same format.
      - Required for O(state=maintenance_scheduled).
    type: str
  deliver_notifications:
    description:
      - Notify the page's subscribers of what this task posts.
    type: bool
    default: true
seealso:
  - name: Statuspage REST API v1
    description: The API this module talks to.
    link: https://developer.statuspage.io/
"""

EXAMPLES = r"""
# Fix the window once per run (a rerun must not move it): set_fact evaluates now() here, not at each use.
- name: Compute the maintenance window, one hour from now
  ansible.builtin.set_fact:
    release_window_start: >-
      {{ '%Y-%m-%dT%H:%M:%SZ' | ansible.builtin.strftime(second=now().timestamp() | int, utc=true) }}
    release_window_end: >-
      {{ '%Y-%m-%dT%H:%M:%SZ' | ansible.builtin.strftime(second=(now().timestamp() | int) + 3600, utc=true) }}
  when: release_window_start is not defined

- name: Announce the maintenance window of the release
  runbook.release.statuspage_update:
    page_id: "{{ release_statuspage_page_id }}"
    api_key: "{{ release_statuspage_api_key }}"
    state: maintenance_scheduled
    change_id: "{{ run_id }}-maintenance"
    name: "Release {{ version }}"
    body: "We are deploying {{ version }}. No downtime is expected."
    scheduled_for: "{{ release_window_start }}"
    scheduled_until: "{{ release_window_end }}"
    components:
      API: operational
  delegate_to: localhost
  register: statuspage_maintenance

- name: Start it
  runbook.release.statuspage_update:
    page_id: "{{ release_statuspage_page_id }}"
    state: maintenance_in_progress
    change_id: "{{ run_id }}-maintenance"
    body: "The deployment of {{ version }} has started."
    components:
      API: under_maintenance
  environment:
    STATUSPAGE_API_KEY: "{{ release_statuspage_api_key }}"
  delegate_to: localhost

- name: Complete it and set the API back to operational
  runbook.release.statuspage_update:
    page_id: "{{ release_statuspage_page_id }}"
    api_key: "{{ release_statuspage_api_key }}"
    state: maintenance_completed
    change_id: "{{ run_id }}-maintenance"
    body: "{{ version }} is live."
    components:
      API: operational
  delegate_to: localhost

- name: Open an incident when the smoke checks fail
  runbook.release.statuspage_update:
    page_id: "{{ release_statuspage_page_id }}"
    api_key: "{{ release_statuspage_api_key }}"
    state: incident_open
    change_id: "{{ run_id }}-incident"
    name: "Errors after the release of {{ version }}"
    body: "We are rolling back to {{ previous_version }}."
    incident_status: identified
    impact: major
    components:
      API: partial_outage
  delegate_to: localhost
  register: statuspage_incident

- name: Hand the incident id to the deployment record
  ansible.builtin.set_stats:
    data:
      runbook_release: "{{ statuspage_incident.release_data }}"
    aggregate: true

- name: Resolve it after the rollback
  runbook.release.statuspage_update:
    page_id: "{{ release_statuspage_page_id }}"
    api_key: "{{ release_statuspage_api_key }}"
    state: incident_resolved
    change_id: "{{ run_id }}-incident"
    body: "Rolled back to {{ previous_version }}; the service is healthy."
    components:
      API: operational
  delegate_to: localhost

- name: Mark the worker degraded, without an incident
  runbook.release.statuspage_update:
    page_id: "{{ release_statuspage_page_id }}"
    api_key: "{{ release_statuspage_api_key }}"
    state: component
    components:
      Worker: degraded_performance
  delegate_to: localhost
"""

RETURN = r"""
incident_id:
  description: Id of the incident or maintenance; null for O(state=component) and for one that check mode would create.
  returned: success
  type: str
  sample: p31zjtct2jer
shortlink:
  description: Public short link of the incident.
  returned: success
  type: str
  sample: http://stspg.io/p31zjtct2jer
status:
  description: Status of the incident or maintenance after the task (in check mode, as it would be); null for O(state=component).
  returned: success
  type: str
  sample: investigating
components:
  description:
    - Component name to status after the task (in check mode, as it would be).
    - The incident's components for incident and maintenance states, the components of O(components) for O(state=component).
  returned: success
  type: dict
  sample: {"API": "partial_outage"}
incident:
  description: The incident as the API returned it after the change, or as found when nothing changed; null when there is none yet.
  returned: success
  type: dict
  sample: {"id": "p31zjtct2jer", "name": "Release v1.2.3", "status": "investigating", "metadata": {"runbook_release": {"change_id": "abc-incident"}}}
release_data:
  description:
    - This task's part of the release data contract, for C(ansible.builtin.set_stats) under C(runbook_release).
  returned: success
  type: dict
  contains:
    statuspage:
      description: Status page activity.
      returned: success
      type: dict
      contains:
        incident_ids:
          description: Id of the incident or maintenance of this task; empty for O(state=component) and in check mode before creation.
          returned: success
          type: list
          elements: str
          sample: ["p31zjtct2jer"]
api_requests:
  description: The API requests the task sent, with the HTTP status of each answer (the key is never part of them).
  returned: always
  type: list
  elements: str
  sample: ["GET /v1/pages/kctbh9vrtdwd/incidents/unresolved -> 200", "POST /v1/pages/kctbh9vrtdwd/incidents -> 201"]
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.release.plugins.module_utils._statuspage import (
    IMPACTS,
    INCIDENT_STATUSES,
    RECENT_LIMIT,
    STATES,
    StatuspageError,
    api_time,
    change_metadata,
    check_update_options,
    check_window,
    client_from_params,
    connection_argument_spec,
    incident_view,
    plan_components,
    plan_incident,
    resolve_components,
)


class StatuspageUpdate:
    """One method per state; each finds the incident, plans, and writes only what differs."""

    def __init__(self, module):
        self.module = module
        self.params = module.params
        self.times = check_update_options(self.params)
        self.client = client_from_params(self.params)
        self.change_id = (self.params["change_id"] or "").strip() or None
        self.page = {}  # component id -> component, read only when components are asked for
        self.wanted = {}  # component id -> status
        self.wrote = False  # whether a write went through, for the result of a failure half-way
        self.result = {"changed": False, "incident_id": None, "shortlink": None, "status": None, "components": {},
                       "incident": None, "release_data": {"statuspage": {"incident_ids": []}}}

    def run(self):
        if self.params["components"]:
            # Before any other request: an unknown name fails fast, and before any write.
            self.page = {c["id"]: c for c in self.client.list_components()}
            self.wanted = resolve_components(self.params["components"], self.page.values())
        getattr(self, self.params["state"])()
        if self.client.pacer.warning:
            self.module.warn(self.client.pacer.warning)
        return self.result

    # ---- states -------------------------------------------------------------------------------------------

    def incident_open(self):
        current = self._find("realtime")
        status = self.params["incident_status"] or (None if current else "investigating")
        self._ensure(current, "realtime", status)

    def incident_update(self):
        current = self._find("realtime")
        if current is None:
            self._refuse_finished("realtime")
            raise StatuspageError("no open incident carries change_id %r; open it first with state=incident_open"
                                  % self.change_id)
        self._ensure(current, "realtime", self.params["incident_status"])

    def incident_resolved(self):
        current = self._find("realtime") or self._find("realtime", recent=True)
        if current is None:
            raise StatuspageError("no incident carries change_id %r among unresolved incidents and the %d most recent "
                                  "ones: nothing to resolve; check change_id" % (self.change_id, RECENT_LIMIT))
        self._ensure(current, "realtime", "resolved", post=current["status"] != "resolved")

    def maintenance_scheduled(self):
        current = self._find("maintenance")
        status = "scheduled"
        if current is not None and current["status"] in ("in_progress", "verifying"):
            # A rerun of the runbook must not flap the page back to what it said before the work started.
            status = None
            attached = {c["id"] for c in current.get("components") or []}
            self.wanted = {cid: st for cid, st in self.wanted.items() if cid not in attached}
            self.module.warn("maintenance %s with change_id %r is already %s; state=maintenance_scheduled updates it "
                             "but does not move it or its components back" % (current["id"], self.change_id, current["status"]))
        self._ensure(current, "maintenance", status)

    def maintenance_in_progress(self):
        current = self._find("maintenance")
        if current is None:
            self._refuse_finished("maintenance")
            if not all(self.params[o] for o in ("name", "scheduled_for", "scheduled_until")):
                raise StatuspageError("no open maintenance carries change_id %r; schedule it first with "
                                      "state=maintenance_scheduled, or give name, scheduled_for and scheduled_until to "
                                      "start a new one now" % self.change_id)
        self._ensure(current, "maintenance", "in_progress")

    def maintenance_completed(self):
        current = self._find("maintenance") or self._find("maintenance", recent=True)
        if current is None:
            raise StatuspageError("no maintenance carries change_id %r among scheduled and active maintenances and the "
                                  "%d most recent incidents: nothing to complete; check change_id"
                                  % (self.change_id, RECENT_LIMIT))
        self._ensure(current, "maintenance", "completed", post=current["status"] != "completed")

    def component(self):
        changes, before, after = plan_components(self.wanted, self.page)
        self.result["changed"] = bool(changes)
        if changes and not self.module.check_mode:
            for component_id, status in changes.items():
                updated = self.client.update_component(component_id, status)
                self.wrote = True
                after[updated["name"]] = updated["status"]
        self.result["components"] = after
        self._diff({"components": before}, {"components": after})

    # ---- shared steps -------------------------------------------------------------------------------------

    def _find(self, kind, recent=False):
        incident, count = self.client.find_incident(self.change_id, kind, recent=recent)
        if count > 1:
            self.module.warn("%d incidents carry change_id %r; using the newest, %s" % (count, self.change_id, incident["id"]))
        return incident

    def _refuse_finished(self, kind):
        """No open one: fail if a finished one carries the change id, rather than start a second one."""
        done = self._find(kind, recent=True)
        if done is not None:
            raise StatuspageError("%s %s with change_id %r is already %s; use a new change_id to start another one"
                                  % ("incident" if kind == "realtime" else "maintenance", done["id"], self.change_id,
                                     done["status"]))

    def _ensure(self, current, kind, status, post=True):
        """Create or update to what the task asks; ``post=False``: a finished incident gets no new message."""
        desired = {"name": self.params["name"], "status": status, "body": self.params["body"] if post else None,
                   "impact": self.params["impact"], "components": self.wanted,
                   "body_once": self.params["state"] in ("incident_open", "maintenance_scheduled")}
        desired.update(self.times)
        if kind == "maintenance":
            # The window as it will be, partly from the task and partly from the maintenance.
            have = {o: api_time(current.get(o)) for o in ("scheduled_for", "scheduled_until")} if current else {}
            check_window(self.times["scheduled_for"] or have.get("scheduled_for"),
                         self.times["scheduled_until"] or have.get("scheduled_until"))
        fields, before, after = plan_incident(current, desired, self.page)
        incident = current
        self.result["changed"] = current is None or bool(fields)
        if self.result["changed"] and not self.module.check_mode:
            fields["deliver_notifications"] = self.params["deliver_notifications"]
            if current is None:
                fields["metadata"] = change_metadata(self.change_id)
                incident = self.client.create_incident(fields, self.change_id, kind)
            else:
                incident = self.client.update_incident(current["id"], fields, desired, self.page)
            self.wrote = True
            after = incident_view(incident)
        if incident is not None:
            self.result.update(incident_id=incident["id"], shortlink=incident.get("shortlink"), incident=incident,
                               release_data={"statuspage": {"incident_ids": [incident["id"]]}})
        self.result.update(status=after["status"], components=after["components"])
        self._diff(before, after)

    def _diff(self, before, after):
        if self.module._diff:
            self.result["diff"] = {"before": before, "after": after}


def argument_spec():
    spec = connection_argument_spec()
    spec["argument_spec"].update(
        state={"type": "str", "required": True, "choices": list(STATES)},
        change_id={"type": "str"},
        name={"type": "str"},
        body={"type": "str"},
        impact={"type": "str", "choices": list(IMPACTS)},
        incident_status={"type": "str", "choices": list(INCIDENT_STATUSES)},
        components={"type": "dict"},
        scheduled_for={"type": "str"},
        scheduled_until={"type": "str"},
        deliver_notifications={"type": "bool", "default": True},
    )
    return spec


def main():
    module = AnsibleModule(supports_check_mode=True, **argument_spec())
    manager = None
    try:
        manager = StatuspageUpdate(module)
        result = manager.run()
    except StatuspageError as exc:
        client = manager.client if manager else None
        msg = client.scrub(exc.msg) if client else exc.msg
        extra = {"api_requests": client.calls if client else [],
                 "changed": bool(manager and manager.wrote)}
        if exc.details.get("response_body") and client:
            exc.details["response_body"] = client.scrub(exc.details["response_body"])
        module.fail_json(msg=msg, **dict(exc.details, **extra))
    result["api_requests"] = manager.client.calls
    module.exit_json(**result)


if __name__ == "__main__":
    main()
