"""Pure parts of the S3 side of pg_backup / pg_restore (the uploads themselves run against the sandbox's S3 in the
pg_backup and pg_restore integration targets)."""

import pytest

from ansible_collections.runbook.release.plugins.module_utils import _pg_s3 as s3


@pytest.mark.parametrize("uri, expected", [
    ("s3://bucket/prod/appdb/x.dump", ("bucket", "prod/appdb/x.dump")),
    ("s3://bucket/prefix/", ("bucket", "prefix/")),
    ("s3://bucket", ("bucket", "")),
])
def test_parse_s3_uri(uri, expected):
    assert s3.parse_s3_uri(uri) == expected


@pytest.mark.parametrize("uri", ["", "bucket/key", "s3://", "s3:///key", "https://bucket/key"])
def test_parse_s3_uri_refuses(uri):
    with pytest.raises(s3.S3Error, match="s3://bucket/key"):
        s3.parse_s3_uri(uri)


def test_keys():
    assert s3.join_key("/prod//appdb/", "x.dump") == "prod/appdb/x.dump"
    assert s3.join_key("", "x.dump") == "x.dump"
    assert s3.uri("b", "k/x") == "s3://b/k/x"


def test_part_size_grows_so_a_huge_dump_stays_under_the_part_limit():
    mib = 1024 * 1024
    assert s3.chunk_size(100 * mib, 64) == 64 * mib
    huge = 2 * 1024 ** 4  # 2 TiB
    assert s3.chunk_size(huge, 64) * s3.MAX_PARTS >= huge
    assert s3.chunk_size(1, 1) == 5 * mib


def test_error_text_prefers_the_s3_error_code():
    class Fake(Exception):
        response = {"Error": {"Code": "AccessDenied", "Message": "nope"}}

    assert s3.error_text(Fake("x")) == "AccessDenied: nope"
    assert s3.error_text(OSError("boom")) == "boom"


def test_secrets_are_the_secret_key_and_token_only():
    params = {"aws_access_key": "AKIA", "aws_secret_key": "sk", "aws_session_token": None}
    assert s3.secret_values(params) == ["sk"]
    spec = s3.connection_argument_spec()
    assert spec["aws_secret_key"]["no_log"] and spec["aws_session_token"]["no_log"]
