"""devstack.chaos: the fault rules, their shared state file, and the botocore hook.

The hook tests run boto3 clients (fake credentials, never real AWS) against moto's server in a
child process on 127.0.0.1, with the hook registered on their session. botocore's backoff sleeps
are recorded instead of slept (`backoff`), so the retry counts are checked without waiting.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
import textwrap
import time
import types
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.endpoint
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

from devstack.chaos import CRASH_EXIT_CODE, ENV, Call, Chaos, decide, hook, install
from devstack.stack import FAKE_AWS, moto_server

REGION = "us-east-1"
# What sora_relay.adapters.aws configures: in a client Config, max_attempts counts the retries.
STANDARD = {"mode": "standard", "max_attempts": 3}
NO_RETRIES = {"mode": "standard", "total_max_attempts": 1}


@pytest.fixture(autouse=True)
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and no config file: nothing here can reach or sign for real AWS."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)


@pytest.fixture
def chaos() -> Iterator[Chaos]:
    with Chaos() as running:
        yield running


@pytest.fixture(scope="module")
def moto_url() -> Iterator[str]:
    with moto_server() as url:
        yield url


@pytest.fixture
def backoff(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """botocore's retry delays, recorded instead of slept."""
    delays: list[float] = []
    fake_time = types.SimpleNamespace(sleep=delays.append, time=time.time, monotonic=time.monotonic)
    monkeypatch.setattr(botocore.endpoint, "time", fake_time)
    return delays


@functools.cache
def _session(path: str) -> boto3.session.Session:
    # One session per state file, with the hook: it caches the service models between clients.
    session = boto3.session.Session(
        aws_access_key_id="testing", aws_secret_access_key="testing", region_name=REGION
    )
    install(path, session)
    return session


def client(service: str, chaos: Chaos, moto_url: str, retries: dict[str, Any] | None = None) -> Any:
    assert chaos.path is not None
    # A copy: botocore rewrites the dict it is given (max_attempts -> total_max_attempts).
    config = Config(retries=dict(retries or STANDARD), connect_timeout=5, read_timeout=30)
    return _session(chaos.path).client(service, endpoint_url=moto_url, config=config)


@pytest.fixture
def table(chaos: Chaos, moto_url: str) -> str:
    name = f"chaos-{uuid.uuid4().hex[:12]}"
    client("dynamodb", chaos, moto_url).create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    return name


@pytest.fixture
def bucket(chaos: Chaos, moto_url: str) -> str:
    name = f"chaos-{uuid.uuid4().hex[:12]}"
    client("s3", chaos, moto_url).create_bucket(Bucket=name)
    return name


# -- the rules --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, fields",
    [
        (("",), {}),
        (("dynamodb", ""), {}),
        (("dynamodb",), {"kind": "explode"}),
        (("dynamodb",), {"count": -1}),
        (("dynamodb",), {"count": 1.5}),
        (("dynamodb",), {"rate": 1.5}),
        (("dynamodb",), {"rate": True}),
        (("dynamodb",), {"seed": "7"}),
        (("dynamodb",), {"function": ""}),
        (("dynamodb",), {"body_contains": ""}),
    ],
)
def test_a_bad_rule_is_refused(chaos: Chaos, args: tuple[Any, ...], fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        chaos.add_fault(*args, **fields)
    assert chaos.read()["rules"] == []


def test_count_is_the_number_of_faults_then_calls_pass(chaos: Chaos) -> None:
    assert chaos.path is not None
    rule = chaos.add_fault("dynamodb", "PutItem", count=2, kind="throttle")
    decisions = [decide(chaos.path, Call("dynamodb", "PutItem")) for _ in range(4)]
    assert decisions == ["throttle", "throttle", None, None]
    assert decide(chaos.path, Call("dynamodb", "GetItem")) is None
    assert (rule.injected, rule.matched) == (2, 2)  # spent: later calls are not even counted
    assert chaos.fault_counts() == {("dynamodb", "PutItem"): 2}


def test_rules_match_by_service_and_operation_and_the_first_that_fires_wins(chaos: Chaos) -> None:
    assert chaos.path is not None
    first = chaos.add_fault("s3", "UploadPart", count=1, kind="throttle")
    anything = chaos.add_fault("*", count=2)
    assert decide(chaos.path, Call("s3", "UploadPart")) == "throttle"
    assert decide(chaos.path, Call("s3", "UploadPart")) == "server_error"
    assert decide(chaos.path, Call("sqs", "SendMessage")) == "server_error"
    assert decide(chaos.path, Call("sqs", "SendMessage")) is None
    assert (first.injected, anything.injected) == (1, 2)
    assert chaos.fault_counts() == {("s3", "UploadPart"): 2, ("sqs", "SendMessage"): 1}


def test_a_seeded_rate_fires_on_the_same_calls_every_run() -> None:
    runs = []
    for _ in range(2):
        with Chaos() as chaos:
            assert chaos.path is not None
            rule = chaos.add_fault("dynamodb", rate=0.25, seed=7)
            runs.append([decide(chaos.path, Call("dynamodb", "Query")) is not None for _ in range(400)])
            assert rule.matched == 400 and rule.injected == sum(runs[-1])
    assert runs[0] == runs[1]
    assert 60 <= sum(runs[0]) <= 140  # about a quarter


def test_rate_zero_never_fires_and_one_always_does(chaos: Chaos) -> None:
    assert chaos.path is not None
    chaos.add_fault("dynamodb", "GetItem", rate=0.0)
    chaos.add_fault("dynamodb", "PutItem", rate=1.0)
    assert {decide(chaos.path, Call("dynamodb", "GetItem")) for _ in range(50)} == {None}
    assert {decide(chaos.path, Call("dynamodb", "PutItem")) for _ in range(50)} == {"server_error"}


def test_clear_removes_the_rules_and_keeps_the_counts(chaos: Chaos) -> None:
    assert chaos.path is not None
    rule = chaos.add_fault("s3")
    decide(chaos.path, Call("s3", "PutObject"))
    assert chaos.clear() == 1 and chaos.read()["rules"] == []
    assert decide(chaos.path, Call("s3", "PutObject")) is None
    assert rule.injected == 1 and chaos.fault_counts() == {("s3", "PutObject"): 1}
    chaos.stop()
    assert rule.injected == 1  # still readable once the state file is gone


def test_count_holds_across_processes(chaos: Chaos) -> None:
    # Given a count rule and four processes deciding at once, as the workers do
    assert chaos.path is not None
    rule = chaos.add_fault("dynamodb", "PutItem", count=50)
    script = textwrap.dedent(
        f"""
        from devstack.chaos import Call, decide
        print(sum(decide({chaos.path!r}, Call("dynamodb", "PutItem")) is not None for _ in range(40)))
        """
    )
    workers = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE) for _ in range(4)]
    injected = [int(worker.communicate(timeout=60)[0]) for worker in workers]
    # Then 50 faults were injected in all, and every call was counted once
    assert sum(injected) == 50 == rule.injected
    assert rule.matched == 50


def test_without_a_state_file_the_hook_injects_nothing(tmp_path: Any) -> None:
    request = types.SimpleNamespace(url="http://127.0.0.1:1/", method="POST", headers={})
    assert hook(request, "before-send.dynamodb.PutItem", path=str(tmp_path / "gone.json")) is None


def test_a_crash_rule_matches_only_its_function_and_body(chaos: Chaos) -> None:
    assert chaos.path is not None
    rule = chaos.add_crash("ArchiveFunction", "dynamodb", "UpdateItem", body_contains="video_sha256")
    claim = Call("dynamodb", "UpdateItem", "ArchiveFunction", b'{"UpdateExpression": "SET archive_claim"}')
    complete = Call("dynamodb", "UpdateItem", "ArchiveFunction", b'{":video_sha256": {"S": "ab"}}')
    elsewhere = Call("dynamodb", "UpdateItem", "CallbackFunction", complete.body)
    assert [decide(chaos.path, call) for call in (claim, elsewhere, complete, complete)] == [
        None,
        None,
        "crash",
        None,  # count=1: the next such call passes
    ]
    assert (rule.matched, rule.injected) == (1, 1)
    # a crash is counted by function, apart from the injected errors
    assert chaos.crash_counts() == {("ArchiveFunction", "dynamodb", "UpdateItem"): 1}
    assert chaos.fault_counts() == {}


def test_a_crash_ends_the_worker_before_the_request_is_sent(chaos, moto_url, table) -> None:
    # Given a process that runs as a function's worker does (the hook installed, its name set)
    chaos.add_crash("DemoFunction", "dynamodb", "PutItem", body_contains="second")
    script = textwrap.dedent(
        f"""
        import os, sys, boto3
        from devstack.chaos import install
        install(os.environ[{ENV!r}])
        dynamodb = boto3.client("dynamodb")
        for name in ("first", "second", "third"):
            dynamodb.put_item(TableName={table!r}, Item={{"pk": {{"S": name}}}})
            print(name, flush=True)
        """
    )
    env = {
        **os.environ,
        **chaos.environment,
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_LAMBDA_FUNCTION_NAME": "local-DemoFunction",
    }
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    # Then it died at the second write with 137, which was never sent; the first stays written
    assert out.returncode == CRASH_EXIT_CODE, out.stderr
    assert out.stdout.split() == ["first"]
    assert "crashing DemoFunction at dynamodb:PutItem" in out.stderr
    items = client("dynamodb", chaos, moto_url).scan(TableName=table)["Items"]
    assert [item["pk"]["S"] for item in items] == ["first"]


# -- botocore with the hook -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind, status, code",
    [
        ("server_error", 500, "InternalServerError"),
        ("throttle", 400, "ProvisionedThroughputExceededException"),
    ],
)
def test_dynamodb_gets_its_own_error(chaos, moto_url, table, kind, status, code) -> None:
    chaos.add_fault("dynamodb", "PutItem", count=1, kind=kind)
    dynamodb = client("dynamodb", chaos, moto_url, NO_RETRIES)
    with pytest.raises(ClientError) as raised:
        dynamodb.put_item(TableName=table, Item={"pk": {"S": "a"}})
    error = raised.value.response
    assert error["Error"]["Code"] == code and error["Error"]["Message"] == "injected fault"
    assert error["ResponseMetadata"]["HTTPStatusCode"] == status
    assert "Item" not in dynamodb.get_item(TableName=table, Key={"pk": {"S": "a"}})  # never sent


@pytest.mark.parametrize(
    "kind, status, code", [("server_error", 500, "InternalError"), ("throttle", 503, "SlowDown")]
)
def test_s3_gets_its_own_error(chaos, moto_url, bucket, kind, status, code) -> None:
    chaos.add_fault("s3", "PutObject", count=1, kind=kind)
    s3 = client("s3", chaos, moto_url, NO_RETRIES)
    with pytest.raises(ClientError) as raised:
        s3.put_object(Bucket=bucket, Key="k", Body=b"data")
    assert raised.value.response["Error"]["Code"] == code
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert s3.list_objects_v2(Bucket=bucket).get("KeyCount") == 0


def test_s3_head_gets_a_bodiless_error(chaos, moto_url, bucket) -> None:
    chaos.add_fault("s3", "HeadObject", count=1)
    with pytest.raises(ClientError) as raised:
        client("s3", chaos, moto_url, NO_RETRIES).head_object(Bucket=bucket, Key="k")
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500


def test_sqs_gets_its_query_compatible_code(chaos, moto_url) -> None:
    sqs = client("sqs", chaos, moto_url, NO_RETRIES)
    url = sqs.create_queue(QueueName=f"chaos-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    chaos.add_fault("sqs", "SendMessage", count=1, kind="throttle")
    with pytest.raises(ClientError) as raised:
        sqs.send_message(QueueUrl=url, MessageBody="x")
    assert raised.value.response["Error"]["Code"] == "RequestThrottled"


def test_standard_retries_absorb_a_single_throttle(chaos, moto_url, table, backoff) -> None:
    rule = chaos.add_fault("dynamodb", "PutItem", count=1, kind="throttle")
    dynamodb = client("dynamodb", chaos, moto_url)
    answer = dynamodb.put_item(TableName=table, Item={"pk": {"S": "b"}})
    assert answer["ResponseMetadata"]["RetryAttempts"] == 1 and len(backoff) == 1
    assert rule.injected == 1
    assert dynamodb.get_item(TableName=table, Key={"pk": {"S": "b"}})["Item"]["pk"] == {"S": "b"}


def test_a_burst_longer_than_the_retries_escapes(chaos, moto_url, bucket, backoff) -> None:
    rule = chaos.add_fault("s3", count=10)
    with pytest.raises(ClientError) as raised:
        client("s3", chaos, moto_url).put_object(Bucket=bucket, Key="k", Body=b"data")
    attempts = raised.value.response["ResponseMetadata"]["RetryAttempts"] + 1
    assert raised.value.response["Error"]["Code"] == "InternalError"
    assert attempts == 4 == rule.injected and len(backoff) == 3


def test_a_reset_is_a_closed_connection_that_botocore_retries(chaos, moto_url, table, backoff) -> None:
    rule = chaos.add_fault("dynamodb", "GetItem", count=1, kind="reset")
    client("dynamodb", chaos, moto_url).get_item(TableName=table, Key={"pk": {"S": "c"}})
    assert rule.injected == 1 and len(backoff) == 1
    chaos.add_fault("dynamodb", "GetItem", count=1, kind="reset")
    with pytest.raises(ConnectionClosedError):
        client("dynamodb", chaos, moto_url, NO_RETRIES).get_item(TableName=table, Key={"pk": {"S": "c"}})


def test_install_reaches_every_session_of_a_worker_process(chaos, moto_url) -> None:
    # Given a process that installs the hook first, as devstack.worker does, then makes clients
    chaos.add_fault("dynamodb", "ListTables", count=1, kind="throttle")
    script = textwrap.dedent(
        f"""
        import os, boto3
        from botocore.config import Config
        from botocore.exceptions import ClientError
        from devstack.chaos import install
        install(os.environ[{ENV!r}])
        retries = {{"mode": "standard", "total_max_attempts": 1}}
        try:
            boto3.client("dynamodb", config=Config(retries=retries)).list_tables()
        except ClientError as error:
            print(error.response["Error"]["Code"])
        print(len(boto3.session.Session().client("dynamodb").list_tables()["TableNames"]) >= 0)
        """
    )
    env = {**os.environ, **chaos.environment, "AWS_ENDPOINT_URL": moto_url}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    # Then boto3's default session had the fault, and a later session passed (count=1)
    assert out.stdout.split() == ["ProvisionedThroughputExceededException", "True"], out.stderr
    assert chaos.fault_counts() == {("dynamodb", "ListTables"): 1}
