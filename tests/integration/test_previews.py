"""The previews the archive step draws from the stored MP4, and /content?variant= serving them (moto)."""

from __future__ import annotations

import io
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
from PIL import Image

from devstack.mp4 import render_mp4
from sora_relay.domain.errors import StorageError
from sora_relay.domain.task import Status
from sora_relay.runtime.container import current
from tests.conftest import load_event
from tests.integration.conftest import OTHER_OWNER, OWNER, install_container, submitted


def _objects(stack) -> dict[str, dict]:
    s3 = boto3.client("s3", region_name="us-east-1")
    listing = s3.list_objects_v2(Bucket=stack.refs["VideosBucket"]).get("Contents", [])
    return {
        entry["Key"]: s3.head_object(Bucket=stack.refs["VideosBucket"], Key=entry["Key"]) for entry in listing
    }


def _body(stack, key: str) -> bytes:
    s3 = boto3.client("s3", region_name="us-east-1")
    return s3.get_object(Bucket=stack.refs["VideosBucket"], Key=key)["Body"].read()


def _content(api, video_id: str, variant: str | None, *, owner: str = OWNER) -> tuple[int, dict, dict | None]:
    event = load_event("content")
    event["path"] = f"/v1/videos/{video_id}/content"
    event["pathParameters"] = {"video_id": video_id}
    query = {"variant": variant} if variant is not None else None
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    event["requestContext"]["identity"]["apiKeyId"] = owner
    return api.call("status", event)


def _archived(api, internet) -> dict:
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    return video


def test_the_archive_step_stores_both_previews_beside_the_mp4_and_records_their_keys(api, internet, stack):
    # When a finished video is archived
    video = _archived(api, internet)

    # Then the task is completed with the MP4 and two WebP previews under the same attempt's name
    task = current().task_store.get(video["id"])
    assert task.status is Status.COMPLETED and task.preview_error is None
    stem = task.video_key.removesuffix(".mp4")
    assert task.thumbnail_key == f"{stem}.thumbnail.webp"
    assert task.spritesheet_key == f"{stem}.spritesheet.webp"
    objects = _objects(stack)
    assert set(objects) == {task.video_key, task.thumbnail_key, task.spritesheet_key}
    assert objects[task.video_key]["ContentType"] == "video/mp4"
    assert objects[task.thumbnail_key]["ContentType"] == "image/webp"
    assert objects[task.spritesheet_key]["ContentType"] == "image/webp"
    # And they are real pictures of the 320x180, 8-frame clip, the layout stated on the sheet
    thumbnail = Image.open(io.BytesIO(_body(stack, task.thumbnail_key)))
    sheet = Image.open(io.BytesIO(_body(stack, task.spritesheet_key)))
    assert (thumbnail.format, thumbnail.size) == ("WEBP", (320, 180))
    assert (sheet.format, sheet.size) == ("WEBP", (800, 180))
    layout = objects[task.spritesheet_key]["Metadata"]["layout"]
    assert layout.startswith("columns=5;rows=2;frame=160x90;frames=8;")


def test_a_repeated_archive_message_makes_no_second_previews(api, internet, stack, handlers):
    # Given an archived video
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    task = current().task_store.get(video["id"])
    before = {key: head["LastModified"] for key, head in _objects(stack).items()}
    assert len(before) == 3

    # When the push comes again (a provider retry) and its archive message is handled
    api.callback(call["body"]["callback_url"], internet.success_body(call))

    # Then nothing was copied or drawn again: the same three objects, untouched, the same keys
    assert {key: head["LastModified"] for key, head in _objects(stack).items()} == before
    again = current().task_store.get(video["id"])
    assert (again.thumbnail_key, again.spritesheet_key, again.version) == (
        task.thumbnail_key,
        task.spritesheet_key,
        task.version,
    )
    assert len(internet.fetched_urls) == 1


def test_a_video_whose_frames_cannot_be_decoded_still_completes_without_previews(api, internet, stack):
    # Given a provider video that passes the MP4 check (an ftyp box) but whose rest is damaged
    internet.video = internet.video[:32] + bytes(len(internet.video) - 32)

    video = _archived(api, internet)

    # Then the task completed (the video is what was paid for), with the reason for no previews
    task = current().task_store.get(video["id"])
    assert task.status is Status.COMPLETED and task.video_key
    assert task.thumbnail_key is None and task.spritesheet_key is None
    assert task.preview_error.startswith("The video could not be decoded for previews")
    assert set(_objects(stack)) == {task.video_key}
    # And the MP4 is served, the previews are a clear 404
    status, headers, _ = _content(api, video["id"], "video")
    assert status == 302 and unquote(urlsplit(headers["location"]).path).endswith(task.video_key)
    for variant in ("thumbnail", "spritesheet"):
        status, _, answer = _content(api, video["id"], variant)
        assert status == 404
        assert answer["error"]["code"] == "preview_not_available"
        assert answer["error"]["param"] == "variant" and variant in answer["error"]["message"]


def test_a_failed_preview_upload_leaves_neither_preview_and_the_task_completes(
    api, internet, stack, monkeypatch
):
    # Given our S3 refusing the second preview
    store = current().video_store
    real_put = store.put_preview
    calls: list[str] = []

    def flaky_put(key, body, **kwargs):
        calls.append(key)
        if len(calls) == 2:
            raise StorageError("Could not store a preview")
        return real_put(key, body, **kwargs)

    monkeypatch.setattr(store, "put_preview", flaky_put)
    install_container(monkeypatch, current().replace(video_store=store))

    video = _archived(api, internet)

    # Then the first preview was removed again: no task points at half a set
    task = current().task_store.get(video["id"])
    assert task.status is Status.COMPLETED and task.preview_error == "Could not store a preview"
    assert len(calls) == 2 and set(_objects(stack)) == {task.video_key}


def test_a_copy_that_cannot_be_recorded_removes_its_previews_with_its_mp4(api, internet, stack, monkeypatch):
    # Given a completion write that fails (our DynamoDB) on the first attempt only
    task_store = current().task_store
    real_complete = task_store.complete
    failures = [StorageError("Could not update the task")]

    def failing_complete(*args, **kwargs):
        if failures:
            raise failures.pop()
        return real_complete(*args, **kwargs)

    monkeypatch.setattr(task_store, "complete", failing_complete)
    install_container(monkeypatch, current().replace(task_store=task_store))
    video, call = submitted(api, internet)
    api.callback(call["body"]["callback_url"], internet.success_body(call), archive=False)
    from sora_relay.usecases.archive import archive_task

    # When the first attempt fails to record and a second one succeeds
    first = archive_task(current(), video["id"], attempt=1)
    second = archive_task(current(), video["id"], attempt=2)

    # Then only the second attempt's three objects are left
    assert (first.action, second.action) == ("retry", "completed")
    task = current().task_store.get(video["id"])
    assert set(_objects(stack)) == {task.video_key, task.thumbnail_key, task.spritesheet_key}


def test_content_redirects_to_a_presigned_link_of_each_variant(api, internet, stack):
    video = _archived(api, internet)
    task = current().task_store.get(video["id"])
    expected = {
        None: (task.video_key, "video/mp4"),
        "": (task.video_key, "video/mp4"),
        "video": (task.video_key, "video/mp4"),
        "thumbnail": (task.thumbnail_key, "image/webp"),
        "spritesheet": (task.spritesheet_key, "image/webp"),
    }
    for variant, (key, content_type) in expected.items():
        status, headers, body = _content(api, video["id"], variant)

        assert status == 302 and body is None, variant
        location = urlsplit(headers["location"])
        assert unquote(location.path).endswith("/" + key), variant
        query = parse_qs(location.query)
        assert query["response-content-type"] == [content_type] and "X-Amz-Signature" in query
    for variant in ("thumbnail", "spritesheet"):
        assert Image.open(io.BytesIO(_body(stack, expected[variant][0]))).format == "WEBP"


def test_an_unknown_variant_is_a_400_naming_variant(api, internet):
    video = _archived(api, internet)

    for variant in ("mp4", "THUMBNAIL", "thumbnail ", "sprite", "video,thumbnail"):
        status, _, answer = _content(api, video["id"], variant)

        assert status == 400, variant
        assert answer["error"]["param"] == "variant" and answer["error"]["code"] == "invalid_value"
        assert "video, thumbnail, spritesheet" in answer["error"]["message"]


def test_a_preview_of_a_video_not_yet_completed_or_of_another_owner_is_a_404(api, internet):
    # A task still in progress has no previews yet
    video, _call = submitted(api, internet)
    status, _, answer = _content(api, video["id"], "thumbnail")
    assert status == 404 and answer["error"]["code"] == "video_not_ready"

    # Another owner's finished task is not found, previews included
    done = _archived(api, internet)
    status, _, answer = _content(api, done["id"], "spritesheet", owner=OTHER_OWNER)
    assert status == 404 and answer["error"]["code"] == "video_not_found"


def test_previews_read_the_stored_mp4_in_ranges_not_whole(api, internet, stack):
    # Given a 4 s 720p clip padded to 12 MiB by a trailing `free` box (as bench/archive.py pads)
    buffer = io.BytesIO()
    render_mp4(buffer, width=1280, height=720, seconds=4, seed="ranges", fps=8)
    head = buffer.getvalue()
    pad = 12 * 1024 * 1024 - len(head)
    internet.video = head + pad.to_bytes(4, "big") + b"free" + bytes(pad - 8)
    video = _archived(api, internet)
    task = current().task_store.get(video["id"])
    assert task.thumbnail_key and task.video_bytes == 12 * 1024 * 1024

    # When the stored MP4 is opened again as the preview maker opens it
    with current().video_store.open(task.video_key) as stored:
        from sora_relay.adapters.media import render_previews

        render_previews(stored)
        ranges = stored.raw.requests

    # Then a few 1 MiB ranges were read: the decoder never needed the padding
    assert 1 <= ranges <= 3, ranges
