"""The official `openai` SDK, unchanged but for base_url and api_key, against the local stack.

Until the tenants' authorizer accepts `Authorization: Bearer`, the local gateway checks only
x-api-key, so the client also sends the key there (a default header; nothing else is changed).
Every videos method runs, sync and async, through the local gateway over real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import warnings
import zlib
from collections.abc import Iterator

import openai
import pytest

pytestmark = [
    pytest.mark.e2e,
    # Every videos method is marked deprecated (OpenAI shut the API down); the calls still run.
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
]


def _png(width: int = 16, height: int = 9) -> bytes:
    """A real (tiny, grey) PNG, written by hand: the SDK uploads it as a file."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.fixture
def client(stack, monkeypatch) -> Iterator[openai.OpenAI]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with openai.OpenAI(
        base_url=f"{stack.api_url}/v1", api_key=stack.api_key, default_headers={"x-api-key": stack.api_key}
    ) as sdk:
        yield sdk


@pytest.fixture
def other_client(stack) -> Iterator[openai.OpenAI]:
    key = stack.other_api_key
    with openai.OpenAI(
        base_url=f"{stack.api_url}/v1", api_key=key, default_headers={"x-api-key": key}
    ) as sdk:
        yield sdk


def test_create_with_an_uploaded_png_then_poll_retrieve_download_and_delete(
    stack, client, plain_http, unique, probe_mp4
):
    # Given an image the SDK uploads as input_reference (multipart/form-data, as it always sends)
    prompt = unique("A paper boat on a puddle")
    image = _png()

    # When the SDK creates the video and polls it to the end
    video = client.videos.create_and_poll(
        prompt=prompt, seconds="4", size="1280x720", input_reference=("boat.png", image, "image/png")
    )

    # Then it completed, in OpenAI's shape
    assert video.status == "completed" and video.progress == 100
    assert (video.seconds, video.size, video.prompt) == ("4", "1280x720", prompt)
    assert video.completed_at and video.completed_at >= video.created_at
    # And the provider was handed a presigned link that serves exactly the uploaded bytes
    [job] = [job for job in stack.simulator.jobs() if job.prompt == prompt]
    [link] = re.findall(r"http://127\.0\.0\.1:\d+/[^\"\s]*uploads/[^\"\s]+", json.dumps(job.record))
    fetched = plain_http.get(link)
    assert fetched.status_code == 200 and fetched.content == image

    # And retrieve answers the same video, download_content the MP4 (the SDK follows the redirect)
    assert client.videos.retrieve(video.id).status == "completed"
    info = probe_mp4(client.videos.download_content(video.id).read())
    assert (info.width, info.height) == (1280, 720) and info.frames > 0

    # When it is deleted, it is gone: retrieve and a second delete are NotFoundError
    deleted = client.videos.delete(video.id)
    assert (deleted.id, deleted.deleted, deleted.object) == (video.id, True, "video.deleted")
    with pytest.raises(openai.NotFoundError) as missing:
        client.videos.retrieve(video.id)
    assert missing.value.code == "video_not_found" and missing.value.type == "invalid_request_error"
    with pytest.raises(openai.NotFoundError):
        client.videos.delete(video.id)


def test_create_with_an_image_url_and_poll(stack, client, unique):
    # The SDK's create() takes only a file as input_reference (its extract_files refuses the
    # {image_url} object its types allow), so SDK code sends the object through extra_body: it
    # arrives as the form field input_reference[image_url]
    created = client.videos.create(
        prompt=unique("A lighthouse at dusk"),
        seconds="4",
        extra_body={"input_reference": {"image_url": "https://images.example.com/first-frame.png"}},
    )
    assert created.status in ("queued", "in_progress")
    video = client.videos.poll(created.id)
    assert video.status == "completed" and video.id == created.id


def test_list_walks_every_page(client, unique):
    # Given three videos of this caller
    made = {client.videos.create(prompt=unique("A list entry"), seconds="4").id for _ in range(3)}

    # When the SDK auto-paginates two at a time, oldest first and newest first
    ascending = [video.id for video in client.videos.list(limit=2, order="asc")]
    descending = [video.id for video in client.videos.list(limit=2, order="desc")]

    # Then every video comes once, in the asked order
    assert made <= set(ascending) and len(ascending) == len(set(ascending))
    assert descending == ascending[::-1]
    page = client.videos.list(limit=2)
    assert len(page.data) == 2 and page.has_more and page.last_id == page.data[-1].id


def test_remix_a_completed_video(client, unique):
    source = client.videos.create_and_poll(prompt=unique("A fox in snow"), seconds="4", size="720x1280")
    remix = client.videos.remix(source.id, prompt=unique("The same fox at night"))
    assert remix.remixed_from_video_id == source.id
    assert (remix.model, remix.seconds, remix.size) == (source.model, "4", "720x1280")
    done = client.videos.poll(remix.id)
    assert done.status == "completed"


def test_errors_are_openai_exceptions(client, other_client, unique):
    # Another caller's video is not found; a bad value is a BadRequestError naming its field
    mine = client.videos.create(prompt=unique("Only mine"), seconds="4")
    with pytest.raises(openai.NotFoundError):
        other_client.videos.retrieve(mine.id)
    with pytest.raises(openai.NotFoundError):
        other_client.videos.remix(mine.id, prompt="x")
    with pytest.raises(openai.BadRequestError) as bad:
        client.videos.create(prompt=unique("Too long"), seconds="12", model="veo-3.1-fast")
    assert bad.value.param == "seconds" and bad.value.type == "invalid_request_error"
    with pytest.raises(openai.BadRequestError) as bad:
        client.videos.create(prompt="x", input_reference=("notes.png", b"GIF89a not a png", "image/png"))
    assert bad.value.param == "input_reference" and bad.value.code == "invalid_image"
    with pytest.raises(openai.BadRequestError) as bad:
        client.videos.create(prompt="x", extra_body={"input_reference": {"file_id": "file_abc"}})
    assert bad.value.param == "input_reference"


def test_edit_extend_and_characters_say_no_model_can(client):
    mp4 = ("clip.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(32), "video/mp4")
    calls = [
        lambda: client.videos.edit(prompt="x", video=mp4),
        lambda: client.videos.extend(prompt="x", seconds="4", video=mp4),
        lambda: client.videos.create_character(name="Fox", video=mp4),
    ]
    for call in calls:
        with pytest.raises(openai.BadRequestError) as refused:
            call()
        assert refused.value.code == "unsupported_operation"
    with pytest.raises(openai.NotFoundError) as missing:
        client.videos.get_character("char_123")
    assert missing.value.code == "character_not_found"


def test_a_provider_failure_on_create_is_not_retried_by_the_sdk(stack, client, unique):
    # The SDK retries 5xx, POST included, unless told not to: a retry here could bill twice
    prompt = unique("[sim:500] A provider that broke mid-create")
    with pytest.raises(openai.InternalServerError) as failed:
        client.videos.create(prompt=prompt, seconds="4")
    assert failed.value.code == "provider_outcome_unknown" and failed.value.type == "server_error"
    assert stack.simulator.create_attempts("500", prompt) == 1


def test_the_async_client_creates_polls_and_retrieves(stack, unique):
    async def run() -> tuple[openai.types.Video, openai.types.Video]:
        key = stack.api_key
        async with openai.AsyncOpenAI(
            base_url=f"{stack.api_url}/v1", api_key=key, default_headers={"x-api-key": key}
        ) as sdk:
            video = await sdk.videos.create_and_poll(prompt=unique("An async heron"), seconds="4")
            return video, await sdk.videos.retrieve(video.id)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        video, again = asyncio.run(run())
    assert video.status == "completed" and again.id == video.id and again.status == "completed"
