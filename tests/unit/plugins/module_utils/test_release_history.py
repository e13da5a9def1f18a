"""Release history: the host's record of rollouts, with the snapshot that rollback_to=previous restores."""

import json
import os
import stat

import pytest

from ansible_collections.runbook.release.plugins.module_utils._release_history import History


def entry(version, previous, outcome="success", kind="release", env="SERVICE_VERSION=x\n"):
    return {"version": version, "previous_version": previous, "outcome": outcome, "kind": kind,
            "snapshot": {"env": env, "files": {}}, "scale": {"api": 2}}


def test_save_is_private_and_round_trips(tmp_path):
    path = str(tmp_path / ".runbook-release" / "history.json")
    history = History(path)
    history.append(entry("v2", "v1"))
    history.save()
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert History(path).releases == history.releases


def test_rollback_entry_is_the_release_that_brought_the_current_version(tmp_path):
    history = History(str(tmp_path / "h.json"))
    history.append(entry("v2", "v1", env="SERVICE_VERSION=v1\n"))
    history.append(entry("v3", "v2", env="SERVICE_VERSION=v2\n"))
    history.append(entry("v4", "v3", outcome="rolled_back"))
    assert history.entry_for_rollback("v3")["snapshot"]["env"] == "SERVICE_VERSION=v2\n"
    history.append(entry("v2", "v3", kind="rollback"))
    found = history.entry_for_rollback("v2")
    assert found["previous_version"] == "v1", "a rollback entry is never itself the target of 'previous'"
    assert history.entry_for_rollback("v9") is None


def test_prune_keeps_the_last_known_good(tmp_path):
    history = History(str(tmp_path / "h.json"), keep=3)
    history.append(entry("v1", "v0"))
    for i in range(5):
        history.append(entry("bad%d" % i, "v1", outcome="rolled_back"))
    versions = [e["version"] for e in history.releases]
    assert versions == ["v1", "bad2", "bad3", "bad4"]
    assert history.last_known_good()["version"] == "v1"
    assert history.scale_of("api") == 2


def test_a_foreign_file_is_refused_clearly(tmp_path):
    path = tmp_path / "h.json"
    path.write_text(json.dumps(["not", "a", "history"]))
    with pytest.raises(ValueError, match="is not a release history file"):
        History(str(path))
