"""Durable dispatch: an overloaded provider means 202 `queued`, then retries from SQS with backoff."""

from __future__ import annotations

import json

import boto3
import httpx
import pytest

from tests.conftest import LambdaContext
from tests.integration.conftest import VALID, reload_settings, run_queue, sqs_event


def overloaded(status: int = 429, retry_after: str | None = None) -> httpx.Response:
    headers = {"retry-after": retry_after} if retry_after else {}
    return httpx.Response(
        status, headers=headers, json={"error": {"code": "too_many_requests", "message": "slow"}}
    )


def _status(stack, task_id: str) -> dict:
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=stack.refs["TasksTable"], Key={"task_id": {"S": task_id}}
    )["Item"]
    return {key: next(iter(value.values())) for key, value in item.items()}


def _dispatch(handlers, event: dict) -> dict:
    return handlers["dispatch"].lambda_handler(event, LambdaContext())


def _queue_counts(stack, logical_id: str) -> dict[str, str]:
    return boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=stack.refs[logical_id], AttributeNames=["All"]
    )["Attributes"]


@pytest.fixture
def queued_task(api, internet, stack) -> dict:
    """A task submitted while the provider answered 429."""
    internet.create_failures.append(overloaded())
    status, _, video = api.submit(VALID)
    assert status == 202 and video["status"] == "queued"
    return video


def test_an_overloaded_provider_still_gets_a_202_and_a_dispatch_message(queued_task, stack, internet):
    assert internet.provider_calls == []  # the one attempt failed
    event = sqs_event(stack, "DispatchQueue")
    assert len(event["Records"]) == 1
    message = json.loads(event["Records"][0]["body"])
    assert message["task_id"] == queued_task["id"]
    assert message["public_base_url"].startswith("https://")


def test_retry_after_delays_the_dispatch_message(api, internet, stack):
    internet.create_failures.append(overloaded(429, retry_after="30"))
    assert api.submit(VALID)[2]["status"] == "queued"
    counts = _queue_counts(stack, "DispatchQueue")
    assert (
        counts["ApproximateNumberOfMessagesDelayed"] == "1" and counts["ApproximateNumberOfMessages"] == "0"
    )


def test_dispatch_starts_the_task_once_the_provider_accepts(queued_task, stack, internet, handlers, api):
    # When the dispatch function gets the message and the provider now accepts
    answer = _dispatch(handlers, sqs_event(stack, "DispatchQueue"))

    # Then the task is in progress with the provider's task id, and the callback finishes it
    assert answer == {"batchItemFailures": []}
    task = _status(stack, queued_task["id"])
    assert task["status"] == "in_progress" and task["provider_task_id"] == internet.last_call()["task_id"]
    assert "dispatch_claim" not in task and "dispatch_lease_ms" not in task  # the start is over
    call = internet.last_call()
    status, _, _result = api.callback(call["body"]["callback_url"], internet.success_body(call))
    assert status == 200 and _status(stack, queued_task["id"])["status"] == "completed"


def test_dispatch_backs_off_while_the_provider_is_still_down(queued_task, stack, internet, handlers):
    # Given the provider still overloaded, asking for 20 s
    internet.create_failures.append(overloaded(retry_after="20"))
    event = sqs_event(stack, "DispatchQueue")

    # When the dispatch function tries
    answer = _dispatch(handlers, event)

    # Then the message is reported failed, hidden for the backoff, and the task still queued
    assert answer == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert sqs_event(stack, "DispatchQueue")["Records"] == []
    assert _queue_counts(stack, "DispatchQueue")["ApproximateNumberOfMessagesNotVisible"] == "1"
    assert _status(stack, queued_task["id"])["status"] == "queued"


def test_the_last_attempt_fails_the_task_and_the_message_goes_to_the_dlq(
    queued_task, stack, internet, handlers, monkeypatch
):
    # Given a queue that redrives after one receive, and the function told so
    sqs = boto3.client("sqs", region_name="us-east-1")
    dlq_arn = stack.attributes[("DispatchDeadLetterQueue", "Arn")]
    sqs.set_queue_attributes(
        QueueUrl=stack.refs["DispatchQueue"],
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 1})},
    )
    monkeypatch.setenv("DISPATCH_MAX_ATTEMPTS", "1")
    reload_settings(monkeypatch)
    internet.create_failures.append(overloaded(429))
    event = sqs_event(stack, "DispatchQueue")

    # When that attempt fails too
    answer = _dispatch(handlers, event)

    # Then the task is failed with the reason, and the message ends in the dead-letter queue
    assert answer["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    task = _status(stack, queued_task["id"])
    assert task["status"] == "failed" and task["error_code"] == "provider_unavailable"
    assert "gave up after 1 attempts" in task["error_message"]
    sqs.change_message_visibility(
        QueueUrl=stack.refs["DispatchQueue"],
        ReceiptHandle=event["Records"][0]["receiptHandle"],
        VisibilityTimeout=0,
    )
    assert sqs_event(stack, "DispatchQueue")["Records"] == []  # SQS moved it instead of delivering it
    dead = sqs_event(stack, "DispatchDeadLetterQueue")["Records"]
    assert [json.loads(record["body"])["task_id"] for record in dead] == [queued_task["id"]]


def test_a_refusal_during_dispatch_fails_the_task_and_drops_the_message(
    queued_task, stack, internet, handlers
):
    internet.create_failures.append(
        httpx.Response(400, json={"error": {"code": "bad_request", "message": "prompt refused"}})
    )
    assert _dispatch(handlers, sqs_event(stack, "DispatchQueue")) == {"batchItemFailures": []}
    task = _status(stack, queued_task["id"])
    assert (task["status"], task["error_code"], task["error_message"]) == (
        "failed",
        "provider_rejected",
        "prompt refused",
    )


def test_a_repeat_delivery_of_a_started_task_does_nothing(queued_task, stack, internet, handlers):
    event = sqs_event(stack, "DispatchQueue")
    _dispatch(handlers, event)
    calls = len(internet.provider_calls)
    assert _dispatch(handlers, event) == {"batchItemFailures": []}
    assert len(internet.provider_calls) == calls


def test_a_second_delivery_while_the_first_is_starting_the_task_sends_nothing(
    queued_task, stack, internet, handlers, monkeypatch
):
    """SQS may hand a message out twice at once: the copy that arrives while the first is talking
    to the provider must not create a second job (a second bill); it stays on the queue instead."""
    event = sqs_event(stack, "DispatchQueue")
    answers: list[dict] = []
    provider = internet._provider
    delivered_again = []

    def provider_meanwhile(request):
        if not delivered_again:  # the first create: the same message is delivered a second time now
            delivered_again.append(True)
            answers.append(_dispatch(handlers, event))
        return provider(request)

    monkeypatch.setattr(internet, "_provider", provider_meanwhile)
    assert _dispatch(handlers, event) == {"batchItemFailures": []}

    assert len(internet.provider_calls) == 1
    message_id = event["Records"][0]["messageId"]
    assert answers == [{"batchItemFailures": [{"itemIdentifier": message_id}]}]  # kept for later
    task = _status(stack, queued_task["id"])
    assert task["status"] == "in_progress" and task["provider_task_id"] == internet.last_call()["task_id"]
    # The kept copy, delivered again, finds the task started and sends nothing.
    assert _dispatch(handlers, event) == {"batchItemFailures": []}
    assert len(internet.provider_calls) == 1


def test_a_retry_gives_the_start_back_so_the_next_delivery_can_take_it(
    queued_task, stack, internet, handlers
):
    internet.create_failures.append(overloaded())
    event = sqs_event(stack, "DispatchQueue")
    assert _dispatch(handlers, event)["batchItemFailures"]  # still overloaded: kept, with a delay
    assert "dispatch_lease_ms" not in _status(stack, queued_task["id"])
    assert _dispatch(handlers, event) == {"batchItemFailures": []}
    assert _status(stack, queued_task["id"])["status"] == "in_progress"


def test_giving_up_tells_the_client(api, internet, stack, handlers, monkeypatch, webhook_secret, downstream):
    from standardwebhooks import Webhook

    internet.create_failures.append(overloaded())
    status, _, video = api.submit(VALID)  # VALID carries a callback_url
    assert status == 202
    monkeypatch.setenv("DISPATCH_MAX_ATTEMPTS", "1")
    reload_settings(monkeypatch)
    internet.create_failures.append(overloaded(429))
    _dispatch(handlers, sqs_event(stack, "DispatchQueue"))
    downstream.pump()
    payload = Webhook(webhook_secret).verify(internet.webhooks[0].content, dict(internet.webhooks[0].headers))
    assert payload["type"] == "video.failed" and payload["data"]["id"] == video["id"]
    assert payload["data"]["error"]["code"] == "provider_unavailable"


def test_a_refusal_during_dispatch_tells_the_client(queued_task, internet, handlers, stack, downstream):
    internet.create_failures.append(
        httpx.Response(400, json={"error": {"code": "bad_request", "message": "no"}})
    )
    _dispatch(handlers, sqs_event(stack, "DispatchQueue"))
    downstream.pump()
    assert json.loads(internet.webhooks[0].content)["data"]["error"]["code"] == "provider_rejected"


def _break_secret(monkeypatch, variable: str, secret_id: str) -> None:
    """Point a function's secret at nothing ("": not configured) or at a secret that is not there."""
    from sora_relay.adapters import secrets

    monkeypatch.setenv(variable, secret_id)
    reload_settings(monkeypatch)
    secrets.clear_cache()


BROKEN_SECRETS = [
    pytest.param("CALLBACK_TOKEN_SECRET_ID", "", id="callback-key-not-configured"),
    pytest.param("CALLBACK_TOKEN_SECRET_ID", "gone", id="callback-key-unreadable"),
    pytest.param("ACEDATA_API_KEY_SECRET_ID", "", id="api-key-not-configured"),
    pytest.param("ACEDATA_API_KEY_SECRET_ID", "gone", id="api-key-unreadable"),
]


@pytest.mark.parametrize(("variable", "secret_id"), BROKEN_SECRETS)
def test_our_own_error_during_dispatch_leaves_the_task_queued_and_the_message_for_later(
    queued_task, stack, internet, handlers, monkeypatch, variable, secret_id
):
    # Given a secret the dispatch function cannot read, and a backoff the checks below cannot
    # outlast (the default's first is 1-2 s: a loaded machine once saw the message visible again)
    monkeypatch.setenv("DISPATCH_BASE_DELAY_SECONDS", "60")
    _break_secret(monkeypatch, variable, secret_id)

    # When the dispatch function gets the message
    event, answer = run_queue(stack, "DispatchQueue", handlers["dispatch"])

    # Then the message is reported (SQS delivers it again), the task is still queued
    assert answer["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert _status(stack, queued_task["id"])["status"] == "queued"
    assert internet.provider_calls == []
    assert _queue_counts(stack, "DispatchQueue")["ApproximateNumberOfMessagesNotVisible"] == "1"


@pytest.mark.parametrize(("variable", "secret_id"), BROKEN_SECRETS[1:3])
def test_our_own_error_on_the_last_attempt_fails_the_task_and_keeps_the_message(
    queued_task, stack, internet, handlers, monkeypatch, variable, secret_id
):
    # Given the last attempt, and a secret the dispatch function cannot read
    monkeypatch.setenv("DISPATCH_MAX_ATTEMPTS", "1")
    _break_secret(monkeypatch, variable, secret_id)

    # When the dispatch function gets the message
    event, answer = run_queue(stack, "DispatchQueue", handlers["dispatch"])

    # Then nothing accepted stays open: the task fails as ours, and the message goes on to the DLQ
    assert answer["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    task = _status(stack, queued_task["id"])
    assert (task["status"], task["error_code"]) == ("failed", "dispatch_failed")
    assert "after 1 attempts" in task["error_message"]


def test_a_dispatch_that_failed_on_our_side_starts_the_task_on_a_later_delivery(
    queued_task, stack, internet, handlers, monkeypatch
):
    _break_secret(monkeypatch, "ACEDATA_API_KEY_SECRET_ID", "")
    event, _ = run_queue(stack, "DispatchQueue", handlers["dispatch"])
    _break_secret(monkeypatch, "ACEDATA_API_KEY_SECRET_ID", stack.refs["AceDataApiKeySecret"])
    boto3.client("sqs", region_name="us-east-1").change_message_visibility(
        QueueUrl=stack.refs["DispatchQueue"],
        ReceiptHandle=event["Records"][0]["receiptHandle"],
        VisibilityTimeout=0,
    )
    _, answer = run_queue(stack, "DispatchQueue", handlers["dispatch"])
    assert answer == {"batchItemFailures": []}
    assert _status(stack, queued_task["id"])["status"] == "in_progress"


def test_a_5xx_during_dispatch_fails_the_task_and_is_never_resent(queued_task, stack, internet, handlers):
    # The provider may have started the job: a second create could bill twice (providers README, rule 8).
    internet.create_failures.append(overloaded(500))
    _, answer = run_queue(stack, "DispatchQueue", handlers["dispatch"])
    assert answer == {"batchItemFailures": []}  # done with: nothing is left to retry
    assert _status(stack, queued_task["id"])["error_code"] == "provider_outcome_unknown"
    assert sqs_event(stack, "DispatchQueue")["Records"] == [] and internet.provider_calls == []


# At submit, a provider whose key is not configured makes its models unavailable (a 400 before
# anything is stored: test_submit.py); a key that is configured but cannot be read is our error.
@pytest.mark.parametrize(
    ("variable", "secret_id"), [p for p in BROKEN_SECRETS if p.id != "api-key-not-configured"]
)
def test_our_own_error_at_submit_queues_the_task_for_dispatch(
    api, internet, stack, monkeypatch, variable, secret_id
):
    _break_secret(monkeypatch, variable, secret_id)
    status, _, video = api.submit(VALID)
    assert status == 202 and video["status"] == "queued" and video.get("error") is None
    assert _status(stack, video["id"])["status"] == "queued"
    message = json.loads(sqs_event(stack, "DispatchQueue")["Records"][0]["body"])
    assert message["task_id"] == video["id"]


def test_our_own_error_at_submit_without_a_dispatch_queue_fails_the_task_and_answers_it(
    api, internet, stack, monkeypatch
):
    # Given no dispatch queue and a provider API key that cannot be read
    monkeypatch.setenv("DISPATCH_QUEUE_URL", "")
    _break_secret(monkeypatch, "ACEDATA_API_KEY_SECRET_ID", "gone")

    # When a client submits, it hears of the task it made, failed as ours (no 5xx for its SDK to
    # retry into a second task), and the task is not failed as if the provider refused it
    status, _, video = api.submit(VALID, idempotency_key="ours")
    assert status == 202, video
    assert video["status"] == "failed" and video["error"]["code"] == "dispatch_failed"
    assert "secret" not in video["error"]["message"].lower()  # what AWS answered stays in the log
    tasks = boto3.client("dynamodb", region_name="us-east-1").scan(TableName=stack.refs["TasksTable"])
    assert [(item["status"]["S"], item["error_code"]["S"]) for item in tasks["Items"]] == [
        ("failed", "dispatch_failed")
    ]
    assert video["id"] == tasks["Items"][0]["task_id"]["S"] and internet.provider_calls == []

    # And a retry with the same key, once the secret is back, answers the same
    _break_secret(monkeypatch, "ACEDATA_API_KEY_SECRET_ID", stack.refs["AceDataApiKeySecret"])
    again_status, _, again = api.submit(VALID, idempotency_key="ours")
    assert (again_status, again) == (status, video)
    assert internet.provider_calls == []


def test_a_start_write_that_fails_once_is_written_again_so_a_lost_push_can_still_be_found(
    api, stack, internet, monkeypatch
):
    """The provider has the job once it answers: its task id must reach the table, or a lost push
    leaves the reconciler nothing to look up and the video made (and billed) ends as a timeout."""
    from sora_relay.adapters.dynamodb import TaskStore
    from sora_relay.domain.errors import StorageError

    real_start, failures = TaskStore.start, []

    def flaky_start(self, task_id, provider_task_id):
        if not failures:
            failures.append(task_id)
            raise StorageError("Could not record the start")  # what an escaped throttle becomes
        return real_start(self, task_id, provider_task_id)

    monkeypatch.setattr(TaskStore, "start", flaky_start)
    status, _, video = api.submit(VALID)
    assert status == 202 and failures == [video["id"]]
    task = _status(stack, video["id"])
    assert task["status"] == "in_progress" and task["provider_task_id"] == internet.last_call()["task_id"]
