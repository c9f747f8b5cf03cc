"""POST /v1/callbacks/{provider}/{task_id}: forged, duplicate, late and broken callbacks."""

from __future__ import annotations

import json

import boto3
import httpx
import pytest

from sora_relay.domain.task import Status, TaskChange
from sora_relay.runtime.container import current
from tests.integration.conftest import reload_settings, submitted


def _item(stack, task_id: str) -> dict:
    client = boto3.client("dynamodb", region_name="us-east-1")
    return client.get_item(TableName=stack.refs["TasksTable"], Key={"task_id": {"S": task_id}})["Item"]


def _objects(stack) -> list[str]:
    listing = boto3.client("s3", region_name="us-east-1").list_objects_v2(Bucket=stack.refs["VideosBucket"])
    return [entry["Key"] for entry in listing.get("Contents", [])]


@pytest.mark.parametrize("token", [None, "", "forged-token", "A" * 43])
def test_a_missing_or_wrong_token_is_401_and_changes_nothing(api, internet, stack, token):
    video, call = submitted(api, internet)
    before = _item(stack, video["id"])
    status, _, answer = api.callback(call["body"]["callback_url"], internet.success_body(call), token=token)
    assert status == 401 and answer["error"]["code"] == "invalid_callback_token"
    assert _item(stack, video["id"]) == before
    assert internet.fetched_urls == [] and internet.webhooks == [] and _objects(stack) == []


def test_a_token_for_another_task_is_401(api, internet, stack):
    _first, first_call = submitted(api, internet)
    second, _ = submitted(api, internet)
    first_token = first_call["body"]["callback_url"].split("token=")[1]
    second_url = internet.last_call()["body"]["callback_url"]
    status, _, _ = api.callback(second_url, internet.success_body(first_call), token=first_token)
    assert status == 401
    assert _item(stack, second["id"])["status"]["S"] == "in_progress"


def test_an_unknown_task_with_a_valid_token_is_404(api, internet):
    _, call = submitted(api, internet)
    ghost = "video_" + "0" * 32
    key = current().callback_key()
    from sora_relay.domain.tokens import callback_token

    url = (
        call["body"]["callback_url"].split("/v1/")[0]
        + f"/v1/callbacks/acedata/{ghost}?token={callback_token(ghost, key)}"
    )
    status, _, answer = api.callback(url, internet.success_body(call))
    assert status == 404 and answer["error"]["code"] == "task_not_found"


def test_a_callback_naming_another_provider_task_is_rejected(api, internet, stack):
    video, call = submitted(api, internet)
    before = _item(stack, video["id"])
    forged = {**call, "task_id": "11111111-2222-4333-8444-555555555555"}
    status, _, answer = api.callback(call["body"]["callback_url"], internet.success_body(forged))
    assert status == 409 and answer["error"]["code"] == "callback_task_mismatch"
    assert _item(stack, video["id"]) == before
    assert internet.fetched_urls == []


def test_an_unknown_provider_is_404(api, internet):
    _, call = submitted(api, internet)
    url = call["body"]["callback_url"].replace("/callbacks/acedata/", "/callbacks/othervendor/")
    status, _, answer = api.callback(url, internet.success_body(call))
    assert status == 404 and answer["error"]["param"] == "provider"


@pytest.mark.parametrize("body", [b"not json", b"[]", b'{"success": true}'])
def test_a_malformed_callback_body_is_400_and_changes_nothing(api, internet, stack, body):
    video, call = submitted(api, internet)
    status, _, answer = api.callback(call["body"]["callback_url"], body)
    assert status == 400 and answer["error"]["code"] == "invalid_callback"
    assert _item(stack, video["id"])["status"]["S"] == "in_progress"


def test_a_duplicate_callback_is_200_and_changes_nothing(api, internet, stack, downstream):
    # Given a task the provider already completed
    video, call = submitted(api, internet)
    body = internet.success_body(call)
    api.callback(call["body"]["callback_url"], body)
    after_first = _item(stack, video["id"])

    # When the same callback arrives again, and then a late failure for the same task
    again = api.callback(call["body"]["callback_url"], body)
    late_failure = api.callback(call["body"]["callback_url"], internet.failure_body(call))

    # Then both answer 200, nothing changes, and no second copy or webhook happens
    assert again[0] == 200 and again[2] == {"received": True, "changed": False, "status": "completed"}
    assert late_failure[0] == 200 and late_failure[2]["status"] == "completed"
    assert _item(stack, video["id"]) == after_first
    downstream.pump()
    assert len(internet.fetched_urls) == 1 and len(internet.webhooks) == 1
    assert len(downstream.stream_batches) == 1 and len(downstream.stream_batches[0]["Records"]) == 1


def test_a_callback_before_submit_recorded_in_progress_still_completes(api, internet, stack):
    # Given a fast provider whose callback comes while the task is still queued
    video, call = submitted(api, internet)
    client = boto3.client("dynamodb", region_name="us-east-1")
    client.update_item(
        TableName=stack.refs["TasksTable"],
        Key={"task_id": {"S": video["id"]}},
        UpdateExpression="SET #s = :q REMOVE provider_task_id",
        ExpressionAttributeNames={"#s": "status"},
        ExpressionAttributeValues={":q": {"S": "queued"}},
    )
    # When it is applied
    status, _, answer = api.callback(call["body"]["callback_url"], internet.success_body(call))
    # Then the task completes and remembers the provider's task id
    assert status == 200 and answer["status"] == "in_progress"  # recorded; the archive step completes it
    assert _item(stack, video["id"])["status"]["S"] == "completed"
    assert _item(stack, video["id"])["provider_task_id"]["S"] == call["task_id"]
    # And submit's late move to in_progress is refused by the state machine
    with pytest.raises(Exception, match="does not allow"):
        current().task_store.transition(
            video["id"], Status.IN_PROGRESS, TaskChange(provider_task_id=call["task_id"])
        )


@pytest.mark.parametrize(
    ("response", "code"),
    [
        (lambda: httpx.Response(404, text="gone"), "video_fetch_failed"),
        (
            lambda: httpx.Response(200, headers={"content-type": "text/html"}, text="<html>hi</html>"),
            "video_fetch_failed",
        ),
        (
            lambda: httpx.Response(200, headers={"content-type": "video/mp4"}, content=b"\x00" * 64),
            "video_fetch_failed",
        ),
        (
            lambda: httpx.Response(302, headers={"location": "https://169.254.169.254/latest/meta-data"}),
            "video_fetch_failed",
        ),
    ],
)
def test_a_video_that_cannot_be_used_fails_the_task_and_leaves_no_object(
    api, internet, stack, response, code, downstream
):
    video, call = submitted(api, internet)
    internet.videos["/bad.mp4"] = response
    status, _, answer = api.callback(
        call["body"]["callback_url"], internet.success_body(call, video_path="/bad.mp4")
    )
    assert status == 200 and answer["status"] == "in_progress"  # the archive step fails it
    item = _item(stack, video["id"])
    assert item["status"]["S"] == "failed" and item["error_code"]["S"] == code
    assert _objects(stack) == []
    downstream.pump()
    assert json.loads(internet.webhooks[0].content)["type"] == "video.failed"


def test_a_video_larger_than_the_limit_is_refused_while_streaming(api, internet, stack, monkeypatch):
    monkeypatch.setenv("MAX_VIDEO_BYTES", "100000")
    reload_settings(monkeypatch)
    video, call = submitted(api, internet)
    # No Content-Length: the limit must hold while the bytes stream in.
    internet.videos["/huge.mp4"] = lambda: httpx.Response(
        200,
        headers={"content-type": "video/mp4"},
        content=iter([b"\x00\x00\x00\x18ftypisom" + b"\x00" * 65536 for _ in range(4)]),
    )
    status, _, _answer = api.callback(
        call["body"]["callback_url"], internet.success_body(call, video_path="/huge.mp4")
    )
    assert status == 200
    assert _item(stack, video["id"])["status"]["S"] == "failed"
    assert "larger than" in _item(stack, video["id"])["error_message"]["S"]
    assert _objects(stack) == []
    uploads = boto3.client("s3", region_name="us-east-1").list_multipart_uploads(
        Bucket=stack.refs["VideosBucket"]
    )
    assert uploads.get("Uploads", []) == []  # the partial upload was aborted


def test_a_transient_video_failure_keeps_the_task_running_with_the_url_recorded(
    api, internet, stack, downstream
):
    video, call = submitted(api, internet)
    internet.videos["/flaky.mp4"] = lambda: httpx.Response(503, text="try later")
    status, _, answer = api.callback(
        call["body"]["callback_url"], internet.success_body(call, video_path="/flaky.mp4")
    )
    assert status == 200 and answer == {"received": True, "changed": True, "status": "in_progress"}
    item = _item(stack, video["id"])
    assert item["copy_error"]["S"] == "The video URL answered HTTP 503"
    assert item["provider_video_url"]["S"].endswith("/flaky.mp4")
    downstream.pump()
    assert internet.webhooks == [] and downstream.stream_batches == []


def test_a_custom_domain_with_a_base_path_routes(api, internet):
    video, call = submitted(api, internet)
    status, _, answer = api.push(
        call["body"]["callback_url"], internet.success_body(call), base_path="/relay"
    )
    assert status == 200 and answer["received"] is True
    assert api.get(video["id"])[2]["id"] == video["id"]
