# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""How pg_backup and pg_restore reach S3 (spec: module_utils/_pg_s3.connection_argument_spec)."""

from __future__ import annotations


class ModuleDocFragment:

    DOCUMENTATION = r"""
options:
  s3_endpoint_url:
    description:
      - URL of an S3-compatible endpoint (MinIO, Ceph, moto, ...). Default is AWS's endpoint for O(s3_region).
    type: str
  s3_region:
    description:
      - AWS region. Default is boto3's (E(AWS_REGION), E(AWS_DEFAULT_REGION), C(~/.aws/config)).
    type: str
  aws_access_key:
    description:
      - Access key id. Default is boto3's credential chain (E(AWS_ACCESS_KEY_ID), C(~/.aws/credentials), an instance
        or task role, ...).
    type: str
  aws_secret_key:
    description:
      - Secret access key of O(aws_access_key). Never shown in results or messages.
    type: str
  aws_session_token:
    description:
      - Session token, for temporary credentials. Never shown in results or messages.
    type: str
  s3_validate_certs:
    description:
      - Verify the endpoint's TLS certificate.
    type: bool
    default: true
  s3_max_concurrency:
    description:
      - Parts transferred at once in a multipart upload or download.
    type: int
    default: 4
requirements:
  - boto3 on the host the task runs on, only when S3 is used (Debian C(python3-boto3), pip C(boto3)).
"""
