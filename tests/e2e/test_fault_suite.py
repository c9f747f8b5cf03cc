"""The fault suite: simulator faults, failing webhook receivers and injected DynamoDB/S3 errors
(devstack.chaos's botocore hook in the function workers) against the whole local stack, and nothing is lost.

Every task ends in the terminal state its fault calls for, every stored MP4 matches its sha256,
every event reaches the receiver, and every repeat of an event carries the same webhook-id.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from devstack.chaos import FaultRule
from devstack.load import LoadRunner
from devstack.processes import local_http
from devstack.receiver import WebhookReceiver
from devstack.stack import DevStack

pytestmark = pytest.mark.e2e


@pytest.fixture
def chaos(stack: DevStack) -> Iterator[object]:
    assert stack.chaos is not None, "the e2e stack installs the AWS fault hook in its functions"
    stack.chaos.clear()
    yield stack.chaos
    stack.chaos.clear()


def _stored_video_matches(stack: DevStack, task_id: str) -> bool:
    item = stack.task_item(task_id) or {}
    assert stack.stack is not None
    data = (
        stack.aws_client("s3")
        .get_object(Bucket=stack.stack.refs["VideosBucket"], Key=item["video_key"])["Body"]
        .read()
    )
    return hashlib.sha256(data).hexdigest() == item["video_sha256"] and len(data) == int(item["video_bytes"])


def test_a_callback_whose_writes_fail_is_finished_by_the_reconciler(stack, videos, receiver, unique, chaos):
    # Given a task in progress, and then every DynamoDB write failing for a while (more than
    # botocore's retries): the provider's callback cannot be recorded and is answered 5xx
    created = videos.create(unique("[sim:late-callback] A storm over the harbour"), callback_url=receiver.url)
    rule = chaos.add_fault("dynamodb", "UpdateItem", count=12, kind="server_error")

    # When the writes work again, the reconciler finds the task and finishes it through the
    # callback's own path
    video = videos.wait(created["id"], timeout=40)
    assert rule.injected > 0
    assert video["status"] == "completed"
    assert _stored_video_matches(stack, created["id"])
    delivery = receiver.wait_for_video(created["id"], timeout=20)
    assert receiver.verify(delivery)["type"] == "video.completed"


def test_a_failed_copy_to_s3_is_copied_again(stack, videos, unique, chaos):
    # Given S3 refusing the copy of the next video (all of botocore's retries)
    rule = chaos.add_fault("s3", count=6, kind="server_error")
    created = videos.create(unique("A lighthouse at dusk"))

    # Then the task still completes once S3 takes writes again, with the right bytes
    video = videos.wait(created["id"], timeout=40)
    assert rule.injected > 0
    assert video["status"] == "completed" and _stored_video_matches(stack, created["id"])


def test_a_submit_whose_write_fails_is_retried_with_its_key_and_makes_one_task(stack, videos, chaos):
    # Given every DynamoDB PutItem failing for a while (the task or its idempotency record)
    chaos.add_fault("dynamodb", "PutItem", count=8, kind="server_error")
    key = f"order-{uuid.uuid4().hex[:8]}"
    prompt = f"A market at dawn ({key})"
    answers = []
    for _ in range(6):
        response = videos.client.post("/v1/videos", json={"prompt": prompt}, headers={"Idempotency-Key": key})
        answers.append(response.status_code)
        if response.status_code == 202:
            break
        assert response.status_code >= 500 or response.status_code == 409, response.text
        assert response.json()["error"]["code"]  # the JSON error shape even then
        time.sleep(0.5)
    # Then the retries got through, and one task exists for the key
    assert answers[-1] == 202 and answers[0] != 202, answers
    runner = LoadRunner(stack, None)
    try:
        assert [task["prompt"] for task in runner.tasks()].count(prompt) == 1
    finally:
        runner.close()


@pytest.fixture(scope="module")
def delivery_tasks(module_videos, module_receiver, unique) -> dict[str, dict]:
    """The tasks of the four webhook and bus tests below (no chaos rule touches them), submitted
    together when the first of them starts, so that their receivers' schedules overlap instead of
    following one another; each test checks its own. The third waits the longest (the receiver
    that never accepts), so all are settled before the crash scenarios begin. Their webhooks go
    to `module_receiver`."""

    def start(prompt: str, callback_url: str | None = None) -> dict:
        return module_videos.create(
            unique(prompt), **({"callback_url": callback_url} if callback_url else {})
        )

    return {
        "fails-three-times": start("A kite over dunes", module_receiver.url_failing(3, status=503)),
        "gone": start("A closed door", f"{module_receiver.url}?status=410"),
        "nobody-accepts": start("An empty stage", f"{module_receiver.url}?status=500"),
        "done": start("A red balloon"),
        "failed": start("[sim:fail] A grey balloon"),
    }


def test_a_receiver_that_fails_three_times_gets_the_same_event_a_fourth_time(
    module_receiver, delivery_tasks, eventually, webhook_in
):
    receiver, created = module_receiver, delivery_tasks["fails-three-times"]
    webhook = eventually(
        lambda: webhook_in(created["id"], "delivered"),
        timeout=30,
        what="the fourth delivery",
    )
    deliveries = receiver.deliveries_for(created["id"])
    assert [delivery.answered for delivery in deliveries] == [503, 503, 503, 200]
    assert len({delivery.headers["webhook-id"] for delivery in deliveries}) == 1
    assert {receiver.verify(delivery)["id"] for delivery in deliveries} == {
        deliveries[0].headers["webhook-id"]
    }
    assert [attempt["status_code"] for attempt in webhook["history"]] == [503, 503, 503, 200]


def test_410_gone_stops_delivery(module_receiver, delivery_tasks, eventually, webhook_in):
    receiver, created = module_receiver, delivery_tasks["gone"]
    webhook = eventually(
        lambda: webhook_in(created["id"], "gone"),
        what="the 410",
    )
    time.sleep(2.0)  # longer than the next two delays of the schedule
    assert webhook["attempts"] == 1 and len(receiver.deliveries_for(created["id"])) == 1


def test_an_event_nobody_accepts_goes_to_the_dead_letter_queue(
    stack, module_receiver, delivery_tasks, eventually, webhook_in
):
    # Given a receiver that always answers 500, and the local schedule (8 attempts in ~13 s)
    receiver, created = module_receiver, delivery_tasks["nobody-accepts"]
    webhook = eventually(
        lambda: webhook_in(created["id"], "failed"),
        timeout=40,
        what="the last attempt",
    )
    assert webhook["attempts"] == 8 and len(webhook["history"]) == 8
    assert len(receiver.deliveries_for(created["id"])) == 8
    dead = [json.loads(message["Body"]) for message in stack.queue_messages("WebhookDeadLetterQueue")]
    assert {"task_id": created["id"], "event_id": webhook["event_id"]}.items() <= next(
        message for message in dead if message["task_id"] == created["id"]
    ).items()


def test_terminal_transitions_are_published_on_the_bus(stack, videos, delivery_tasks, eventually):
    done, failed = delivery_tasks["done"], delivery_tasks["failed"]
    videos.wait(done["id"]), videos.wait(failed["id"])

    def published() -> dict[str, dict] | None:
        events = {event["detail"].get("id"): event for event in stack.bus_events()}
        return events if done["id"] in events and failed["id"] in events else None

    events = eventually(published, what="both bus events")
    assert events[done["id"]]["detail-type"] == "Video Generation Completed"
    assert events[done["id"]]["detail"]["status"] == "completed"
    assert events[failed["id"]]["detail-type"] == "Video Generation Failed"
    assert events[failed["id"]]["detail"]["error"]["code"] == "api_error"
    ids = [event["detail"].get("id") for event in stack.bus_events()]
    assert ids.count(done["id"]) == 1 and ids.count(failed["id"]) == 1


# -- crashes: a worker killed half-way through an invocation (devstack.chaos crash rules) ----------
#
# Each rule kills the worker (os._exit(137), as a Lambda timeout or out-of-memory would) at one
# AWS call of one task, after some of the invocation's side effects. The event source answers as
# Lambda does, a fresh instance cold-starts, and the work completes once.


def _crashed(stack: DevStack, rule, function_id: str, lost_before: int) -> None:
    """The rule killed one worker of the function: its pool lost the instance. (A fresh one is
    started when the pool has none left or needs one more; another warm instance may serve the
    retry instead, as on Lambda, so the cold-start count is no proof either way.)"""
    assert rule.injected == 1
    assert stack.gateway is not None
    assert stack.gateway.pools[function_id].lost_instances > lost_before


def _lost_instances(stack: DevStack, function_id: str) -> int:
    assert stack.gateway is not None
    return stack.gateway.pools[function_id].lost_instances


def _jobs_for(stack: DevStack, prompt: str) -> list:
    assert stack.simulator is not None
    return [job for job in stack.simulator.jobs() if prompt in job.prompt]


def _delivered_once(webhook_in, receiver, task_id: str, status: str = "completed") -> None:
    """One event id, accepted once, signed, and the task's delivery recorded as delivered."""
    deliveries = receiver.deliveries_for(task_id)
    assert [d.answered for d in deliveries] == [200], [d.answered for d in deliveries]
    assert deliveries[0].headers["webhook-id"] == f"evt_{task_id.removeprefix('video_')}_{status}"
    assert receiver.verify(deliveries[0])["type"] == f"video.{status}"
    assert webhook_in(task_id, "delivered")


def _video_objects(stack: DevStack, task_id: str) -> list[str]:
    """The MP4s stored under the task's prefix (each attempt's previews lie beside them)."""
    assert stack.stack is not None
    listed = stack.aws_client("s3").list_objects_v2(
        Bucket=stack.stack.refs["VideosBucket"], Prefix=f"videos/{task_id}/"
    )
    return [item["Key"] for item in listed.get("Contents", []) if item["Key"].endswith(".mp4")]


def _settled_webhook(webhook_in, task_id: str, eventually) -> dict:
    return eventually(
        lambda: webhook_in(task_id, "delivered"),
        timeout=60,
        what="the webhook to be delivered",
    )


@dataclass(frozen=True)
class _Crash:
    """One crash scenario, started: its task, its prompt, its rule and the pool's losses before."""

    task_id: str
    prompt: str
    rule: FaultRule
    lost_before: int


@pytest.fixture(scope="class")
def crashes(stack: DevStack, dispatch: str, unique) -> Iterator[tuple[WebhookReceiver, dict[str, _Crash]]]:
    """The crash scenarios of TestCrashes, all started at once so that their waits (visibility
    timeouts, leases, the reconciler) overlap instead of following one another: each kills a
    different function, on one task's call only, so none touches another's task or pool count.
    (The stream consumer's crash stays on its own: its retried batch may hold other tasks' records.)"""
    assert stack.chaos is not None, "the e2e stack installs the AWS fault hook in its functions"
    stack.chaos.clear()
    started: dict[str, _Crash] = {}
    with (
        WebhookReceiver(stack.tenants[0].webhook_secret) as receiver,
        local_http(stack.api_url, headers={"x-api-key": stack.api_key}) as client,
    ):

        def start(name: str, prompt: str, function_id: str, *crash: str, at: list[str] | None = None) -> None:
            response = client.post("/v1/videos", json={"prompt": prompt, "callback_url": receiver.url})
            assert response.status_code == 202, response.text
            task_id = response.json()["id"]
            if name == "dispatch":
                assert response.json()["status"] == "queued"
            lost_before = _lost_instances(stack, function_id)
            assert stack.chaos is not None
            rule = stack.chaos.add_crash(function_id, *crash, body_contains=[task_id, *(at or [])])
            started[name] = _Crash(task_id, prompt, rule, lost_before)

        # The callback dies after it recorded the result, before it queued the copy (its SendMessage)
        start(
            "callback",
            unique("[sim:late-callback] A crash in the callback"),
            "CallbackFunction",
            "sqs",
            "SendMessage",
        )
        # ... and only the callback may record that result: the reconciler, which looks the task up
        # once it is stale (4 s here), is refused the write that records it (the one setting
        # provider_video_url; its copy requeue, the recovery under test, passes). On a loaded
        # machine the late push once came after the reconciler had recorded the result, and
        # nothing crashed.
        stack.chaos.add_fault(
            "dynamodb",
            "UpdateItem",
            function="ReconcileFunction",
            body_contains=[started["callback"].task_id, "provider_video_url = :url"],
        )
        # The archive dies after its copy is in S3, just before the UpdateItem recording its sha256
        start(
            "archive",
            unique("[sim:late-callback] A crash in the archive"),
            "ArchiveFunction",
            "dynamodb",
            "UpdateItem",
            at=["video_sha256"],
        )
        # The dispatch (a task the provider rate-limits twice) dies once the provider has taken it,
        # before it records in_progress
        if dispatch == "queue":
            start(
                "dispatch",
                unique("[sim:429x2] A crash in the dispatch"),
                "DispatchFunction",
                "dynamodb",
                "UpdateItem",
                at=["provider_task_id"],
            )
        # The webhook dies after the client accepted the POST, before it records `delivered`
        start(
            "webhook",
            unique("A crash in the webhook"),
            "WebhookFunction",
            "dynamodb",
            "UpdateItem",
            at=["delivered"],
        )
        yield receiver, started
    stack.chaos.clear()


class TestCrashes:
    """Crashes whose recovery waits out a visibility timeout or a lease, run together (`crashes`)."""

    def test_a_callback_that_crashes_after_recording_the_result_is_finished_once(
        self, stack, videos, crashes, eventually, webhook_in
    ):
        receiver, started = crashes
        crash = started["callback"]
        # When the push arrives: API Gateway answers the provider 502, as for a Lambda that died
        video = videos.wait(crash.task_id, timeout=60)

        # Then the reconciler queued the copy of the recorded result, and the task completed once
        _crashed(stack, crash.rule, "CallbackFunction", crash.lost_before)
        (job,) = _jobs_for(stack, crash.prompt)
        assert 502 in [attempt["status"] for attempt in job.callbacks]
        assert video["status"] == "completed" and _stored_video_matches(stack, crash.task_id)
        _settled_webhook(webhook_in, crash.task_id, eventually)
        _delivered_once(webhook_in, receiver, crash.task_id)
        assert videos.ids().count(crash.task_id) == 1

    def test_an_archive_that_crashes_before_recording_its_copy_copies_again(
        self, stack, videos, crashes, eventually, webhook_in
    ):
        receiver, started = crashes
        crash = started["archive"]
        # When the message comes back (its visibility timeout) and the crashed claim has lapsed
        video = videos.wait(crash.task_id, timeout=90)

        # Then a second attempt copied to its own key and completed the task; the recorded key holds
        # the bytes of the recorded sha256, and the crashed attempt's copy is not what the task names
        _crashed(stack, crash.rule, "ArchiveFunction", crash.lost_before)
        assert video["status"] == "completed" and _stored_video_matches(stack, crash.task_id)
        keys = _video_objects(stack, crash.task_id)
        assert len(keys) == 2 and (stack.task_item(crash.task_id) or {})["video_key"] in keys
        _settled_webhook(webhook_in, crash.task_id, eventually)
        _delivered_once(webhook_in, receiver, crash.task_id)

    def test_a_dispatch_that_crashes_after_the_provider_accepted_never_creates_twice(
        self, stack, videos, crashes, eventually, webhook_in, dispatch
    ):
        if dispatch != "queue":
            pytest.skip("this template has no dispatch queue")
        receiver, started = crashes
        crash = started["dispatch"]
        # When the provider's push arrives (accepted for a task still `queued`) and the dispatch
        # message comes back after its visibility timeout
        video = videos.wait(crash.task_id, timeout=60)
        _crashed(stack, crash.rule, "DispatchFunction", crash.lost_before)
        assert video["status"] == "completed" and _stored_video_matches(stack, crash.task_id)
        _settled_webhook(webhook_in, crash.task_id, eventually)
        assert stack.simulator is not None
        eventually(
            lambda: _drained(stack, "DispatchQueue"),
            timeout=40,
            what="the dispatch message to come back and be consumed",
        )

        # Then the redelivered message found the task started and sent nothing: one provider job
        # (two creates refused with 429, one accepted)
        assert stack.simulator.create_attempts("429x2", crash.prompt) == 3
        assert len(_jobs_for(stack, crash.prompt)) == 1
        _delivered_once(webhook_in, receiver, crash.task_id)

    def test_a_webhook_that_crashes_after_its_post_sends_the_same_event_again(
        self, stack, crashes, eventually, webhook_in
    ):
        receiver, started = crashes
        crash = started["webhook"]
        # When the message comes back and the crashed attempt's lease (timeout + 20 s) has lapsed
        webhook = eventually(
            lambda: webhook_in(crash.task_id, "delivered"),
            timeout=90,
            what="the second delivery",
        )

        # Then the client got the same event twice, with one webhook-id; the record shows two attempts
        # (the first claimed, never recorded) and the second one's answer
        _crashed(stack, crash.rule, "WebhookFunction", crash.lost_before)
        deliveries = receiver.deliveries_for(crash.task_id)
        assert [delivery.answered for delivery in deliveries] == [200, 200]
        assert len({delivery.headers["webhook-id"] for delivery in deliveries}) == 1
        assert all(receiver.verify(delivery)["type"] == "video.completed" for delivery in deliveries)
        assert webhook["attempts"] == 2
        assert [(a["attempt"], a["status_code"]) for a in webhook["history"]] == [(2, 200)]


def _drained(stack: DevStack, logical_id: str) -> bool:
    """No message on the queue, visible or in flight."""
    attributes = stack.aws_client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url(logical_id),
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(int(count) == 0 for count in attributes.values())


def test_a_stream_consumer_that_crashes_is_retried_and_each_event_goes_out_once(
    stack, videos, receiver, unique, chaos, eventually, webhook_in
):
    # Given the stream consumer dying after it queued the webhook, before it publishes on the bus
    created = videos.create(unique("A crash in the stream consumer"), callback_url=receiver.url)
    before = _lost_instances(stack, "TaskEventsFunction")
    rule = chaos.add_crash("TaskEventsFunction", "events", "PutEvents", body_contains=created["id"])

    # When the stream retries the batch from that record
    videos.wait(created["id"], timeout=40)
    webhook = _settled_webhook(webhook_in, created["id"], eventually)
    published = eventually(
        lambda: [e for e in stack.bus_events() if e["detail"].get("id") == created["id"]],
        what="the bus event",
    )

    eventually(lambda: _drained(stack, "WebhookQueue"), timeout=40, what="both webhook messages consumed")

    # Then the webhook message was queued twice but the client heard the event once (the second
    # copy found it delivered), and the bus carried it once (the crash came before the first)
    _crashed(stack, rule, "TaskEventsFunction", before)
    _delivered_once(webhook_in, receiver, created["id"])
    assert len(published) == 1 and published[0]["detail"]["event_id"] == webhook["event_id"]


def test_submissions_from_the_queue_are_validated_reported_and_run(stack, unique, eventually):
    sqs = stack.aws_client("sqs")
    prompt = unique("A paper crane, from a queue")
    good = sqs.send_message(
        QueueUrl=stack.queue_url("SubmitQueue"), MessageBody=json.dumps({"prompt": prompt})
    )
    bad = sqs.send_message(
        QueueUrl=stack.queue_url("SubmitQueue"),
        MessageBody=json.dumps({"prompt": "x", "model": "veo-3.1-fast", "duration": 7}),
    )

    def by_message(detail_type: str, message_id: str) -> dict | None:
        return next(
            (
                event["detail"]
                for event in stack.bus_events()
                if event["detail-type"] == detail_type and event["detail"].get("message_id") == message_id
            ),
            None,
        )

    accepted = eventually(lambda: by_message("Video Submission Accepted", good["MessageId"]), what="accepted")
    rejected = eventually(lambda: by_message("Video Submission Rejected", bad["MessageId"]), what="rejected")
    assert rejected["error"]["param"] == "duration" and rejected["status"] == 400
    task_id = accepted["video"]["id"]
    eventually(
        lambda: any(
            event["detail"].get("id") == task_id and event["detail-type"] == "Video Generation Completed"
            for event in stack.bus_events()
        ),
        what="the queued submission to complete",
    )
    assert (stack.task_item(task_id) or {})["owner"].startswith("sqs:")


# Last in the file: its 48 tasks at once need the most CPU of any test, and under pytest-xdist the
# worker running the in-process tests is done by then.
def test_a_mixed_fault_run_loses_nothing_and_makes_no_duplicates(stack, receiver, chaos):
    # Given a fifth of the functions' DynamoDB and S3 calls failing (server errors and throttling;
    # botocore retries most, some escape), every simulator fault in the mix, and receivers that
    # refuse each event up to three times
    for service in ("dynamodb", "s3"):
        chaos.add_fault(service, rate=0.1, kind="server_error", seed=3)
        chaos.add_fault(service, rate=0.1, kind="throttle", seed=4)
    # settle past the reconciler's deadline (300 s, devstack.load): a task whose start write failed and whose
    # push was lost ends only there
    runner = LoadRunner(stack, receiver, concurrency=40, settle_timeout=420)
    try:
        # When 48 tasks are submitted at once, each retried with its Idempotency-Key on 5xx/429
        report = runner.run(48)
    finally:
        runner.close()

    # Then every task reached the outcome its fault calls for, and nothing was lost or doubled
    assert report.accepted == report.submitted == 48, report.lines()
    assert report.lost == 0 and report.duplicates == 0, report.lines()
    assert report.unexpected == [], report.lines()
    assert report.completed + report.failed == 48
    assert set(report.failed_reasons) <= {
        "api_error",  # AceData's word for a failed generation
        "generation_failed",  # fal's and Replicate's
        "video_fetch_failed",
        "provider_unavailable",
        "provider_outcome_unknown",  # a 5xx on create: failed, never resent
    }
    # every stored MP4 matches its sha256, every event was delivered with one webhook-id
    assert report.sha256_checked == report.completed and report.sha256_mismatches == []
    assert report.webhook_undelivered == [] and report.webhook_id_mismatches == [], report.lines()
    assert report.webhook_repeats > 0  # the refusing receivers were exercised
    assert sum(report.aws_faults.values()) > 0  # and so were the injected AWS errors
    assert report.ok
