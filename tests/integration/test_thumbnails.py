"""`thumbnail_url` on the video object (moto in process): a presigned link to the stored thumbnail
in GET of one video and in the list, so a page can show it in an <img>; never in a webhook or a bus
event; and an origin the playground's CSP lets images load from."""

from __future__ import annotations

import io
import json
import time
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
from PIL import Image

from sora_relay.domain.task import Status
from sora_relay.runtime.container import current
from tests.conftest import LambdaContext, load_event, load_handler
from tests.integration.conftest import submitted


def _archived(api, internet) -> dict[str, Any]:
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    return video


def _key_of(stack, url: str) -> str:
    """The object a presigned link names (path style under moto: /bucket/key), and that it is one:
    signed, expiring, served as WebP."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    assert "X-Amz-Signature" in query and query["X-Amz-Expires"] == [
        str(current().settings.presigned_url_ttl_seconds)
    ]
    assert query["response-content-type"] == ["image/webp"]
    path = unquote(parts.path).lstrip("/")
    bucket = stack.refs["VideosBucket"]
    return path.removeprefix(f"{bucket}/") if path.startswith(f"{bucket}/") else path


def _image(stack, key: str) -> Image.Image:
    s3 = boto3.client("s3", region_name="us-east-1")
    body = s3.get_object(Bucket=stack.refs["VideosBucket"], Key=key)["Body"].read()
    return Image.open(io.BytesIO(body))


def test_one_completed_video_carries_a_presigned_link_to_its_thumbnail(api, internet, stack):
    # Given an archived video (its previews drawn)
    video = _archived(api, internet)
    task = current().task_store.get(video["id"])
    assert task.status is Status.COMPLETED and task.thumbnail_key

    # When it is read
    before = int(time.time())
    status, _, answer = api.get(video["id"])

    # Then the link names the stored thumbnail, a real WebP picture of the clip, until it expires
    assert status == 200 and answer["status"] == "completed"
    assert _key_of(stack, answer["thumbnail_url"]) == task.thumbnail_key
    assert _image(stack, task.thumbnail_key).format == "WEBP"
    ttl = current().settings.presigned_url_ttl_seconds
    assert before + ttl <= answer["thumbnail_expires_at"] <= int(time.time()) + ttl
    assert answer["download_url"] and answer["thumbnail_url"] != answer["download_url"]


def test_the_list_carries_thumbnails_of_completed_videos_only(api, internet, stack):
    # Given a completed video, one still in progress and one whose frames could not be decoded
    done = _archived(api, internet)
    open_video, _ = submitted(api, internet, prompt="still rendering")
    video_bytes = internet.video
    internet.video = video_bytes[:32] + bytes(len(video_bytes) - 32)  # an ftyp box, then damage
    no_previews = _archived(api, internet)
    internet.video = video_bytes
    assert current().task_store.get(no_previews["id"]).preview_error

    # When the list is read
    status, _, page = api.list()

    # Then only the completed video with a thumbnail carries a link, and no row a download link
    assert status == 200
    rows = {row["id"]: row for row in page["data"]}
    assert set(rows) == {done["id"], open_video["id"], no_previews["id"]}
    task = current().task_store.get(done["id"])
    assert _key_of(stack, rows[done["id"]]["thumbnail_url"]) == task.thumbnail_key
    assert rows[done["id"]]["thumbnail_expires_at"] > time.time()
    for other in (open_video["id"], no_previews["id"]):
        assert (rows[other]["thumbnail_url"], rows[other]["thumbnail_expires_at"]) == (None, None)
    assert all(row["download_url"] is None for row in page["data"])


def test_a_webhook_carries_the_download_link_but_no_thumbnail(api, internet, downstream):
    # Given a completed video with a callback_url
    video = _archived(api, internet)

    # When its webhook is delivered
    downstream.pump()

    # Then the body has the MP4's link and no thumbnail's
    [request] = [r for r in internet.webhooks if video["id"].encode() in r.content]
    data = json.loads(request.content)["data"]
    assert data["id"] == video["id"] and data["download_url"]
    assert (data["thumbnail_url"], data["thumbnail_expires_at"]) == (None, None)
    # And the bus event carries neither
    [event] = [e for e in downstream.bus_events() if e["detail"]["id"] == video["id"]]
    assert event["detail"]["thumbnail_url"] is None and event["detail"]["download_url"] is None


def test_the_playground_policy_lets_images_load_from_the_thumbnail_links_origin(api, internet):
    # Given a thumbnail link the API hands out
    video = _archived(api, internet)
    thumbnail = urlsplit(api.get(video["id"])[2]["thumbnail_url"])

    # When the playground page is served
    answer = load_handler("playground").lambda_handler(load_event("playground"), LambdaContext())

    # Then its CSP's img-src names that origin (and media-src the video's, the same one)
    header = answer["multiValueHeaders"]["Content-Security-Policy"][0]
    directives = dict(part.strip().split(" ", 1) for part in header.split(";"))
    origin = f"{thumbnail.scheme}://{thumbnail.netloc}"
    assert origin in directives["img-src"].split()
    assert directives["media-src"] == origin
