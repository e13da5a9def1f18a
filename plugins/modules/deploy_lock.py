#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: deploy_lock
short_description: The playbook-wide deploy lock of a compose project - acquire, heartbeat, release, or break it
version_added: 0.1.0
author: runbook.release maintainers (@runbook-release)
description:
  - Keeps two releases of the same project apart for the whole runbook, not only while
    M(runbook.release.compose_rollout) runs. The lock is the one compose_rollout takes (by default
    C(<project_src>/.runbook-release/deploy.lock) on the target host), and it is re-entrant for the same O(run_id), so
    a playbook that acquired it with its run id can call compose_rollout with that run id inside it.
  - The lock is a JSON record - run id, owner, host, pid, version, start time, heartbeat and ttl. Re-entry with the same
    run id refreshes the heartbeat and keeps the holder's owner, version and start time.
  - V(acquired) takes the lock. While another live run holds it, the module waits up to O(timeout) seconds, then fails
    naming that run - owner, run id, host, version, since when and the age of its heartbeat - and how to proceed. A
    lock whose heartbeat is older than its ttl is stale (its run died); it is taken over with a warning naming the
    dead run, and returned in RV(taken_over).
  - V(heartbeat) refreshes the heartbeat of a lock this run holds (call it between long steps so the lock does not
    go stale). If the run no longer holds the lock (it was broken, or taken over after going stale), it fails, saying
    who holds it now or who broke it and why.
  - V(released) removes the lock if this run holds it. A lock held by another run id is never released - the
    module changes nothing and warns.
  - V(broken) removes the lock whoever holds it; it needs O(force_reason), warns naming the run that held it, returns
    that record in RV(previous_lock), and leaves a C(<lock file>.broken) note (who, when, why, the record) beside the
    lock so the run that lost it can tell.
  - Every read-modify-write of the lock file happens under a short C(flock) on a sidecar C(.guard) file, so concurrent
    runs on the host cannot both win.
extends_documentation_fragment:
  - runbook.release.attributes
options:
  project_src:
    description:
      - Directory of the compose project on the target host; the lock is C(<project_src>/.runbook-release/deploy.lock),
        the same file M(runbook.release.compose_rollout) uses.
      - One of O(project_src) and O(path) is required.
    type: path
  path:
    description:
      - An explicit lock file instead of the one under O(project_src). compose_rollout always uses the one under its
        project, so set this only for a lock it does not share. Takes precedence over O(project_src).
    type: path
  state:
    description:
      - V(acquired) takes the lock (or re-enters it for the same O(run_id)); V(heartbeat) refreshes it; V(released)
        gives it back; V(broken) removes it whoever holds it (with O(force_reason)).
    type: str
    choices: [acquired, released, heartbeat, broken]
    default: acquired
  run_id:
    description:
      - Id of the release run that holds the lock, the one playbooks pass to compose_rollout. Required for V(acquired),
        V(released) and V(heartbeat).
    type: str
  owner:
    description:
      - Who holds the lock, shown to anyone it blocks. Playbooks pass the controller's C($USER) (or the AWX user);
        without it, the E(USER) of the host the module runs on.
      - With V(broken), who broke it (in the C(.broken) note).
    type: str
  version:
    description: Version being deployed, shown to anyone the lock blocks; 1 to 128 of C([A-Za-z0-9_.-]).
    type: str
  ttl:
    description:
      - Seconds after its last heartbeat when the lock counts as stale (its run died) and the next run takes it over.
        Longer than the longest step between two heartbeats.
      - Re-entry and heartbeats keep the ttl of the run that took the lock.
    type: int
    default: 900
  timeout:
    description: Seconds to wait for another live run to release the lock before failing with its owner.
    type: int
    default: 0
  poll:
    description: Seconds between two attempts while waiting.
    type: float
    default: 1.0
  force_reason:
    description:
      - Why the lock is broken; required with V(broken), written to the C(.broken) note and shown in the warning.
      - Ignored by the other states.
    type: str
attributes:
  check_mode:
    support: full
    details:
      - Reports what would happen (create, re-enter, take over a stale lock, release, break) and returns the record that
        would be written, without writing, creating or removing anything. Waiting and refusing work as in a real run.
  diff_mode:
    support: full
    details: Shows the lock record before and after when it changes.
  idempotent:
    support: full
    details:
      - V(acquired) again with the same run id re-enters (C(changed=false)); V(released) of a lock that is gone is
        C(changed=false). V(heartbeat) always reports C(changed=false) - refreshing the heartbeat is bookkeeping.
notes:
  - The lock lives on the host the task runs on; run the module on the same hosts as compose_rollout (not delegated
    to the controller), with the same project directory.
  - The record's C(pid) is the module's own process, which has ended; the run id, owner and host identify the holder.
seealso:
  - module: runbook.release.compose_rollout
    description: Takes the same lock for the length of a rollout, re-entrantly with its C(run_id) option.
"""

EXAMPLES = r"""
- name: Take the deploy lock for the whole release
  runbook.release.deploy_lock:
    project_src: /opt/app
    state: acquired
    run_id: "{{ release_run_id }}"
    owner: "{{ awx_user_name | default(lookup('ansible.builtin.env', 'USER')) }}"
    version: "{{ version }}"
    timeout: 60

- name: Keep it fresh between long steps
  runbook.release.deploy_lock:
    project_src: /opt/app
    state: heartbeat
    run_id: "{{ release_run_id }}"

- name: Roll out inside the lock (compose_rollout re-enters it with the same run id)
  runbook.release.compose_rollout:
    project_src: /opt/app
    version: "{{ version }}"
    run_id: "{{ release_run_id }}"

- name: Give the lock back (also in the playbook's rescue/always)
  runbook.release.deploy_lock:
    project_src: /opt/app
    state: released
    run_id: "{{ release_run_id }}"

- name: The run that held it is gone for sure - break it now instead of waiting for the ttl
  runbook.release.deploy_lock:
    project_src: /opt/app
    state: broken
    owner: "{{ lookup('ansible.builtin.env', 'USER') }}"
    force_reason: "AWX job 4711 was killed with its node (INC-2031-0306); checked that nothing runs"
  register: broken

- name: Show who held it
  ansible.builtin.debug:
    msg: "{{ broken.previous_lock }}"
"""

RETURN = r"""
lock:
  description:
    - The lock record after the task (in check mode, the one a real run would write); null when no lock remains.
    - On failure to acquire, the record of the run holding the lock.
  returned: always
  type: dict
  contains:
    run_id: {description: Run id of the holder., type: str, returned: success}
    owner: {description: Who holds it., type: str, returned: success}
    host: {description: Host name of the machine the lock was written on., type: str, returned: success}
    pid: {description: Process that wrote it., type: int, returned: success}
    version: {description: Version being deployed., type: str, returned: success}
    started_at: {description: When the holder acquired it (UTC ISO-8601)., type: str, returned: success}
    heartbeat: {description: "Last heartbeat, seconds since the epoch.", type: float, returned: success}
    heartbeat_at: {description: Last heartbeat (UTC ISO-8601)., type: str, returned: success}
    ttl: {description: Seconds after the last heartbeat when the lock is stale., type: int, returned: success}
  sample:
    run_id: 5f0c1a0d2b8e4f6a9c3d7e1f2a4b6c8d
    owner: alice
    host: app-1
    pid: 23817
    version: v1.2.3
    started_at: "2031-03-06T15:02:11Z"
    heartbeat: 1930662131.4
    heartbeat_at: "2031-03-06T15:02:11Z"
    ttl: 900
taken_over:
  description: The stale record of a dead run that O(state=acquired) replaced; null otherwise.
  returned: always
  type: dict
previous_lock:
  description:
    - The lock record before the task, null when there was none. For O(state=broken), who held the lock that was
      broken; for O(state=released) by the wrong run id, the run that still holds it.
  returned: always
  type: dict
action:
  description:
    - What the task did (or would do in check mode) - V(created), V(reentered), V(taken_over), V(refreshed),
      V(released), V(broken), V(none) (nothing to release or break), V(not_ours) (held by another run, left), or
      V(refused) (held by another live run).
  returned: always
  type: str
  sample: created
lock_file:
  description: Path of the lock file.
  returned: always
  type: str
  sample: /opt/app/.runbook-release/deploy.lock
msg:
  description: What happened, in words.
  returned: always
  type: str
  sample: "run 5f0c1a0d2b8e4f6a9c3d7e1f2a4b6c8d acquired the deploy lock /opt/app/.runbook-release/deploy.lock"
"""

import json
import os

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.release.plugins.module_utils._deploy_lock import (
    DeployLock, LockError, default_lock_path, describe_holder)
from ansible_collections.runbook.release.plugins.module_utils._release_data import VERSION_RE

BREAK_ADVICE = ("To break it now (only if that run is dead): runbook.release.deploy_lock with state=broken and "
                "force_reason=<why>.")


class DeployLockManager(object):

    def __init__(self, module):
        self.module = module
        self.p = module.params
        self.path = self.p["path"] or default_lock_path(self.p["project_src"])
        self.check = module.check_mode
        self.lock = DeployLock(self.path, self.p["run_id"], owner=self.p["owner"], version=self.p["version"],
                               ttl=self.p["ttl"])
        self.result = {"changed": False, "lock": None, "taken_over": None, "previous_lock": None, "action": "none",
                       "lock_file": self.path}

    def fail(self, msg, **extra):
        self.module.fail_json(msg=msg, **dict(self.result, **extra))

    def validate(self):
        p = self.p
        if not p["path"] and not os.path.isdir(p["project_src"]):
            self.fail("project_src %s is not a directory: point it at the compose project on the host (the lock is "
                      "<project_src>/.runbook-release/deploy.lock), or give path" % p["project_src"])
        if p["version"] is not None and not VERSION_RE.match(p["version"]):
            self.fail("version %r is not a valid version: use 1 to 128 letters, digits, '.', '_' or '-' (for example "
                      "v1.2.3)" % p["version"])
        if p["ttl"] < 1:
            self.fail("ttl is %s: give the seconds after the last heartbeat when the lock is stale, 1 or more (default "
                      "900)" % p["ttl"])
        if p["timeout"] < 0:
            self.fail("timeout is %s: give the seconds to wait for another run, 0 or more" % p["timeout"])
        if p["poll"] <= 0:
            self.fail("poll is %s: give the seconds between two attempts, more than 0" % p["poll"])
        if p["state"] != "broken" and not (p["run_id"] or "").strip():
            self.fail("state=%s needs run_id: pass the release run id (the one the playbook gives compose_rollout, so "
                      "the lock is re-entrant for it)" % p["state"])
        if p["state"] == "broken" and not (p["force_reason"] or "").strip():
            self.fail("state=broken needs force_reason: say why the lock is broken whoever holds it (it is shown and "
                      "written beside the lock for the run that loses it)")

    def run(self):
        self.validate()
        self.result["previous_lock"] = self.lock.read()
        getattr(self, self.p["state"])()
        if self.result["changed"] and self.module._diff:
            self.result["diff"] = {"before": self.as_text(self.result["previous_lock"]),
                                   "after": self.as_text(self.result["lock"]),
                                   "before_header": self.path, "after_header": self.path}
        self.module.exit_json(**self.result)

    @staticmethod
    def as_text(record):
        return json.dumps(record, indent=2, sort_keys=True) + "\n" if record else ""

    def described(self, record):
        return describe_holder(record, self.lock.clock())

    # --- states -----------------------------------------------------------------------------------------------------

    def acquired(self):
        try:
            self.lock.acquire(timeout=self.p["timeout"], poll=self.p["poll"], dry_run=self.check)
        except LockError as exc:
            self.result["action"] = "refused"
            self.fail("%s %s" % (exc, BREAK_ADVICE), lock=exc.owner)
        for warning in self.lock.warnings:
            self.module.warn(warning)
        action = {"create": "created", "reenter": "reentered", "takeover": "taken_over"}[self.lock.action]
        self.result.update(action=action, lock=self.lock.record, taken_over=self.lock.taken_over,
                           changed=action != "reentered")
        verb = "would acquire" if self.check else "acquired"
        if action == "reentered":
            self.result["msg"] = "run %s already holds the deploy lock %s (heartbeat %srefreshed)" % (
                self.p["run_id"], self.path, "not " if self.check else "")
        elif action == "taken_over":
            self.result["msg"] = "run %s %s the deploy lock %s, taking it over from the dead %s" % (
                self.p["run_id"], verb, self.path, self.described(self.lock.taken_over))
        else:
            self.result["msg"] = "run %s %s the deploy lock %s" % (self.p["run_id"], verb, self.path)

    def heartbeat(self):
        if self.lock.heartbeat(dry_run=self.check):
            self.result.update(action="refreshed", lock=self.lock.record,
                               msg="run %s %s the heartbeat of the deploy lock %s" % (
                                   self.p["run_id"], "would refresh" if self.check else "refreshed", self.path))
            return
        current = self.lock.read()
        note = self.lock.broken_note() or {}
        broken = ("%s broke it at %s: %s" % (note.get("broken_by"), note.get("broken_at"), note.get("reason"))
                  if (note.get("lock") or {}).get("run_id") == self.p["run_id"] else None)
        if current is not None:
            why = "it is now held by %s (%s)" % (
                self.described(current), broken or "this run's lock went stale, older than its ttl, and was taken over")
        else:
            why = broken or "nobody holds it (it was released, or never acquired by this run)"
        self.result["lock"] = current
        self.fail("run %s does not hold the deploy lock %s any more: %s. Another release may be changing the project: "
                  "stop this run and check before going on." % (self.p["run_id"], self.path, why))

    def released(self):
        current = self.result["previous_lock"]
        if current is None:
            self.result["msg"] = "no deploy lock at %s: nothing to release" % self.path
            return
        if current.get("run_id") != self.p["run_id"]:
            self.result.update(action="not_ours", lock=current)
            self.result["msg"] = ("the deploy lock %s is held by %s, not by run %s: left as it is (a run never "
                                  "releases another run's lock)" % (self.path, self.described(current), self.p["run_id"]))
            self.module.warn(self.result["msg"] + "; to remove it by force: state=broken with force_reason")
            return
        released = self.lock.release(dry_run=self.check)
        self.result.update(action="released" if released else "none", changed=released,
                           lock=None if released else self.lock.read())
        self.result["msg"] = "run %s %s the deploy lock %s" % (
            self.p["run_id"], "would release" if self.check else "released", self.path)

    def broken(self):
        removed = self.lock.break_lock(self.p["force_reason"], by=self.p["owner"], dry_run=self.check)
        if removed is None:
            self.result["msg"] = "no deploy lock at %s: nothing to break" % self.path
            return
        self.result.update(action="broken", changed=True, previous_lock=removed, lock=None)
        self.result["msg"] = "%s the deploy lock %s held by %s; reason: %s" % (
            "would break" if self.check else "broke", self.path, self.described(removed), self.p["force_reason"])
        self.module.warn(self.result["msg"])


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_src=dict(type="path"),
            path=dict(type="path"),
            state=dict(type="str", default="acquired", choices=["acquired", "released", "heartbeat", "broken"]),
            run_id=dict(type="str"),
            owner=dict(type="str"),
            version=dict(type="str"),
            ttl=dict(type="int", default=900),
            timeout=dict(type="int", default=0),
            poll=dict(type="float", default=1.0),
            force_reason=dict(type="str"),
        ),
        required_one_of=[("project_src", "path")],
        supports_check_mode=True,
    )
    DeployLockManager(module).run()


if __name__ == "__main__":
    main()
