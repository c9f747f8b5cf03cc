"""The chaos proxy in front of moto's server: forwarding, fault shapes and botocore's retries.

moto runs as a real server in a child process; boto3 clients (fake credentials, never real AWS)
talk to it through the proxy over HTTP on 127.0.0.1. botocore's backoff sleeps are recorded
instead of slept (`backoff`), so the retry counts are checked without waiting for them.
"""

from __future__ import annotations

import functools
import hashlib
import http.client
import io
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
import types
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any

import boto3
import botocore.endpoint
import httpx
import pytest
from boto3.s3.transfer import TransferConfig
from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError, ConnectionClosedError

from devstack.chaos import KINDS, ChaosControl, ChaosProxy, Counts, identify
from devstack.processes import QuietHTTPServer, stop_process
from devstack.stack import moto_server

REGION = "us-east-1"
MIB = 1024 * 1024
# What sora_relay.adapters.aws configures. In a client Config, max_attempts counts the *retries*: 4 attempts.
STANDARD = {"mode": "standard", "max_attempts": 3}
NO_RETRIES = {"mode": "standard", "total_max_attempts": 1}


def _auth(service: str) -> str:
    return (
        f"AWS4-HMAC-SHA256 Credential=testing/20260101/{REGION}/{service}/aws4_request, "
        "SignedHeaders=host;x-amz-date, Signature=0123456789abcdef"
    )


# -- fixtures ---------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no config file: nothing here can reach or sign for real AWS."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_CONFIG_FILE": os.devnull,
        "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def proxy(moto_url: str) -> Iterator[ChaosProxy]:
    with ChaosProxy(moto_url) as running:
        yield running


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry delays, recorded instead of slept (legacy DynamoDB backoff sums to 25 s)."""
    delays: list[float] = []
    fake_time = types.SimpleNamespace(sleep=delays.append, time=time.time, monotonic=time.monotonic)
    monkeypatch.setattr(botocore.endpoint, "time", fake_time)
    return delays


@functools.cache
def _session() -> boto3.session.Session:
    # One session for every client: it caches the service models (a new one costs ~0.1 s a client).
    return boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )


def client(service: str, proxy: ChaosProxy | str, retries: dict[str, Any] | None = None) -> Any:
    endpoint = proxy if isinstance(proxy, str) else proxy.url
    # A copy: botocore rewrites the dict it is given (max_attempts -> total_max_attempts).
    config = Config(retries=dict(retries or STANDARD), connect_timeout=5, read_timeout=30)
    if service == "s3":
        config = config.merge(Config(signature_version="s3v4"))
    return _session().client(service, region_name=REGION, endpoint_url=endpoint, config=config)


def _name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def table(proxy: ChaosProxy) -> str:
    name = _name("chaos")
    client("dynamodb", proxy).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    proxy.reset_stats()
    return name


@pytest.fixture
def bucket(proxy: ChaosProxy) -> str:
    name = _name("chaos")
    client("s3", proxy).create_bucket(Bucket=name)
    proxy.reset_stats()
    return name


def _item(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "payload": {"S": f"value of {pk}"}}


# -- identifying requests ---------------------------------------------------------------------------


S3 = {"Authorization": _auth("s3")}
PRESIGNED_QUERY = (
    "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=testing%2F20260101%2Fus-east-1%2Fs3%2Faws4_request"
    "&X-Amz-Date=20260101T000000Z&X-Amz-Expires=3600&X-Amz-SignedHeaders=host&X-Amz-Signature=abc"
)


@pytest.mark.parametrize(
    ("method", "target", "headers", "body", "expected"),
    [
        (
            "POST",
            "/",
            {"Authorization": _auth("dynamodb"), "X-Amz-Target": "DynamoDB_20120810.PutItem"},
            None,
            ("dynamodb", "PutItem"),
        ),
        (
            "POST",
            "/",
            {"Authorization": _auth("sqs"), "X-Amz-Target": "AmazonSQS.SendMessage"},
            None,
            ("sqs", "SendMessage"),
        ),
        (
            "POST",
            "/",
            {
                "Authorization": _auth("sqs"),
                "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            },
            b"Action=ReceiveMessage&QueueUrl=http%3A%2F%2Fq&Version=2012-11-05",
            ("sqs", "ReceiveMessage"),
        ),
        (
            "GET",
            "/?Action=ListQueues&Version=2012-11-05",
            {"Authorization": _auth("sqs")},
            None,
            ("sqs", "ListQueues"),
        ),
        ("PUT", "/bkt/a/b.mp4?partNumber=2&uploadId=u1", S3, None, ("s3", "UploadPart")),
        ("PUT", "/bkt/a/b.mp4", S3, None, ("s3", "PutObject")),
        ("PUT", "/bkt/a/b.mp4?x-id=PutObject", S3, None, ("s3", "PutObject")),
        ("PUT", "/bkt/a/b.mp4", {**S3, "x-amz-copy-source": "/bkt/c"}, None, ("s3", "CopyObject")),
        ("POST", "/bkt/a/b.mp4?uploads", S3, None, ("s3", "CreateMultipartUpload")),
        ("POST", "/bkt/a/b.mp4?uploadId=u1", S3, None, ("s3", "CompleteMultipartUpload")),
        ("DELETE", "/bkt/a/b.mp4?uploadId=u1", S3, None, ("s3", "AbortMultipartUpload")),
        ("DELETE", "/bkt/a/b.mp4", S3, None, ("s3", "DeleteObject")),
        ("GET", "/bkt/a/b.mp4", S3, None, ("s3", "GetObject")),
        ("HEAD", "/bkt/a/b.mp4", S3, None, ("s3", "HeadObject")),
        ("GET", "/bkt/a/b.mp4?uploadId=u1", S3, None, ("s3", "ListParts")),
        ("GET", "/bkt?list-type=2&prefix=a%2F", S3, None, ("s3", "ListObjectsV2")),
        ("PUT", "/bkt", S3, None, ("s3", "CreateBucket")),
        ("HEAD", "/bkt", S3, None, ("s3", "HeadBucket")),
        ("GET", "/", S3, None, ("s3", "ListBuckets")),
        ("PUT", "/bkt?tagging", S3, None, ("s3", "PUT ?tagging")),
        ("GET", f"/bkt/a/b.mp4?{PRESIGNED_QUERY}", {}, None, ("s3", "GetObject")),
        ("GET", "/bkt/k?AWSAccessKeyId=testing&Signature=x&Expires=1", {}, None, ("s3", "GetObject")),
        ("POST", "/", {"X-Amz-Target": "DynamoDB_20120810.GetItem"}, None, ("dynamodb", "GetItem")),
        ("GET", "/somewhere", {}, None, ("unknown", "GET")),
    ],
)
def test_identify_names_the_service_and_operation(method, target, headers, body, expected):
    assert identify(method, target, headers, body) == expected


def test_add_fault_refuses_bad_rules(proxy):
    for bad in (
        {"kind": "explode"},
        {"rate": 1.5},
        {"rate": True},
        {"count": -1},
        {"count": 1.5},
        {"seed": "seven"},
    ):
        with pytest.raises(ValueError):
            proxy.add_fault("dynamodb", **bad)
    with pytest.raises(ValueError):
        proxy.add_fault("")
    assert proxy.faults() == []
    assert set(KINDS) == {"server_error", "throttle", "reset", "reset_after"}


# -- forwarding -------------------------------------------------------------------------------------


def test_requests_pass_through_to_moto_and_are_counted(proxy, table, bucket):
    dynamodb, s3, sqs = client("dynamodb", proxy), client("s3", proxy), client("sqs", proxy)

    dynamodb.put_item(TableName=table, Item=_item("a"))
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "a"}})["Item"] == _item("a")

    body = bytes(range(256)) * 4096  # 1 MiB, every byte value
    s3.put_object(Bucket=bucket, Key="dir/a b+c.bin", Body=body)
    assert s3.get_object(Bucket=bucket, Key="dir/a b+c.bin")["Body"].read() == body
    assert s3.head_object(Bucket=bucket, Key="dir/a b+c.bin")["ContentLength"] == len(body)
    link = s3.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "dir/a b+c.bin"})
    assert httpx.get(link).content == body

    queue_url = sqs.create_queue(QueueName=_name("chaos"))["QueueUrl"]
    # moto builds the queue URL from the Host header the proxy passed on unchanged
    assert queue_url.startswith(proxy.url + "/")
    sqs.send_message(QueueUrl=queue_url, MessageBody="hello")
    messages = sqs.receive_message(QueueUrl=queue_url, WaitTimeSeconds=0)["Messages"]
    assert [message["Body"] for message in messages] == ["hello"]

    assert proxy.stats() == {
        ("dynamodb", "PutItem"): Counts(1, 0),
        ("dynamodb", "GetItem"): Counts(1, 0),
        ("s3", "PutObject"): Counts(1, 0),
        ("s3", "GetObject"): Counts(2, 0),
        ("s3", "HeadObject"): Counts(1, 0),
        ("sqs", "CreateQueue"): Counts(1, 0),
        ("sqs", "SendMessage"): Counts(1, 0),
        ("sqs", "ReceiveMessage"): Counts(1, 0),
    }


# -- DynamoDB faults and botocore's retries -------------------------------------------------------


@pytest.mark.parametrize("retries", [STANDARD, {"mode": "legacy"}], ids=["standard", "legacy"])
def test_one_dynamodb_server_error_is_retried_transparently(proxy, table, backoff, retries):
    dynamodb = client("dynamodb", proxy, retries)
    rule = proxy.add_fault("dynamodb", "PutItem", count=1)

    answer = dynamodb.put_item(TableName=table, Item=_item("retried"))

    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert len(backoff) == 1
    assert (rule.remaining, rule.injected) == (0, 1)
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "retried"}})["Item"] == _item("retried")
    assert proxy.stats()[("dynamodb", "PutItem")] == Counts(seen=2, faults=1)
    assert proxy.stats()[("dynamodb", "GetItem")] == Counts(seen=1, faults=0)


# standard: sora_relay's max_attempts=3 means 3 retries, 4 attempts; total_max_attempts counts all
# of them; legacy: DynamoDB's own default of 10 attempts (botocore's _retry.json)
@pytest.mark.parametrize(
    ("retries", "attempts"),
    [
        (STANDARD, 4),
        ({"mode": "standard", "total_max_attempts": 3}, 3),
        ({"mode": "legacy"}, 10),
    ],
    ids=["standard-sora-relay", "standard-total-3", "legacy"],
)
def test_persistent_dynamodb_server_errors_raise_after_the_last_attempt(
    proxy, table, backoff, retries, attempts
):
    dynamodb = client("dynamodb", proxy, retries)
    rule = proxy.add_fault("dynamodb", "PutItem", count=20)

    with pytest.raises(ClientError) as raised:
        dynamodb.put_item(TableName=table, Item=_item("never"))

    error = raised.value.response
    assert error["Error"] == {"Code": "InternalServerError", "Message": "injected fault"}
    assert error["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert error["ResponseMetadata"]["RetryAttempts"] == attempts - 1
    assert error["ResponseMetadata"]["MaxAttemptsReached"] is True
    assert re.fullmatch(r"[0-9a-f-]{36}", error["ResponseMetadata"]["RequestId"])
    assert len(backoff) == attempts - 1
    assert rule.remaining == 20 - attempts
    assert proxy.stats()[("dynamodb", "PutItem")] == Counts(seen=attempts, faults=attempts)
    assert "Item" not in dynamodb.get_item(TableName=table, Key={"pk": {"S": "never"}})


def test_dynamodb_throttling_is_retried_then_raised(proxy, table, backoff):
    dynamodb = client("dynamodb", proxy)
    proxy.add_fault("dynamodb", "GetItem", count=1, kind="throttle")
    dynamodb.get_item(TableName=table, Key={"pk": {"S": "x"}})
    assert proxy.stats()[("dynamodb", "GetItem")] == Counts(seen=2, faults=1)

    proxy.add_fault("dynamodb", "GetItem", count=20, kind="throttle")
    with pytest.raises(ClientError) as raised:
        dynamodb.get_item(TableName=table, Key={"pk": {"S": "x"}})
    assert raised.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert proxy.stats()[("dynamodb", "GetItem")] == Counts(seen=6, faults=5)
    # the modelled exception class, as service code catches it
    assert isinstance(raised.value, dynamodb.exceptions.ProvisionedThroughputExceededException)


def test_rules_match_only_their_service_and_operation(proxy, table, bucket, backoff):
    dynamodb = client("dynamodb", proxy, NO_RETRIES)
    proxy.add_fault("dynamodb", "GetItem")  # every GetItem, no limit
    proxy.add_fault("s3")  # every S3 request

    dynamodb.put_item(TableName=table, Item=_item("a"))
    for _ in range(2):
        with pytest.raises(ClientError):
            dynamodb.get_item(TableName=table, Key={"pk": {"S": "a"}})
    with pytest.raises(ClientError):
        client("s3", proxy, NO_RETRIES).list_objects_v2(Bucket=bucket)

    assert proxy.clear() == 2
    assert proxy.fault_counts() == {("dynamodb", "GetItem"): 2, ("s3", "ListObjectsV2"): 1}
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "a"}})["Item"] == _item("a")
    assert proxy.stats() == {
        ("dynamodb", "PutItem"): Counts(1, 0),
        ("dynamodb", "GetItem"): Counts(3, 2),
        ("s3", "ListObjectsV2"): Counts(1, 1),
    }


def test_rate_faults_follow_the_seeded_sequence(proxy, table):
    dynamodb = client("dynamodb", proxy, NO_RETRIES)
    rate, seed, calls = 0.25, 7, 200

    def failures() -> list[bool]:
        failed = []
        for _ in range(calls):
            try:
                dynamodb.get_item(TableName=table, Key={"pk": {"S": "x"}})
                failed.append(False)
            except ClientError as error:
                assert error.response["Error"]["Code"] == "InternalServerError"
                failed.append(True)
        return failed

    rule = proxy.add_fault("dynamodb", "GetItem", rate=rate, seed=seed)
    first = failures()
    draws = random.Random(seed)
    expected = [draws.random() < rate for _ in range(calls)]
    assert first == expected
    assert 0.15 * calls < sum(first) < 0.35 * calls
    assert rule.injected == sum(first)
    assert proxy.stats()[("dynamodb", "GetItem")] == Counts(seen=calls, faults=sum(first))

    proxy.clear()
    proxy.add_fault("dynamodb", "GetItem", rate=rate, seed=seed)
    assert failures() == first  # repeatable
    proxy.clear()
    proxy.add_fault("dynamodb", "GetItem", rate=rate, seed=seed + 1)
    assert failures() != first


def test_count_and_rate_together_cap_the_faults(proxy, table):
    dynamodb = client("dynamodb", proxy, NO_RETRIES)
    rule = proxy.add_fault("dynamodb", "GetItem", rate=0.5, count=3, seed=1)
    failed = 0
    for _ in range(40):
        try:
            dynamodb.get_item(TableName=table, Key={"pk": {"S": "x"}})
        except ClientError:
            failed += 1
    assert failed == 3
    assert (rule.injected, rule.remaining, rule.matched) == (3, 0, 40)


# -- network faults ---------------------------------------------------------------------------------


def test_reset_without_retries_raises_a_connection_error_and_writes_nothing(proxy, table):
    dynamodb = client("dynamodb", proxy, NO_RETRIES)
    proxy.add_fault("dynamodb", "PutItem", count=1, kind="reset")

    with pytest.raises(ConnectionClosedError):
        dynamodb.put_item(TableName=table, Item=_item("lost"))

    assert "Item" not in dynamodb.get_item(TableName=table, Key={"pk": {"S": "lost"}})
    dynamodb.put_item(TableName=table, Item=_item("lost"))  # the proxy still serves
    assert proxy.stats()[("dynamodb", "PutItem")] == Counts(seen=2, faults=1)


def test_a_reset_is_a_tcp_reset_not_an_orderly_close(proxy):
    proxy.add_fault("*", kind="reset", count=1)
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(b"GET /anything HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc")
        with pytest.raises(ConnectionResetError):
            while sock.recv(1024):  # an orderly close would end this loop with b""
                pass
    assert proxy.stats() == {("unknown", "GET"): Counts(1, 1)}


def test_a_reset_is_retried_by_standard_mode(proxy, table, backoff):
    dynamodb = client("dynamodb", proxy)
    proxy.add_fault("dynamodb", "PutItem", count=2, kind="reset")

    answer = dynamodb.put_item(TableName=table, Item=_item("third-time"))

    assert answer["ResponseMetadata"]["RetryAttempts"] == 2
    assert len(backoff) == 2
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "third-time"}})["Item"] == _item("third-time")


def test_max_attempts_1_in_a_client_config_still_retries_once(proxy, table, backoff):
    # Config(retries={"max_attempts": 1}) is one *retry*; only total_max_attempts=1 turns them off.
    proxy.add_fault("dynamodb", "PutItem", count=1, kind="reset")
    answer = client("dynamodb", proxy, {"max_attempts": 1}).put_item(TableName=table, Item=_item("again"))
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1
    assert proxy.stats()[("dynamodb", "PutItem")] == Counts(seen=2, faults=1)


def test_reset_after_loses_the_answer_but_not_the_write(proxy, table):
    dynamodb = client("dynamodb", proxy, NO_RETRIES)
    proxy.add_fault("dynamodb", "PutItem", count=1, kind="reset_after")

    with pytest.raises(ConnectionClosedError):
        dynamodb.put_item(TableName=table, Item=_item("written"))

    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "written"}})["Item"] == _item("written")


# -- S3 ---------------------------------------------------------------------------------------------


def test_s3_put_object_faults(proxy, bucket, backoff):
    s3 = client("s3", proxy)
    proxy.add_fault("s3", "PutObject", count=1)
    s3.put_object(Bucket=bucket, Key="one", Body=b"first")
    assert s3.get_object(Bucket=bucket, Key="one")["Body"].read() == b"first"
    assert proxy.stats()[("s3", "PutObject")] == Counts(seen=2, faults=1)

    proxy.add_fault("s3", "PutObject", count=20, kind="throttle")
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="two", Body=io.BytesIO(b"second"))  # Expect: 100-continue
    assert raised.value.response["Error"]["Code"] == "SlowDown"
    assert raised.value.response["Error"]["Message"] == "injected fault"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert raised.value.response["ResponseMetadata"]["RetryAttempts"] == 3
    assert proxy.stats()[("s3", "PutObject")] == Counts(seen=6, faults=5)
    proxy.clear()
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=bucket, Key="two")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


def _upload(s3: Any, bucket: str, key: str, parts: list[bytes]) -> str:
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = [
        s3.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=number, Body=io.BytesIO(part))[
            "ETag"
        ]
        for number, part in enumerate(parts, start=1)
    ]
    s3.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"ETag": etag, "PartNumber": n} for n, etag in enumerate(etags, start=1)]},
    )
    return upload_id


def test_multipart_upload_survives_a_failed_part(proxy, bucket, backoff):
    s3 = client("s3", proxy)
    parts = [bytes([index]) * (5 * MIB) for index in range(2)] + [b"tail"]
    proxy.add_fault("s3", "UploadPart", count=1)

    _upload(s3, bucket, "video.mp4", parts)

    body = s3.get_object(Bucket=bucket, Key="video.mp4")["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(parts)).digest()
    stats = proxy.stats()
    assert stats[("s3", "UploadPart")] == Counts(seen=4, faults=1)
    assert stats[("s3", "CreateMultipartUpload")] == Counts(1, 0)
    assert stats[("s3", "CompleteMultipartUpload")] == Counts(1, 0)
    assert len(backoff) == 1


def test_a_part_failing_for_good_raises_and_the_upload_can_be_aborted(proxy, bucket, backoff):
    s3 = client("s3", proxy)
    upload_id = s3.create_multipart_upload(Bucket=bucket, Key="broken.mp4")["UploadId"]
    proxy.add_fault("s3", "UploadPart", count=20)

    with pytest.raises(ClientError) as raised:
        s3.upload_part(Bucket=bucket, Key="broken.mp4", UploadId=upload_id, PartNumber=1, Body=b"x" * MIB)
    assert raised.value.response["Error"]["Code"] == "InternalError"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    assert raised.value.response["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]

    s3.abort_multipart_upload(Bucket=bucket, Key="broken.mp4", UploadId=upload_id)
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert proxy.stats()[("s3", "UploadPart")] == Counts(seen=4, faults=4)
    assert proxy.stats()[("s3", "AbortMultipartUpload")] == Counts(1, 0)


def test_concurrent_multipart_transfer_with_failing_parts(proxy, bucket, backoff):
    # boto3's managed transfer: parts uploaded from 4 threads at once, two of them failing once
    s3 = client("s3", proxy)
    data = hashlib.sha256(b"seed").digest() * (20 * MIB // 32)
    proxy.add_fault("s3", "UploadPart", count=2)
    transfer = TransferConfig(multipart_threshold=5 * MIB, multipart_chunksize=5 * MIB, max_concurrency=4)

    s3.upload_fileobj(io.BytesIO(data), bucket, "big.bin", Config=transfer)

    assert s3.get_object(Bucket=bucket, Key="big.bin")["Body"].read() == data
    assert proxy.stats()[("s3", "UploadPart")] == Counts(seen=6, faults=2)


def test_a_fault_answers_an_expect_continue_request_before_its_body(proxy):
    proxy.add_fault("s3", "PutObject", count=1)
    size = 8 * MIB
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        head = (
            f"PUT /bkt/key HTTP/1.1\r\nHost: 127.0.0.1:{proxy.port}\r\nAuthorization: {_auth('s3')}\r\n"
            f"Content-Length: {size}\r\nExpect: 100-continue\r\n\r\n"
        )
        sock.sendall(head.encode())
        answer = sock.makefile("rb").readline()  # no body sent: a fault must answer anyway
    assert answer.startswith(b"HTTP/1.1 500 ")

    # without a fault the proxy asks for the body (100 Continue) and forwards it
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
        sock.sendall(head.encode())
        assert sock.makefile("rb").readline().startswith(b"HTTP/1.1 100 ")


# -- SQS --------------------------------------------------------------------------------------------


def test_sqs_faults_use_the_json_protocol_codes(proxy, backoff):
    sqs = client("sqs", proxy)
    queue_url = sqs.create_queue(QueueName=_name("chaos"))["QueueUrl"]

    proxy.add_fault("sqs", "SendMessage", count=1)
    sqs.send_message(QueueUrl=queue_url, MessageBody="once")

    proxy.add_fault("sqs", "SendMessage", count=20)
    with pytest.raises(ClientError) as raised:
        sqs.send_message(QueueUrl=queue_url, MessageBody="never")
    assert raised.value.response["Error"]["Code"] == "InternalError"
    assert raised.value.response["Error"]["Type"] == "Receiver"  # from x-amzn-query-error, as SQS sends
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    proxy.clear()

    proxy.add_fault("sqs", "ReceiveMessage", count=20, kind="throttle")
    with pytest.raises(ClientError) as throttled:
        sqs.receive_message(QueueUrl=queue_url)
    assert throttled.value.response["Error"]["Code"] == "RequestThrottled"
    assert isinstance(throttled.value, sqs.exceptions.RequestThrottled)
    proxy.clear()

    messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    assert [message["Body"] for message in messages] == ["once"]
    assert proxy.stats()[("sqs", "SendMessage")] == Counts(seen=6, faults=5)
    assert proxy.stats()[("sqs", "ReceiveMessage")] == Counts(seen=5, faults=4)


# -- the HTTP control surface -----------------------------------------------------------------------


def test_the_control_surface_over_http(proxy, table):
    dynamodb = client("dynamodb", proxy, NO_RETRIES)
    raw = httpx.Client(base_url=proxy.url)

    created = raw.post("/_chaos/faults", json={"service": "dynamodb", "operation": "GetItem", "count": 1})
    assert created.status_code == 201
    rule = created.json()
    assert rule == {
        "id": rule["id"],
        "service": "dynamodb",
        "operation": "GetItem",
        "kind": "server_error",
        "count": 1,
        "remaining": 1,
        "rate": None,
        "seed": None,
        "matched": 0,
        "injected": 0,
    }
    with pytest.raises(ClientError):
        dynamodb.get_item(TableName=table, Key={"pk": {"S": "x"}})
    dynamodb.get_item(TableName=table, Key={"pk": {"S": "x"}})

    listed = raw.get("/_chaos/faults").json()["faults"]
    assert [(entry["id"], entry["remaining"], entry["injected"], entry["matched"]) for entry in listed] == [
        (rule["id"], 0, 1, 2)
    ]
    assert raw.get("/_chaos/stats").json() == {
        "seen": 2,
        "faults": 1,
        "operations": [{"service": "dynamodb", "operation": "GetItem", "seen": 2, "faults": 1}],
    }

    assert raw.delete(f"/_chaos/faults/{rule['id']}").json() == {"removed": rule["id"]}
    assert raw.delete(f"/_chaos/faults/{rule['id']}").status_code == 404
    assert raw.post("/_chaos/faults", json={"service": "s3", "kind": "explode"}).status_code == 400
    assert raw.post("/_chaos/faults", json={"service": "s3", "typo": 1}).status_code == 400
    assert raw.post("/_chaos/faults", content=b"not json").status_code == 400
    assert raw.get("/_chaos/nothing").status_code == 404

    with ChaosControl(proxy.url) as control:
        added = control.add_fault("dynamodb", count=2, kind="throttle")
        assert [rule.id for rule in proxy.faults()] == [added["id"]]
        with pytest.raises(ValueError, match="kind"):
            control.add_fault("dynamodb", kind="explode")
        assert control.faults()[0]["kind"] == "throttle"
        with pytest.raises(ClientError) as raised:
            dynamodb.put_item(TableName=table, Item=_item("a"))
        assert raised.value.response["Error"]["Code"] == "ProvisionedThroughputExceededException"
        assert control.stats() == proxy.stats()
        assert control.stats()[("dynamodb", "PutItem")] == Counts(1, 1)
        assert control.clear() == 1
        assert proxy.faults() == []
        control.reset_stats()
        assert proxy.stats() == {}
    # control requests are the proxy's own: never forwarded, never counted
    assert raw.get("/_chaos/stats").json() == {"seen": 0, "faults": 0, "operations": []}
    raw.close()


def test_a_proxy_in_another_process_is_steered_over_http(moto_url, backoff):
    # `python -m devstack.chaos` in a child process; this process only talks HTTP to it
    env = {name: value for name, value in os.environ.items() if not name.startswith("AWS_")}
    child = subprocess.Popen(
        [sys.executable, "-m", "devstack.chaos", "--upstream", moto_url],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert child.stdout is not None
        url = re.search(r"chaos proxy on (http://\S+)", child.stdout.readline())[1]
        sqs = client("sqs", url)
        with ChaosControl(url) as control:
            control.add_fault("sqs", "CreateQueue", count=4)
            with pytest.raises(ClientError) as raised:
                sqs.create_queue(QueueName=_name("chaos"))
            assert raised.value.response["Error"]["Code"] == "InternalError"
            assert control.remove_fault(control.faults()[0]["id"]) is True
            assert sqs.create_queue(QueueName=_name("chaos"))["QueueUrl"].startswith(url)
            assert control.stats() == {("sqs", "CreateQueue"): Counts(seen=5, faults=4)}
    finally:
        stop_process(child)
        if child.stdout is not None:
            child.stdout.close()


# -- HTTP plumbing, against a recording upstream -----------------------------------------------------


@dataclass
class Recorded:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str | None:
        return next((value for key, value in self.headers if key.lower() == name.lower()), None)


class Recorder:
    """An upstream that records each request and answers by path: /chunked, /close, else plain."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _body(self) -> bytes:
                if "chunked" in self.headers.get("Transfer-Encoding", ""):
                    chunks = []
                    while size := int(self.rfile.readline().split(b";")[0], 16):
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    self.rfile.readline()
                    return b"".join(chunks)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def do_GET(self) -> None:
                recorder.requests.append(
                    Recorded(self.command, self.path, list(self.headers.items()), self._body())
                )
                payload = b'{"answer": "' + self.path.encode() + b'"}' * 3
                self.send_response(200)
                self.send_header("Content-Type", "application/x-amz-json-1.0")
                self.send_header("X-Multi", "one")
                self.send_header("X-Multi", "two")
                if self.path.startswith("/chunked"):
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for piece in (payload[:5], payload[5:]):
                        self.wfile.write(b"%x\r\n%b\r\n" % (len(piece), piece))
                    self.wfile.write(b"0\r\n\r\n")
                elif self.path.startswith("/close"):
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(payload)
                    self.close_connection = True
                elif self.command == "HEAD":
                    self.send_header("Content-Length", "12345")
                    self.end_headers()
                elif self.command == "PUT":
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)

            do_POST = do_PUT = do_HEAD = do_DELETE = do_GET

        self._server = QuietHTTPServer(("127.0.0.1", 0), Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Recorder:
        self._server.start_background("chaos-test-recorder")
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop_background()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with Recorder() as running:
        yield running


@pytest.fixture
def recorded_proxy(recorder: Recorder) -> Iterator[ChaosProxy]:
    with ChaosProxy(recorder.url) as running:
        yield running


def _signature_verifies(request: Recorded, auth_class: Callable[..., SigV4Auth], service: str) -> bool:
    """Recompute the SigV4 signature of what reached the upstream, as AWS would."""
    authorization = request.header("Authorization") or ""
    signed = re.search(r"SignedHeaders=([^,\s]+)", authorization)[1].split(";")
    signature = re.search(r"Signature=([0-9a-f]+)", authorization)[1]
    headers = {key: value for key, value in request.headers if key.lower() in signed}
    aws_request = AWSRequest(
        method=request.method,
        url=f"http://{request.header('Host')}{request.path}",
        headers=headers,
        data=request.body,
    )
    aws_request.context["timestamp"] = request.header("X-Amz-Date")
    auth = auth_class(Credentials("testing", "testing"), service, REGION)
    canonical = auth.canonical_request(aws_request)
    return bool(auth.signature(auth.string_to_sign(aws_request, canonical), aws_request) == signature)


def test_signed_requests_reach_the_upstream_unchanged(recorded_proxy, recorder):
    dynamodb = client("dynamodb", recorded_proxy)
    dynamodb.put_item(TableName="t", Item={"pk": {"S": "caf\u00e9 \u2615"}})
    client("s3", recorded_proxy).put_object(Bucket="bkt", Key="dir/a b+c\u00e9.bin", Body=b"\x00\x01 bytes")

    put_item, put_object = recorder.requests
    assert put_item.method == "POST"
    assert put_item.path == "/"
    assert put_item.header("Host") == f"127.0.0.1:{recorded_proxy.port}"  # what the client signed
    assert put_item.header("X-Amz-Target") == "DynamoDB_20120810.PutItem"
    assert json.loads(put_item.body) == {"TableName": "t", "Item": {"pk": {"S": "caf\u00e9 \u2615"}}}
    assert _signature_verifies(put_item, SigV4Auth, "dynamodb")

    assert put_object.method == "PUT"
    assert put_object.path.startswith("/bkt/dir/a%20b%2Bc%C3%A9.bin")
    assert put_object.body == b"\x00\x01 bytes"
    assert _signature_verifies(put_object, S3SigV4Auth, "s3")
    # tampering is noticed: the check above can fail
    put_object.body = b"other"
    put_object.headers = [
        (k, "0" * 64 if k.lower() == "x-amz-content-sha256" else v) for k, v in put_object.headers
    ]
    assert not _signature_verifies(put_object, S3SigV4Auth, "s3")


def test_bodies_and_framing_are_relayed_over_one_kept_alive_connection(recorded_proxy, recorder):
    connection = http.client.HTTPConnection("127.0.0.1", recorded_proxy.port, timeout=5)
    try:
        # a chunked request body arrives whole
        connection.request("PUT", "/up", body=iter([b"abc", b"", b"defg" * 1000]), encode_chunked=True)
        response = connection.getresponse()
        assert (response.status, response.read()) == (200, b"")
        first_socket = connection.sock
        assert recorder.requests[-1].body == b"abc" + b"defg" * 1000

        # a chunked answer, an answer ended by closing, and repeated headers come through whole
        for path in ("/chunked", "/close?x=1"):
            connection.request("GET", path)
            response = connection.getresponse()
            assert response.read() == b'{"answer": "' + path.encode() + b'"}' * 3
            assert response.msg.get_all("X-Multi") == ["one", "two"]
            assert connection.sock is first_socket  # kept alive, even when the upstream closed

        # HEAD: the upstream's Content-Length, and no body to wait for
        connection.request("HEAD", "/object")
        response = connection.getresponse()
        assert response.getheader("Content-Length") == "12345"
        assert response.read() == b""
        connection.request("GET", "/after-head")
        assert connection.getresponse().read().startswith(b'{"answer": "/after-head"}')
        assert connection.sock is first_socket
    finally:
        connection.close()
    assert [request.path for request in recorder.requests] == [
        "/up",
        "/chunked",
        "/close?x=1",
        "/object",
        "/after-head",
    ]


def test_an_unreachable_upstream_answers_502(backoff):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"  # nothing listens once closed
    with ChaosProxy(dead) as proxy:
        assert httpx.get(f"{proxy.url}/anything").status_code == 502
        with pytest.raises(ClientError) as raised:
            client("dynamodb", proxy).describe_table(TableName="t")
        assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 502
        assert proxy.stats()[("dynamodb", "DescribeTable")] == Counts(seen=4, faults=0)  # retried


def test_stop_ends_kept_alive_connections(recorder):
    proxy = ChaosProxy(recorder.url).start()
    connection = http.client.HTTPConnection("127.0.0.1", proxy.port, timeout=5)
    try:
        connection.request("GET", "/first")
        assert connection.getresponse().read()
        proxy.stop()
        connection.request("GET", "/second")
        with pytest.raises((ConnectionError, http.client.HTTPException)):
            connection.getresponse()
    finally:
        connection.close()
        proxy.stop()
    assert [request.path for request in recorder.requests] == ["/first"]
