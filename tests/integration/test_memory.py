"""A 50 MB video is copied into S3 while the process's traced memory stays bounded.

Parts upload on `VIDEO_UPLOAD_CONCURRENCY` threads while the next is read, so a copy holds at most
that many parts plus the one being filled, whatever the video's size (bench/archive.py measures the
resident memory of the same copy at 64 MiB and 1 GiB).

moto runs as a separate server here (real HTTP): in process, moto's own copy of the object
would be counted too and hide what our code holds.
"""

from __future__ import annotations

import hashlib
import tracemalloc
from collections.abc import Iterator

import boto3
import httpx
import pytest

from devstack.stack import moto_server
from devstack.template import provision
from sora_relay.runtime.container import current
from tests.integration.conftest import (
    PROVIDER_TOKEN,
    Api,
    FakeInternet,
    apply_function_env,
    connect_internet,
    submitted,
)

MIB = 1024 * 1024
VIDEO_BYTES = 50 * MIB
PART_BYTES = 5 * MIB


@pytest.fixture(scope="module")
def moto_server_url() -> Iterator[str]:
    with moto_server() as endpoint:  # one for both tests: each provisions its own stack in it
        yield endpoint


@pytest.fixture
def moto_endpoint(moto_server_url: str, aws_env: None, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server_url)
    return moto_server_url


def _video_chunks() -> Iterator[bytes]:
    """50 MB of deterministic bytes that start like an MP4, produced lazily (never all at once)."""
    block = bytearray(MIB)
    block[:12] = b"\x00\x00\x00\x18ftypisom"
    for index in range(VIDEO_BYTES // MIB):
        block[-4:] = index.to_bytes(4, "big")
        yield bytes(block)


@pytest.mark.parametrize("concurrency", [1, 4], ids=lambda k: f"{k}-uploads")
def test_a_50mb_video_is_copied_with_bounded_memory(
    moto_endpoint, monkeypatch, handlers, mp4_bytes, concurrency
):
    # Given the stack on moto's server and a provider whose video is 50 MB
    stack = provision(f"mem{concurrency}", {"AceDataApiKey": PROVIDER_TOKEN})
    apply_function_env(
        monkeypatch,
        stack,
        VIDEO_PART_BYTES=str(PART_BYTES),
        VIDEO_UPLOAD_CONCURRENCY=str(concurrency),
    )
    internet = FakeInternet(video=mp4_bytes)
    connect_internet(monkeypatch, internet)
    api = Api(handlers, stack)
    expected = hashlib.sha256()
    for chunk in _video_chunks():
        expected.update(chunk)
    internet.videos["/big.mp4"] = lambda: httpx.Response(
        200,
        headers={"content-type": "video/mp4", "content-length": str(VIDEO_BYTES)},
        content=_video_chunks(),
    )
    video, call = submitted(api, internet)

    # When the callback copies it, with allocations traced
    tracemalloc.start()
    try:
        status, _, _answer = api.callback(
            call["body"]["callback_url"], internet.success_body(call, video_path="/big.mp4")
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    # Then the object is whole and checksummed, and memory stayed near the parts in flight and the
    # one being filled (less than one more part for everything else), not the video
    assert status == 200
    task = current().task_store.get(video["id"])
    assert task is not None and task.status.value == "completed"
    head = boto3.client("s3").head_object(Bucket=stack.refs["VideosBucket"], Key=task.video_key)
    assert head["ContentLength"] == VIDEO_BYTES
    assert task is not None and task.video_sha256 == expected.hexdigest() and task.video_bytes == VIDEO_BYTES
    print(
        f"peak traced memory {peak / MIB:.1f} MiB for a {VIDEO_BYTES // MIB} MiB video "
        f"({PART_BYTES // MIB} MiB parts, {concurrency} uploading at once)"
    )
    assert peak < (concurrency + 2) * PART_BYTES, f"peak {peak / MIB:.1f} MiB"
