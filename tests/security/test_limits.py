"""Attack 4: oversized input and hostile upstreams are refused without filling memory or the bucket."""

from __future__ import annotations

import json

import boto3
import httpx
import pytest

from tests.integration.conftest import VALID, submitted


def _objects(stack) -> list:
    return (
        boto3.client("s3", region_name="us-east-1")
        .list_objects_v2(Bucket=stack.refs["VideosBucket"])
        .get("Contents", [])
    )


def test_a_body_over_64_kib_is_413(api, internet):
    status, _, answer = api.submit(None, raw=json.dumps({**VALID, "prompt": "x" * 70_000}))
    assert status == 413 and answer["error"]["code"] == "request_too_large"
    assert internet.provider_calls == []


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"prompt": "x" * 4001}, "prompt"),
        ({"prompt": ""}, "prompt"),
        ({"image_urls": [f"https://client.example.com/{n}.png" for n in range(5)]}, "image_urls"),
        ({"callback_url": "https://client.example.com/" + "a" * 2100}, "callback_url"),
    ],
)
def test_field_limits_are_400_naming_the_field(api, internet, fields, param):
    status, _, answer = api.submit({**VALID, **fields})
    assert status == 400 and answer["error"]["param"] == param
    assert internet.provider_calls == []


def test_an_html_page_instead_of_a_video_is_refused_and_stores_nothing(api, internet, stack):
    video, call = submitted(api, internet)
    internet.videos["/page.mp4"] = lambda: httpx.Response(
        200, headers={"content-type": "text/html"}, content=b"<html>login</html>"
    )
    status, _, _answer = api.callback(
        call["body"]["callback_url"], internet.success_body(call, video_path="/page.mp4")
    )
    assert status == 200 and api.get(video["id"])[2]["status"] == "failed"
    assert _objects(stack) == []


def test_an_mp4_label_on_other_bytes_is_refused(api, internet, stack):
    video, call = submitted(api, internet)
    internet.videos["/fake.mp4"] = lambda: httpx.Response(
        200, headers={"content-type": "video/mp4"}, content=b"<!doctype html>" + b"x" * 1000
    )
    api.callback(call["body"]["callback_url"], internet.success_body(call, video_path="/fake.mp4"))
    assert _objects(stack) == []
    assert api.get(video["id"])[2]["error"]["code"] == "video_fetch_failed"


def test_a_5_gb_video_announced_by_content_length_is_refused_before_reading(api, internet, stack):
    video, call = submitted(api, internet)
    read = []

    def endless():
        for _ in range(10_000):
            read.append(1)
            yield b"\x00" * 65536

    internet.videos["/huge.mp4"] = lambda: httpx.Response(
        200, headers={"content-type": "video/mp4", "content-length": str(5 * 1024**3)}, content=endless()
    )
    api.callback(call["body"]["callback_url"], internet.success_body(call, video_path="/huge.mp4"))
    assert api.get(video["id"])[2]["error"]["code"] == "video_fetch_failed"
    assert len(read) <= 1 and _objects(stack) == []


def test_a_video_without_length_that_grows_past_the_limit_is_cut_off_in_bounded_memory(
    api, internet, stack, monkeypatch
):
    from tests.integration.conftest import reload_settings

    monkeypatch.setenv("MAX_VIDEO_BYTES", str(12 * 1024 * 1024))
    reload_settings(monkeypatch)
    video, call = submitted(api, internet)
    chunk = b"\x00\x00\x00\x18ftypisom" + b"\x00" * (1024 * 1024 - 12)
    served = []

    def offer():  # 1 GiB offered, 1 MiB at a time, with no Content-Length
        for _ in range(1024):
            served.append(len(chunk))
            yield chunk

    internet.videos["/stream.mp4"] = lambda: httpx.Response(
        200, headers={"content-type": "video/mp4"}, content=offer()
    )
    api.callback(call["body"]["callback_url"], internet.success_body(call, video_path="/stream.mp4"))
    assert "larger than" in api.get(video["id"])[2]["error"]["message"]
    # It stopped reading just past the limit (memory stays bounded: tests/integration/test_memory.py
    # measures a copy through moto's server, where the bucket's bytes are not in this process)
    assert sum(served) <= 14 * 1024 * 1024
    assert _objects(stack) == []
    uploads = boto3.client("s3", region_name="us-east-1").list_multipart_uploads(
        Bucket=stack.refs["VideosBucket"]
    )
    assert uploads.get("Uploads", []) == []
