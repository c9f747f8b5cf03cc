"""The local event sources, on moto's server, with small stand-in functions and the real stack.

The SQS event source mapping runs template functions triggered by `Type: SQS` events (the
dispatch function), so its Lambda semantics are pinned here: batches, partial batch failures,
redelivery after the visibility timeout, crashes, and the redrive to the dead-letter queue. The
DynamoDB stream mapping is pinned the same way (filters, bisection, the on-failure queue), and
the schedule and the event bus tap are checked on a running DevStack.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
import uuid

import pytest

from devstack.event_sources.sqs import sqs_event_sources
from devstack.event_sources.streams import dynamodb_event_sources
from devstack.gateway import LocalApiGateway
from devstack.processes import local_http
from devstack.template import ROOT, Stack

pytestmark = pytest.mark.e2e

CONSUMER = """
import json, os


def lambda_handler(event, context):
    failures = []
    with open(os.environ["OUT"], "a") as out:
        for record in event["Records"]:
            out.write(json.dumps({
                "body": record["body"],
                "receive_count": int(record["attributes"]["ApproximateReceiveCount"]),
                "keys": sorted(record),
                "attributes": record["attributes"],
                "source": record["eventSource"],
                "arn": record["eventSourceARN"],
                "pid": os.getpid(),
            }) + "\\n")
    for record in event["Records"]:
        if record["body"].startswith("crash"):
            os._exit(7)
        if record["body"].startswith("fail"):
            failures.append({"itemIdentifier": record["messageId"]})
    return {"batchItemFailures": failures}
"""


@pytest.fixture
def queues(stack):
    """A queue (1 s visibility, so redeliveries come quickly) that redrives to a DLQ after 2 receives."""
    sqs = stack.aws_client("sqs")
    name = f"events-{uuid.uuid4().hex[:8]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2})
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "1", "RedrivePolicy": redrive})[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return sqs, url, arn, dlq_url


@contextlib.contextmanager
def stand_in(tmp_path, code: str, event_type: str, properties: dict, pool_size: int = 2):
    """A one-function template (`code` as its handler, OUT its output file) behind one event, on a
    gateway of its own; yields (gateway, the output file)."""
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "app.py").write_text(textwrap.dedent(code))
    out = tmp_path / "out.jsonl"
    out.touch()
    function = {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "CodeUri": str(tmp_path / "code"),
            "Handler": "app.lambda_handler",
            "Timeout": 5,
            "Environment": {"Variables": {"OUT": str(out)}},
            "Events": {"Trigger": {"Type": event_type, "Properties": properties}},
        },
    }
    # A function triggered by a queue or a stream only still gets instances from the gateway.
    local = Stack({"Resources": {"StandInFunction": function}}, {})
    with LocalApiGateway(local, {}.get, pool_size=pool_size, log_dir=tmp_path / "logs") as gateway:
        yield gateway, out


@pytest.fixture
def consumer(stack, queues, tmp_path):
    """The stand-in function behind an SQS event with ReportBatchItemFailures; yields its output file."""
    sqs, _, arn, _ = queues
    properties = {"Queue": arn, "BatchSize": 5, "FunctionResponseTypes": ["ReportBatchItemFailures"]}
    properties["ScalingConfig"] = {"MaximumConcurrency": 2}
    with stand_in(tmp_path, CONSUMER, "SQS", properties) as (gateway, out):
        # A warm instance first: a cold start on a busy machine could outlast the 1 s visibility.
        assert gateway.invoke("StandInFunction", {"Records": []}) == {"batchItemFailures": []}
        (source,) = sqs_event_sources(gateway.stack, gateway, sqs, default_concurrency=2)
        source.start()
        try:
            yield out, gateway
        finally:
            source.stop()


def _records(out) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def _depth(sqs, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_messages_reach_the_function_as_lambda_sqs_records(queues, consumer, eventually):
    sqs, url, arn, _ = queues
    out, _ = consumer

    for body in ("ok-1", "ok-2"):
        sqs.send_message(QueueUrl=url, MessageBody=body)

    records = eventually(lambda: found if len(found := _records(out)) == 2 else None, what="two records")
    assert sorted(record["body"] for record in records) == ["ok-1", "ok-2"]
    assert all(record["receive_count"] == 1 for record in records)
    # Shaped like the SQS sample event the dispatch function is tested with
    sample = json.loads((ROOT / "events" / "dispatch.json").read_text())["Records"][0]
    assert records[0]["keys"] == sorted(sample)
    assert set(records[0]["attributes"]) >= set(sample["attributes"])
    assert records[0]["source"] == "aws:sqs" and records[0]["arn"] == arn
    # Handled messages are deleted
    eventually(lambda: _depth(sqs, url) == 0, what="the queue to drain")


def test_a_reported_failure_is_redelivered_then_dead_lettered(queues, consumer, eventually):
    sqs, url, _, dlq_url = queues
    out, _ = consumer

    sqs.send_message(QueueUrl=url, MessageBody="fail-1")
    sqs.send_message(QueueUrl=url, MessageBody="ok-3")

    # The failed one comes back after its visibility timeout; the good one is seen once
    eventually(
        lambda: any(r["body"] == "fail-1" and r["receive_count"] == 2 for r in _records(out)),
        what="the redelivery",
    )
    assert [r["body"] for r in _records(out)].count("ok-3") == 1
    # After maxReceiveCount (2) the queue's redrive policy moves it to the dead-letter queue
    eventually(lambda: _depth(sqs, dlq_url) == 1, what="the dead-letter queue")
    assert _depth(sqs, url) == 0


def test_a_crashing_function_leaves_its_batch_on_the_queue(queues, consumer, eventually):
    sqs, url, _, dlq_url = queues
    out, gateway = consumer

    sqs.send_message(QueueUrl=url, MessageBody="crash-1")

    # Redelivered once more (a fresh instance each time), then dead-lettered
    eventually(lambda: [r["receive_count"] for r in _records(out)] == [1, 2], what="two deliveries")
    eventually(lambda: _depth(sqs, dlq_url) == 1, what="the dead-letter queue")
    first, second = (record["pid"] for record in _records(out))
    assert first != second and not {first, second} & set(gateway.worker_pids())


# -- the DynamoDB stream mapping -----------------------------------------------------------------

STREAM_CONSUMER = """
import json, os


def lambda_handler(event, context):
    records = event["Records"]
    keys = [record["dynamodb"]["Keys"]["pk"]["S"] for record in records]
    with open(os.environ["OUT"], "a") as out:
        out.write(json.dumps({"keys": keys, "first": records[0]}) + "\\n")
    if "poison" in keys:
        raise RuntimeError("a record this function cannot handle")
    return {"batchItemFailures": []}
"""

# INSERTs only, and not the ones marked "ignored": the rest never reach the function.
STREAM_FILTER = json.dumps(
    {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"kind": {"S": [{"anything-but": ["ignored"]}]}}}}
)


@pytest.fixture
def stream_table(stack):
    """A fresh table with a NEW_AND_OLD_IMAGES stream and a dead-letter queue, on the stack's moto."""
    name = f"stream-{uuid.uuid4().hex[:8]}"
    dynamodb = stack.aws_client("dynamodb")
    stream_arn = dynamodb.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]["LatestStreamArn"]
    sqs = stack.aws_client("sqs")
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return dynamodb, name, stream_arn, sqs, dlq_url, dlq_arn


@pytest.fixture
def stream_consumer(stack, stream_table, tmp_path):
    """The stand-in function behind a `Type: DynamoDB` event shaped like TaskEventsFunction's."""
    _, _, stream_arn, _, _, dlq_arn = stream_table
    properties = {
        "Stream": stream_arn,
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 10,
        "MaximumBatchingWindowInSeconds": 1,
        "BisectBatchOnFunctionError": True,
        "MaximumRetryAttempts": 1,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "DestinationConfig": {"OnFailure": {"Type": "SQS", "Destination": dlq_arn}},
        "FilterCriteria": {"Filters": [{"Pattern": STREAM_FILTER}]},
    }
    with stand_in(tmp_path, STREAM_CONSUMER, "DynamoDB", properties, pool_size=1) as (gateway, out):
        (source,) = dynamodb_event_sources(gateway.stack, gateway, stack.aws_client, retry_delay_s=0.1)
        source.start()
        try:
            yield out, source
        finally:
            source.stop()


def _batches(out) -> list[dict]:
    return [json.loads(line) for line in out.read_text().splitlines() if line.strip()]


def test_stream_records_are_filtered_batched_bisected_and_dead_lettered(
    stream_table, stream_consumer, eventually
):
    dynamodb, table, stream_arn, sqs, dlq_url, _ = stream_table
    out, source = stream_consumer

    # One request, so the records reach the stream within the batching window on a busy machine
    items = [
        ("a", "task"),
        ("b", "task"),
        ("poison", "task"),
        ("c", "task"),
        ("skip", "ignored"),
    ]  # skip: filtered
    requests = [{"PutRequest": {"Item": {"pk": {"S": key}, "kind": {"S": kind}}}} for key, kind in items]
    dynamodb.batch_write_item(RequestItems={table: requests})
    dynamodb.update_item(  # a MODIFY: filtered out
        TableName=table,
        Key={"pk": {"S": "a"}},
        UpdateExpression="SET kind = :k",
        ExpressionAttributeValues={":k": {"S": "changed"}},
    )

    # The poison record ends in the on-failure queue, alone, and the others are through ("c"
    # follows the poison record in the shard, so it is delivered only once that one is given up)
    message = eventually(
        lambda: (
            (found := sqs.receive_message(QueueUrl=dlq_url).get("Messages")) and json.loads(found[0]["Body"])
        ),
        what="the on-failure message",
    )
    eventually(lambda: any(batch["keys"] == ["c"] for batch in _batches(out)), what="c delivered")
    batches = _batches(out)
    delivered = [key for batch in batches if "poison" not in batch["keys"] for key in batch["keys"]]
    assert sorted(delivered) == ["a", "b", "c"]
    assert all("skip" not in batch["keys"] for batch in batches)
    # One batch of all four (the window gathered them), then halves until the poison one is alone
    assert batches[0]["keys"] == ["a", "b", "poison", "c"]
    assert [batch["keys"] for batch in batches].count(["poison"]) == 2  # the try and its one retry
    # Records in Lambda's DynamoDB format, from the stream over moto's HTTP API
    first = batches[0]["first"]
    assert first["eventSource"] == "aws:dynamodb" and first["eventSourceARN"] == stream_arn
    assert first["dynamodb"]["NewImage"] == {"pk": {"S": "a"}, "kind": {"S": "task"}}
    info = message["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1 and info["streamArn"] == stream_arn
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["responseContext"]["functionError"] == "Unhandled"
    assert source.dropped == 2


# -- the running stack ---------------------------------------------------------------------------


def test_every_event_source_of_the_template_runs(stack):
    running = {(source.kind, source.function_id) for source in stack.event_sources}
    assert running >= {
        ("sqs", "DispatchFunction"),
        ("dynamodb", "TaskEventsFunction"),
        ("schedule", "ReconcileFunction"),
    }
    schedule = stack.event_source("ReconcileFunction", "schedule")
    # the interval the stack was given (tests/e2e/conftest.py), not the template's rate(5 minutes)
    assert schedule.interval_s == stack.schedule_interval_s != 300
    stream = stack.event_source("TaskEventsFunction", "dynamodb")
    assert stream.source_arn == stack.stack.attributes[("TasksTable", "StreamArn")]


def test_the_intake_functions_public_base_url_is_the_local_api(stack):
    assert stack.stack.function_environment("IntakeFunction")["PUBLIC_BASE_URL"] == stack.api_url
    assert stack.gateway.function_spec("IntakeFunction").environment["PUBLIC_BASE_URL"] == stack.api_url


def test_the_event_tap_shows_what_is_published_on_the_bus(stack, eventually):
    marker = uuid.uuid4().hex
    bus = stack.stack.refs["EventBus"]
    entry = {"DetailType": "Tap Check", "Detail": json.dumps({"marker": marker}), "EventBusName": bus}
    # Somebody else's event first: once ours is on the tap, theirs would be too.
    stack.aws_client("events").put_events(
        Entries=[{**entry, "Source": "somebody-else"}, {**entry, "Source": "sora-relay"}]
    )

    def ours():
        return [
            e
            for e in stack.bus_events()
            if isinstance(e["detail"], dict) and e["detail"].get("marker") == marker
        ]

    (event,) = eventually(ours, what="the event on the tap")  # only the sora-relay one
    assert event["source"] == "sora-relay" and event["detail-type"] == "Tap Check"
    assert event in stack.bus_events()  # kept: later calls still return it


def test_the_reconciler_runs_on_its_schedule_and_finishes_a_lost_callback(stack, eventually):
    schedule = stack.event_source("ReconcileFunction", "schedule")
    assert schedule.interval_s == stack.schedule_interval_s

    # The schedule invokes the real ReconcileFunction, again and again (a run may have failed
    # earlier in the session, while the fault suite was failing DynamoDB calls on purpose)
    seen = schedule.invocations
    eventually(
        lambda: schedule.invocations >= seen + 2 and schedule.last_result is not None,
        what="two more scheduled runs",
    )
    assert stack.log_dir is not None
    log = (stack.log_dir / "ReconcileFunction.log").read_text()
    assert '"message":"Reconciled"' in log

    # And its runs have an effect: a task whose callback never came, old enough to be looked up
    with local_http(stack.api_url, headers={"x-api-key": stack.api_key}) as client:
        created = client.post(
            "/v1/videos", json={"prompt": f"[sim:no-callback] A quiet pond {uuid.uuid4().hex[:6]}"}
        )
        assert created.status_code == 202, created.text
        video_id = created.json()["id"]
        provider_task = stack.task_item(video_id)["provider_task_id"]
        eventually(
            lambda: "response" in (stack.simulator.record(provider_task) or {}), what="the provider to finish"
        )
        assert client.get(f"/v1/videos/{video_id}").json()["status"] == "in_progress"
        stack.aws_client("dynamodb").update_item(  # created 20 minutes ago (stale after 15)
            TableName=stack.stack.refs["TasksTable"],
            Key={"task_id": {"S": video_id}},
            UpdateExpression="SET created_ms = created_ms - :age",
            ExpressionAttributeValues={":age": {"N": str(20 * 60 * 1000)}},
        )
        finished = eventually(
            lambda: (video := client.get(f"/v1/videos/{video_id}").json())["status"] == "completed" and video,
            what="the reconciler to finish the task",
        )
    assert finished["status"] == "completed"
    assert stack.simulator.task_state(provider_task)["callbacks"] == []  # no callback did it
