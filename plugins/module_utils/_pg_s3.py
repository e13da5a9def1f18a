# -*- coding: utf-8 -*-
# Copyright: runbook.release contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
#
# PRIVATE: this file is internal to the runbook.release collection. It is not a public API and can change
# at any time without notice. Do not import it from other collections.
"""Backups in S3 (or an S3-compatible store) for pg_backup and pg_restore, through boto3.

boto3 is imported only when a task uses S3 (it costs tens of MB of memory), and its absence fails the task with
Ansible's standard missing-library message. Objects are laid out as the local directory is:
``<prefix>/<backup_id>.dump`` (or ``<prefix>/<backup_id>.dir/<file>``) and ``<prefix>/<backup_id>.manifest.json``.
Every dump object carries its sha256 in its metadata; an upload is read back (HEAD: size, sha256, encryption,
storage class) before it counts, and a failed one leaves no object and no incomplete multipart upload behind.
"""

from __future__ import annotations

import hashlib
import json
import math
import traceback

from ansible_collections.runbook.release.plugins.module_utils import _pg_backup as bk

MIB = 1024 * 1024
MAX_PARTS = 9000  # S3 allows 10000 parts; keep a margin


class S3Error(Exception):
    def __init__(self, msg, **details):
        super().__init__(msg)
        self.msg = msg
        self.details = details


class MissingBoto3(Exception):
    def __init__(self, import_traceback):
        super().__init__("boto3 is missing")
        self.import_traceback = import_traceback


def parse_s3_uri(uri):
    """``s3://bucket/key`` -> (bucket, key); key may be empty or end with '/'."""
    if not uri or not uri.startswith("s3://") or len(uri) <= 5:
        raise S3Error("%r is not an S3 URI: write it as s3://bucket/key" % uri)
    bucket, _sep, key = uri[5:].partition("/")
    if not bucket:
        raise S3Error("%r names no bucket: write it as s3://bucket/key" % uri)
    return bucket, key


def normalize_prefix(prefix):
    return "/".join(part for part in (prefix or "").split("/") if part)


def join_key(prefix, name):
    prefix = normalize_prefix(prefix)
    return "%s/%s" % (prefix, name) if prefix else name


def uri(bucket, key):
    return "s3://%s/%s" % (bucket, key)


def chunk_size(size, chunk_mb):
    """Part size: the configured one, raised when a huge dump would need more parts than S3 allows."""
    return max(chunk_mb * MIB, int(math.ceil(float(size) / MAX_PARTS)), 5 * MIB)


def error_text(exc):
    """A boto3/botocore exception as one line: the S3 error code and message when there is one."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and response.get("Error"):
        err = response["Error"]
        return "%s: %s" % (err.get("Code"), err.get("Message") or "")
    text = str(exc).strip() or type(exc).__name__
    # boto3 wraps a failed part as "Failed to upload <path> to <bucket/key>: An error occurred (...)": keep the cause.
    return text[text.index("An error occurred"):] if "An error occurred" in text else text


class S3Store(object):
    """One bucket and prefix, with the module's S3 options."""

    def __init__(self, bucket, prefix="", endpoint_url=None, region=None, access_key=None, secret_key=None,
                 session_token=None, threshold_mb=64, chunk_mb=64, max_concurrency=4, sse=None, kms_key_id=None,
                 storage_class=None, validate_certs=True):
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from boto3.exceptions import RetriesExceededError, S3UploadFailedError
            from botocore.config import Config
            import botocore.exceptions
        except ImportError:
            raise MissingBoto3(traceback.format_exc())
        self.bucket = bucket
        self.prefix = normalize_prefix(prefix)
        self.sse = sse
        self.kms_key_id = kms_key_id
        self.storage_class = storage_class
        self.threshold_mb = threshold_mb
        self.chunk_mb = chunk_mb
        self.max_concurrency = max_concurrency
        self._transfer_config = TransferConfig
        self.errors = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError, S3UploadFailedError,
                       RetriesExceededError, OSError)
        session = boto3.session.Session(aws_access_key_id=access_key, aws_secret_access_key=secret_key,
                                        aws_session_token=session_token, region_name=region)
        config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=10, read_timeout=120)
        self.client = session.client("s3", endpoint_url=endpoint_url, config=config, verify=validate_certs)
        self.requests = []

    # --- plumbing ---------------------------------------------------------------------------------------------

    def call(self, operation, **kwargs):
        self.requests.append("%s %s" % (operation, kwargs.get("Key") or kwargs.get("Prefix") or kwargs.get("Bucket")))
        return getattr(self.client, operation)(**kwargs)

    def key(self, name):
        return join_key(self.prefix, name)

    def transfer_config(self, size):
        return self._transfer_config(multipart_threshold=self.threshold_mb * MIB,
                                     multipart_chunksize=chunk_size(size, self.chunk_mb),
                                     max_concurrency=self.max_concurrency, use_threads=self.max_concurrency > 1)

    def extra_args(self, digest):
        args = {"Metadata": {"sha256": digest}}
        if self.sse:
            args["ServerSideEncryption"] = self.sse
            if self.sse == "aws:kms" and self.kms_key_id:
                args["SSEKMSKeyId"] = self.kms_key_id
        if self.storage_class:
            args["StorageClass"] = self.storage_class
        return args

    # --- preflight --------------------------------------------------------------------------------------------

    def check_bucket(self):
        try:
            self.call("head_bucket", Bucket=self.bucket)
        except self.errors as exc:
            raise S3Error("cannot reach S3 bucket %s: %s; check s3_bucket, s3_endpoint_url and the credentials"
                          % (self.bucket, error_text(exc)))

    # --- upload -----------------------------------------------------------------------------------------------

    def upload_file(self, path, key, digest, size):
        """Upload and read back one file; on any failure nothing is left under ``key``. Returns the HEAD facts."""
        self.requests.append("upload_file %s" % key)
        try:
            self.client.upload_file(path, self.bucket, key, ExtraArgs=self.extra_args(digest),
                                    Config=self.transfer_config(size))
        except self.errors as exc:
            leftovers = self.abort_incomplete(key)
            raise S3Error("upload of %s to %s failed: %s" % (path, uri(self.bucket, key), error_text(exc)),
                          aborted_multipart_uploads=leftovers)
        return self.verify_object(key, digest, size)

    def verify_object(self, key, digest, size):
        try:
            head = self.call("head_object", Bucket=self.bucket, Key=key)
        except self.errors as exc:
            raise S3Error("cannot read back %s after the upload: %s" % (uri(self.bucket, key), error_text(exc)))
        problems = []
        if head.get("ContentLength") != size:
            problems.append("size %s instead of %d" % (head.get("ContentLength"), size))
        if (head.get("Metadata") or {}).get("sha256") != digest:
            problems.append("sha256 metadata %r instead of %s" % ((head.get("Metadata") or {}).get("sha256"), digest))
        if self.sse and head.get("ServerSideEncryption") != self.sse:
            problems.append("server-side encryption %r instead of %s" % (head.get("ServerSideEncryption"), self.sse))
        if self.storage_class and self.storage_class != "STANDARD" and head.get("StorageClass") != self.storage_class:
            problems.append("storage class %r instead of %s" % (head.get("StorageClass"), self.storage_class))
        if problems:
            self.delete_keys([key])
            raise S3Error("%s does not match the local dump after the upload (%s); the object was deleted"
                          % (uri(self.bucket, key), "; ".join(problems)))
        return {"size_bytes": head.get("ContentLength"), "sha256": digest, "etag": head.get("ETag"),
                "server_side_encryption": head.get("ServerSideEncryption"),
                "storage_class": head.get("StorageClass") or "STANDARD"}

    def abort_incomplete(self, key):
        """Abort every unfinished multipart upload of ``key`` (s3transfer aborts its own; this catches the rest)."""
        aborted = []
        try:
            listing = self.call("list_multipart_uploads", Bucket=self.bucket, Prefix=key)
            for upload in listing.get("Uploads") or []:
                if upload.get("Key") == key:
                    self.call("abort_multipart_upload", Bucket=self.bucket, Key=key, UploadId=upload["UploadId"])
                    aborted.append(upload["UploadId"])
        except self.errors:
            pass  # the store is unreachable: nothing reached it that could be left behind
        return aborted

    def upload_backup(self, manifest, local_dir):
        """Upload a verified backup's dump (file, or every file of a directory dump). Returns (s3 facts, keys)."""
        dump_key = self.key(manifest["file"])
        if manifest["format"] == "directory":
            uploaded, facts = [], {}
            try:
                for entry in manifest["files"]:
                    key = "%s/%s" % (dump_key, entry["name"])
                    facts = self.upload_file("%s/%s/%s" % (local_dir, manifest["file"], entry["name"]), key,
                                             entry["sha256"], entry["size_bytes"])
                    uploaded.append(key)
            except S3Error:
                try:
                    self.delete_keys(uploaded)
                except S3Error:
                    pass  # the store went away; the upload's own error is the one to report
                raise
            return dict(facts, bucket=self.bucket, key=dump_key + "/", uri=uri(self.bucket, dump_key + "/"),
                        size_bytes=manifest["size_bytes"], sha256=manifest["sha256"]), uploaded
        facts = self.upload_file("%s/%s" % (local_dir, manifest["file"]), dump_key, manifest["sha256"],
                                 manifest["size_bytes"])
        return dict(facts, bucket=self.bucket, key=dump_key, uri=uri(self.bucket, dump_key)), [dump_key]

    def put_manifest(self, manifest):
        body = bk.manifest_json(manifest).encode("utf-8")
        key = self.key(bk.manifest_name(manifest["backup_id"]))
        digest = hashlib.sha256(body).hexdigest()
        args = self.extra_args(digest)
        try:
            self.call("put_object", Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", **args)
        except self.errors as exc:
            raise S3Error("upload of the manifest to %s failed: %s" % (uri(self.bucket, key), error_text(exc)))
        self.verify_object(key, digest, len(body))
        return key

    # --- catalogue --------------------------------------------------------------------------------------------

    def list_keys(self, prefix):
        keys = []
        try:
            paginator = self.client.get_paginator("list_objects_v2")
            self.requests.append("list_objects_v2 %s" % prefix)
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(item["Key"] for item in page.get("Contents") or [])
        except self.errors as exc:
            raise S3Error("cannot list s3://%s/%s: %s" % (self.bucket, prefix, error_text(exc)))
        return keys

    def get_json(self, key):
        try:
            body = self.call("get_object", Bucket=self.bucket, Key=key)["Body"].read()
            return json.loads(body.decode("utf-8"))
        except self.errors as exc:
            raise S3Error("cannot read %s: %s" % (uri(self.bucket, key), error_text(exc)))
        except ValueError as exc:
            raise S3Error("%s is not JSON: %s" % (uri(self.bucket, key), exc))

    def backups(self, database=None):
        """Manifests under the prefix (one level, of ``database`` when given), newest first, with ``_key``."""
        base = self.prefix + "/" if self.prefix else ""
        found = []
        for key in self.list_keys(base):
            name = key[len(base):]
            if "/" in name or not name.endswith(bk.MANIFEST_SUFFIX):
                continue
            data = self.get_json(key)
            if bk.manifest_problems(data) or name != bk.manifest_name(data["backup_id"]):
                continue
            if database is not None and data["database"] != database:
                continue
            data["_manifest_key"] = key
            found.append(data)
        return bk.sort_newest_first(found)

    def manifest_for(self, backup_id):
        key = self.key(bk.manifest_name(backup_id))
        data = self.get_json(key)
        problems = bk.manifest_problems(data)
        if problems:
            raise S3Error("%s is not a usable pg_backup manifest: %s" % (uri(self.bucket, key), "; ".join(problems)))
        data["_manifest_key"] = key
        return data

    def backup_keys(self, manifest):
        """Every object of a backup: its dump (or the files of a directory dump) and its manifest."""
        dump_key = self.key(manifest["file"])
        if manifest["format"] == "directory":
            keys = self.list_keys(dump_key + "/")
        else:
            keys = [dump_key]
        return keys + [self.key(bk.manifest_name(manifest["backup_id"]))]

    def delete_keys(self, keys):
        for start in range(0, len(keys), 1000):
            batch = keys[start:start + 1000]
            try:
                response = self.call("delete_objects", Bucket=self.bucket,
                                     Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True})
            except self.errors as exc:
                raise S3Error("cannot delete %s from s3://%s: %s" % (", ".join(batch[:3]), self.bucket,
                                                                     error_text(exc)))
            if response.get("Errors"):
                err = response["Errors"][0]
                raise S3Error("cannot delete s3://%s/%s: %s %s" % (self.bucket, err.get("Key"), err.get("Code"),
                                                                   err.get("Message")))

    # --- download ---------------------------------------------------------------------------------------------

    def download_file(self, key, path, size):
        self.requests.append("download_file %s" % key)
        try:
            self.client.download_file(self.bucket, key, path, Config=self.transfer_config(size))
        except self.errors as exc:
            raise S3Error("download of %s failed: %s" % (uri(self.bucket, key), error_text(exc)))

    def stream_sha256(self, key):
        """(sha256, size) of an object, read as a stream: nothing is written anywhere."""
        digest = hashlib.sha256()
        size = 0
        try:
            body = self.call("get_object", Bucket=self.bucket, Key=key)["Body"]
            for block in body.iter_chunks(bk.CHUNK):
                digest.update(block)
                size += len(block)
        except self.errors as exc:
            raise S3Error("cannot read %s: %s" % (uri(self.bucket, key), error_text(exc)))
        return digest.hexdigest(), size


# --- options --------------------------------------------------------------------------------------------------------

def connection_argument_spec():
    """How to reach S3, shared by pg_backup and pg_restore (doc fragment: runbook.release.pg_s3)."""
    return {
        "s3_endpoint_url": {"type": "str"},
        "s3_region": {"type": "str"},
        "aws_access_key": {"type": "str", "no_log": False},
        "aws_secret_key": {"type": "str", "no_log": True},
        "aws_session_token": {"type": "str", "no_log": True},
        "s3_validate_certs": {"type": "bool", "default": True},
        "s3_max_concurrency": {"type": "int", "default": 4},
    }


def store_from_params(params, bucket, prefix="", **upload):
    return S3Store(bucket, prefix, endpoint_url=params.get("s3_endpoint_url"), region=params.get("s3_region"),
                   access_key=params.get("aws_access_key"), secret_key=params.get("aws_secret_key"),
                   session_token=params.get("aws_session_token"), validate_certs=params.get("s3_validate_certs"),
                   max_concurrency=params.get("s3_max_concurrency") or 1, **upload)


def secret_values(params):
    return [params.get(key) for key in ("aws_secret_key", "aws_session_token") if params.get(key)]
