"""The reconciler: lost callbacks, failed copies and the hard deadline, through the callback's path."""

from __future__ import annotations

import json

import boto3
import httpx

from sora_relay.domain.task import now_millis
from tests.conftest import LambdaContext
from tests.integration.conftest import VALID, submitted

MINUTE_MS = 60_000


def _age(stack, task_id: str, minutes: int, *, fields: tuple[str, ...] = ("created_ms",)) -> None:
    """Pretend the task was created (or each of `fields` happened) `minutes` ago."""
    boto3.client("dynamodb", region_name="us-east-1").update_item(
        TableName=stack.refs["TasksTable"],
        Key={"task_id": {"S": task_id}},
        UpdateExpression="SET " + ", ".join(f"{name} = :c" for name in fields),
        ExpressionAttributeValues={":c": {"N": str(now_millis() - minutes * MINUTE_MS)}},
    )


def _task(stack, task_id: str) -> dict:
    item = boto3.client("dynamodb", region_name="us-east-1").get_item(
        TableName=stack.refs["TasksTable"], Key={"task_id": {"S": task_id}}
    )["Item"]
    return {key: next(iter(value.values())) for key, value in item.items()}


def _reconcile(handlers) -> dict:
    return handlers["reconcile"].lambda_handler({"source": "aws.scheduler"}, LambdaContext())


def test_a_lost_callback_is_finished_from_the_provider_query(
    api, internet, stack, handlers, mp4_bytes, downstream
):
    # Given a task whose callback never came, long finished at the provider
    video, call = submitted(api, internet)
    _age(stack, video["id"], 20)
    internet.task_results[call["task_id"]] = json.loads(internet.success_body(call))

    # When the reconciler runs
    outcomes = _reconcile(handlers)

    # Then the result is recorded through the callback's path and the copy queued, not made here
    assert outcomes == {"copy_queued": 1}
    assert internet.fetched_urls == []
    assert _task(stack, video["id"])["status"] == "in_progress"

    # And the archive step completes it and the client is told
    api.archive()
    task = _task(stack, video["id"])
    assert task["status"] == "completed" and int(task["video_bytes"]) == len(mp4_bytes)
    downstream.pump()
    assert json.loads(internet.webhooks[0].content)["type"] == "video.completed"
    assert internet.queries == [[call["task_id"]]]


def test_a_provider_failure_found_by_query_fails_the_task(api, internet, stack, handlers):
    video, call = submitted(api, internet)
    _age(stack, video["id"], 20)
    internet.task_results[call["task_id"]] = json.loads(internet.failure_body(call, "api_error", "nope"))
    assert _reconcile(handlers) == {"failed": 1}
    assert _task(stack, video["id"])["error_code"] == "api_error"


def test_tasks_still_running_or_recent_are_left_alone(api, internet, stack, handlers):
    old, old_call = submitted(api, internet)
    recent, _ = submitted(api, internet)
    _age(stack, old["id"], 20)
    internet.task_results[old_call["task_id"]] = {"task_id": old_call["task_id"]}  # processing
    assert _reconcile(handlers) == {"still_running": 1}
    assert internet.queries == [[old_call["task_id"]]]  # the recent task was not even asked about
    assert _task(stack, old["id"])["status"] == _task(stack, recent["id"])["status"] == "in_progress"


def test_a_failed_copy_is_copied_again(api, internet, stack, handlers, mp4_bytes):
    # Given a callback whose video copy hit a 503
    video, call = submitted(api, internet)
    internet.videos["/flaky.mp4"] = lambda: httpx.Response(503)
    api.callback(call["body"]["callback_url"], internet.success_body(call, video_path="/flaky.mp4"))
    assert _task(stack, video["id"])["copy_error"]
    _age(stack, video["id"], 20, fields=("created_ms", "result_received_ms"))

    # When the URL works again and the reconciler runs
    del internet.videos["/flaky.mp4"]
    asked = len(internet.queries)  # the push itself was looked up (AceData signs nothing)
    assert _reconcile(handlers) == {"copy_queued": 1}

    # Then the copy is queued again from the recorded URL, without asking the provider, and made
    api.archive()
    assert int(_task(stack, video["id"])["video_bytes"]) == len(mp4_bytes)
    assert len(internet.queries) == asked


def test_a_copy_waiting_on_the_archive_queue_is_not_queued_again_by_every_run(api, internet, stack, handlers):
    # Given a result whose copy failed once 20 minutes ago (its message retries on the archive
    # queue, held up behind a backlog)
    video, call = submitted(api, internet)
    internet.videos["/slow.mp4"] = lambda: httpx.Response(503)
    api.callback(call["body"]["callback_url"], internet.success_body(call, video_path="/slow.mp4"))
    _age(stack, video["id"], 20, fields=("created_ms", "result_received_ms"))
    archive_queue = stack.refs["ArchiveQueue"]
    queued = _messages(archive_queue)

    # When the reconciler runs three times in a row
    outcomes = [_reconcile(handlers) for _ in range(3)]

    # Then the copy is queued again once, and the next runs leave it to that message
    assert outcomes == [{"copy_queued": 1}, {"copy_waiting": 1}, {"copy_waiting": 1}]
    assert _messages(archive_queue) == queued + 1
    assert int(_task(stack, video["id"])["copy_requeued_ms"]) > now_millis() - MINUTE_MS

    # And once that requeue is itself old (lost, as far as anyone can tell), it is queued once more
    _age(stack, video["id"], 20, fields=("copy_requeued_ms",))
    assert _reconcile(handlers) == {"copy_queued": 1}
    assert _messages(archive_queue) == queued + 2


def test_a_result_that_just_came_is_left_to_the_copy_its_callback_queued(api, internet, stack, handlers):
    # Given an old task whose result came a moment ago (the callback queued its copy)
    video, call = submitted(api, internet)
    internet.videos["/slow.mp4"] = lambda: httpx.Response(503)
    api.callback(call["body"]["callback_url"], internet.success_body(call, video_path="/slow.mp4"))
    _age(stack, video["id"], 20)

    # Then the reconciler does not queue it a second time
    assert _reconcile(handlers) == {"copy_waiting": 1}


def _messages(queue_url: str) -> int:
    attributes = boto3.client("sqs", region_name="us-east-1").get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_past_the_deadline_a_task_times_out(api, internet, stack, handlers, downstream):
    video, _ = submitted(api, internet)
    _age(stack, video["id"], 7 * 60)
    assert _reconcile(handlers) == {"timed_out": 1}
    task = _task(stack, video["id"])
    assert task["status"] == "failed" and task["error_code"] == "timeout"
    downstream.pump()
    assert json.loads(internet.webhooks[0].content)["type"] == "video.failed"


def test_a_task_still_queued_past_the_deadline_times_out(api, internet, stack, handlers, downstream):
    # Given a task the provider never accepted (its dispatch gave up silently, or its start was lost)
    internet.create_failures.append(httpx.Response(429, json={"error": {"code": "busy", "message": "x"}}))
    status, _, video = api.submit(VALID)
    assert status == 202 and video["status"] == "queued"
    _age(stack, video["id"], 7 * 60)

    # When the reconciler runs, it fails it with timeout, and the client hears it
    assert _reconcile(handlers) == {"timed_out": 1}
    assert _task(stack, video["id"])["error_code"] == "timeout"
    downstream.pump()
    assert json.loads(internet.webhooks[0].content)["data"]["error"]["code"] == "timeout"


def test_a_run_stops_before_its_time_runs_out_and_the_next_run_carries_on(api, internet, stack, handlers):
    # Given 60 stale tasks, and an invocation whose time runs short after the first lookup
    ids = [submitted(api, internet, prompt=f"v{n}")[0]["id"] for n in range(60)]
    for task_id in ids:
        _age(stack, task_id, 20)
    left = iter([120_000])

    class ShortContext(LambdaContext):
        def get_remaining_time_in_millis(self) -> int:
            return next(left, 10_000)

    # When it runs, it looks up one batch of 50 and leaves the rest for the next run
    outcomes = handlers["reconcile"].lambda_handler({"source": "aws.scheduler"}, ShortContext())
    assert outcomes == {"still_running": 50, "left_for_next_run": 10}
    assert [len(batch) for batch in internet.queries] == [50]

    # And the next run, with time enough, looks up all of them again (oldest first), 50 ids at a
    # time (this test's seed also proves the batch size, which had a 55-task test of its own)
    assert _reconcile(handlers) == {"still_running": 60}
    assert sorted(len(batch) for batch in internet.queries[1:]) == [10, 50]
