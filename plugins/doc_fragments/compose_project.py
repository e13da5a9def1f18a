# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""Options that name a Docker Compose v2 project, shared by compose_rollout and compose_scale."""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  project_src:
    description: Directory of the compose project on the target host.
    type: path
    required: true
  files:
    description: Compose files, relative to O(project_src). Default is compose's own discovery (C(compose.yaml), ...).
    type: list
    elements: str
  project_name:
    description: Compose project name. Default is the C(name:) of the compose file, else the directory name.
    type: str
  profiles:
    description: Compose profiles to enable.
    type: list
    elements: str
"""
