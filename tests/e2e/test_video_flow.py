"""The happy path over real HTTP: submit, provider callback, archive to S3, download, webhook."""

from __future__ import annotations

import base64
import hashlib
import secrets

import pytest
from standardwebhooks import Webhook, WebhookVerificationError

pytestmark = pytest.mark.e2e


def test_a_video_is_generated_archived_and_served_through_a_presigned_url(
    stack, videos, plain_http, unique, probe_mp4
):
    # Given a request for an 8-second portrait video
    created = videos.create(unique("A lighthouse in fog"), model="veo-3.1-fast", duration=8, size="720x1280")
    assert created["status"] in ("queued", "in_progress")
    assert created["download_url"] is None

    # When the provider calls back
    video = videos.wait(created["id"])

    # Then the video is completed, and /content redirects to the archived object in S3 (moto)
    assert video["status"] == "completed"
    assert video["progress"] == 100
    assert video["error"] is None
    assert video["download_url"] and video["completed_at"] >= video["created_at"]
    content = videos.client.get(f"/v1/videos/{video['id']}/content")
    assert content.status_code == 302
    location = content.headers["location"]
    # Presigned by the function for the endpoint it uses (moto)
    assert location.startswith(f"{stack.moto_url}/")
    assert "X-Amz-Signature=" in location

    # And the presigned URL serves a real MP4 of the requested shape, without any API key
    download = plain_http.get(location)
    assert download.status_code == 200
    assert download.headers["content-type"] == "video/mp4"
    info = probe_mp4(download.content)
    assert (info.width, info.height) == (720, 1280)
    assert info.seconds == pytest.approx(8, abs=0.3)
    assert info.frames > 0

    # And its bytes are exactly what the service stored and what the provider produced
    item = stack.task_item(video["id"])
    digest = hashlib.sha256(download.content).hexdigest()
    assert digest == item["video_sha256"]
    assert len(download.content) == item["video_bytes"]
    original = stack.simulator.video_path(item["provider_task_id"])
    assert hashlib.sha256(original.read_bytes()).hexdigest() == digest


def test_the_client_webhook_verifies_with_the_standardwebhooks_library(
    stack, videos, receiver, unique, eventually, webhook_in
):
    # Given a video with a callback_url
    created = videos.create(unique("A kite over the dunes"), callback_url=receiver.url)

    # When it completes
    delivery = receiver.wait_for_video(created["id"], timeout=20)

    # Then the webhook verifies with the published secret and describes the finished video
    event = receiver.verify(delivery)
    assert delivery.headers["webhook-id"] == event["id"]
    assert event["type"] == "video.completed"
    assert event["data"]["id"] == created["id"]
    assert event["data"]["status"] == "completed"
    assert event["data"]["download_url"]
    assert delivery.headers["content-type"] == "application/json"

    # And a tampered body or the wrong secret does not verify
    tampered = delivery.body.replace(b'"completed"', b'"failed"', 1)
    assert tampered != delivery.body
    with pytest.raises(WebhookVerificationError):
        Webhook(stack.tenants[0].webhook_secret).verify(tampered, delivery.headers)  # the owner's secret
    wrong_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    with pytest.raises(WebhookVerificationError):
        Webhook(wrong_secret).verify(delivery.body, delivery.headers)

    # And the task records the delivery (once the receiver has answered: a moment after it got it)
    eventually(
        lambda: webhook_in(created["id"], "delivered"),
        what="the delivery to be recorded",
    )
    assert len(receiver.deliveries_for(created["id"])) == 1


def test_a_refused_webhook_is_recorded_and_delivered_again(videos, receiver, unique, eventually, webhook_in):
    # Given a client endpoint that answers 503 to an event's first delivery
    # When a video with that callback_url completes
    created = videos.create(unique("A train crossing a viaduct"), callback_url=receiver.url_failing(1))
    delivery = receiver.wait_for_video(created["id"], timeout=20)

    # Then the first delivery was refused, the next one (same webhook-id) accepted, and both
    # attempts are recorded on the task
    assert delivery.answered == 503
    webhook = eventually(
        lambda: webhook_in(created["id"], "delivered"),
        what="the redelivery",
    )
    assert [attempt["status_code"] for attempt in webhook["history"]] == [503, 200]
    deliveries = receiver.deliveries_for(created["id"])
    assert [d.answered for d in deliveries] == [503, 200]
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    assert videos.get(created["id"])["status"] == "completed"
