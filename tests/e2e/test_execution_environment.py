"""The execution environment definition produces an ansible-builder build context, offline."""

import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_ansible_builder_create_makes_a_build_context(tmp_path):
    context = tmp_path / "context"
    proc = subprocess.run([str(REPO / ".venv" / "bin" / "ansible-builder"), "create", "-f",
                           "execution-environment.yml", "-c", str(context)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    dockerfile = (context / "Dockerfile").read_text()
    assert "ansible-core==2.19.14" in dockerfile and "ansible-runner==2.4.3" in dockerfile
    assert "runbook.release" in (context / "_build" / "requirements.yml").read_text()
    assert "psycopg2-binary" in (context / "_build" / "requirements.txt").read_text()


def test_collection_declares_its_ee_dependencies_relative_to_its_root():
    import yaml

    meta = yaml.safe_load((REPO / "meta" / "execution-environment.yml").read_text())
    for key in ("python", "system"):
        path = meta["dependencies"][key]
        assert not path.startswith(("/", "..")), path
        assert (REPO / path).is_file(), path
