"""From the repository root, runbook.release.* resolves to this working tree, not to an installed copy."""

import json
import os
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_working_tree_wins_over_a_stale_installed_copy(tmp_path):
    stale = tmp_path / ".ansible" / "collections" / "ansible_collections" / "runbook" / "release"
    (stale / "plugins" / "modules").mkdir(parents=True)
    (stale / "MANIFEST.json").write_text(json.dumps({"collection_info": {
        "namespace": "runbook", "name": "release", "version": "0.0.1"}}))
    (stale / "plugins" / "modules" / "compose_rollout.py").write_text(
        'DOCUMENTATION = """\nmodule: compose_rollout\nshort_description: stale copy\ndescription: [stale]\n'
        'author: nobody\noptions: {}\n"""\n')
    env = dict(os.environ, HOME=str(tmp_path), ANSIBLE_NOCOLOR="1")
    env.pop("ANSIBLE_COLLECTIONS_PATH", None)
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-doc"), "--json", "runbook.release.compose_rollout"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=True)
    doc = json.loads(proc.stdout)["runbook.release.compose_rollout"]["doc"]
    assert doc["filename"] == str(REPO / "collections" / "ansible_collections" / "runbook" / "release" / "plugins"
                                  / "modules" / "compose_rollout.py")
    assert "stale" not in doc["short_description"]


def test_local_inventory_is_the_default():
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-inventory"), "--list"], cwd=REPO,
                          capture_output=True, text=True, timeout=120, check=True)
    inventory = json.loads(proc.stdout)
    assert inventory["app_servers"]["hosts"] == ["sandbox"]
