"""playbooks/tasks/phase.yml, run by ansible-playbook against a real deploy lock in a temporary project: entering a
phase names it, and renews the lock's heartbeat only when a fifth of the ttl has passed since the last renewal."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

PLAYBOOK = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars:
    release_run_id: phase-test
    release_lock_ttl: 5  # a renewal is due once a second has passed since the last one
    lock_file: "{{ release_project_src }}/.runbook-release/deploy.lock"
    heartbeat: "{{ (lookup('ansible.builtin.file', lock_file) | from_json).heartbeat }}"
  tasks:
    - name: Take the lock
      runbook.release.deploy_lock:
        project_src: "{{ release_project_src }}"
        run_id: "{{ release_run_id }}"
        ttl: "{{ release_lock_ttl }}"
      register: release_lock
    - {name: Note, ansible.builtin.set_fact: {beats: ["{{ heartbeat }}"]}}
    - name: First phase (no renewal yet in this run - due)
      ansible.builtin.import_tasks: "{{ repo }}/playbooks/tasks/phase.yml"
      vars: {release_next_phase: backup}
    - {name: Note, ansible.builtin.set_fact: {beats: "{{ beats + [heartbeat] }}", phases: ["{{ release_phase }}"]}}
    - name: Second phase at once (renewed less than a second ago - not due)
      ansible.builtin.import_tasks: "{{ repo }}/playbooks/tasks/phase.yml"
      vars: {release_next_phase: rollout}
    - name: Note
      ansible.builtin.set_fact:
        beats: "{{ beats + [heartbeat] }}"
        phases: "{{ phases + [release_phase] }}"
        started: "{{ release_rollout_started }}"
    - {name: Wait past a fifth of the ttl, ansible.builtin.pause: {seconds: 2}}
    - name: Third phase (due again)
      ansible.builtin.import_tasks: "{{ repo }}/playbooks/tasks/phase.yml"
      vars: {release_next_phase: smoke}
    - name: Write what happened
      ansible.builtin.copy:
        dest: "{{ out }}"
        content: "{{ {'beats': beats + [heartbeat], 'phases': phases + [release_phase], 'started': started,
                      'still_started': release_rollout_started} | to_json }}"
        mode: "0600"
"""


def test_entering_a_phase_names_it_and_renews_the_lock_when_due(tmp_path):
    (tmp_path / "project").mkdir()
    (tmp_path / "play.yml").write_text(PLAYBOOK)
    out = tmp_path / "out.json"
    env = dict(os.environ, ANSIBLE_CONFIG=str(REPO / "ansible.cfg"), ANSIBLE_COLLECTIONS_PATH=str(REPO / "collections"),
               RUNBOOK_RELEASE_RECORD_DIR=str(tmp_path / "records"))
    proc = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(tmp_path / "play.yml"),
         "-e", json.dumps({"repo": str(REPO), "release_project_src": str(tmp_path / "project"), "out": str(out),
                           "ansible_python_interpreter": sys.executable})],
        env=env, cwd=str(REPO), capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    seen = json.loads(out.read_text())
    acquired, first, second, third = seen["beats"]
    assert first > acquired  # the first phase renewed the lock
    assert second == first  # less than a fifth of the ttl later: not renewed
    assert third > second  # two seconds later: renewed again
    assert seen["phases"] == ["backup", "rollout", "smoke"]
    assert seen["started"] is True and seen["still_started"] is True  # the rollout, once started, stays started
