"""The Docker CLI wrapper shared by compose_rollout and compose_scale, against the sandbox's real Docker Engine.

``Docker.images()`` asks for several images in one ``docker image inspect``; its answer must equal asking
``Docker.image()`` for each, including for references Docker names differently (``docker.io/...``), image ids,
and images that are absent.
"""

import shutil
import subprocess

import pytest

from ansible_collections.runbook.release.plugins.module_utils._compose import Docker

REGISTRY = "127.0.0.1:5000"


class Runner:
    """What Docker needs from AnsibleModule: run_command with an argv list."""

    def __init__(self):
        self.calls = []

    def run_command(self, argv, data=None, check_rc=False, environ_update=None):
        self.calls.append(list(argv))
        proc = subprocess.run(argv, input=data, capture_output=True, text=True, check=False)
        return proc.returncode, proc.stdout, proc.stderr


@pytest.fixture()
def docker():
    return Docker(Runner(), "/nonexistent", docker_cli=shutil.which("docker"))


def test_one_inspect_answers_for_every_image_present(docker):
    refs = ["%s/demo/api:v1.2.2" % REGISTRY, "%s/demo/web:v1.2.3" % REGISTRY, "%s/demo/api:v1.2.2" % REGISTRY]
    answer = docker.images(refs)
    assert sorted(answer) == sorted(set(refs))
    assert len(docker.module.calls) == 1, docker.module.calls
    for ref, info in answer.items():
        assert info == docker.image(ref)
        assert info["labels"]["org.opencontainers.image.version"] == ref.rsplit(":", 1)[1]


def test_absent_and_differently_named_images_fall_back_to_one_inspect_each(docker):
    image_id = docker.image("%s/demo/api:v1.2.3" % REGISTRY)["id"]
    refs = ["%s/demo/api:v1.2.3" % REGISTRY, "%s/demo/api:v9.9.9-absent" % REGISTRY, "docker.io/local/base:bookworm",
            image_id, None, ""]
    answer = docker.images(refs)
    assert set(answer) == {r for r in refs if r}
    assert answer["%s/demo/api:v9.9.9-absent" % REGISTRY] is None
    assert answer["docker.io/local/base:bookworm"] == docker.image("local/base:bookworm")
    assert answer["docker.io/local/base:bookworm"] is not None
    assert answer[image_id]["id"] == image_id
    for ref in answer:
        assert answer[ref] == docker.image(ref), ref


# --- reads through the Docker Engine API (module_utils/_docker_api) -----------------------------------------------

STABLE = ("Id", "Name", "Image", "Created", "Config", "HostConfig", "RestartCount")


def stable(info):
    """What an inspection says that does not move between two questions (health logs and timestamps do)."""
    return {key: info.get(key) for key in STABLE} | {"Status": info["State"]["Status"]}


@pytest.fixture()
def api_docker():
    api = Docker(Runner(), "/nonexistent", docker_cli=shutil.which("docker"), engine_api=True)
    assert api.api is not None, "the sandbox's Docker Engine socket must be usable"
    return api


def test_the_api_answers_as_the_cli_without_starting_a_process(docker, api_docker):
    project = "rbdemo"
    by_cli, by_api = docker.containers(project), api_docker.containers(project)
    assert by_cli and sorted(by_cli) == sorted(by_api)
    for service, infos in by_cli.items():
        assert [stable(i) for i in infos] == [stable(i) for i in by_api[service]], service
    ids = [i["Id"] for infos in by_cli.values() for i in infos]
    assert [stable(i) for i in api_docker.inspect(ids)] == [stable(i) for i in docker.inspect(ids)]
    refs = ["%s/demo/api:v1.2.2" % REGISTRY, "%s/demo/api:v9.9.9-absent" % REGISTRY, "docker.io/local/base:bookworm",
            docker.image("%s/demo/web:v1.2.3" % REGISTRY)["id"], ""]
    assert api_docker.images(refs) == docker.images(refs)
    assert api_docker.module.calls == [], "the API reads must start no process"
    assert api_docker.api_fallback is None
    assert all(c.startswith("Docker Engine API (/var/run/docker.sock): ") for c in api_docker.commands)


def test_a_container_that_is_gone_is_left_out_as_by_the_cli(docker, api_docker):
    some = next(iter(docker.containers("rbdemo").values()))[0]["Id"]
    gone = "0" * 64
    assert [i["Id"] for i in api_docker.inspect([gone, some])] == [i["Id"] for i in docker.inspect([gone, some])]
    assert [i["Id"] for i in api_docker.inspect([gone, some])] == [some]


def test_an_api_that_cannot_be_asked_falls_back_to_the_cli_for_good(tmp_path, docker):
    from ansible_collections.runbook.release.plugins.module_utils._docker_api import EngineAPI

    broken = Docker(Runner(), "/nonexistent", docker_cli=shutil.which("docker"), engine_api=True)
    broken.api = EngineAPI(str(tmp_path / "no-such.sock"))
    assert sorted(broken.containers("rbdemo")) == sorted(docker.containers("rbdemo"))
    assert broken.api is None and "no-such.sock" in broken.api_fallback
    assert broken.module.calls and broken.module.calls[0][1] == "ps"
    ref = "%s/demo/api:v1.2.2" % REGISTRY
    assert broken.image(ref) == docker.image(ref)
