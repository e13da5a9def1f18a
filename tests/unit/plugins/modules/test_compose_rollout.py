"""compose_rollout's manager, the parts that need no Docker (the module itself runs in the integration target)."""

from types import SimpleNamespace

from ansible_collections.runbook.release.plugins.modules import compose_rollout


def test_the_deploy_lock_heartbeat_is_refreshed_at_most_once_a_second(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(compose_rollout.time, "monotonic", lambda: now[0])
    beats = []
    manager = SimpleNamespace(lock=SimpleNamespace(heartbeat=lambda: beats.append(now[0])),
                              last_heartbeat=float("-inf"))
    for step in (0.0, 0.1, 0.5, 0.99, 1.0, 1.05, 2.5):
        now[0] = 100.0 + step
        compose_rollout.ComposeRollout.heartbeat(manager)
    assert beats == [100.0, 101.0, 102.5]


def test_no_lock_no_heartbeat():
    manager = SimpleNamespace(lock=None, last_heartbeat=float("-inf"))
    compose_rollout.ComposeRollout.heartbeat(manager)
    assert manager.last_heartbeat == float("-inf")
