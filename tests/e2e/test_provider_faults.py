"""Each simulator fault mode, over real HTTP, ends the task in the state the service promises."""

from __future__ import annotations

import time

import pytest

from devstack.simulator import FAILURE_MESSAGE

pytestmark = pytest.mark.e2e

# The faults whose tasks take seconds to settle (a reconciler run, a late push, dispatch backoff):
# name -> (prompt, whether the task has a callback_url). `started` submits them all at once, so
# their waits overlap; each test then checks its own task.
SLOW_FAULTS = {
    "fail": ("[sim:fail] A storm at sea", True),
    "no-callback": ("[sim:no-callback] A quiet library", True),
    "double-callback": ("[sim:double-callback] Two moons", True),
    "late-callback": ("[sim:late-callback] A slow sunrise", False),
    "video-404": ("[sim:video-404] A vanished film", True),
    "video-503": ("[sim:video-503] A flickering neon sign", True),
    "429": ("[sim:429] A busy provider", False),
    "429-webhook": ("[sim:429] A provider that stays busy", True),
    "429x2": ("[sim:429x2] A patient crowd", False),
}


@pytest.fixture(scope="module")
def started(module_videos, module_receiver, unique) -> dict[str, dict]:
    """Each of SLOW_FAULTS' tasks, as POST /v1/videos answered it (202), submitted together; their
    webhooks go to `module_receiver`."""
    return {
        name: module_videos.create(unique(prompt), **({"callback_url": module_receiver.url} if hook else {}))
        for name, (prompt, hook) in SLOW_FAULTS.items()
    }


def _provider_task(stack, video_id: str) -> str:
    # Submit records the provider's task id before it answers 202.
    return stack.task_item(video_id)["provider_task_id"]


def test_a_failed_generation_ends_failed_with_the_providers_code_and_message(
    videos, module_receiver, started
):
    created = started["fail"]

    video = videos.wait(created["id"])

    assert video["status"] == "failed"
    assert video["error"] == {"code": "api_error", "message": FAILURE_MESSAGE}
    assert video["download_url"] is None
    assert videos.client.get(f"/v1/videos/{created['id']}/content").status_code == 404
    event = module_receiver.verify(module_receiver.wait_for_video(created["id"], timeout=20))
    assert event["type"] == "video.failed"
    assert event["data"]["error"]["code"] == "api_error"


def test_a_lost_callback_is_finished_by_the_reconciler(stack, videos, module_receiver, started, eventually):
    # Given a task whose provider finishes but never calls back
    created = started["no-callback"]
    provider_task = _provider_task(stack, created["id"])

    # When the provider has finished it (its record carries the response; no callback is coming)
    eventually(
        lambda: "response" in (stack.simulator.record(provider_task) or {}), what="the provider to finish"
    )
    assert stack.simulator.task_state(provider_task)["callbacks"] == []

    # Then the scheduled reconciler (every 2 s here, for tasks older than 4 s) asks the
    # provider, copies the video and completes the task, and the client hears of it
    video = videos.wait(created["id"], timeout=30)
    assert video["status"] == "completed" and video["progress"] == 100
    assert stack.simulator.task_state(provider_task)["callbacks"] == []
    assert videos.client.get(f"/v1/videos/{created['id']}/content").status_code == 302
    event = module_receiver.verify(module_receiver.wait_for_video(created["id"], timeout=20))
    assert event["type"] == "video.completed"


def test_a_duplicated_callback_completes_the_task_once_and_sends_one_webhook(
    stack, videos, module_receiver, started, eventually, webhook_in
):
    created = started["double-callback"]
    provider_task = _provider_task(stack, created["id"])

    # When both callbacks have been answered
    state = eventually(
        lambda: s if len((s := stack.simulator.task_state(provider_task))["callbacks"]) == 2 else None,
        what="both callbacks",
    )

    # Then both were accepted, the task completed, and the client heard about it exactly once
    assert [attempt["status"] for attempt in state["callbacks"]] == [200, 200]
    assert videos.wait(created["id"])["status"] == "completed"
    eventually(
        lambda: webhook_in(created["id"], "delivered"),
        what="the webhook to be delivered",
    )
    time.sleep(1.0)  # room for a second delivery, were there one
    deliveries = module_receiver.deliveries_for(created["id"])
    assert len(deliveries) == 1
    assert module_receiver.verify(deliveries[0])["type"] == "video.completed"


def test_a_late_callback_completes_the_task_when_it_arrives(stack, videos, started):
    created = started["late-callback"]

    video = videos.wait(created["id"], timeout=stack.late_callback_delay + 20)

    assert video["status"] == "completed"
    # The provider finished on time but called back only after the late delay, and the task
    # completed on that callback, not before.
    state = stack.simulator.task_state(_provider_task(stack, created["id"]))
    record, callback = state["record"], state["callbacks"][0]
    assert record["finished_at"] - record["created_at"] < stack.late_callback_delay
    assert callback["at"] - record["created_at"] >= stack.late_callback_delay
    item = stack.task_item(created["id"])
    assert item["completed_ms"] / 1000 >= callback["at"]
    assert item["completed_ms"] - item["created_ms"] >= stack.late_callback_delay * 1000


def test_a_missing_video_fails_the_task_with_video_fetch_failed(videos, module_receiver, started):
    created = started["video-404"]

    video = videos.wait(created["id"])

    assert video["status"] == "failed"
    assert video["error"]["code"] == "video_fetch_failed"
    assert "404" in video["error"]["message"]
    event = module_receiver.verify(module_receiver.wait_for_video(created["id"], timeout=20))
    assert event["type"] == "video.failed"


def test_a_video_the_cdn_refuses_twice_is_copied_by_the_archive_queue_on_a_retry(
    stack, videos, module_receiver, started
):
    # Given a finished video whose first two downloads answer 503
    created = started["video-503"]

    # When the callback has recorded it and the archive step copies it
    video = videos.wait(created["id"], timeout=60)

    # Then the archive queue's retries made the copy: one completed task, its attempts on record
    assert video["status"] == "completed"
    item = stack.task_item(created["id"])
    assert item["copy_error"] == "The video URL answered HTTP 503"  # the failed attempts said why
    assert item["video_key"].startswith(f"videos/{created['id']}/") and "archive_claim" not in item
    assert item["result_received_ms"] <= item["completed_ms"]
    event = module_receiver.verify(module_receiver.wait_for_video(created["id"], timeout=20))
    assert event["type"] == "video.completed"


# A provider throttling at submit (429: nothing was accepted). Two designs, chosen by the template:
# without a dispatch queue, submit retries in line and then answers the task failed; with one,
# submit answers 202 `queued` at once and the dispatch function retries from the queue with backoff.
# A 5xx is not retried at all: the provider may have started the job (a second create could bill
# twice). Either way the create that stored a task answers 202 with it, never a 5xx.


def test_a_5xx_on_create_fails_the_task_at_once_and_is_never_sent_again(stack, videos, unique):
    prompt = unique("[sim:500] A provider that broke mid-create")
    answer = videos.client.post("/v1/videos", json={"prompt": prompt})
    assert answer.status_code == 202, answer.text
    video = answer.json()
    assert video["status"] == "failed" and video["error"]["code"] == "provider_outcome_unknown"
    assert videos.get(video["id"])["error"] == video["error"]  # what a later GET shows
    assert sum(1 for job in stack.simulator.jobs() if job.prompt == prompt) == 0  # it accepted nothing
    # ... and the relay asked once: the simulator counts create attempts per prompt
    assert stack.simulator.create_attempts("500", prompt) == 1


def test_queued_a_provider_that_keeps_refusing_fails_the_task_after_the_dispatch_attempts(
    videos, started, dispatch
):
    assert dispatch == "queue"  # the in-line fallback (no queue) is covered in tests/integration

    # Given a provider that throttles every attempt (429): submit accepts the task all the same
    created = started["429"]
    assert created["status"] == "queued"

    # Then the dispatch function keeps trying (3 attempts here) and then fails the task
    video = videos.wait(created["id"], timeout=40)
    assert video["status"] == "failed"
    assert video["error"]["code"] == "provider_unavailable"


def test_queued_a_task_the_dispatch_gives_up_on_is_reported_to_the_webhook(
    videos, module_receiver, started, dispatch
):
    assert dispatch == "queue"  # the in-line fallback (no queue) is covered in tests/integration
    created = started["429-webhook"]
    assert created["status"] == "queued"
    assert videos.wait(created["id"], timeout=40)["status"] == "failed"

    event = module_receiver.verify(module_receiver.wait_for_video(created["id"], timeout=2))

    assert event["type"] == "video.failed"
    assert event["data"]["error"]["code"] == "provider_unavailable"


def test_queued_a_provider_429_twice_is_dispatched_and_completes(stack, videos, started, dispatch):
    assert dispatch == "queue"  # the in-line fallback (no queue) is covered in tests/integration

    created = started["429x2"]

    assert created["status"] == "queued"
    video = videos.wait(created["id"], timeout=40)
    assert video["status"] == "completed"
    assert stack.task_item(created["id"])["provider_task_id"]
