"""The local SQS event source mapping, on moto's real SQS, with a small stand-in function.

It is what runs template functions triggered by `Type: SQS` events (the dispatch function), so
its Lambda semantics are pinned here: batches, partial batch failures, redelivery after the
visibility timeout, crashes, and the redrive to the dead-letter queue.
"""

from __future__ import annotations

import json
import textwrap
import uuid

import pytest

from devstack.gateway import LocalApiGateway
from devstack.stack import sqs_event_sources
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


@pytest.fixture
def consumer(stack, queues, tmp_path):
    """The stand-in function behind an SQS event with ReportBatchItemFailures; yields its output file."""
    sqs, _, arn, _ = queues
    code = tmp_path / "consumer"
    code.mkdir()
    (code / "app.py").write_text(textwrap.dedent(CONSUMER))
    out = tmp_path / "records.jsonl"
    out.touch()
    template = {
        "Globals": {"Function": {"Handler": "app.lambda_handler", "Timeout": 5}},
        "Resources": {
            "ConsumerFunction": {
                "Type": "AWS::Serverless::Function",
                "Properties": {
                    "CodeUri": str(code),
                    "Environment": {"Variables": {"OUT": str(out)}},
                    "Events": {
                        "Queue": {
                            "Type": "SQS",
                            "Properties": {
                                "Queue": arn,
                                "BatchSize": 5,
                                "FunctionResponseTypes": ["ReportBatchItemFailures"],
                                "ScalingConfig": {"MaximumConcurrency": 2},
                            },
                        }
                    },
                },
            }
        },
    }
    local = Stack(template, {})
    with LocalApiGateway(local, {}, pool_size=2, warm=1, log_dir=tmp_path / "logs") as gateway:
        assert gateway.wait_ready(30)
        (source,) = sqs_event_sources(local, gateway, sqs, default_concurrency=2)
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
    first = set(gateway.worker_pids())

    sqs.send_message(QueueUrl=url, MessageBody="crash-1")

    # Redelivered once more (a fresh instance each time), then dead-lettered
    eventually(lambda: [r["receive_count"] for r in _records(out)] == [1, 2], what="two deliveries")
    eventually(lambda: _depth(sqs, dlq_url) == 1, what="the dead-letter queue")
    assert not first & set(gateway.worker_pids())
