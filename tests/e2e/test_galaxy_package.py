"""`ansible-galaxy collection build` makes a clean tarball, and the installed copy works offline."""

import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BIN = REPO / ".venv" / "bin"
DEV_ONLY = (".venv/", ".git/", "collections/", "sandbox/", "scripts/", "bench/", "records/", "tests/output/",
            "requirements/", ".ci/", "Makefile", "pytest.ini", "ansible.cfg", ".pytest_cache", ".hypothesis")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "build", "--output-path", str(out)], cwd=REPO,
                   check=True, capture_output=True, text=True, timeout=300)
    tarball = next(out.glob("runbook-release-*.tar.gz"))
    dest = tmp_path_factory.mktemp("collections")
    # A private HOME: a copy installed in ~/.ansible/collections must neither satisfy nor shadow this install.
    env = dict(os.environ, HOME=str(tmp_path_factory.mktemp("home")))
    env.pop("ANSIBLE_CONFIG", None)
    subprocess.run([str(BIN / "ansible-galaxy"), "collection", "install", "--offline", "--force", "-p", str(dest),
                    str(tarball)], cwd=out, env=env, check=True, capture_output=True, text=True, timeout=300)
    assert (dest / "ansible_collections" / "runbook" / "release" / "MANIFEST.json").exists()
    return tarball, dest


def test_tarball_has_no_dev_only_files(installed):
    tarball, _dest = installed
    with tarfile.open(tarball) as tar:
        names = tar.getnames()
    leaked = [n for n in names if n.startswith(DEV_ONLY) or "__pycache__" in n]
    assert leaked == []
    for needed in ("CHANGELOG.rst", "plugins/modules/compose_rollout.py", "roles/app_rollout/tasks/main.yml",
                   "meta/runtime.yml", "playbooks/release.yml", "README.md"):
        assert needed in names


def run_outside_repo(cmd, dest, tmp_path):
    env = dict(os.environ, ANSIBLE_COLLECTIONS_PATH=str(dest), ANSIBLE_NOCOLOR="1", HOME=str(tmp_path))
    env.pop("ANSIBLE_CONFIG", None)
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600, check=False)


def test_installed_module_and_role_run_from_the_installed_copy(installed, tmp_path, sandbox_status):
    _tarball, dest = installed
    doc = run_outside_repo([str(BIN / "ansible-doc"), "--json", "runbook.release.compose_rollout"], dest, tmp_path)
    assert doc.returncode == 0, doc.stderr
    assert json.loads(doc.stdout)["runbook.release.compose_rollout"]["doc"]["filename"].startswith(str(dest))
    project = sandbox_status["stack"]["project_src"]
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([{
        "hosts": "localhost", "connection": "local", "gather_facts": False,
        "vars": {"ansible_python_interpreter": str(BIN / "python")},
        "tasks": [
            {"name": "module", "runbook.release.compose_rollout": {"project_src": project, "version": "v1.2.3"},
             "check_mode": True, "register": "plan"},
            {"name": "plan came back", "ansible.builtin.assert": {"that": ["plan.plan | length == 4"]}},
            {"name": "role",
             "ansible.builtin.include_role": {"name": "runbook.release.app_rollout", "apply": {"ignore_errors": True}},
             "vars": {"app_rollout_version": "not valid!"}},
        ]}]))
    proc = run_outside_repo([str(BIN / "ansible-playbook"), str(playbook)], dest, tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:]
    assert "is not a valid version" in " ".join(proc.stdout.split()), "the installed role ran its validation"
