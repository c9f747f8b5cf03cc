"""Webhook redelivery: from the table's stream to the client, on a schedule, until it is heard."""

from __future__ import annotations

import io
import json

import boto3
import pytest
from standardwebhooks import Webhook

from devstack.template import load_template
from sora_relay.adapters.tenant_secrets import secret_name
from sora_relay.domain.errors import WebhookClaimLost
from sora_relay.domain.webhook import WebhookDelivery, WebhookState
from sora_relay.runtime.container import current
from sora_relay.settings import Settings
from tests.integration.conftest import OWNER, VALID, reload_settings, run_queue, submitted


def _task(stack, task_id: str) -> dict:
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=stack.refs["TasksTable"], Key={"task_id": {"S": task_id}}
    )["Item"]
    from sora_relay.adapters.dynamodb import TaskStore

    return TaskStore.from_image(item).model_dump(mode="json")


def _queue_counts(stack, logical_id: str) -> tuple[int, int]:
    attributes = boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=stack.refs[logical_id], AttributeNames=["All"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _settings(monkeypatch, **values: str) -> None:
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    reload_settings(monkeypatch)


def _event_id(video: dict) -> str:
    return f"evt_{video['id'].removeprefix('video_')}_completed"


def _show_again(stack, event: dict) -> None:
    """Make the received messages visible at once (instead of after their visibility timeout)."""
    sqs = boto3.client("sqs", region_name="us-east-1")
    for record in event["Records"]:
        sqs.change_message_visibility(
            QueueUrl=stack.refs["WebhookQueue"], ReceiptHandle=record["receiptHandle"], VisibilityTimeout=0
        )


def _dead_letters(stack) -> list[dict]:
    messages = boto3.client("sqs", region_name="us-east-1").receive_message(
        QueueUrl=stack.refs["WebhookDeadLetterQueue"], MaxNumberOfMessages=10
    )
    return [json.loads(message["Body"]) for message in messages.get("Messages", [])]


def _failure_logs(logs: io.StringIO) -> list[dict]:
    lines = [json.loads(line) for line in logs.getvalue().splitlines() if line.startswith("{")]
    return [line for line in lines if line["level"] in ("WARNING", "ERROR")]


@pytest.fixture
def completed(api, internet):
    """A task completed by its provider callback (the webhook not yet sent)."""

    def make():
        video, call = submitted(api, internet)
        status, _, _answer = api.callback(call["body"]["callback_url"], internet.success_body(call))
        assert status == 200 and api.get(video["id"])[2]["status"] == "completed"
        return video

    return make


def test_a_receiver_that_fails_three_times_gets_the_same_event_on_the_fourth(
    completed, internet, stack, downstream, monkeypatch, webhook_secret
):
    # Given a schedule with no waiting (the real one waits 5 s, 5 min, 30 min, ...)
    _settings(monkeypatch, WEBHOOK_RETRY_SCHEDULE="0")
    video = completed()
    answers = iter([503, 500, 429, 204])

    # When the receiver answers 503, 500 and 429 before it accepts
    downstream.pump_stream()
    for _ in range(4):
        internet.webhook_status = next(answers)
        downstream.pump_webhooks(rounds=1)

    # Then it got four POSTs of one event: the same webhook-id and payload id, each verifiable
    assert len(internet.webhooks) == 4
    ids = {hook.headers["webhook-id"] for hook in internet.webhooks}
    assert ids == {f"evt_{video['id'].removeprefix('video_')}_completed"}
    payloads = [
        Webhook(webhook_secret).verify(hook.content, dict(hook.headers)) for hook in internet.webhooks
    ]
    assert {payload["id"] for payload in payloads} == ids
    assert {payload["created_at"] for payload in payloads} == {payloads[0]["created_at"]}

    # And every attempt is on the task, and the queue is empty
    webhook = _task(stack, video["id"])["webhook"]
    assert webhook["state"] == "delivered" and webhook["attempts"] == 4
    assert [attempt["status_code"] for attempt in webhook["history"]] == [503, 500, 429, 204]
    assert [attempt["attempt"] for attempt in webhook["history"]] == [1, 2, 3, 4]
    assert _queue_counts(stack, "WebhookQueue") == (0, 0)
    assert _queue_counts(stack, "WebhookDeadLetterQueue") == (0, 0)


def test_a_failed_attempt_hides_the_message_until_the_next_one_is_due(completed, internet, stack, downstream):
    internet.webhook_status = 503
    video = completed()
    downstream.pump()
    # The first delay of the schedule is 5 s: the message is on the queue, hidden.
    assert _queue_counts(stack, "WebhookQueue") == (0, 1)
    webhook = _task(stack, video["id"])["webhook"]
    assert webhook["state"] == "retrying" and webhook["attempts"] == 1
    assert 4000 <= webhook["next_attempt_ms"] - webhook["history"][0]["at_ms"] <= 7000
    assert len(internet.webhooks) == 1


def test_410_gone_stops_delivery(completed, internet, stack, downstream, monkeypatch):
    _settings(monkeypatch, WEBHOOK_RETRY_SCHEDULE="0")
    internet.webhook_status = 410
    video = completed()
    downstream.pump()
    downstream.pump_webhooks()
    assert len(internet.webhooks) == 1
    webhook = _task(stack, video["id"])["webhook"]
    assert webhook["state"] == "gone" and webhook["attempts"] == 1 and webhook["last_status_code"] == 410
    assert _queue_counts(stack, "WebhookQueue") == (0, 0)
    assert _queue_counts(stack, "WebhookDeadLetterQueue") == (0, 0)


def test_after_the_last_attempt_the_event_goes_to_the_dead_letter_queue(
    completed, internet, stack, downstream, monkeypatch
):
    _settings(monkeypatch, WEBHOOK_RETRY_SCHEDULE="0", WEBHOOK_MAX_ATTEMPTS="3")
    internet.webhook_status = 500
    video = completed()
    downstream.pump_stream()
    downstream.pump_webhooks(rounds=10)
    assert len(internet.webhooks) == 3
    webhook = _task(stack, video["id"])["webhook"]
    assert webhook["state"] == "failed" and webhook["attempts"] == 3 and len(webhook["history"]) == 3
    assert _queue_counts(stack, "WebhookQueue") == (0, 0)
    dead = boto3.client("sqs", region_name="us-east-1").receive_message(
        QueueUrl=stack.refs["WebhookDeadLetterQueue"]
    )["Messages"]
    assert json.loads(dead[0]["Body"]) == {
        "task_id": video["id"],
        "event_id": webhook["event_id"],
        "type": "video.completed",
        "reason": "every attempt failed",
    }


def test_a_duplicate_message_never_sends_twice(completed, internet, stack, downstream):
    # Given the stream handed the same transition over twice (two identical webhook messages)
    video = completed()
    downstream.pump_stream()
    queue = current().webhook_queue
    message = {
        "task_id": video["id"],
        "event_id": f"evt_{video['id'].removeprefix('video_')}_completed",
        "type": "video.completed",
    }
    queue.send(message)

    # When both are delivered
    downstream.pump_webhooks()

    # Then the client heard the event once
    assert len(internet.webhooks) == 1
    assert _task(stack, video["id"])["webhook"]["attempts"] == 1


def test_a_duplicate_waits_for_the_schedule_instead_of_sending_early(completed, internet, stack, downstream):
    internet.webhook_status = 503
    video = completed()
    downstream.pump()  # attempt 1 failed; attempt 2 is due in 5 s
    current().webhook_queue.send(
        {
            "task_id": video["id"],
            "event_id": f"evt_{video['id'].removeprefix('video_')}_completed",
            "type": "video.completed",
        }
    )
    downstream.pump_webhooks()
    assert len(internet.webhooks) == 1  # the copy was hidden until then, not sent
    assert _queue_counts(stack, "WebhookQueue") == (0, 2)


def test_only_one_writer_claims_an_attempt(completed, stack):
    video = completed()
    store = current().task_store
    claim = WebhookDelivery(event_id="evt_x_completed", state=WebhookState.SENDING, attempts=1)
    store.write_webhook(video["id"], claim, expect_attempts=0)
    with pytest.raises(WebhookClaimLost):
        store.write_webhook(video["id"], claim, expect_attempts=0)
    with pytest.raises(WebhookClaimLost):
        store.write_webhook(video["id"], claim.model_copy(update={"attempts": 2}), expect_attempts=2)
    store.write_webhook(video["id"], claim.model_copy(update={"attempts": 2}), expect_attempts=1)


def test_the_default_schedule_spans_about_a_day_within_sqs_limits():
    settings = Settings(tasks_table_name="t", videos_bucket_name="b")
    parameters = load_template()["Parameters"]
    attempts = int(parameters["WebhookMaxAttempts"]["Default"])
    delays = [settings.webhook_delay(attempt) for attempt in range(1, attempts)]
    assert delays == [5, 300, 1800, 7200, 18000, 28800, 28800]
    assert 23 * 3600 <= sum(delays) <= 25 * 3600
    assert max(delays) <= 43200  # SQS's longest visibility timeout


def test_a_secret_that_cannot_be_read_claims_no_attempt_and_the_message_comes_back(
    completed, internet, stack, downstream, handlers, webhook_secret, service_logs
):
    # Given a completed task whose webhook is queued, and its tenant's signing secret Secrets
    # Manager refuses
    video = completed()
    downstream.pump_stream()
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    secret_id = secret_name(current().settings.tenant_secret_prefix, OWNER)
    secrets.delete_secret(SecretId=secret_id, RecoveryWindowInDays=7)

    # When the message is delivered
    event, answer = run_queue(stack, "WebhookQueue", handlers["webhook"])

    # Then nothing was sent or claimed, and the message is reported failed, to come back
    assert internet.webhooks == []
    assert _task(stack, video["id"])["webhook"] is None
    assert answer["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert _queue_counts(stack, "WebhookQueue") == (0, 1)
    # And the cause is logged once, with the task id, and neither the secret nor the prompt
    [failure] = _failure_logs(service_logs)
    assert failure["task_id"] == video["id"] and "InvalidRequestException" in json.dumps(failure)
    assert webhook_secret.removeprefix("whsec_") not in service_logs.getvalue()
    assert VALID["prompt"] not in service_logs.getvalue()

    # When the secret is back and so is the message, the first attempt is attempt 1
    secrets.restore_secret(SecretId=secret_id)
    _show_again(stack, event)
    downstream.pump_webhooks()
    assert len(internet.webhooks) == 1
    webhook = _task(stack, video["id"])["webhook"]
    assert webhook["state"] == "delivered" and webhook["attempts"] == 1
    assert [attempt["attempt"] for attempt in webhook["history"]] == [1]


def test_a_delivery_at_the_attempt_limit_sends_no_more_and_gives_up(
    completed, internet, stack, downstream, monkeypatch
):
    # Given a task whose record shows the last attempt claimed, and then nothing: the run that
    # claimed it stopped before recording (its lease is over)
    _settings(monkeypatch, WEBHOOK_RETRY_SCHEDULE="0", WEBHOOK_MAX_ATTEMPTS="2")
    video = completed()
    downstream.pump_stream()
    store = current().task_store
    last = WebhookDelivery(
        event_id=_event_id(video), state=WebhookState.SENDING, attempts=2, next_attempt_ms=1
    )
    store.write_webhook(video["id"], last, expect_attempts=0)

    # When the message is delivered
    downstream.pump_webhooks()

    # Then no third attempt: the event is dead-lettered and the task says failed
    assert internet.webhooks == []
    webhook = _task(stack, video["id"])["webhook"]
    assert webhook["state"] == "failed" and webhook["attempts"] == 2
    assert [message["event_id"] for message in _dead_letters(stack)] == [_event_id(video)]
    assert _queue_counts(stack, "WebhookQueue") == (0, 0)


def test_a_claim_past_the_attempt_limit_is_refused(completed, stack):
    video = completed()
    store = current().task_store
    claim = WebhookDelivery(event_id="evt_x_completed", state=WebhookState.SENDING, attempts=1)
    store.write_webhook(video["id"], claim, expect_attempts=0, max_attempts=1)
    with pytest.raises(WebhookClaimLost):
        store.write_webhook(
            video["id"], claim.model_copy(update={"attempts": 2}), expect_attempts=1, max_attempts=1
        )
    # Recording the outcome of the last attempt is not a claim
    failed = claim.model_copy(update={"state": WebhookState.FAILED})
    store.write_webhook(video["id"], failed, expect_attempts=1, max_attempts=1)


def test_a_failed_dead_letter_send_leaves_the_task_open_and_the_message_back(
    completed, internet, stack, downstream, handlers, monkeypatch, service_logs
):
    # Given two attempts at most, a receiver that always fails, and a dead-letter queue that is gone
    _settings(monkeypatch, WEBHOOK_RETRY_SCHEDULE="0", WEBHOOK_MAX_ATTEMPTS="2")
    missing = "https://sqs.us-east-1.amazonaws.com/123456789012/no-such-queue"
    monkeypatch.setenv("WEBHOOK_DEAD_LETTER_QUEUE_URL", missing)
    reload_settings(monkeypatch)
    internet.webhook_status = 500
    video = completed()
    downstream.pump_stream()

    # When both attempts are made
    run_queue(stack, "WebhookQueue", handlers["webhook"])
    event, answer = run_queue(stack, "WebhookQueue", handlers["webhook"])

    # Then the task does not say failed, both attempts are on it, and the message comes back
    assert len(internet.webhooks) == 2
    webhook = _task(stack, video["id"])["webhook"]
    assert webhook["state"] != "failed" and webhook["attempts"] == 2
    assert [attempt["status_code"] for attempt in webhook["history"]] == [500, 500]
    assert answer["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    [failure] = [log for log in _failure_logs(service_logs) if "QueueDoesNotExist" in json.dumps(log)]
    assert failure["task_id"] == video["id"]

    # When the dead-letter queue is back, the next delivery dead-letters without a third POST
    monkeypatch.setenv("WEBHOOK_DEAD_LETTER_QUEUE_URL", stack.refs["WebhookDeadLetterQueue"])
    reload_settings(monkeypatch)
    _show_again(stack, event)
    downstream.pump_webhooks()
    assert len(internet.webhooks) == 2
    webhook = _task(stack, video["id"])["webhook"]
    assert webhook["state"] == "failed" and webhook["attempts"] == 2 and len(webhook["history"]) == 2
    assert [message["event_id"] for message in _dead_letters(stack)] == [_event_id(video)]
    assert _queue_counts(stack, "WebhookQueue") == (0, 0)
