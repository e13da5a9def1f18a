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
