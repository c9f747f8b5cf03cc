"""devstack.event_sources: Lambda's event patterns, the DynamoDB stream reader and event source
mapping (against moto in process), schedules; and the template intrinsics they rely on."""

from __future__ import annotations

import base64
import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.event_sources.schedules import ScheduleSource, rate_seconds, schedule_source
from devstack.event_sources.streams import (
    DynamoDBStreamSource,
    StreamReader,
    filter_matches,
    filter_patterns,
    matches_any,
    sqs_destination,
)
from devstack.fake_aws import FAKE_AWS
from devstack.functions import InvocationFailed
from devstack.template import NO_VALUE, ResetImpossible, Stack, load_template, provision, reset, secret_value

TEMPLATE = load_template()
(STREAM_EVENT,) = Stack(TEMPLATE, {}).function_events("TaskEventsFunction").values()
TASK_EVENTS_FILTERS = filter_patterns(STREAM_EVENT["Properties"]["FilterCriteria"])  # the template's


# -- event patterns ------------------------------------------------------------------------------


def _stream_record(event_name: str, old_status: str | None, new_status: str | None) -> dict[str, Any]:
    dynamodb: dict[str, Any] = {"Keys": {"task_id": {"S": "t1"}}, "SequenceNumber": "1"}
    if old_status is not None:
        dynamodb["OldImage"] = {"task_id": {"S": "t1"}, "status": {"S": old_status}}
    if new_status is not None:
        dynamodb["NewImage"] = {"task_id": {"S": "t1"}, "status": {"S": new_status}}
    return {"eventName": event_name, "eventSource": "aws:dynamodb", "dynamodb": dynamodb}


def test_the_templates_filter_lets_only_terminal_transitions_through():
    patterns = TASK_EVENTS_FILTERS
    assert len(patterns) == 1

    assert matches_any(patterns, _stream_record("MODIFY", "in_progress", "completed"))
    assert matches_any(patterns, _stream_record("MODIFY", "queued", "failed"))
    # Already terminal before: a second write of a completed task is not a transition
    assert not matches_any(patterns, _stream_record("MODIFY", "completed", "completed"))
    assert not matches_any(patterns, _stream_record("MODIFY", "completed", "failed"))
    # Not terminal yet, a new task, a deleted one
    assert not matches_any(patterns, _stream_record("MODIFY", "queued", "in_progress"))
    assert not matches_any(patterns, _stream_record("INSERT", None, "completed"))
    assert not matches_any(patterns, _stream_record("REMOVE", "in_progress", None))


def test_no_filters_let_everything_through_and_any_filter_is_enough():
    event = {"source": "sora-relay", "detail": {"status": "completed"}}
    assert matches_any(None, event) and matches_any([], event)
    filters = ['{"source": ["other"]}', {"detail": {"status": ["completed"]}}]
    assert matches_any(filters, event)
    assert not matches_any(filters[:1], event)


def test_patterns_are_matched_by_motos_matcher():
    # The operators are moto's (its EventBridge rules use the same matcher); a few, to show it is wired.
    assert filter_matches(
        {"detail": {"video": {"status": ["completed", "failed"]}}},
        {"detail": {"video": {"status": "failed"}}},
    )
    assert not filter_matches({"detail": {"video": {"status": ["completed"]}}}, {"detail": {}})
    assert filter_matches({"id": [{"prefix": "video_"}]}, {"id": "video_123"})
    assert filter_matches({"status": [{"anything-but": ["queued"]}]}, {"status": "completed"})
    assert filter_matches({"$or": [{"a": ["x"]}, {"b": [{"numeric": [">", 3]}]}]}, {"b": 4})


@pytest.mark.parametrize("pattern", [{"a": "not-a-list"}, {"a": [{"numeric": ["~", 1]}]}])
def test_a_malformed_pattern_is_an_error(pattern):
    with pytest.raises(ValueError):
        filter_matches(pattern, {"a": 1})


def test_filter_patterns_parse_a_filter_criteria():
    criteria = {
        "Filters": [{"Pattern": '{"eventName": ["INSERT"]}'}, {"Pattern": '{"eventName": ["REMOVE"]}'}]
    }
    assert filter_patterns(criteria) == [{"eventName": ["INSERT"]}, {"eventName": ["REMOVE"]}]
    assert filter_patterns(None) == []


# -- DynamoDB stream reader (moto in process) ----------------------------------------------------


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in FAKE_AWS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    with mock_aws():
        yield


@pytest.fixture
def table(aws: None) -> tuple[Any, str]:
    """A table with a NEW_AND_OLD_IMAGES stream; (dynamodb client, stream ARN)."""
    dynamodb = boto3.client("dynamodb", region_name="us-east-1")
    description = dynamodb.create_table(
        TableName="tasks",
        AttributeDefinitions=[{"AttributeName": "task_id", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "task_id", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    return dynamodb, description["LatestStreamArn"]


def _streams() -> Any:
    return boto3.client("dynamodbstreams", region_name="us-east-1")


def _put(dynamodb: Any, task_id: str, status: str, **extra: Any) -> None:
    item = {"task_id": {"S": task_id}, "status": {"S": status}, **extra}
    dynamodb.put_item(TableName="tasks", Item=item)


def _set_status(dynamodb: Any, task_id: str, status: str) -> None:
    dynamodb.update_item(
        TableName="tasks",
        Key={"task_id": {"S": task_id}},
        UpdateExpression="SET #s = :s",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":s": {"S": status}},
    )


def test_the_reader_returns_lambda_dynamodb_records(table):
    dynamodb, stream_arn = table
    reader = StreamReader(_streams(), stream_arn)
    before = time.time()

    _put(dynamodb, "t1", "in_progress", blob={"B": b"\x00\xffbin"}, n={"N": "7"})
    _set_status(dynamodb, "t1", "completed")
    dynamodb.delete_item(TableName="tasks", Key={"task_id": {"S": "t1"}})
    records = reader.read()

    assert [record["eventName"] for record in records] == ["INSERT", "MODIFY", "REMOVE"]
    insert, modify, remove = records
    assert set(modify) == {
        "eventID",
        "eventName",
        "eventVersion",
        "eventSource",
        "awsRegion",
        "eventSourceARN",
        "dynamodb",
    }
    assert modify["eventVersion"] == "1.1"
    assert modify["eventSource"] == "aws:dynamodb"
    assert modify["awsRegion"] == "us-east-1"
    assert modify["eventSourceARN"] == stream_arn
    data = modify["dynamodb"]
    assert set(data) == {
        "ApproximateCreationDateTime",
        "Keys",
        "NewImage",
        "OldImage",
        "SequenceNumber",
        "SizeBytes",
        "StreamViewType",
    }
    assert data["Keys"] == {"task_id": {"S": "t1"}}
    assert data["OldImage"]["status"] == {"S": "in_progress"}
    assert data["NewImage"]["status"] == {"S": "completed"}
    assert data["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert isinstance(data["SizeBytes"], int) and data["SizeBytes"] > 0
    assert isinstance(data["ApproximateCreationDateTime"], int)
    assert before - 2 <= data["ApproximateCreationDateTime"] <= time.time() + 2
    # Binary as base64 text and numbers as strings, as in Lambda's JSON event
    assert insert["dynamodb"]["NewImage"]["blob"] == {"B": base64.b64encode(b"\x00\xffbin").decode()}
    assert insert["dynamodb"]["NewImage"]["n"] == {"N": "7"}
    assert "OldImage" not in insert["dynamodb"] and "NewImage" not in remove["dynamodb"]
    sequence = [int(record["dynamodb"]["SequenceNumber"]) for record in records]
    assert sequence == sorted(sequence) and len(set(sequence)) == 3
    json.dumps(records)  # a Lambda event is JSON


def test_the_reader_remembers_where_it_is(table):
    dynamodb, stream_arn = table
    reader = StreamReader(_streams(), stream_arn)
    _put(dynamodb, "t1", "queued")
    assert [record["eventName"] for record in reader.read()] == ["INSERT"]
    assert reader.read() == []

    _set_status(dynamodb, "t1", "in_progress")
    _put(dynamodb, "t2", "queued")
    again = reader.read()
    assert [(r["eventName"], r["dynamodb"]["Keys"]["task_id"]["S"]) for r in again] == [
        ("MODIFY", "t1"),
        ("INSERT", "t2"),
    ]


def test_the_reader_reads_a_limited_number_per_call(table):
    dynamodb, stream_arn = table
    reader = StreamReader(_streams(), stream_arn)
    for number in range(5):
        _put(dynamodb, f"t{number}", "queued")
    assert len(reader.read(limit=2)) == 2
    assert len(reader.read(limit=2)) == 2
    assert len(reader.read(limit=2)) == 1


def test_latest_starts_after_what_is_there(table):
    dynamodb, stream_arn = table
    _put(dynamodb, "old", "queued")
    reader = StreamReader(_streams(), stream_arn, "LATEST")
    _put(dynamodb, "new", "queued")
    assert [record["dynamodb"]["Keys"]["task_id"]["S"] for record in reader.read()] == ["new"]
    with pytest.raises(ValueError):
        StreamReader(_streams(), stream_arn, "AT_TIMESTAMP")


def test_the_templates_filter_on_the_streams_records(table):
    dynamodb, stream_arn = table
    reader = StreamReader(_streams(), stream_arn)
    _put(dynamodb, "t1", "queued")
    _set_status(dynamodb, "t1", "in_progress")
    _set_status(dynamodb, "t1", "completed")
    _set_status(dynamodb, "t1", "completed")  # a second write of a finished task

    records = [record for record in reader.read() if matches_any(TASK_EVENTS_FILTERS, record)]

    assert len(records) == 1
    assert records[0]["dynamodb"]["OldImage"]["status"] == {"S": "in_progress"}
    assert records[0]["dynamodb"]["NewImage"]["status"] == {"S": "completed"}
    assert reader.read() == []  # all read


# -- the DynamoDB stream event source ------------------------------------------------------------


class FakeFunction:
    """An invoke callable: records each event's keys; `fail` decides per event what to answer."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[list[str]] = []
        self.answer = answer  # callable(keys, records) -> result, or raise

    def __call__(self, event: dict[str, Any]) -> Any:
        keys = [record["dynamodb"]["Keys"]["task_id"]["S"] for record in event["Records"]]
        self.calls.append(keys)
        return self.answer(keys, event["Records"]) if self.answer else None


def _source(stream_arn: str, function: FakeFunction, **options: Any) -> DynamoDBStreamSource:
    options.setdefault("retry_delay_s", 0)
    return DynamoDBStreamSource(
        function_id="TaskEventsFunction",
        reader=StreamReader(_streams(), stream_arn),
        invoke=function,
        **options,
    )


def test_records_are_batched_in_order_and_filtered(table):
    dynamodb, stream_arn = table
    function = FakeFunction()
    source = _source(stream_arn, function, batch_size=2, filters=['{"eventName": ["INSERT"]}'])
    for number in range(5):
        _put(dynamodb, f"t{number}", "queued")
    _set_status(dynamodb, "t0", "in_progress")  # filtered out

    source.drain()

    assert function.calls == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    assert source.delivered == 5 and source.dropped == 1 and source.given_up == []


def test_a_partial_failure_retries_from_the_first_reported_record(table):
    dynamodb, stream_arn = table

    def answer(keys: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
        if "t2" in keys and len(function.calls) == 1:  # t2 and t3 fail the first time
            failed = [
                r["dynamodb"]["SequenceNumber"]
                for r in records
                if r["dynamodb"]["Keys"]["task_id"]["S"] in ("t3", "t2")
            ]
            return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in failed]}
        return {"batchItemFailures": []}

    function = FakeFunction(answer)
    source = _source(stream_arn, function, batch_size=10, report_failures=True)
    for number in range(5):
        _put(dynamodb, f"t{number}", "queued")

    source.drain()

    # The records before the first failure were done; the rest come again, in order
    assert function.calls == [["t0", "t1", "t2", "t3", "t4"], ["t2", "t3", "t4"]]
    assert source.delivered == 5 and source.given_up == []


def test_without_report_failures_a_failure_answer_is_a_success(table):
    dynamodb, stream_arn = table
    function = FakeFunction(
        lambda keys, records: {
            "batchItemFailures": [{"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}]
        }
    )
    source = _source(stream_arn, function, report_failures=False)
    _put(dynamodb, "t0", "queued")
    source.drain()
    assert function.calls == [["t0"]]


def test_an_unknown_item_identifier_fails_the_whole_batch(table):
    dynamodb, stream_arn = table

    def answer(keys: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
        return (
            {"batchItemFailures": [{"itemIdentifier": "not-a-sequence-number"}]}
            if len(function.calls) == 1
            else {}
        )

    function = FakeFunction(answer)
    source = _source(stream_arn, function, report_failures=True)
    _put(dynamodb, "t0", "queued")
    _put(dynamodb, "t1", "queued")
    source.drain()
    assert function.calls == [["t0", "t1"], ["t0", "t1"]]


@pytest.fixture
def dead_letters(aws: None) -> tuple[Any, str]:
    sqs = boto3.client("sqs", region_name="us-east-1")
    return sqs, sqs.create_queue(QueueName="task-events-dlq")["QueueUrl"]


def _queued(sqs: Any, url: str) -> list[dict[str, Any]]:
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", [])
    return [json.loads(message["Body"]) for message in messages]


def test_a_failing_batch_is_retried_then_sent_to_the_on_failure_destination(table, dead_letters):
    dynamodb, stream_arn = table
    sqs, dlq_url = dead_letters

    def answer(keys: list[str], records: list[dict[str, Any]]) -> None:
        if "t1" in keys:
            raise InvocationFailed("error", "RuntimeError: boom")

    function = FakeFunction(answer)
    source = _source(
        stream_arn, function, batch_size=2, max_retry_attempts=2, on_failure=sqs_destination(sqs, dlq_url)
    )
    for number in range(3):
        _put(dynamodb, f"t{number}", "queued")
    records = StreamReader(_streams(), stream_arn).read()

    source.drain()

    # The first try and two retries, then the shard moves on to t2
    assert function.calls == [["t0", "t1"]] * 3 + [["t2"]]
    (message,) = _queued(sqs, dlq_url)
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["requestContext"]["approximateInvokeCount"] == 3
    assert message["requestContext"]["functionArn"].endswith(":function:local-TaskEventsFunction")
    assert message["responseContext"]["functionError"] == "Unhandled"
    assert message["version"] == "1.0" and message["timestamp"].endswith("Z")
    info = message["DDBStreamBatchInfo"]
    assert info["shardId"] == StreamReader(_streams(), stream_arn).shard_id
    assert info["startSequenceNumber"] == records[0]["dynamodb"]["SequenceNumber"]
    assert info["endSequenceNumber"] == records[1]["dynamodb"]["SequenceNumber"]
    assert info["batchSize"] == 2
    assert info["streamArn"] == stream_arn
    assert info["approximateArrivalOfFirstRecord"].endswith("Z")
    assert source.given_up == [message]


def test_bisecting_isolates_the_failing_record(table, dead_letters):
    dynamodb, stream_arn = table
    sqs, dlq_url = dead_letters

    def answer(keys: list[str], records: list[dict[str, Any]]) -> None:
        if "t2" in keys:
            raise InvocationFailed("error", "poison")

    function = FakeFunction(answer)
    source = _source(
        stream_arn,
        function,
        batch_size=4,
        bisect_on_error=True,
        max_retry_attempts=1,
        on_failure=sqs_destination(sqs, dlq_url),
    )
    for number in range(4):
        _put(dynamodb, f"t{number}", "queued")

    source.drain()

    # Halves until the poison record is alone; then its retry; then it is given up
    assert function.calls == [["t0", "t1", "t2", "t3"], ["t0", "t1"], ["t2", "t3"], ["t2"], ["t2"], ["t3"]]
    (message,) = _queued(sqs, dlq_url)
    assert message["DDBStreamBatchInfo"]["batchSize"] == 1
    assert (
        message["DDBStreamBatchInfo"]["startSequenceNumber"]
        == message["DDBStreamBatchInfo"]["endSequenceNumber"]
    )
    assert source.delivered == 3


def test_partial_failures_until_retries_run_out_dead_letter_the_rest_of_the_batch(table, dead_letters):
    dynamodb, stream_arn = table
    sqs, dlq_url = dead_letters

    def answer(keys: list[str], records: list[dict[str, Any]]) -> dict[str, Any]:
        failed = [
            r["dynamodb"]["SequenceNumber"] for r in records if r["dynamodb"]["Keys"]["task_id"]["S"] == "t1"
        ]
        return {"batchItemFailures": [{"itemIdentifier": sequence} for sequence in failed]}

    function = FakeFunction(answer)
    source = _source(
        stream_arn,
        function,
        report_failures=True,
        max_retry_attempts=1,
        on_failure=sqs_destination(sqs, dlq_url),
    )
    for number in range(3):
        _put(dynamodb, f"t{number}", "queued")

    source.drain()

    assert function.calls == [["t0", "t1", "t2"], ["t1", "t2"]]
    (message,) = _queued(sqs, dlq_url)
    assert message["DDBStreamBatchInfo"]["batchSize"] == 2
    assert "functionError" not in message["responseContext"]  # the function answered


def test_records_older_than_the_maximum_age_are_given_up_unread(table):
    dynamodb, stream_arn = table
    function = FakeFunction()
    destination: list[dict[str, Any]] = []
    source = _source(stream_arn, function, max_record_age_s=60, on_failure=destination.append)
    _put(dynamodb, "t0", "queued")
    original = source.reader.read

    def aged(limit: int = 1000) -> list[dict[str, Any]]:
        records = original(limit)
        for record in records:
            record["dynamodb"]["ApproximateCreationDateTime"] -= 3600
        return records

    source.reader.read = aged  # type: ignore[method-assign]
    source.drain()

    assert function.calls == []
    (message,) = destination
    assert message["requestContext"]["condition"] == "RecordAgeExceeded"
    assert message["requestContext"]["approximateInvokeCount"] == 0


def test_the_batching_window_waits_for_a_full_batch(table):
    dynamodb, stream_arn = table
    function = FakeFunction()
    now = [100.0]
    source = DynamoDBStreamSource(
        function_id="F",
        reader=StreamReader(_streams(), stream_arn),
        invoke=function,
        batch_size=3,
        batching_window_s=1.0,
        clock=lambda: now[0],
    )
    _put(dynamodb, "t0", "queued")
    _put(dynamodb, "t1", "queued")
    source.poll_once()
    assert function.calls == []  # two records, the window still open

    now[0] += 1.0
    source.poll_once()
    assert function.calls == [["t0", "t1"]]

    for number in range(2, 6):
        _put(dynamodb, f"t{number}", "queued")
    source.poll_once()  # a full batch goes at once
    assert function.calls[1:] == [["t2", "t3", "t4"]]


def test_the_source_polls_in_its_own_thread(table):
    dynamodb, stream_arn = table
    seen = threading.Event()

    def answer(keys: list[str], records: list[dict[str, Any]]) -> None:
        seen.set()

    function = FakeFunction(answer)
    source = _source(stream_arn, function, idle_poll_s=0.02).start()
    try:
        _put(dynamodb, "t0", "queued")
        assert seen.wait(5)
    finally:
        source.stop()
    assert function.calls == [["t0"]]
    assert source.idle()


# -- schedules -----------------------------------------------------------------------------------


def test_rate_expressions():
    assert rate_seconds("rate(5 minutes)") == 300
    assert rate_seconds("rate(1 minute)") == 60
    assert rate_seconds("rate(2 hours)") == 7200
    assert rate_seconds("rate(1 day)") == 86400
    assert rate_seconds("cron(0 12 * * ? *)") is None


def test_the_templates_reconciler_schedule():
    stack = Stack(TEMPLATE, {}, stack_name="sora-relay-local")
    event = TEMPLATE["Resources"]["ReconcileFunction"]["Properties"]["Events"]["Every5Minutes"]
    calls: list[dict[str, Any]] = []

    props = event["Properties"]
    default = schedule_source(stack, "ReconcileFunction", "Every5Minutes", props, calls.append)
    fast = schedule_source(stack, "ReconcileFunction", "Every5Minutes", props, calls.append, interval_s=1.5)

    assert default is not None and default.interval_s == 300
    assert fast is not None and fast.interval_s == 1.5
    fast.tick()
    (sent,) = calls
    assert sent["source"] == "aws.scheduler"
    assert sent["detail-type"] == "Scheduled Event"
    assert sent["version"] == "0" and sent["id"]
    assert sent["resources"] == [
        "arn:aws:scheduler:us-east-1:123456789012:schedule/default/ReconcileFunctionEvery5Minutes"
    ]
    assert sent["detail"] == "{}" and sent["time"].endswith("Z")


def test_a_cron_schedule_runs_only_at_a_given_interval():
    stack = Stack(TEMPLATE, {})
    cron = {"ScheduleExpression": "cron(0 12 * * ? *)"}
    assert schedule_source(stack, "F", "E", cron, lambda event: None) is None
    ticking = schedule_source(stack, "F", "E", cron, lambda event: None, interval_s=2)
    assert ticking is not None and ticking.interval_s == 2


def test_the_timer_ticks_every_interval_and_survives_failures():
    times: list[float] = []

    def invoke(event: dict[str, Any]) -> dict[str, int]:
        times.append(time.monotonic())
        if len(times) == 2:
            raise InvocationFailed("error", "the second run fails")
        return {"examined": 0}

    source = ScheduleSource(function_id="F", invoke=invoke, interval_s=0.1, source_arn="arn")
    started = time.monotonic()
    source.start()
    try:
        deadline = time.monotonic() + 5
        while len(times) < 4 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        source.stop()
    assert len(times) >= 4
    assert times[0] - started >= 0.09  # the first tick comes one interval after start
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert all(0.05 <= gap <= 0.5 for gap in gaps[:3])
    assert source.errors == 1 and source.last_result == {"examined": 0}
    assert source.invocations == len(times)


def test_stop_ends_the_timer_before_its_first_tick():
    calls: list[dict[str, Any]] = []
    source = ScheduleSource(function_id="F", invoke=calls.append, interval_s=30, source_arn="arn")
    source.start()
    stopped = time.monotonic()
    source.stop()
    assert time.monotonic() - stopped < 1
    assert calls == []


# -- template intrinsics and provisioning ---------------------------------------------------------


def test_fn_if_follows_the_templates_conditions():
    stack = Stack(
        TEMPLATE, {"PublicBaseUrl": "", "StageName": "live"}, refs={"RestApi": "abc123"}, stack_name="s"
    )
    assert stack.condition("HasPublicBaseUrl") is False
    variables = TEMPLATE["Resources"]["IntakeFunction"]["Properties"]["Environment"]["Variables"]
    assert (
        stack.resolve(variables["PUBLIC_BASE_URL"])
        == "https://abc123.execute-api.us-east-1.amazonaws.com/live"
    )

    stack.parameters["PublicBaseUrl"] = "https://videos.example.com"
    assert stack.condition("HasPublicBaseUrl") is True
    assert stack.resolve(variables["PUBLIC_BASE_URL"]) == "https://videos.example.com"


def test_condition_functions_and_pseudo_parameters():
    template = {
        "Conditions": {
            "IsProd": {"Fn::Equals": [{"Ref": "Env"}, "prod"]},
            "IsBig": {"Fn::Equals": [{"Ref": "Size"}, "big"]},
            "Both": {"Fn::And": [{"Condition": "IsProd"}, {"Condition": "IsBig"}]},
            "Either": {"Fn::Or": [{"Condition": "IsProd"}, {"Fn::Condition": "IsBig"}]},
            "NotProd": {"Fn::Not": [{"Condition": "IsProd"}]},
        },
        "Resources": {},
    }
    stack = Stack(template, {"Env": "prod", "Size": "small"}, stack_name="my-stack")
    assert [stack.condition(name) for name in ("IsProd", "Both", "Either", "NotProd")] == [
        True,
        False,
        True,
        False,
    ]
    assert stack.resolve({"Fn::If": ["Both", "a", {"Ref": "AWS::StackName"}]}) == "my-stack"
    assert stack.resolve({"Fn::Sub": "${AWS::StackName}-${AWS::Region}.${AWS::URLSuffix}"}) == (
        "my-stack-us-east-1.amazonaws.com"
    )
    assert stack.resolve({"Fn::If": ["IsProd", {"Ref": "AWS::NoValue"}, "x"]}) is NO_VALUE
    assert stack.resolve({"Fn::Join": ["-", ["a", {"Ref": "Env"}]]}) == "a-prod"
    with pytest.raises(KeyError):
        stack.condition("Missing")


def test_provision_creates_the_event_bus_and_the_function_environments_resolve(aws):
    stack = provision("unit", {"AceDataApiKey": "token"})

    assert stack.refs["EventBus"] == "unit-videos"  # ${AWS::StackName}-videos, the prefix as stack name
    bus = boto3.client("events", region_name="us-east-1").describe_event_bus(Name="unit-videos")
    assert stack.attributes[("EventBus", "Arn")] == bus["Arn"]
    environments = {function_id: stack.function_environment(function_id) for function_id in stack.functions()}
    assert environments["TaskEventsFunction"]["EVENT_BUS_NAME"] == "unit-videos"
    assert (
        environments["IntakeFunction"]["PUBLIC_BASE_URL"]
        == "https://local.execute-api.us-east-1.amazonaws.com/live"
    )
    for logical_id in ("WebhookQueue", "SubmitQueue", "TaskEventsDeadLetterQueue", "WebhookDeadLetterQueue"):
        assert stack.refs[logical_id].endswith(f"/unit-{logical_id}")
    assert stack.attributes[("TasksTable", "StreamArn")].startswith(
        stack.attributes[("TasksTable", "Arn")] + "/stream/"
    )


def test_reset_removes_the_secrets_plans_and_keys_a_test_made_and_restores_the_stacks(aws):
    stack = provision("unit", {"AceDataApiKey": "token"})
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    apigateway = boto3.client("apigateway", region_name="us-east-1")
    signing = stack.refs["WebhookSigningSecret"]
    secrets.create_secret(Name="tenants/t1", SecretString="s")
    plan = apigateway.create_usage_plan(name="plan")["id"]
    key = apigateway.create_api_key(name="k", enabled=True)["id"]
    apigateway.create_usage_plan_key(usagePlanId=plan, keyId=key, keyType="API_KEY")
    secrets.put_secret_value(SecretId=signing, SecretString="changed")

    reset(
        stack,
        [
            ("secretsmanager", "CreateSecret", {"Name": "tenants/t1"}),
            ("apigateway", "CreateUsagePlan", {"name": "plan"}),
            ("apigateway", "CreateApiKey", {"name": "k"}),
            ("secretsmanager", "PutSecretValue", {"SecretId": signing}),
        ],
    )

    names = {secret["Name"] for secret in secrets.list_secrets()["SecretList"]}
    assert names == {f"unit/{name}" for name in stack.secret_values}
    assert apigateway.get_usage_plans()["items"] == [] and apigateway.get_api_keys()["items"] == []
    assert secret_value(stack, "WebhookSigningSecret") == stack.secret_values["WebhookSigningSecret"]
    secrets.delete_secret(SecretId=signing, ForceDeleteWithoutRecovery=True)
    with pytest.raises(ResetImpossible):
        reset(stack, [("secretsmanager", "DeleteSecret", {"SecretId": signing})])
    with pytest.raises(ResetImpossible):  # a service reset() does not undo
        reset(stack, [("lambda", "CreateFunction", {})])


def test_reset_undoes_a_services_changes_and_refuses_a_deleted_queue_or_bus(aws):
    stack = provision("unit", {"AceDataApiKey": "token"})
    dynamodb, events = (boto3.client(name, region_name="us-east-1") for name in ("dynamodb", "events"))
    sqs = boto3.client("sqs", region_name="us-east-1")
    dynamodb.delete_table(TableName=stack.refs["TasksTable"])
    dynamodb.create_table(
        TableName="extra",
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": "k", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "k", "KeyType": "HASH"}],
    )
    events.create_event_bus(Name="extra")
    events.put_rule(Name="rule", EventBusName="extra", EventPattern='{"source": ["x"]}')
    reset(stack, [("dynamodb", "DeleteTable", {}), ("events", "CreateEventBus", {})])

    assert sorted(dynamodb.list_tables()["TableNames"]) == sorted(
        stack.refs[name] for name in stack.of_type("AWS::DynamoDB::Table")
    )
    assert [bus["Name"] for bus in events.list_event_buses()["EventBuses"]] == ["default", "unit-videos"]
    sqs.delete_queue(QueueUrl=stack.refs["WebhookQueue"])
    with pytest.raises(ResetImpossible):
        reset(stack, [("sqs", "DeleteQueue", {"QueueUrl": stack.refs["WebhookQueue"]})])
    events.delete_event_bus(Name=stack.refs["EventBus"])
    with pytest.raises(ResetImpossible):
        reset(stack, [("events", "DeleteEventBus", {"Name": stack.refs["EventBus"]})])
