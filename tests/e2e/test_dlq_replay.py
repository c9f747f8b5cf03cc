"""scripts/replay_dlq.py against the local stack: work left on each dead-letter queue is replayed,
completes exactly once, and a second replay does nothing.

Each dead letter is made as AWS would leave it: the work's message is held on its queue (its
event source paused, as a mapping that keeps failing would), moved to the dead-letter queue with
its body and attributes (what the redrive policy does), and the source resumed. The stream's
on-failure record is the local mapping's own, after the consumer kept failing on the record.
The script runs as a subprocess with the operator's (fake) credentials, against moto's server.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from devstack.event_sources.sqs import SqsEventSource
from devstack.fake_aws import FAKE_AWS
from devstack.stack import DevStack
from devstack.template import REGION, ROOT

pytestmark = pytest.mark.e2e

SCRIPT = ROOT / "scripts" / "replay_dlq.py"
DEAD_LETTER_QUEUES = {
    "DispatchQueue": "DispatchDeadLetterQueue",
    "ArchiveQueue": "ArchiveDeadLetterQueue",
    "WebhookQueue": "WebhookDeadLetterQueue",
    "SubmitQueue": "SubmitDeadLetterQueue",
}


@contextlib.contextmanager
def _paused(stack: DevStack, function_id: str) -> Iterator[None]:
    source = stack.event_source(function_id, "sqs")
    assert isinstance(source, SqsEventSource)
    source.pause()
    try:
        yield
    finally:
        source.resume()


def _dead_letter(stack: DevStack, queue: str, text: str, eventually: Any, copies: int = 1) -> dict[str, Any]:
    """Move the message holding `text` from `queue` to its dead-letter queue, as the redrive does."""
    sqs = stack.aws_client("sqs")
    url = stack.queue_url(queue)

    def take() -> dict[str, Any] | None:
        answer = sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30, MessageAttributeNames=["All"]
        )
        found = None
        for message in answer.get("Messages", []):
            if found is None and text in message["Body"]:
                found = message
            else:  # someone else's: back at once
                sqs.change_message_visibility(
                    QueueUrl=url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
                )
        return found

    message = eventually(take, timeout=30, what=f"the {queue} message for {text}")
    for _ in range(copies):  # a redrive can leave a message twice (SQS delivers at least once)
        sqs.send_message(
            QueueUrl=stack.queue_url(DEAD_LETTER_QUEUES[queue]),
            MessageBody=message["Body"],
            MessageAttributes=message.get("MessageAttributes") or {},
        )
    sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return message


def _replay(stack: DevStack, *extra: str) -> subprocess.CompletedProcess[str]:
    assert stack.stack is not None
    args = [f"--queue-url={stack.queue_url(dlq)}" for dlq in DEAD_LETTER_QUEUES.values()]
    args += [
        f"--stream-dlq-url={stack.queue_url('TaskEventsDeadLetterQueue')}",
        f"--table={stack.stack.refs['TasksTable']}",
        f"--webhook-queue-url={stack.queue_url('WebhookQueue')}",
        f"--event-bus={stack.stack.refs['EventBus']}",
        f"--endpoint-url={stack.moto_url}",
        f"--region={REGION}",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | FAKE_AWS
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)])
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args, *extra], env=env, capture_output=True, text=True, timeout=120
    )


def _drained(stack: DevStack, *queues: str) -> bool:
    sqs = stack.aws_client("sqs")
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    return all(
        int(count) == 0
        for queue in queues
        for count in sqs.get_queue_attributes(QueueUrl=stack.queue_url(queue), AttributeNames=names)[
            "Attributes"
        ].values()
    )


def _bus_events_for(stack: DevStack, task_id: str) -> list[dict[str, Any]]:
    return [
        e for e in stack.bus_events() if e["detail"].get("id") == task_id and "Generation" in e["detail-type"]
    ]


def test_every_dead_letter_queue_is_replayed_once_and_a_second_replay_does_nothing(
    stack, videos, receiver, unique, eventually, probe_mp4, chaos_free
):
    assert stack.simulator is not None and stack.chaos is not None
    # (the reconciler, which would queue the copy of a recorded result again, waits until the
    # replay has run: the replay alone finishes the work)
    reconciler = stack.event_source("ReconcileFunction", "schedule")
    reconciler.pause()
    # Given a task whose dispatch message is dead-lettered (twice: a redrive's duplicate) while the
    # provider rate-limits it, so it is still `queued`
    dispatch_prompt = unique("[sim:429x2] Replayed from the dispatch DLQ")
    with _paused(stack, "DispatchFunction"):
        queued = videos.create(dispatch_prompt, callback_url=receiver.url)
        _dead_letter(stack, "DispatchQueue", queued["id"], eventually, copies=2)
    # a task whose copy message is dead-lettered after its result was recorded
    with _paused(stack, "ArchiveFunction"):
        recorded = videos.create(unique("Replayed from the archive DLQ"), callback_url=receiver.url)
        _dead_letter(stack, "ArchiveQueue", recorded["id"], eventually)
    # a completed task whose webhook message is dead-lettered before any attempt
    with _paused(stack, "WebhookFunction"):
        hooked = videos.create(unique("Replayed from the webhook DLQ"), callback_url=receiver.url)
        _dead_letter(stack, "WebhookQueue", hooked["id"], eventually)
    # a submission from the queue that never ran
    submit_prompt = unique("Replayed from the submit DLQ")
    with _paused(stack, "IntakeFunction"):
        stack.aws_client("sqs").send_message(
            QueueUrl=stack.queue_url("SubmitQueue"), MessageBody=json.dumps({"prompt": submit_prompt})
        )
        _dead_letter(stack, "SubmitQueue", submit_prompt, eventually)
    # and a completed task whose stream record the consumer gave up on (its SendMessage failing
    # every time; the local mapping gives up after the first failure here, not the tenth)
    streams = stack.event_source("TaskEventsFunction", "dynamodb")
    retries, streams.max_retry_attempts = streams.max_retry_attempts, 0  # type: ignore[attr-defined]
    try:
        lost = videos.create(unique("Replayed from the stream's on-failure queue"), callback_url=receiver.url)
        rule = stack.chaos.add_fault(
            "sqs", "SendMessage", function="TaskEventsFunction", body_contains=lost["id"]
        )
        eventually(
            lambda: any(
                "DDBStreamBatchInfo" in m["Body"] for m in stack.queue_messages("TaskEventsDeadLetterQueue")
            ),
            timeout=60,
            what="the stream's on-failure record",
        )
    finally:
        streams.max_retry_attempts = retries  # type: ignore[attr-defined]
        stack.chaos.clear()
    assert rule.injected > 0

    # The work is stuck: nothing moves while its messages sit on the dead-letter queues
    assert videos.get(queued["id"])["status"] == "queued"
    assert videos.get(recorded["id"])["status"] == "in_progress"
    assert videos.get(hooked["id"])["status"] == "completed" and not receiver.deliveries_for(hooked["id"])
    assert videos.get(lost["id"])["status"] == "completed" and not receiver.deliveries_for(lost["id"])
    assert not _bus_events_for(stack, lost["id"])

    # When the operator looks first (--dry-run): every message and the stream's task are listed,
    # and nothing is changed
    dry = _replay(stack, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    for task_id in (queued["id"], recorded["id"], hooked["id"]):
        assert f"(task {task_id}" in dry.stdout
    assert f"would re-drive {lost['id']} (completed): webhook + bus event" in dry.stdout
    assert "would move 4 message(s) (1 duplicate(s) dropped); would re-drive" in dry.stdout
    assert len(stack.queue_messages("DispatchDeadLetterQueue")) == 2

    # and then replays
    done = _replay(stack)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "moved 4 message(s) (1 duplicate(s) dropped); re-drove" in done.stdout

    # Then each piece of work completes exactly once
    for task in (queued, recorded, hooked, lost):
        assert videos.wait(task["id"], timeout=60)["status"] == "completed"
        eventually(
            lambda task_id=task["id"]: (
                (stack.task_item(task_id) or {}).get("webhook", {}).get("state") == "delivered"
            ),
            timeout=60,
            what=f"the webhook of {task['id']}",
        )
    accepted = eventually(
        lambda: next(
            (
                e["detail"]["video"]["id"]
                for e in stack.bus_events()
                if e["detail-type"] == "Video Submission Accepted"
                and e["detail"].get("video", {}).get("prompt") == submit_prompt
            ),
            None,
        ),
        what="the replayed submission",
    )
    assert accepted
    eventually(lambda: _drained(stack, *DEAD_LETTER_QUEUES), timeout=60, what="every queue consumed")
    assert len([job for job in stack.simulator.jobs() if dispatch_prompt in job.prompt]) == 1
    for task in (queued, recorded, hooked, lost):
        deliveries = receiver.deliveries_for(task["id"])
        assert [d.answered for d in deliveries] == [200], (task["id"], [d.answered for d in deliveries])
    assert len(_bus_events_for(stack, lost["id"])) == 1
    reconciler.resume()
    item = stack.task_item(recorded["id"]) or {}
    data = stack.aws_client("s3").get_object(Bucket=stack.stack.refs["VideosBucket"], Key=item["video_key"])
    body = data["Body"].read()
    assert hashlib.sha256(body).hexdigest() == item["video_sha256"] and probe_mp4(body).frames > 0

    # And a second replay finds every dead-letter queue empty and changes nothing
    again = _replay(stack)
    assert again.returncode == 0, again.stderr
    assert "moved 0 message(s) (0 duplicate(s) dropped); re-drove 0 task(s)" in again.stdout
    assert again.stdout.count(": empty") == 5
    eventually(lambda: _drained(stack, *DEAD_LETTER_QUEUES), what="every queue still empty")
    for task in (queued, recorded, hooked, lost):
        assert len(receiver.deliveries_for(task["id"])) == 1
    assert len([job for job in stack.simulator.jobs() if dispatch_prompt in job.prompt]) == 1
    submitted = [e for e in stack.bus_events() if e["detail-type"] == "Video Submission Accepted"]
    assert [e["detail"]["video"]["prompt"] for e in submitted].count(submit_prompt) == 1


@pytest.fixture
def chaos_free(stack: DevStack) -> Iterator[None]:
    """No fault rules, and every event source running again afterwards."""
    assert stack.chaos is not None
    stack.chaos.clear()
    yield
    stack.chaos.clear()
    for source in stack.event_sources:
        source.resume()
