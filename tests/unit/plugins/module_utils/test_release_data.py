"""The release data contract helper, and that its documentation lists the same fields."""

import re
from pathlib import Path

import pytest

from ansible_collections.runbook.release.plugins.module_utils import _release_data as rd

DOC = Path(__file__).resolve().parents[4] / "docs" / "release-data-contract.md"


def opening(**overrides):
    data = rd.new_release("release", "local", "rbdemo", "alice", version="v1.2.3", previous_version="v1.2.2")
    data.update(overrides)
    return data


def test_new_release_is_valid_and_complete():
    data = opening()
    assert rd.validate(data) == []
    assert data["schema_version"] == rd.SCHEMA_VERSION
    assert re.fullmatch(r"[0-9a-f]{32}", data["run_id"])
    assert data["started_at"].endswith("Z")


def test_run_ids_are_unique():
    assert len({rd.new_run_id() for _i in range(200)}) == 200


@pytest.mark.parametrize("field, value, message", [
    ("runbook", "deploy", "runbook: 'deploy' is not one of"),
    ("outcome", "ok", "outcome: 'ok' is not one of"),
    ("version", "v1;rm -rf /", "version: 'v1;rm -rf /' does not match"),
    ("backup", {"sha256": 12}, "backup.sha256: expected str, got int"),
    ("backup", {"size_bytes": True}, "backup.size_bytes: expected int, got bool"),
    ("colour", "blue", "colour: unknown key"),
    ("smoke", [], "smoke: expected dict, got list"),
])
def test_validate_names_the_field_and_the_problem(field, value, message):
    errors = rd.validate(opening(**{field: value}))
    assert any(message in e for e in errors), errors


def test_missing_required_fields_are_listed():
    errors = rd.validate({"version": "v1.2.3"})
    assert sorted(e.split(":")[0] for e in errors) == sorted(rd.REQUIRED)
    assert rd.validate({"version": "v1.2.3"}, partial=True) == []


def test_new_release_rejects_bad_input():
    with pytest.raises(ValueError, match="runbook: 'nope'"):
        rd.new_release("nope", "local", "svc", "op")


def test_merge_is_recursive_like_set_stats_aggregation():
    base = opening(backup={"id": "b1", "sha256": "aa"})
    merged = rd.merge(base, {"backup": {"verified": True}, "outcome": "success"})
    assert merged["backup"] == {"id": "b1", "sha256": "aa", "verified": True}
    assert merged["outcome"] == "success"
    assert "verified" not in base["backup"], "merge must not modify its input"


def test_merge_and_stats_payload_reject_bad_fragments():
    with pytest.raises(ValueError, match="outcome"):
        rd.merge(opening(), {"outcome": "great"})
    with pytest.raises(ValueError, match="unknown key"):
        rd.stats_payload({"secret_sauce": 1})
    assert rd.stats_payload({"outcome": "failed"}) == {"runbook_release": {"outcome": "failed"}}


def _documented_fields():
    names = set()
    for line in DOC.read_text().splitlines():
        match = re.match(r"^\| `([a-z0-9_.]+)` \|", line)
        if match:
            names.add(match.group(1))
    return names


def _schema_fields(schema=None, prefix=""):
    names = set()
    schema = rd.FIELDS if schema is None else schema
    for key, (_types, nested, _desc) in schema.items():
        names.add(prefix + key)
        if nested:
            names |= _schema_fields(nested, prefix + key + ".")
    return names


def test_documentation_lists_exactly_the_schema_fields():
    assert _documented_fields() == _schema_fields()
