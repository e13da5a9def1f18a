"""scripts/changelog builds the changelog from the fragments with antsibull-changelog, leaving the fragments alone,
and the Galaxy build does not leave the changelog out."""

import fnmatch
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def snapshot():
    changelogs = REPO / "changelogs"
    return {p.relative_to(changelogs).as_posix(): p.read_bytes() for p in changelogs.rglob("*")
            if p.is_file() and p.name != ".plugin-cache.yaml"}


def changelog_file():
    config = yaml.safe_load((REPO / "changelogs" / "config.yaml").read_text())
    return config["output"][0]["file"]


def test_the_changelog_builds_from_the_fragments_without_consuming_them(tmp_path):
    before = snapshot()
    proc = subprocess.run([sys.executable, str(REPO / "scripts" / "changelog"), "--output-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert snapshot() == before, "the repository's fragments and changelog.yaml must stay as they were"
    text = (tmp_path / changelog_file()).read_text()
    version = yaml.safe_load((REPO / "galaxy.yml").read_text())["version"]
    assert f"v{version}" in text
    assert "runbook.release.compose_rollout" in text
    assert "runbook.release Release Notes" in text
    assert len(list((REPO / "changelogs" / "fragments").glob("*.yml"))) > 0


def test_the_galaxy_build_keeps_the_changelog():
    ignore = yaml.safe_load((REPO / "galaxy.yml").read_text()).get("build_ignore") or []
    name = changelog_file()
    # ansible-galaxy matches build_ignore with fnmatch against each path relative to the collection root.
    assert not [pattern for pattern in ignore if fnmatch.fnmatch(name, pattern)]
    assert not [pattern for pattern in ignore if fnmatch.fnmatch("changelogs/changelog.yaml", pattern)
                or fnmatch.fnmatch("changelogs", pattern)]
