"""Submissions from the SQS SubmitQueue: validated like POST /v1/videos, reported, never duplicated."""

from __future__ import annotations

import json

import boto3
import httpx
import pytest

from tests.conftest import LambdaContext
from tests.integration.conftest import VALID, reload_settings, run_queue


@pytest.fixture
def intake(stack, internet, downstream, monkeypatch, handlers):
    monkeypatch.setenv("PUBLIC_BASE_URL", "https://api.sora-relay.test/live")
    reload_settings(monkeypatch)

    class Intake:
        sqs = boto3.client("sqs", region_name="us-east-1")

        def send(self, body, *, key: str | None = None) -> str:
            attributes = {"idempotency_key": {"DataType": "String", "StringValue": key}} if key else {}
            text = body if isinstance(body, str) else json.dumps(body)
            return self.sqs.send_message(
                QueueUrl=stack.refs["SubmitQueue"], MessageBody=text, MessageAttributes=attributes
            )["MessageId"]

        def run(self) -> tuple[dict, dict]:
            return run_queue(stack, "SubmitQueue", handlers["intake"])

        def tasks(self) -> list[dict]:
            items = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=stack.refs["TasksTable"])
            return items["Items"]

        def events(self, detail_type: str) -> list[dict]:
            return [event for event in downstream.bus_events() if event["detail-type"] == detail_type]

    return Intake()


def test_a_queued_submission_starts_a_task_owned_by_the_queue(intake, internet, stack):
    message_id = intake.send({**VALID, "duration": 8})
    _event, answer = intake.run()
    assert answer == {"batchItemFailures": []}
    [accepted] = intake.events("Video Submission Accepted")
    assert accepted["detail"]["message_id"] == message_id
    video = accepted["detail"]["video"]
    assert video["status"] == "in_progress" and video["seconds"] == "8"
    [task] = intake.tasks()
    queue_name = stack.attributes[("SubmitQueue", "Arn")].rsplit(":", 1)[-1]
    assert task["owner"]["S"] == f"sqs:{queue_name}" and task["task_id"]["S"] == video["id"]
    assert internet.last_call()["body"]["callback_url"].startswith(
        f"https://api.sora-relay.test/live/v1/callbacks/acedata/{video['id']}?token="
    )


def test_a_redelivered_message_makes_no_second_task(intake, handlers, internet):
    intake.send(VALID)
    event, _ = intake.run()
    # Lambda hands the same message over again (its visibility ran out before the delete, say)
    assert handlers["intake"].lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert len(intake.tasks()) == 1 and len(internet.provider_calls) == 1
    accepted = intake.events("Video Submission Accepted")
    assert len(accepted) == 2 and len({event["detail"]["video"]["id"] for event in accepted}) == 1


def test_two_messages_with_one_idempotency_key_make_one_task(intake):
    intake.send(VALID, key="order-17")
    intake.send(VALID, key="order-17")
    intake.run()
    assert len(intake.tasks()) == 1


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ("not json", None, "invalid_json"),
        ({"model": "sora-2"}, "prompt", "missing_parameter"),
        ({**VALID, "duration": 5}, "duration", "invalid_value"),
        ({**VALID, "colour": "red"}, "colour", "unknown_parameter"),
        ({**VALID, "callback_url": "http://169.254.169.254/latest"}, "callback_url", "unsafe_url"),
    ],
)
def test_an_invalid_message_is_reported_and_dropped(intake, stack, body, param, code):
    message_id = intake.send(body)
    _, answer = intake.run()
    assert answer == {"batchItemFailures": []}  # not retried
    [rejected] = intake.events("Video Submission Rejected")
    assert rejected["detail"]["message_id"] == message_id and rejected["detail"]["status"] == 400
    assert rejected["detail"]["error"]["param"] == param and rejected["detail"]["error"]["code"] == code
    assert intake.tasks() == []
    assert intake.run()[0]["Records"] == []  # gone from the queue


def test_a_key_reused_with_another_body_is_rejected(intake):
    intake.send(VALID, key="order-18")
    intake.send({**VALID, "prompt": "something else"}, key="order-18")
    intake.run()
    [rejected] = intake.events("Video Submission Rejected")
    assert rejected["detail"]["error"]["code"] == "idempotency_key_reused"
    assert len(intake.tasks()) == 1


def test_our_own_failure_leaves_the_message_for_a_retry(intake, monkeypatch):
    message_id = intake.send(VALID)
    monkeypatch.setenv("TASKS_TABLE_NAME", "no-such-table")
    reload_settings(monkeypatch)
    _, answer = intake.run()
    assert answer == {"batchItemFailures": [{"itemIdentifier": message_id}]}
    assert intake.events("Video Submission Rejected") == []


def test_a_busy_provider_queues_the_submission_for_dispatch(intake, internet, stack):
    internet.create_failures.append(httpx.Response(429, json={"error": {"code": "busy", "message": "later"}}))
    intake.send(VALID)
    intake.run()
    [accepted] = intake.events("Video Submission Accepted")
    assert accepted["detail"]["video"]["status"] == "queued"
    dispatch = boto3.client("sqs", region_name="us-east-1").receive_message(
        QueueUrl=stack.refs["DispatchQueue"]
    )
    assert json.loads(dispatch["Messages"][0]["Body"])["task_id"] == accepted["detail"]["video"]["id"]


def test_a_refused_message_is_rejected_again_when_redelivered(intake, handlers, internet):
    internet.create_failures.append(httpx.Response(400, json={"error": {"code": "bad", "message": "no"}}))
    intake.send(VALID)
    event, answer = intake.run()
    assert answer == {"batchItemFailures": []}
    # Lambda hands the same message over again: the stored refusal answers, the provider is not asked
    assert handlers["intake"].lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}
    rejected = intake.events("Video Submission Rejected")
    assert [(r["detail"]["status"], r["detail"]["error"]["code"]) for r in rejected] == [
        (400, "provider_rejected")
    ] * 2
    assert intake.events("Video Submission Accepted") == [] and internet.provider_calls == []


def test_a_provider_5xx_on_create_is_accepted_as_the_failed_task_and_never_resent(intake, handlers, internet):
    # Given a provider that fails while taking the create (it may have started the job)
    internet.create_failures.append(
        httpx.Response(500, json={"error": {"code": "api_error", "message": "x"}})
    )
    intake.send(VALID)
    event, answer = intake.run()

    # Then the message is done with, and reported as the one task it made, failed with the reason
    assert answer == {"batchItemFailures": []}
    [accepted] = intake.events("Video Submission Accepted")
    video = accepted["detail"]["video"]
    assert video["status"] == "failed" and video["error"]["code"] == "provider_outcome_unknown"
    [task] = intake.tasks()
    assert (task["task_id"]["S"], task["error_code"]["S"]) == (video["id"], "provider_outcome_unknown")

    # And a redelivery answers the same without asking the provider again
    assert handlers["intake"].lambda_handler(event, LambdaContext()) == {"batchItemFailures": []}
    assert len(intake.tasks()) == 1 and internet.create_failures == [] and internet.provider_calls == []
    assert intake.events("Video Submission Rejected") == []
