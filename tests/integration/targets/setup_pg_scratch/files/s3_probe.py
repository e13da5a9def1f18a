"""Looks at the sandbox's S3 for the integration tests, printing JSON (credentials from the AWS_* environment).

    s3_probe.py ENDPOINT BUCKET list PREFIX      -> {"keys": [...], "uploads": [{"key", "upload_id"}]}
    s3_probe.py ENDPOINT BUCKET head KEY         -> {"size", "sha256", "sse", "storage_class"} or {"missing": true}
    s3_probe.py ENDPOINT BUCKET purge PREFIX     -> deletes every object and unfinished upload under PREFIX
"""

import json
import sys

import boto3
import botocore.exceptions


def main(endpoint, bucket, action, name):
    client = boto3.client("s3", endpoint_url=endpoint)
    if action == "head":
        try:
            head = client.head_object(Bucket=bucket, Key=name)
        except botocore.exceptions.ClientError:
            return {"missing": True}
        return {"missing": False, "size": head["ContentLength"], "sha256": head.get("Metadata", {}).get("sha256"),
                "sse": head.get("ServerSideEncryption"), "storage_class": head.get("StorageClass", "STANDARD")}
    keys = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=name):
        keys.extend(item["Key"] for item in page.get("Contents") or [])
    uploads = [{"key": u["Key"], "upload_id": u["UploadId"]}
               for u in client.list_multipart_uploads(Bucket=bucket, Prefix=name).get("Uploads") or []]
    if action == "purge":
        for start in range(0, len(keys), 1000):
            client.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[start:start + 1000]]})
        for upload in uploads:
            client.abort_multipart_upload(Bucket=bucket, Key=upload["key"], UploadId=upload["upload_id"])
    return {"keys": sorted(keys), "uploads": uploads}


if __name__ == "__main__":
    print(json.dumps(main(*sys.argv[1:5])))
