#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: compose_scale
short_description: Scale services of a Docker Compose v2 project up or down, without downtime, after a capacity check
version_added: 0.2.0
author: runbook.release maintainers (@runbook-release)
description:
  - Brings services of a compose project to the requested number of running replicas (seed 004 "Scaling Up").
  - Scaling up adds containers next to the running ones (C(docker compose up --no-recreate --scale service=N)); no
    running container is recreated or stopped. The module returns only when every new replica passed its health gate
    (healthy when the image has a healthcheck, else running for O(readiness_delay) seconds without a restart). If a
    new replica exits, turns unhealthy or is not healthy within O(health_timeout), every replica this run added is
    stopped and removed, the service is back to its previous count, and the module fails with the evidence.
  - Scaling down stops the surplus replicas gracefully (SIGTERM, then O(stop_timeout) seconds before SIGKILL),
    highest container numbers first, after the optional O(pre_stop_command) and O(drain_seconds).
  - Before scaling up, a capacity check compares the host's available memory with the memory the new replicas may use
    (each replica's memory limit, else its reservation, else O(default_memory_mb)), keeping O(min_free_memory_mb) free,
    and the CPUs every replica with a C(cpus) limit may use after the change with O(max_cpu_ratio) times the host's
    CPUs. A refusal names the figures and changes nothing.
  - Refuses, before any change, unknown services, counts that are not whole numbers of 0 or more, counts above
    O(max_replicas), more than one replica of a service that cannot run twice (a fixed host port, C(container_name),
    C(deploy.mode=global)), and scaling up a service whose running replicas run another image than the project now
    names (new replicas would run another version; release first).
  - Only running containers count. Rerunning with the counts already reached changes nothing.
extends_documentation_fragment:
  - runbook.release.attributes
  - runbook.release.compose_project
requirements:
  - Docker Engine and the Docker CLI with the Compose v2 plugin on the target host.
options:
  env_file:
    description: Env file, relative to O(project_src), that compose interpolates (used when it exists).
    type: str
    default: .env
  replicas:
    description: Service name to the number of running replicas wanted, for example C(api=4). V(0) stops every replica.
    type: dict
    required: true
  max_replicas:
    description: The largest count accepted for any service; larger counts are refused before any change.
    type: int
    default: 20
  health_timeout:
    description: Seconds a new replica has to pass its health gate before the run is reverted.
    type: int
    default: 120
  readiness_delay:
    description: For a service without a healthcheck, seconds a new replica must keep running (no restart) to pass.
    type: int
    default: 5
  stop_timeout:
    description: Grace period in seconds between SIGTERM and SIGKILL when stopping a replica.
    type: int
    default: 10
  pre_stop_command:
    description: Command (argv list) run with C(docker exec) in each replica before it is stopped on scale-down.
    type: list
    elements: str
  drain_seconds:
    description: Seconds to wait after O(pre_stop_command) and before stopping the replicas on scale-down.
    type: float
    default: 0
  capacity_check:
    description:
      - Refuse a scale-up the host has no capacity for. With V(false), the figures are still returned under
        RV(capacity) (with the problems found) but nothing is refused.
    type: bool
    default: true
  min_free_memory_mb:
    description: Memory in MiB that must stay available on the host after the new replicas took their share.
    type: int
    default: 256
  default_memory_mb:
    description: Memory in MiB assumed per replica of a service without a memory limit or reservation.
    type: int
    default: 256
  max_cpu_ratio:
    description:
      - The CPUs all replicas with a C(cpus) limit may use after scaling, as a multiple of the host's CPUs (V(1.0)
        means no overcommit). Checked only when a scaled-up service has a C(cpus) limit.
    type: float
    default: 1.0
attributes:
  check_mode:
    support: full
    details: Returns the plan, the capacity figures and the diff of replica counts, and changes nothing; refusals
      (bad counts, capacity) fail in check mode too.
  diff_mode:
    support: full
    details: Shows the replica count of each named service before and after.
  idempotent:
    support: full
    details: Rerunning with the counts already running is C(changed=false).
notes:
  - Zero downtime needs clients that find replicas by name through something that re-resolves it (a reverse proxy
    using Docker's DNS with a short TTL and retrying another upstream on a refused connection, as in the sandbox's
    nginx); a new replica is in Docker's DNS from its start, and a stopped one leaves it.
  - Compose keeps no replica count of its own. A later C(docker compose up) without C(--scale) goes back to the
    count of the compose file; M(runbook.release.compose_rollout) keeps the running count.
  - When a request both scales a service down and another up, the scale-down happens first and is not undone if the
    scale-up is reverted.
  - Reads (container listings and inspections, the health gate's polls) ask the local Docker Engine API on its unix
    socket directly when the C(docker) CLI would ask that same engine, else the CLI; changes always go through
    C(docker compose) and C(docker).
seealso:
  - module: runbook.release.compose_rollout
    description: Releases a version (start-first), keeping the running replica counts.
"""

EXAMPLES = r"""
- name: Scale the API to four replicas (zero-downtime; capacity checked first)
  runbook.release.compose_scale:
    project_src: /opt/app
    replicas:
      api: 4

- name: Show what would change and the capacity figures only
  runbook.release.compose_scale:
    project_src: /opt/app
    replicas: {api: 8, web: 2}
    min_free_memory_mb: 1024
  check_mode: true
  diff: true
  register: scale_plan

- name: Scale back down after the peak, draining each replica first
  runbook.release.compose_scale:
    project_src: /opt/app
    replicas: {api: 1}
    pre_stop_command: [/app/drain]
    drain_seconds: 5
"""

RETURN = r"""
project:
  description: The compose project name.
  returned: success
  type: str
  sample: rbdemo
plan:
  description: Per named service, the running replicas before, the count asked for, and the action.
  returned: always
  type: list
  elements: dict
  contains:
    service: {description: Service name., type: str, returned: always}
    before: {description: Running replicas before the run., type: int, returned: always}
    after: {description: Replicas asked for., type: int, returned: always}
    action: {description: "V(none), V(scale_up) or V(scale_down).", type: str, returned: always}
replicas_before:
  description: Service to running replicas before the run.
  returned: always
  type: dict
  sample: {api: 1}
replicas_after:
  description: Service to running replicas after the run (after the revert, when one happened).
  returned: always
  type: dict
  sample: {api: 3}
replicas:
  description: The running replicas of each named service after the run (empty in check mode).
  returned: success
  type: dict
  sample: {api: [{name: rbdemo-api-1, id: 0123456789ab, number: 1, health: healthy, image: "registry/api:v1.2.2",
                  addresses: [172.18.0.5]}]}
capacity:
  description:
    - The capacity figures judged before scaling up, and the problems found (a refusal when O(capacity_check)).
  returned: always
  type: dict
  sample: {memory_available_mb: 3012, memory_needed_mb: 512.0, min_free_memory_mb: 256, host_cpus: 2,
           cpus_allotted_after: 0, max_cpu_ratio: 1.0, checked: true, problems: [],
           services: {api: {added: 2, memory_per_replica_mb: 256.0, memory_source: default_memory_mb, cpus_per_replica: null}}}
reverted:
  description: Whether new replicas that failed their gate (or a failed compose call) were removed again.
  returned: always
  type: bool
failed_service:
  description: The service whose new replica failed its health gate.
  returned: failure
  type: str
evidence:
  description: The failing replica's state, health log and the tail of its log.
  returned: failure
  type: dict
commands:
  description: The docker commands run.
  returned: always
  type: list
  elements: str
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.runbook.release.plugins.module_utils._compose import CLIError
from ansible_collections.runbook.release.plugins.module_utils._scale import ComposeScale, ScaleError


def main():
    module = AnsibleModule(
        argument_spec=dict(
            project_src=dict(type="path", required=True),
            files=dict(type="list", elements="str"),
            project_name=dict(type="str"),
            env_file=dict(type="str", default=".env"),
            profiles=dict(type="list", elements="str"),
            replicas=dict(type="dict", required=True),
            max_replicas=dict(type="int", default=20),
            health_timeout=dict(type="int", default=120),
            readiness_delay=dict(type="int", default=5),
            stop_timeout=dict(type="int", default=10),
            pre_stop_command=dict(type="list", elements="str"),
            drain_seconds=dict(type="float", default=0),
            capacity_check=dict(type="bool", default=True),
            min_free_memory_mb=dict(type="int", default=256),
            default_memory_mb=dict(type="int", default=256),
            max_cpu_ratio=dict(type="float", default=1.0),
        ),
        supports_check_mode=True,
    )
    manager = ComposeScale(module)
    try:
        result = manager.run()
    except ScaleError as exc:
        module.fail_json(msg=str(exc), commands=manager.docker.commands, **dict(manager.result, **exc.extra))
    except CLIError as exc:
        module.fail_json(msg=str(exc), commands=manager.docker.commands, **dict(manager.result, **exc.as_result()))
    module.exit_json(commands=manager.docker.commands, **result)


if __name__ == "__main__":
    main()
