"""OpenAI's Videos routes in process against moto: multipart create with an uploaded image, the
poll header, list paging and order, delete, remix, the routes no model serves, and the rule that
no answer after a stored task invites the SDK to retry into a second one."""

from __future__ import annotations

import base64
import io
import json
from typing import Any

import boto3
import httpx
import pytest
from botocore.exceptions import ClientError

from sora_relay.adapters.aws import dynamodb_client
from sora_relay.runtime.container import current
from tests.conftest import load_event
from tests.integration.conftest import (
    OTHER_OWNER,
    OWNER,
    VALID,
    Api,
    FakeInternet,
    as_tenant,
    install_container,
)

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\rIHDR" + bytes(64)
JPEG = b"\xff\xd8\xff\xe0" + bytes(64)


def form(fields: dict[str, str], files: dict[str, tuple[str, bytes, str]] | None = None) -> tuple[str, bytes]:
    """A multipart/form-data body as httpx writes it (the SDK's httpx2 is its fork); a form of
    text fields only as well, as the SDK forces (httpx alone would send it urlencoded)."""
    files = files or {"_": ("_", b"", "text/plain")}
    request = httpx.Request("POST", "https://x.test/", data=fields, files=files)
    content_type, body = request.headers["content-type"], request.read()
    if "_" in files:  # take the placeholder part out again
        boundary = content_type.split("boundary=")[1].encode()
        parts = body.split(b"--" + boundary)
        body = (b"--" + boundary).join(part for part in parts if b'name="_"' not in part)
    return content_type, body


def event_for(
    template: str,
    method: str,
    path: str,
    *,
    resource: str,
    params: dict[str, str] | None = None,
    owner: str = OWNER,
    body: bytes | str | None = None,
    content_type: str | None = None,
    binary: bool = False,
    query: dict[str, str] | None = None,
) -> dict[str, Any]:
    event = load_event(template)
    event.update(httpMethod=method, path=path, resource=resource, pathParameters=params)
    event["requestContext"].update(httpMethod=method, resourcePath=resource)
    as_tenant(event, owner)
    if content_type is not None:
        event["headers"]["Content-Type"] = content_type
        event["multiValueHeaders"]["Content-Type"] = [content_type]
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode() if binary else body.decode()
    event["body"], event["isBase64Encoded"] = body, binary
    event["queryStringParameters"] = query or None
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in (query or {}).items()} or None
    return event


def submit_form(api: Api, fields: dict[str, str], files=None, *, owner: str = OWNER):
    content_type, body = form(fields, files)
    event = event_for(
        "submit", "POST", "/v1/videos", resource="/v1/videos", owner=owner, body=body,
        content_type=content_type, binary=True,
    )  # fmt: skip
    return api.call("submit", event)


def video_route(api: Api, method: str, video_id: str, *, owner: str = OWNER, suffix: str = "", body=None):
    function = "status" if method in ("GET", "DELETE") else "submit"
    resource = "/v1/videos/{video_id}" + suffix
    event = event_for(
        "get", method, f"/v1/videos/{video_id}{suffix}", resource=resource, params={"video_id": video_id},
        owner=owner, body=json.dumps(body) if body is not None else None, content_type="application/json",
    )  # fmt: skip
    return api.call(function, event)


def tasks(stack) -> list[dict[str, Any]]:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table(stack.refs["TasksTable"])
    return table.scan()["Items"]


def objects(s3, stack, prefix: str) -> list[str]:
    listed = s3.list_objects_v2(Bucket=stack.refs["VideosBucket"], Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def completed(api: Api, internet: FakeInternet, **fields: Any) -> dict[str, Any]:
    status, _, video = api.submit({**VALID, **fields})
    assert status == 202, video
    call = internet.last_call()
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    status, _, done = api.get(video["id"])
    assert done["status"] == "completed", done
    return done


# -- create as multipart/form-data ---------------------------------------------------------------------


def test_a_form_with_an_uploaded_png_stores_it_and_hands_the_provider_a_presigned_link(
    api, internet, stack, s3
):
    # When the SDK's form arrives (base64, as API Gateway hands over a binary media type)
    status, _, video = submit_form(
        api,
        {"prompt": "A paper boat", "model": "veo-3.1-fast", "seconds": "8", "size": "1280x720"},
        {"input_reference": ("boat.png", PNG, "image/png")},
    )

    # Then the task is made with the form's fields
    assert status == 202, video
    assert (video["model"], video["seconds"], video["size"]) == ("veo-3.1-fast", "8", "1280x720")
    # And the image is in the bucket under the task's own prefix, byte for byte, typed by its bytes
    [key] = objects(s3, stack, f"uploads/{video['id']}/")
    stored = s3.get_object(Bucket=stack.refs["VideosBucket"], Key=key)
    assert stored["Body"].read() == PNG and stored["ContentType"] == "image/png"
    # And the provider got a presigned GET link to exactly that object
    sent = internet.last_call()["body"]
    assert sent["action"] == "image2video"
    [link] = sent["image_urls"]
    assert f"/uploads/{video['id']}/" in link and "X-Amz-Signature=" in link and "X-Amz-Expires=" in link


def test_a_form_with_an_image_url_is_the_same_as_json(api, internet):
    status, _, _ = submit_form(
        api, {"prompt": "A paper boat", "input_reference[image_url]": "https://cdn.example.com/a.png"}
    )
    assert status == 202
    assert internet.last_call()["body"]["image_urls"] == ["https://cdn.example.com/a.png"]


def test_a_json_data_url_is_an_upload_too(api, internet, stack, s3):
    data_url = "data:image/jpeg;base64," + base64.b64encode(JPEG).decode()
    status, _, video = api.submit({**VALID, "input_reference": {"image_url": data_url}})
    assert status == 202, video
    [key] = objects(s3, stack, f"uploads/{video['id']}/")
    assert key.endswith(".jpeg")
    assert f"/uploads/{video['id']}/" in internet.last_call()["body"]["image_urls"][0]


@pytest.mark.parametrize(
    ("fields", "files", "param", "code"),
    [
        # not an image, whatever its name and type claim
        (
            {"prompt": "x"},
            {"input_reference": ("a.png", b"GIF89a" + bytes(40), "image/png")},
            "input_reference",
            "invalid_image",
        ),
        (
            {"prompt": "x"},
            {"input_reference": ("a.png", b"", "image/png")},
            "input_reference",
            "invalid_value",
        ),
        # over 4 MiB
        (
            {"prompt": "x"},
            {"input_reference": ("a.png", PNG + bytes(4 * 1024 * 1024), "image/png")},
            "input_reference",
            "file_too_large",
        ),
        # a file where text belongs
        ({"prompt": "x"}, {"prompt": ("p.txt", b"hello", "text/plain")}, "prompt", "invalid_value"),
        ({"prompt": "x", "input_reference[file_id]": "file_123"}, None, "input_reference", "invalid_value"),
        ({"prompt": "x", "nope": "1"}, None, "nope", "unknown_parameter"),
        ({"model": "veo-3.1-fast"}, None, "prompt", "missing_parameter"),
        ({"prompt": "x", "seconds": "5"}, None, "seconds", "invalid_value"),
    ],
)
def test_a_bad_form_is_a_400_naming_the_field_and_nothing_is_made(
    api, internet, stack, s3, fields, files, param, code
):
    status, _, answer = submit_form(api, fields, files)
    assert status == 400, answer
    assert (answer["error"]["param"], answer["error"]["code"]) == (param, code)
    assert answer["error"]["type"] == "invalid_request_error"
    assert tasks(stack) == [] and internet.provider_calls == []
    assert objects(s3, stack, "uploads/") == []


def test_a_model_without_images_refuses_the_upload_before_storing_it(api, internet, stack, s3, monkeypatch):
    # Every live model takes an image today, so take one's away for the test.
    entry = current().catalogue.require("seedance-1.5-pro")
    monkeypatch.setattr(type(entry), "image", property(lambda self: False), raising=False)
    status, _, answer = submit_form(
        api, {"prompt": "x", "model": "seedance-1.5-pro"}, {"input_reference": ("a.png", PNG, "image/png")}
    )
    assert status == 400 and answer["error"]["param"] == "input_reference"
    assert tasks(stack) == [] and objects(s3, stack, "uploads/") == []


@pytest.mark.parametrize(
    ("content_type", "body", "param"),
    [
        (
            "multipart/form-data",
            b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n--b--\r\n',
            "Content-Type",
        ),
        ("multipart/form-data; boundary=" + "b" * 71, b"", "Content-Type"),
        # the closing boundary never comes
        (
            "multipart/form-data; boundary=b",
            b'--b\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx',
            "body",
        ),
        # a part without a name
        (
            "multipart/form-data; boundary=b",
            b"--b\r\nContent-Disposition: form-data\r\n\r\nx\r\n--b--\r\n",
            "body",
        ),
        # another boundary than the header's
        (
            "multipart/form-data; boundary=b",
            b'--c\r\nContent-Disposition: form-data; name="prompt"\r\n\r\nx\r\n--c--\r\n',
            "body",
        ),
    ],
)
def test_a_malformed_form_is_a_400(api, internet, stack, content_type, body, param):
    event = event_for(
        "submit",
        "POST",
        "/v1/videos",
        resource="/v1/videos",
        body=body,
        content_type=content_type,
        binary=True,
    )
    status, _, answer = api.call("submit", event)
    assert status == 400, answer
    assert answer["error"]["param"] == param
    assert tasks(stack) == []


def test_a_form_over_the_limit_is_a_413(api, internet, stack):
    content_type, body = form({"prompt": "x", "pad": "a" * (5 * 1024 * 1024)})
    event = event_for(
        "submit",
        "POST",
        "/v1/videos",
        resource="/v1/videos",
        body=body,
        content_type=content_type,
        binary=True,
    )
    status, _, answer = api.call("submit", event)
    assert status == 413 and answer["error"]["code"] == "request_too_large"
    assert tasks(stack) == []


# -- retrieve: the poll header -----------------------------------------------------------------------------


def test_an_open_video_says_when_to_poll_again_and_a_finished_one_does_not(api, internet):
    status, _, video = api.submit(VALID)
    status, headers, _ = api.get(video["id"])
    assert status == 200 and 1000 <= int(headers["openai-poll-after-ms"]) <= 10_000

    call = internet.last_call()
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    status, headers, done = api.get(video["id"])
    assert done["status"] == "completed" and "openai-poll-after-ms" not in headers


# -- list: order and paging --------------------------------------------------------------------------------


def _page(api: Api, **query: str) -> dict[str, Any]:
    status, _, page = api.list(**query)
    assert status == 200, page
    return page


def test_list_pages_in_both_orders_and_leaves_deleted_videos_out(api, internet):
    # Given five videos, the oldest deleted
    made = [completed(api, internet)["id"] for _ in range(5)]
    assert video_route(api, "DELETE", made[0])[0] == 200

    # When the SDK walks the pages (after=last_id while has_more), newest first and oldest first
    def walk(order: str) -> list[str]:
        seen, after = [], None
        while True:
            page = _page(api, limit="2", order=order, **({"after": after} if after else {}))
            seen += [video["id"] for video in page["data"]]
            assert page["object"] == "list" and page["last_id"] == (
                page["data"][-1]["id"] if page["data"] else None
            )
            if not page["has_more"]:
                return seen
            after = page["last_id"]

    # Then every live video comes once, in order, and the deleted one never
    assert walk("desc") == made[:0:-1]
    assert walk("asc") == made[1:]
    # And a cursor naming the deleted video still pages on
    assert [v["id"] for v in _page(api, after=made[0], order="asc")["data"]] == made[1:]


def test_list_refuses_a_bad_order(api, internet):
    status, _, answer = api.list(order="sideways")
    assert status == 400 and answer["error"]["param"] == "order"


# -- delete --------------------------------------------------------------------------------------------------


def test_delete_removes_the_files_keeps_the_record_and_then_answers_404(api, internet, stack, s3):
    # Given a completed video (its MP4 and two previews) with an uploaded reference image, and one
    # more object under its prefix
    status, _, video = submit_form(api, {"prompt": "x"}, {"input_reference": ("a.png", PNG, "image/png")})
    call = internet.last_call()
    api.callback(call["body"]["callback_url"], internet.success_body(call))
    s3.put_object(Bucket=stack.refs["VideosBucket"], Key=f"videos/{video['id']}/extra.webp", Body=b"RIFF")
    assert len(objects(s3, stack, f"videos/{video['id']}/")) == 4

    # When it is deleted
    status, _, answer = video_route(api, "DELETE", video["id"])

    # Then OpenAI's answer, every file gone, the record kept and marked
    assert (status, answer) == (200, {"id": video["id"], "object": "video.deleted", "deleted": True})
    assert (
        objects(s3, stack, f"videos/{video['id']}/") == []
        and objects(s3, stack, f"uploads/{video['id']}/") == []
    )
    [item] = tasks(stack)
    assert item["status"] == "completed" and item["deleted_ms"] > 0
    # And it is gone from every route, a second delete included
    assert video_route(api, "GET", video["id"])[0] == 404
    assert api.get(video["id"], content=True)[0] == 404
    status, _, again = video_route(api, "DELETE", video["id"])
    assert status == 404 and again["error"]["code"] == "video_not_found"


def test_an_open_video_cannot_be_deleted_yet_and_another_owners_is_not_found(api, internet, stack):
    _, _, video = api.submit(VALID)
    status, _, answer = video_route(api, "DELETE", video["id"])
    assert status == 400 and answer["error"]["code"] == "video_not_finished"
    status, _, answer = video_route(api, "DELETE", video["id"], owner=OTHER_OWNER)
    assert status == 404
    assert "deleted_ms" not in tasks(stack)[0]


# -- remix ----------------------------------------------------------------------------------------------------


def test_remix_makes_a_new_video_from_the_sources_model_seconds_and_size(api, internet, stack):
    source = completed(api, internet, model="veo-3.1", duration=8, size="1920x1080")
    status, _, remix = video_route(
        api, "POST", source["id"], suffix="/remix", body={"prompt": "Now at night"}
    )
    assert status == 202, remix
    assert remix["id"] != source["id"] and remix["remixed_from_video_id"] == source["id"]
    assert (remix["model"], remix["seconds"], remix["size"]) == ("veo-3.1", "8", "1920x1080")
    assert remix["prompt"] == "Now at night" and remix["callback_url"] == source["callback_url"]
    # No catalogue model takes a video: the provider is asked from the prompt alone
    sent = internet.last_call()["body"]
    assert sent["prompt"] == "Now at night" and "image_urls" not in sent
    assert len(tasks(stack)) == 2


def test_remix_takes_a_form_too(api, internet):
    source = completed(api, internet)
    content_type, body = form({"prompt": "Now at night"})
    event = event_for(
        "submit", "POST", f"/v1/videos/{source['id']}/remix", resource="/v1/videos/{video_id}/remix",
        params={"video_id": source["id"]}, body=body, content_type=content_type, binary=True,
    )  # fmt: skip
    status, _, remix = api.call("submit", event)
    assert status == 202 and remix["remixed_from_video_id"] == source["id"]


def test_remix_of_an_unfinished_unknown_or_others_video_is_refused(api, internet, stack):
    _, _, open_video = api.submit(VALID)
    status, _, answer = video_route(api, "POST", open_video["id"], suffix="/remix", body={"prompt": "x"})
    assert status == 400 and answer["error"]["code"] == "video_not_completed"
    done = completed(api, internet)
    for owner, video_id in ((OTHER_OWNER, done["id"]), (OWNER, "video_" + "0" * 32)):
        status, _, answer = video_route(
            api, "POST", video_id, suffix="/remix", body={"prompt": "x"}, owner=owner
        )
        assert status == 404 and answer["error"]["code"] == "video_not_found"
    status, _, answer = video_route(api, "POST", done["id"], suffix="/remix", body={"prompt": ""})
    assert status == 400 and answer["error"]["param"] == "prompt"
    assert len(tasks(stack)) == 2


# -- what no catalogue model can do ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/v1/videos/edits", "/v1/videos/extensions", "/v1/videos/characters"])
def test_edits_extensions_and_characters_say_no_model_can(api, internet, stack, path):
    content_type, body = form({"prompt": "x"}, {"video": ("v.mp4", b"\x00\x00\x00\x18ftypmp42", "video/mp4")})
    event = event_for(
        "submit", "POST", path, resource=path, body=body, content_type=content_type, binary=True
    )
    status, _, answer = api.call("submit", event)
    assert status == 400 and answer["error"]["code"] == "unsupported_operation"
    assert "veo-3.1-fast" in answer["error"]["message"] and answer["error"]["type"] == "invalid_request_error"
    assert tasks(stack) == []


def test_a_character_is_never_found(api, internet):
    event = event_for(
        "get", "GET", "/v1/videos/characters/char_1", resource="/v1/videos/characters/{character_id}",
        params={"character_id": "char_1"},
    )  # fmt: skip
    status, _, answer = api.call("submit", event)
    assert status == 404 and answer["error"]["code"] == "character_not_found"


# -- no retry into a second task ---------------------------------------------------------------------------


def test_a_provider_5xx_on_create_answers_the_failed_video_not_an_error_the_sdk_retries(api, internet, stack):
    internet.create_failures.append(httpx.Response(500, json={"error": {"code": "boom", "message": "down"}}))
    status, _, video = api.submit(VALID)
    # The create made a task: a 5xx (or 409/429) would make OpenAI's SDK send it again, into a second
    assert status == 202, video
    assert video["status"] == "failed" and video["error"]["code"] == "provider_outcome_unknown"
    assert [(item["status"], item["error_code"]) for item in tasks(stack)] == [
        ("failed", "provider_outcome_unknown")
    ]
    assert internet.create_failures == [] and internet.provider_calls == []  # one create, not resent
    status, _, shown = api.get(video["id"])
    assert status == 200 and shown["error"] == video["error"] and shown["status"] == "failed"


class _BrokenQueue:
    def send(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("SQS is down")


def test_a_dispatch_queue_that_cannot_take_the_task_fails_it_and_still_answers_202(
    api, internet, stack, monkeypatch
):
    # Given a provider that is rate limiting and a dispatch queue that cannot be reached
    internet.create_failures.append(httpx.Response(429, headers={"retry-after": "1"}, json={"error": {}}))
    install_container(monkeypatch, current().replace(dispatch_queue=_BrokenQueue()))

    # When the client creates a video
    status, _, video = api.submit(VALID)

    # Then it hears of the one task it made, failed, and nothing invites a retry
    assert status == 202, video
    assert video["status"] == "failed" and video["error"]["code"] == "dispatch_failed"
    assert [item["status"] for item in tasks(stack)] == ["failed"]


def test_a_task_that_can_be_neither_queued_nor_failed_is_answered_as_stored(
    api, internet, stack, monkeypatch
):
    # Given a rate-limiting provider, a dispatch queue that cannot be reached, and a tasks table that
    # takes the new task but then refuses every update (the write that would fail it)
    internet.create_failures.append(httpx.Response(429, headers={"retry-after": "1"}, json={"error": {}}))
    install_container(monkeypatch, current().replace(dispatch_queue=_BrokenQueue()))
    client = dynamodb_client()
    update_item = client.update_item

    def refusing_task_updates(**kwargs: Any) -> Any:
        if kwargs["TableName"] == stack.refs["TasksTable"]:
            raise ClientError({"Error": {"Code": "InternalServerError", "Message": "down"}}, "UpdateItem")
        return update_item(**kwargs)

    monkeypatch.setattr(client, "update_item", refusing_task_updates)

    # When the client creates a video
    status, headers, video = api.submit(VALID)

    # Then it hears of the one task, as the table holds it (the reconciler ends it), not a 5xx its
    # SDK would retry into a second task
    assert status == 202, video
    assert video["status"] == "queued" and "x-should-retry" not in headers
    assert [(item["task_id"], item["status"]) for item in tasks(stack)] == [(video["id"], "queued")]


def test_every_error_has_openai_s_four_fields(api, internet):
    status, _, answer = api.submit(None, raw="not json")
    assert status == 400
    assert set(answer["error"]) == {"message", "type", "param", "code"}


def test_multipart_bodies_survive_as_bytes(api, internet, stack, s3):
    # A JPEG whose bytes are not UTF-8 comes through the base64 event exactly
    image = JPEG + bytes(range(256)) * 4
    status, _, video = submit_form(api, {"prompt": "x"}, {"input_reference": ("a.jpg", image, "image/jpeg")})
    assert status == 202
    [key] = objects(s3, stack, f"uploads/{video['id']}/")
    assert (
        s3.get_object(Bucket=stack.refs["VideosBucket"], Key=key)["Body"].read()
        == io.BytesIO(image).getvalue()
    )
