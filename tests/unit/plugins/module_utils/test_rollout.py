"""Planning of compose_rollout: env-file edits, strategy choice, dependency order, per-service actions, gate."""

import pytest

from ansible_collections.runbook.release.plugins.module_utils import _rollout as r

ENV = "# pinned by the release\nREGISTRY=127.0.0.1:5000\nSERVICE_VERSION=v1.2.2\nOTHER=x\n"


def test_env_get_and_set_keep_everything_else():
    assert r.env_get(ENV, "SERVICE_VERSION") == "v1.2.2"
    out = r.env_set(ENV, "SERVICE_VERSION", "v1.2.3")
    assert out == ENV.replace("v1.2.2", "v1.2.3")
    assert r.env_get(out, "SERVICE_VERSION") == "v1.2.3"


def test_env_set_appends_when_missing_and_handles_export_and_quotes():
    assert r.env_set("A=1", "SERVICE_VERSION", "v1") == "A=1\nSERVICE_VERSION=v1\n"
    assert r.env_get('export SERVICE_VERSION="v9"\n', "SERVICE_VERSION") == "v9"
    assert r.env_set("export SERVICE_VERSION=v1\n", "SERVICE_VERSION", "v2") == "export SERVICE_VERSION=v2\n"
    assert r.env_get("SERVICE_VERSION_OLD=v0\n", "SERVICE_VERSION") is None


def test_image_vars_style_pins_each_repository():
    env = "API_IMAGE=reg/app/api:v1\nWEB_IMAGE=reg/app/web:v1\n"
    image_vars = {"API_IMAGE": "reg/app/api", "WEB_IMAGE": "reg/app/web"}
    assert r.pinned_version(env, image_vars=image_vars) == "v1"
    out = r.pin_version(env, "v2", image_vars=image_vars)
    assert out == "API_IMAGE=reg/app/api:v2\nWEB_IMAGE=reg/app/web:v2\n"
    assert r.image_tag("127.0.0.1:5000/demo/api:v1.2.3") == "v1.2.3"
    assert r.image_tag("127.0.0.1:5000/demo/api") is None


@pytest.mark.parametrize("cfg, requested, stateful, expected", [
    ({}, "auto", (), "rolling"),
    ({"ports": [{"target": 8080, "published": "8080"}]}, "auto", (), "recreate"),
    ({"ports": [{"target": 8080}]}, "auto", (), "rolling"),
    ({"container_name": "db"}, "auto", (), "recreate"),
    ({}, "auto", ("api",), "recreate"),
    ({"deploy": {"update_config": {"order": "stop-first"}}}, "auto", (), "recreate"),
    ({}, "recreate", (), "recreate"),
    ({}, "rolling", (), "rolling"),
])
def test_strategy_choice(cfg, requested, stateful, expected):
    strategy, reason = r.choose_strategy("api", cfg, requested, stateful)
    assert strategy == expected
    assert reason


def test_auto_explains_a_stop_first_choice():
    _strategy, reason = r.choose_strategy("proxy", {"ports": [{"published": "8080"}, {"published": "8443"}]})
    assert reason == "stop-first because it publishes fixed host port 8080, 8443"


def test_forcing_rolling_on_a_fixed_port_is_refused_with_the_reason():
    with pytest.raises(ValueError, match="strategy 'rolling' is impossible for service proxy: it publishes fixed host"):
        r.choose_strategy("proxy", {"ports": [{"published": "8080"}]}, "rolling")


def test_dependency_order_puts_dependencies_first():
    services = {"proxy": {"depends_on": {"api": {}, "web": {}}}, "web": {"depends_on": {"api": {}}}, "api": {},
                "worker": {}}
    assert r.dependency_order(services) == ["api", "worker", "web", "proxy"]


def container(cid, status="running", chash="h2", image_id="img2", image="reg/api:v2", number=1):
    return {"id": cid, "name": "p-api-%d" % number, "image": image, "image_id": image_id, "status": status,
            "health": "healthy", "restarts": 0, "config_hash": chash, "number": number}


def test_plan_up_to_date_service_is_none():
    entry = r.plan_service("api", [container("a")], "h2", "reg/api:v2", "img2", 1, "rolling", "why")
    assert entry["action"] == "none" and entry["replace"] == [] and entry["keep"] == ["a"]


def test_plan_outdated_service_rolls_and_names_the_old_image():
    old = container("a", chash="h1", image_id="img1", image="reg/api:v1")
    entry = r.plan_service("api", [old], "h2", "reg/api:v2", "img2", 1, "rolling", "why")
    assert entry["action"] == "rolling"
    assert entry["old_image"] == "reg/api:v1" and entry["new_image"] == "reg/api:v2"
    assert entry["replace"] == ["a"]


def test_plan_same_tag_new_digest_is_a_change():
    entry = r.plan_service("api", [container("a", image_id="img-old")], "h2", "reg/api:v2", "img2", 1, "rolling", "")
    assert entry["action"] == "rolling"


def test_plan_scaling_and_first_start():
    one = [container("a")]
    assert r.plan_service("api", one, "h2", "i", "img2", 3, "rolling", "")["action"] == "scale_up"
    three = [container("a"), container("b", number=2), container("c", number=3)]
    assert r.plan_service("api", three, "h2", "i", "img2", 1, "rolling", "")["action"] == "scale_down"
    assert r.plan_service("api", [], "h2", "i", "img2", 1, "rolling", "")["action"] == "start"


def test_plan_stopped_outdated_containers_are_removed_not_replaced():
    entry = r.plan_service("api", [container("a"), container("b", status="exited", chash="h1", number=2)],
                           "h2", "i", "img2", 1, "rolling", "")
    assert entry["action"] == "rolling" and entry["stopped"] == ["b"] and entry["replace"] == []


@pytest.mark.parametrize("summary, has_check, elapsed, expected", [
    (dict(status="running", health="healthy", restarts=0), True, 1, "ok"),
    (dict(status="running", health="starting", restarts=0), True, 1, "wait"),
    (dict(status="running", health="unhealthy", restarts=0), True, 1, "container c is unhealthy"),
    (dict(status="exited", health=None, restarts=0), False, 1, "container c exited or restarted (status exited, 0 restarts)"),
    (dict(status="running", health=None, restarts=2), False, 9, "container c exited or restarted (status running, 2 restarts)"),
    (dict(status="running", health=None, restarts=0), False, 2, "wait"),
    (dict(status="running", health=None, restarts=0), False, 5, "ok"),
])
def test_gate_verdict(summary, has_check, elapsed, expected):
    summary = dict(summary, name="c")
    assert r.gate_verdict(summary, has_check, started=100, now=100 + elapsed, readiness_delay=5) == expected


def test_waves_roll_independent_services_together_and_dependencies_later():
    services = {"proxy": {"depends_on": {"api": {}, "web": {}}}, "web": {"depends_on": {"cache": {}}},
                "cache": {"depends_on": {"api": {}}}, "api": {}, "worker": {}}
    assert r.waves(["api", "web", "worker", "proxy"], services) == [["api", "worker"], ["web"], ["proxy"]]
    assert r.waves(["proxy", "api"], services) == [["api"], ["proxy"]], "explicit order still respects dependencies"
    assert r.waves(["api", "web"], services, parallel=False) == [["api"], ["web"]]


class Answers:
    """What wait_healthy asks of Docker: inspections, here a scripted sequence of health states of one container."""

    def __init__(self, healths, api):
        self.healths = list(healths)
        self.api = object() if api else None

    def inspect(self, ids):
        health = self.healths.pop(0) if len(self.healths) > 1 else self.healths[0]
        return [{"Id": ids[0], "Name": "/p-api-2", "RestartCount": 0, "Config": {"Healthcheck": {"Test": ["x"]}},
                 "State": {"Status": "running", "Health": {"Status": health}}}]


@pytest.mark.parametrize("api, poll", [(True, 0.1), (False, 0.25)])
def test_the_health_gate_polls_faster_when_the_engine_api_answers(monkeypatch, api, poll):
    slept, beats = [], []
    monkeypatch.setattr(r.time, "sleep", slept.append)
    r.wait_healthy(Answers(["starting", "starting", "healthy"], api), ["c1"], timeout=60, readiness_delay=0,
                   heartbeat=lambda: beats.append(1))
    assert slept == [poll, poll] and len(beats) == 2
