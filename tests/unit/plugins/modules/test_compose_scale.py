"""Unit tests of runbook.release.compose_scale's planning and capacity judgement (plugins/module_utils/_scale.py)."""

from __future__ import annotations

from ansible_collections.runbook.release.plugins.module_utils import _scale as scale


def test_parse_bytes_reads_compose_and_human_sizes():
    assert scale.parse_bytes("67108864") == 64 * scale.MIB
    assert scale.parse_bytes("64m") == 64 * scale.MIB
    assert scale.parse_bytes("1g") == 1024 * scale.MIB
    assert scale.parse_bytes(None) is None
    assert scale.parse_bytes("lots") is None


def test_service_memory_prefers_the_limit_then_the_reservation():
    assert scale.service_memory({"mem_limit": "67108864"}) == (64 * scale.MIB, "mem_limit")
    cfg = {"deploy": {"resources": {"reservations": {"memory": "33554432"}}}}
    assert scale.service_memory(cfg) == (32 * scale.MIB, "deploy.resources.reservations.memory")
    assert scale.service_memory({}) == (None, None)


def test_validate_targets_names_the_service_and_the_fix():
    services = {"api": {}, "proxy": {"ports": [{"published": "8080", "target": 8080}]}, "db": {"container_name": "db"}}
    problems = scale.validate_targets({"nope": 1, "api": -1, "proxy": 2, "db": 3}, services, max_replicas=10)
    text = " ".join(problems)
    assert "service nope is not in the project" in text
    assert "count for service api is -1" in text
    assert "service proxy cannot scale to 2 replicas: it publishes fixed host port 8080" in text
    assert "container_name db" in text
    assert "above the maximum" in " ".join(scale.validate_targets({"api": 11}, services, max_replicas=10))
    assert scale.validate_targets({"api": True}, services) != []
    assert scale.validate_targets({"api": 3, "proxy": 1}, services) == []


def test_plan_and_idempotence():
    entries = scale.plan({"api": 3, "web": 1, "worker": 0}, {"api": 1, "web": 1, "worker": 2})
    assert [(e["service"], e["action"]) for e in entries] == [("api", "scale_up"), ("web", "none"), ("worker", "scale_down")]
    assert all(e["action"] == "none" for e in scale.plan({"api": 2}, {"api": 2}))


def test_surplus_stops_the_highest_numbers_first():
    running = [{"id": "a", "number": 1}, {"id": "c", "number": 3}, {"id": "b", "number": 2}]
    assert scale.surplus(running, 1) == ["c", "b"]
    assert scale.surplus(running, 3) == []


def test_capacity_refuses_with_the_figures():
    services = {"api": {"mem_limit": "268435456", "cpus": 1.0}}
    entries = scale.plan({"api": 4}, {"api": 1})
    problems, figures = scale.judge_capacity(entries, services, {"api": 1}, mem_available=900, host_cpus=2,
                                             min_free_memory_mb=256)
    assert figures["memory_needed_mb"] == 768
    assert any("not enough memory: the new replicas need 768 MiB" in p for p in problems)
    assert any("not enough CPU" in p and "4.00 CPUs" in p for p in problems)
    ok, _figures = scale.judge_capacity(entries, services, {"api": 1}, mem_available=4096, host_cpus=4)
    assert ok == []


def test_capacity_ignores_scale_down():
    problems, figures = scale.judge_capacity(scale.plan({"api": 1}, {"api": 3}), {"api": {}}, {"api": 3},
                                             mem_available=10, host_cpus=1)
    assert problems == [] and figures["memory_needed_mb"] == 0
