"""Crash-safe writes: readers see old or new content, never a part, and failures leave no temp file."""

import os
import stat

import pytest

from ansible_collections.runbook.release.plugins.module_utils._atomic import write_atomic, write_json_atomic


def test_write_creates_directories_sets_mode_and_replaces(tmp_path):
    path = tmp_path / "a" / "b" / "state.json"
    write_json_atomic(str(path), {"k": 1})
    assert path.read_text() == '{\n  "k": 1\n}\n'
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    write_atomic(str(path), "new", mode=0o644)
    assert path.read_text() == "new"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o644


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "state.json"
    path.write_text("old")
    with pytest.raises(TypeError):
        write_atomic(str(path), object())
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]
