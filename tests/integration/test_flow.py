"""The whole slice in process: submit -> provider callback -> stored video -> webhook -> status."""

from __future__ import annotations

import hashlib
import json
from urllib.parse import parse_qs, urlsplit

from standardwebhooks import Webhook

from sora_relay.runtime.container import current
from tests.integration.conftest import CLIENT_HOST, VALID, submitted


def test_submit_callback_status_content(api, internet, s3, stack, webhook_secret, mp4_bytes, downstream):
    # Given a submitted task
    video, call = submitted(api, internet, model="veo-3.1", duration=8, size="1920x1080")
    assert video["status"] == "in_progress"
    assert video["id"].startswith("video_") and video["object"] == "video"
    assert video["seconds"] == "8" and video["size"] == "1920x1080" and video["model"] == "veo-3.1"
    sent = call["body"]
    assert call["service"] == "veo"
    assert sent == {  # AceData's veo service in its own words (acedata-video.md, request fields)
        "action": "text2video",
        "model": "veo31",
        "prompt": VALID["prompt"],
        "aspect_ratio": "16:9",
        "resolution": "1080p",
        "callback_url": sent["callback_url"],
        "async": True,
    }
    callback = urlsplit(sent["callback_url"])
    assert callback.scheme == "https"
    assert callback.path.endswith(f"/v1/callbacks/acedata/{video['id']}")
    assert parse_qs(callback.query)["token"][0]

    # When the provider calls back with a finished video
    status, _, answer = api.callback(sent["callback_url"], internet.success_body(call))

    # Then the video is in S3 with its size and sha256 recorded, and the task is completed
    assert status == 200 and answer == {"received": True, "changed": True, "status": "in_progress"}
    key = current().task_store.get(video["id"]).video_key
    assert key.startswith(f"videos/{video['id']}/{call['task_id']}-") and key.endswith(".mp4")
    stored = s3.get_object(Bucket=stack.refs["VideosBucket"], Key=key)
    body = stored["Body"].read()
    assert body == mp4_bytes
    assert stored["ContentType"] == "video/mp4"

    status, _, done = api.get(video["id"])
    assert status == 200
    assert done["status"] == "completed" and done["progress"] == 100 and done["completed_at"]
    assert "X-Amz-Algorithm=AWS4-HMAC-SHA256" in done["download_url"]
    assert done["download_expires_at"] > done["completed_at"]

    # And once the table's stream has run, the client's webhook was signed per Standard Webhooks
    # and carries the video object
    assert internet.webhooks == []
    downstream.pump()
    assert len(internet.webhooks) == 1
    hook = internet.webhooks[0]
    assert hook.headers["host"] == CLIENT_HOST
    payload = Webhook(webhook_secret).verify(hook.content, dict(hook.headers))
    assert payload["type"] == "video.completed"
    assert payload["data"]["id"] == video["id"] and payload["data"]["status"] == "completed"
    assert hook.headers["webhook-id"] == payload["id"]

    # And the task records the copy and the delivery
    item = _item(stack, video["id"])
    assert item["video_bytes"]["N"] == str(len(mp4_bytes))
    assert item["video_sha256"]["S"] == hashlib.sha256(mp4_bytes).hexdigest()
    assert item["webhook"]["M"]["state"]["S"] == "delivered"

    # And the content route redirects to a presigned link of that object
    status, headers, _ = api.get(video["id"], content=True)
    assert status == 302
    location = urlsplit(headers["location"])
    assert location.path.endswith(f"/{key}")
    assert "X-Amz-Signature" in location.query


def test_failure_callback_records_the_provider_reason_and_tells_the_client(
    api, internet, stack, webhook_secret, downstream
):
    # Given a submitted task
    video, call = submitted(api, internet)

    # When the provider reports a failure
    status, _, answer = api.callback(
        call["body"]["callback_url"], internet.failure_body(call, "api_error", "content policy")
    )

    # Then the task is failed with the provider's code and message, and the client is told
    assert status == 200 and answer["status"] == "failed"
    _, _, failed = api.get(video["id"])
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "api_error", "message": "content policy"}
    assert failed["download_url"] is None
    downstream.pump()
    payload = Webhook(webhook_secret).verify(internet.webhooks[0].content, dict(internet.webhooks[0].headers))
    assert payload["type"] == "video.failed" and payload["data"]["error"]["code"] == "api_error"
    status, _, error = api.get(video["id"], content=True)
    assert status == 404 and error["error"]["code"] == "video_not_ready"


def test_webhook_receiver_down_is_recorded_and_retried_later(api, internet, stack, downstream):
    # Given a client whose receiver answers 503
    internet.webhook_status = 503
    video, call = submitted(api, internet)

    # When the task completes
    status, _, _answer = api.callback(call["body"]["callback_url"], internet.success_body(call))

    # Then the task is still completed, the failed attempt is on record and the next is scheduled
    assert status == 200 and api.get(video["id"])[2]["status"] == "completed"
    downstream.pump()
    webhook = _item(stack, video["id"])["webhook"]["M"]
    assert webhook["state"]["S"] == "retrying"
    assert webhook["last_status_code"]["N"] == "503"
    assert webhook["attempts"]["N"] == "1"
    assert int(webhook["next_attempt_ms"]["N"]) > int(webhook["last_attempt_ms"]["N"])


def test_no_callback_url_means_no_webhook(api, internet, stack, downstream):
    status, _, video = api.submit({"prompt": "no webhook please"})
    assert status == 202
    call = internet.last_call()
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    downstream.pump()
    assert internet.webhooks == []
    assert "webhook" not in _item(stack, video["id"])


def _item(stack, task_id: str) -> dict:
    import boto3

    client = boto3.client("dynamodb", region_name="us-east-1")
    return client.get_item(TableName=stack.refs["TasksTable"], Key={"task_id": {"S": task_id}})["Item"]


def test_webhook_body_is_compact_json(api, internet, downstream):
    _, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    downstream.pump()
    body = internet.webhooks[0].content
    assert json.loads(body)["object"] == "event"
    assert internet.webhooks[0].headers["content-type"] == "application/json"
