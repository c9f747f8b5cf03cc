"""The archive step: the callback records, ArchiveFunction copies (claim, attempt-named key, retries)."""

from __future__ import annotations

import hashlib
import json

import boto3
import httpx
import pytest

from devstack.template import provision
from sora_relay.domain.task import Status
from sora_relay.runtime.container import current
from tests.conftest import LambdaContext, load_event
from tests.integration.conftest import PROVIDER_TOKEN, apply_function_env, run_queue, sqs_event, submitted


def _objects(stack) -> list[str]:
    listing = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=stack.refs["VideosBucket"])
    return [entry["Key"] for entry in listing.get("Contents", [])]


def _recorded(task) -> list[str]:
    """The objects a completed task points at: its MP4 and the two previews drawn from it."""
    return sorted(key for key in (task.video_key, task.thumbnail_key, task.spritesheet_key) if key)


def _queue_count(stack, logical_id: str) -> int:
    attributes = boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=stack.refs[logical_id],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def _archive_record(task_id: str, provider_task_id: str, *, attempt: int) -> dict:
    event = load_event("archive")
    record = event["Records"][0]
    record["body"] = json.dumps({"task_id": task_id, "provider_task_id": provider_task_id})
    record["attributes"]["ApproximateReceiveCount"] = str(attempt)
    return event


def test_the_callback_records_the_result_and_queues_the_copy_without_fetching_it(api, internet, stack):
    # Given a task the provider finished
    video, call = submitted(api, internet)

    # When its push arrives (and nothing else runs yet)
    status, _, answer = api.callback(call["body"]["callback_url"], internet.success_body(call), archive=False)

    # Then the callback answered from what it recorded: no byte of the video was fetched or stored
    assert status == 200 and answer == {"received": True, "changed": True, "status": "in_progress"}
    assert internet.fetched_urls == [] and _objects(stack) == []
    task = current().task_store.get(video["id"])
    assert task.provider_video_url.endswith(f"/videos/{call['task_id']}.mp4") and task.result_received_ms
    [message] = sqs_event(stack, "ArchiveQueue")["Records"]
    assert json.loads(message["body"]) == {"task_id": video["id"], "provider_task_id": call["task_id"]}


def test_the_archive_event_completes_the_task_with_the_key_it_wrote(
    api, internet, stack, handlers, mp4_bytes
):
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call), archive=False)

    answer = handlers["archive"].lambda_handler(
        _archive_record(video["id"], call["task_id"], attempt=1), LambdaContext()
    )

    assert answer == {"batchItemFailures": []}
    task = current().task_store.get(video["id"])
    assert task.status is Status.COMPLETED and task.archive_claim is None
    assert _objects(stack) == _recorded(task) and len(_recorded(task)) == 3
    body = boto3.client("s3").get_object(Bucket=stack.refs["VideosBucket"], Key=task.video_key)["Body"].read()
    assert body == mp4_bytes and task.video_sha256 == hashlib.sha256(body).hexdigest()


def test_a_repeated_push_queues_again_but_copies_once(api, internet, stack):
    video, call = submitted(api, internet)
    body = internet.success_body(call)
    api.callback(call["body"]["callback_url"], body, archive=False)
    api.callback(call["body"]["callback_url"], body, archive=False)
    assert _queue_count(stack, "ArchiveQueue") == 2

    api.archive()

    task = current().task_store.get(video["id"])
    assert (
        len(internet.fetched_urls) == 1 and _objects(stack) == _recorded(task) and len(_objects(stack)) == 3
    )
    assert task.status is Status.COMPLETED
    assert _queue_count(stack, "ArchiveQueue") == 0  # the repeat was skipped and deleted


def test_an_attempt_finding_a_live_claim_copies_nothing_and_looks_again_later(api, internet, stack, handlers):
    # Given a copy in progress elsewhere (its claim is live)
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call), archive=False)
    current().task_store.claim_archive(video["id"], "elsewhere", lease_until_ms=2**62)

    # When a second delivery runs
    answer = handlers["archive"].lambda_handler(
        _archive_record(video["id"], call["task_id"], attempt=1), LambdaContext()
    )

    # Then it leaves the message for later and copies nothing
    assert len(answer["batchItemFailures"]) == 1
    assert internet.fetched_urls == [] and _objects(stack) == []
    assert current().task_store.get(video["id"]).archive_claim == "elsewhere"


def test_a_writer_that_lost_its_claim_removes_its_copy_and_the_recorded_object_matches(
    api, internet, stack, monkeypatch
):
    # Given a first attempt whose claim lapses while it copies, and a second attempt that copies
    # other bytes and records them first
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call), archive=False)
    from sora_relay.usecases import archive

    real_copy = archive.copy_video
    second: dict = {}

    def slow_copy(deps, url: str, key: str):
        copied = real_copy(deps, url, key)
        if not second:
            second["started"] = True
            # The first attempt's lease is taken over, and the second finishes before it.
            store = current().task_store
            store._client.update_item(
                TableName=stack.refs["TasksTable"],
                Key={"task_id": {"S": video["id"]}},
                UpdateExpression="SET archive_lease_ms = :past",
                ExpressionAttributeValues={":past": {"N": "1"}},
            )
            internet.video = internet.video + b"\x00second"
            second["outcome"] = archive.archive_task(deps, video["id"], attempt=1)
        return copied

    monkeypatch.setattr(archive, "copy_video", slow_copy)

    # When the first attempt finishes its copy
    first = archive.archive_task(current(), video["id"], attempt=1)

    # Then the first lost the race and removed its object; the one object left is the recorded one
    assert second["outcome"].action == "completed" and first.action == "lost_race"
    task = current().task_store.get(video["id"])
    assert _objects(stack) == _recorded(task) and len(_objects(stack)) == 3
    body = boto3.client("s3").get_object(Bucket=stack.refs["VideosBucket"], Key=task.video_key)["Body"].read()
    assert hashlib.sha256(body).hexdigest() == task.video_sha256 and body.endswith(b"second")


def test_a_failed_copy_releases_the_claim_records_why_and_hides_the_message_for_a_backoff(
    api, internet, stack
):
    video, call = submitted(api, internet)
    internet.videos["/flaky.mp4"] = lambda: httpx.Response(503)
    api.callback(
        call["body"]["callback_url"], internet.success_body(call, video_path="/flaky.mp4"), archive=False
    )

    _event, answer = run_queue(stack, "ArchiveQueue", api.handlers["archive"])

    assert len(answer["batchItemFailures"]) == 1
    task = current().task_store.get(video["id"])
    assert task.status is Status.IN_PROGRESS and task.archive_claim is None
    assert task.copy_error == "The video URL answered HTTP 503"
    assert sqs_event(stack, "ArchiveQueue")["Records"] == []  # hidden for the backoff
    assert _queue_count(stack, "ArchiveQueue") == 1 and _objects(stack) == []


@pytest.fixture
def two_attempts(aws_env, monkeypatch, mp4_bytes):
    """A stack whose archive queue gives a copy two attempts, with no wait between them."""
    from moto import mock_aws

    with mock_aws():
        stack = provision("test", {"AceDataApiKey": PROVIDER_TOKEN, "ArchiveMaxAttempts": "2"})
        apply_function_env(monkeypatch, stack, ARCHIVE_BASE_DELAY_SECONDS="0")
        yield stack


def test_the_last_failed_attempt_fails_the_task_and_the_message_goes_to_the_dead_letter_queue(
    two_attempts, handlers, mp4_bytes, monkeypatch
):
    from tests.integration.conftest import Api, FakeInternet, connect_internet

    stack = two_attempts
    assert current().settings.archive_max_attempts == 2
    internet = FakeInternet(video=mp4_bytes)
    connect_internet(monkeypatch, internet)
    api = Api(handlers, stack)
    video, call = submitted(api, internet)
    internet.videos["/down.mp4"] = lambda: httpx.Response(502)
    api.callback(
        call["body"]["callback_url"], internet.success_body(call, video_path="/down.mp4"), archive=False
    )

    # When the copy fails on every attempt (then SQS's redrive takes over)
    for _ in range(3):
        run_queue(stack, "ArchiveQueue", handlers["archive"])

    # Then the task failed with the reason, and the message is in the dead-letter queue
    task = current().task_store.get(video["id"])
    assert task.status is Status.FAILED and task.error_code == "video_fetch_failed"
    assert task.error_message == "The video URL answered HTTP 502; gave up after 2 attempts"
    assert len(internet.fetched_urls) == 2
    [dead] = sqs_event(stack, "ArchiveDeadLetterQueue")["Records"]
    assert json.loads(dead["body"])["task_id"] == video["id"]


def test_a_message_for_a_finished_task_is_skipped(api, internet, stack, handlers):
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    fetched = list(internet.fetched_urls)

    answer = handlers["archive"].lambda_handler(
        _archive_record(video["id"], call["task_id"], attempt=1), LambdaContext()
    )

    assert answer == {"batchItemFailures": []} and internet.fetched_urls == fetched
