"""Benchmark: how long the preflight takes on the sandbox, and what its parts cost.

  (a) image_verify's registry reads for the three service images of a version, in-process (median of 20):
      requests and milliseconds per release, against `docker pull` of the same three tags, which is what the seeds
      do to see whether the images exist (warm: the layers are already on the host).
  (b) the whole runbook.release.preflight role through ansible-playbook (median of 3 runs), wall seconds.
Targets: (a) under 200 ms for three images; (b) under 15 s.
"""

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = REPO / ".venv" / "bin"
sys.path.insert(0, str(REPO / "collections"))

from ansible_collections.runbook.release.plugins.module_utils import _registry as registry  # noqa: E402

REGISTRY = "127.0.0.1:5000"
SERVICES = ("api", "web", "worker")


def served_version():
    out = subprocess.run(["curl", "-fsS", "http://127.0.0.1:8080/api/version"], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out)["version"]


def verify_once(version):
    client = registry.RegistryClient(REGISTRY)
    started = time.perf_counter()
    for service in SERVICES:
        ref = registry.parse_reference("%s/demo/%s:%s" % (REGISTRY, service, version))
        facts = registry.inspect_image(client, ref, "linux/amd64", "org.opencontainers.image.version")
        assert facts["exists"] and not facts["problems"], facts
    return (time.perf_counter() - started) * 1000, client.requests


def docker_pull_once(version):
    started = time.perf_counter()
    for service in SERVICES:
        subprocess.run(["docker", "pull", "--quiet", "%s/demo/%s:%s" % (REGISTRY, service, version)], check=True,
                       capture_output=True)
    return (time.perf_counter() - started) * 1000


def role_once(version):
    play = [{"hosts": "app_servers", "gather_facts": False,
             "tasks": [{"ansible.builtin.include_role": {"name": "runbook.release.preflight"},
                        "vars": {"preflight_version": version}}]}]
    with tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False) as handle:
        json.dump(play, handle)
    try:
        started = time.perf_counter()
        subprocess.run([str(VENV / "ansible-playbook"), handle.name], cwd=REPO, check=True, capture_output=True,
                       text=True)
        return time.perf_counter() - started
    finally:
        os.unlink(handle.name)


def main():
    version = served_version()
    verify = [verify_once(version) for _i in range(20)]
    pulls = [docker_pull_once(version) for _i in range(5)]
    roles = [role_once(version) for _i in range(3)]
    verify_ms = statistics.median(v[0] for v in verify)
    print("preflight bench on the sandbox, version %s" % version)
    print("  image_verify registry reads, 3 images: %.1f ms median of 20, %d HTTP requests"
          % (verify_ms, verify[0][1]))
    print("  docker pull of the same 3 tags (warm): %.1f ms median of 5" % statistics.median(pulls))
    print("  preflight role via ansible-playbook:   %.2f s median of 3 (min %.2f, max %.2f)"
          % (statistics.median(roles), min(roles), max(roles)))
    ok = verify_ms < 200 and statistics.median(roles) < 15
    print("  targets (image reads < 200 ms, role < 15 s): %s" % ("met" if ok else "MISSED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
