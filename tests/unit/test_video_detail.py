"""The owner's one video (VideoDetail): its stage timings and each webhook attempt, as the task
records them; the plain video object (lists, webhooks, bus events) carries neither."""

from __future__ import annotations

from sora_relay.domain.models import VideoDetail, VideoObject
from sora_relay.domain.task import Status, Task
from sora_relay.domain.webhook import WebhookAttempt, WebhookDelivery, WebhookState

T0 = 1_795_000_000_000


def finished_task(webhook: WebhookDelivery | None = None) -> Task:
    task = Task.new(
        owner="key-1",
        model="seedance-1.5-pro",
        prompt="A paper boat",
        seconds=4,
        size="1280x720",
        image_url=None,
        callback_url="https://hooks.example.com/sora",
        provider="acedata",
        retention_days=30,
        now_ms=T0,
    )
    return task.model_copy(
        update={
            "status": Status.COMPLETED,
            "result_received_ms": T0 + 2_500,
            "completed_ms": T0 + 3_100,
            "webhook": webhook,
        }
    )


def test_timings_are_each_stage_in_milliseconds():
    detail = VideoDetail.of(finished_task()).model_dump(mode="json")

    assert detail["timings"] == {
        "created_ms": T0,
        "result_received_ms": T0 + 2_500,
        "finished_ms": T0 + 3_100,
    }
    assert detail["webhook"] is None  # not attempted yet


def test_each_attempt_says_its_outcome_and_when_the_next_one_came_or_is_due():
    # Given a refused first attempt, a timeout, and a third attempt still to come
    delivery = WebhookDelivery(
        event_id="evt_video_x_completed",
        state=WebhookState.RETRYING,
        attempts=2,
        next_attempt_ms=T0 + 40_000,
        history=[
            WebhookAttempt(attempt=1, at_ms=T0 + 4_000, status_code=503, error="HTTP 503", duration_ms=12),
            WebhookAttempt(attempt=2, at_ms=T0 + 9_000, error="ReadTimeout: timed out", duration_ms=10_000),
        ],
    )

    # When
    webhook = VideoDetail.of(finished_task(delivery)).model_dump(mode="json")["webhook"]

    # Then
    assert webhook["state"] == "retrying"
    assert webhook["next_attempt_ms"] == T0 + 40_000
    assert [
        (a["attempt"], a["outcome"], a["status_code"], a["next_retry_ms"]) for a in webhook["attempts"]
    ] == [
        (1, "failed", 503, T0 + 9_000),
        (2, "failed", None, T0 + 40_000),
    ]


def test_a_final_delivery_has_no_next_attempt():
    delivered = WebhookDelivery(
        event_id="evt_video_x_completed",
        state=WebhookState.DELIVERED,
        attempts=2,
        next_attempt_ms=T0 + 99_000,  # the lease the last claim took; not a retry
        history=[
            WebhookAttempt(attempt=1, at_ms=T0 + 4_000, status_code=410, error="HTTP 410"),
            WebhookAttempt(attempt=2, at_ms=T0 + 9_000, status_code=204),
        ],
    )

    webhook = VideoDetail.of(finished_task(delivered)).model_dump(mode="json")["webhook"]

    assert webhook["next_attempt_ms"] is None
    assert [(a["outcome"], a["next_retry_ms"]) for a in webhook["attempts"]] == [
        ("gone", T0 + 9_000),
        ("delivered", None),
    ]


def test_the_plain_video_object_carries_neither():
    dumped = VideoObject.from_task(finished_task()).model_dump(mode="json")

    assert "timings" not in dumped and "webhook" not in dumped
    assert set(VideoDetail.model_fields) - set(VideoObject.model_fields) == {"timings", "webhook"}


def test_a_first_attempt_still_in_flight_reads_as_no_attempt_yet():
    # Given the first attempt has claimed the delivery (state sending) and not come back
    sending = WebhookDelivery(
        event_id="evt_video_x_completed",
        state=WebhookState.SENDING,
        attempts=1,
        next_attempt_ms=T0 + 24_000,  # the claim's lease, not a retry
    )

    # When the owner reads the video meanwhile (this answered 500: a zip of no attempts with one start)
    webhook = VideoDetail.of(finished_task(sending)).model_dump(mode="json")["webhook"]

    # Then
    assert webhook["state"] == "sending"
    assert webhook["next_attempt_ms"] is None
    assert webhook["attempts"] == []
