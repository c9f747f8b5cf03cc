"""The official `openai` SDK, unchanged but for base_url and api_key, against the local stack.

The client is `OpenAI(base_url=..., api_key=key)` and nothing else: the SDK sends the key as
`Authorization: Bearer`, which the tenants' authorizer accepts (no x-api-key header). Every videos
method runs, sync and async, through the local gateway over real HTTP, and so do the errors a
tenant meets: another tenant's video (NotFoundError), a bad field (BadRequestError), a spent
monthly budget (RateLimitError, not retried), a revoked key (AuthenticationError). A webhook the
stack delivered verifies with the SDK's `webhooks.verify_signature` and the owner's secret alone.

What the SDK put on the wire is read from its own HTTP client (an httpx2 event hook that only
records), so "it sent only Bearer" and "it did not retry" are facts, not assumptions.
"""

from __future__ import annotations

import asyncio
import json
import re
import struct
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import openai
import pytest

from sora_relay.domain import catalogue

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


MODEL = "seedance-1.5-pro"  # the e2e stack's default model (tests/e2e/conftest.py), named where cost matters
WEBHOOK_TIMEOUT_S = 30.0  # completion (simulator callback) plus the webhook's first attempt


class Secret(str):
    """A key or signing secret that prints as '<secret>'. A failure prints the arguments of every
    frame it passes through (the SDK's too: `verify_signature(secret=...)`) and a failing
    assertion its operands; wrapped, neither shows the value. It is still the str the SDK sends."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'<secret>'"


@dataclass
class Sdk:
    """One SDK client and what its HTTP client sent and got back (httpx2 Request/Response objects,
    in order; a redirect the SDK followed is a request of its own)."""

    client: openai.OpenAI
    sent: list[Any] = field(default_factory=list)
    answers: list[Any] = field(default_factory=list)

    def sent_to(self, origin: str) -> list[Any]:
        return [request for request in self.sent if str(request.url).startswith(origin)]


@pytest.fixture
def connect(stack, monkeypatch) -> Iterator[Callable[[str], Sdk]]:
    """`connect(api_key)`: an SDK client built as its users build it, with only base_url and the key.

    The recording hooks are added to the SDK's own HTTP client after it is built (not through
    `http_client=`), so the client under test is exactly the default one: its timeouts, its
    redirects, its retries (max_retries 2)."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    opened: list[openai.OpenAI] = []

    def make(api_key: str) -> Sdk:
        api_key = Secret(api_key)  # rebound first: a traceback shows this frame's argument as it is now
        sdk = Sdk(openai.OpenAI(base_url=f"{stack.api_url}/v1", api_key=api_key))
        opened.append(sdk.client)
        hooks = sdk.client._client.event_hooks  # the httpx2 client the SDK made for itself
        hooks["request"].append(sdk.sent.append)
        hooks["response"].append(sdk.answers.append)
        return sdk

    yield make
    for client in opened:
        client.close()


@pytest.fixture
def wired(stack, connect) -> Sdk:
    return connect(stack.api_key)


@pytest.fixture
def client(wired) -> openai.OpenAI:
    return wired.client


@pytest.fixture
def other_client(stack, connect) -> openai.OpenAI:
    return connect(stack.other_api_key).client


def _credentials(request: Any, api_key: str) -> tuple[str, bool]:
    """(what Authorization held, whether an x-api-key header was sent), said without the key
    itself: a failing assertion prints its operands, and a key must never reach test output."""
    api_key = Secret(api_key)
    authorization = request.headers.get("authorization")
    if authorization is None:
        held = "missing"
    elif authorization == f"Bearer {api_key}":
        held = "Bearer <the key>"
    else:
        held = "something else"
    return held, "x-api-key" in request.headers


def _access_records(stack) -> dict[str, dict[str, Any]]:
    """The local gateway's access log (one JSON line per request, written once it answered), by
    request id; a line still being written (no newline yet) is left for the next read."""
    assert stack.gateway is not None and stack.gateway.log_dir is not None
    lines = (stack.gateway.log_dir / "api-access.log").read_text().split("\n")[:-1]
    return {record["requestId"]: record for record in map(json.loads, lines)}


def test_the_sdk_sends_the_key_as_a_bearer_token_and_nothing_else(stack, wired, eventually):
    # When the SDK, built with only base_url and api_key, lists models and videos
    assert [model.id for model in wired.client.models.list()]
    wired.client.videos.list(limit=1)

    # Then each request carried the key as a Bearer token, and no x-api-key header
    sent = wired.sent_to(stack.api_url)
    assert len(sent) == 2
    credentials = [_credentials(request, stack.api_key) for request in sent]
    assert credentials == [("Bearer <the key>", False)] * 2
    # And the gateway's authorizer took it for the first tenant (its access log, by request id)
    ids = [answer.headers["x-amzn-requestid"] for answer in wired.answers]
    records = eventually(
        lambda: found if all(i in (found := _access_records(stack)) for i in ids) else None,
        what="the gateway's access log lines",
    )
    assert [(records[i]["status"], records[i]["tenantId"]) for i in ids] == [(200, stack.tenant_id)] * 2


def test_create_with_an_uploaded_png_then_poll_retrieve_download_and_delete(
    stack, wired, client, plain_http, unique, probe_mp4
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
    # And the key did not follow the redirect to storage (another origin: httpx2 drops Authorization)
    [storage] = [request for request in wired.sent if not str(request.url).startswith(stack.api_url)]
    assert {"authorization", "x-api-key"}.isdisjoint(set(storage.headers))  # names only, never values

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


def test_another_tenants_video_is_not_found_by_any_method(stack, client, other_client, unique, probe_mp4):
    # Given a completed video of the first tenant
    mine = client.videos.create_and_poll(prompt=unique("Only mine"), seconds="4")
    assert mine.status == "completed"
    remix_prompt = unique("Someone else's remix")

    # When the second tenant retrieves, downloads, remixes or deletes it, each is NotFoundError
    calls = {
        "retrieve": lambda: other_client.videos.retrieve(mine.id),
        "download_content": lambda: other_client.videos.download_content(mine.id),
        "remix": lambda: other_client.videos.remix(mine.id, prompt=remix_prompt),
        "delete": lambda: other_client.videos.delete(mine.id),
    }
    for name, call in calls.items():
        with pytest.raises(openai.NotFoundError) as missing:
            call()
        assert (missing.value.status_code, missing.value.code) == (404, "video_not_found"), name

    # Then the video is still its owner's, whole, and no remix of it reached the provider
    assert client.videos.retrieve(mine.id).status == "completed"
    assert probe_mp4(client.videos.download_content(mine.id).read()).frames > 0
    assert [job.id for job in stack.simulator.jobs() if job.prompt == remix_prompt] == []


def test_bad_values_are_bad_request_errors_naming_the_field(client, unique):
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


def test_a_provider_failure_on_create_is_the_failed_video_not_an_error_the_sdk_retries(stack, client, unique):
    # The SDK retries 5xx, POST included: a retry here would make a second task and could bill twice.
    # So the create that made a task answers it (202), failed with the reason, and raises nothing
    prompt = unique("[sim:500] A provider that broke mid-create")
    video = client.videos.create(prompt=prompt, seconds="4")
    assert isinstance(video, openai.types.Video)
    assert video.status == "failed" and video.error is not None
    assert video.error.code == "provider_outcome_unknown"
    assert stack.simulator.create_attempts("500", prompt) == 1  # one create at the provider
    # ... and a later retrieve shows exactly that
    again = client.videos.retrieve(video.id)
    assert (again.id, again.status, again.error) == (video.id, "failed", video.error)
    mine = [item for item in client.videos.list(limit=100).data if item.prompt == prompt]
    assert [item.id for item in mine] == [video.id]  # exactly one task


def test_the_async_client_creates_polls_and_retrieves(stack, unique):
    async def run() -> tuple[openai.types.Video, openai.types.Video]:
        key = Secret(stack.api_key)
        async with openai.AsyncOpenAI(base_url=f"{stack.api_url}/v1", api_key=key) as sdk:
            video = await sdk.videos.create_and_poll(prompt=unique("An async heron"), seconds="4")
            return video, await sdk.videos.retrieve(video.id)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        video, again = asyncio.run(run())
    assert video.status == "completed" and again.id == video.id and again.status == "completed"


def test_a_spent_budget_is_a_rate_limit_error_the_sdk_does_not_retry(stack, connect, unique, eventually):
    # Given a tenant made by the operator's command with a monthly budget of exactly one 4 s video
    cost = catalogue.default().require(MODEL).price_microusd(4)
    tenant = stack.tenant_admin().create("SDK budget", budget_usd=f"{cost / 1_000_000:.6f}")
    sdk = connect(tenant.key.api_key)
    assert sdk.client.max_retries == 2  # the SDK's default: it would retry a 429 unless told not to

    # When its first video is asked for, it is accepted
    first = sdk.client.videos.create(prompt=unique("A budget's only video"), model=MODEL, seconds="4")
    assert first.status in ("queued", "in_progress")

    # And the next one is OpenAI's answer to a spent quota
    refused_prompt = unique("One video too many")
    before = len(sdk.sent)
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.client.videos.create(prompt=refused_prompt, model=MODEL, seconds="4")
    error = refused.value
    assert (error.status_code, error.code, error.type) == (429, "insufficient_quota", "insufficient_quota")
    assert "You exceeded your current quota" in error.message

    # Then the SDK sent it once: the answer said x-should-retry: false, and it obeyed
    assert error.response.headers["x-should-retry"] == "false"
    assert [(r.method, str(r.url)) for r in sdk.sent[before:]] == [("POST", f"{stack.api_url}/v1/videos")]
    # And the provider heard of the first video once and never of the refused one (refused before
    # it was sent), and the month counts one video at its price
    eventually(
        lambda: [job for job in stack.simulator.jobs() if job.prompt == first.prompt],
        what="the provider to take the first video",
    )
    prompts = [job.prompt for job in stack.simulator.jobs()]
    assert (prompts.count(first.prompt), prompts.count(refused_prompt)) == (1, 0)
    usage = sdk.client.get("/usage", cast_to=object)
    assert (usage["tenant_id"], usage["count"]) == (tenant.tenant.tenant_id, 1)
    assert usage["spent_usd"] == usage["budget_usd"] == cost / 1_000_000


def test_a_budget_below_one_video_refuses_the_first(stack, connect, unique):
    # Given a tenant whose whole monthly budget is half the price of one 4 s video
    cost = catalogue.default().require(MODEL).price_microusd(4)
    budget_usd = f"{cost / 2_000_000:.6f}"
    tenant = stack.tenant_admin().create("SDK small budget", budget_usd=budget_usd)
    sdk = connect(tenant.key.api_key)

    # When it asks for its first video, the SDK raises RateLimitError (insufficient_quota) after one request
    prompt = unique("Too dear from the start")
    with pytest.raises(openai.RateLimitError) as refused:
        sdk.client.videos.create(prompt=prompt, model=MODEL, seconds="4")
    assert (refused.value.code, refused.value.type) == ("insufficient_quota", "insufficient_quota")
    assert [request.method for request in sdk.sent] == ["POST"]

    # Then nothing reached the provider and nothing was counted
    assert [job.id for job in stack.simulator.jobs() if job.prompt == prompt] == []
    usage = sdk.client.get("/usage", cast_to=object)
    assert (usage["count"], usage["spent_usd"], usage["budget_usd"]) == (0, 0, float(budget_usd))


def test_a_revoked_key_is_an_authentication_error(stack, connect, eventually):
    # Given a second key of the second tenant, working with the SDK
    admin = stack.tenant_admin()
    issued = admin.issue_key(stack.other_tenant_id)
    sdk = connect(issued.api_key)
    sdk.client.videos.list(limit=1)

    # When the operator revokes it
    admin.revoke_key(issued.record.key_id)

    # Then the SDK raises AuthenticationError once the authorizer's cache lets go (1 s here)
    def refused() -> openai.AuthenticationError | None:
        try:
            sdk.client.videos.list(limit=1)
        except openai.AuthenticationError as error:
            return error
        return None

    error = eventually(refused, what="the revoked key to be refused")
    assert (error.status_code, error.code) == (401, "UNAUTHORIZED")
    # And the tenant's first key still works
    assert connect(stack.other_api_key).client.videos.list(limit=1).object == "list"


def test_a_webhook_verifies_with_its_tenants_secret_and_no_other(stack, client, receiver, unique):
    # Given a video made through the SDK with a callback_url (a field the SDK does not know: extra_body)
    video = client.videos.create(
        prompt=unique("A heron, announced"), seconds="4", extra_body={"callback_url": receiver.url}
    )

    # When the stack delivers its webhook
    delivery = receiver.wait_for_video(video.id, timeout=WEBHOOK_TIMEOUT_S)

    # Then the SDK's verify_signature accepts it with the owner's secret (the one the operator's
    # create printed; DevStack keeps it), and refuses it with the other tenant's and the service's
    owner, other = stack.tenants[0], stack.tenants[1]
    assert owner.tenant.tenant_id == stack.tenant_id
    secrets = {"owner": owner.webhook_secret, "other tenant": other.webhook_secret}
    secrets["service-wide"] = stack.webhook_secret
    verdicts = {name: _verdict(client, delivery, secret) for name, secret in secrets.items()}
    assert verdicts == {"owner": "verified", "other tenant": "refused", "service-wide": "refused"}
    # And what it verified is the video's event, as the SDK's webhook types read it
    event = client.webhooks.unwrap(delivery.body, delivery.headers, secret=Secret(owner.webhook_secret))
    assert (event.type, event.data.id) == ("video.completed", video.id)


def _verdict(client: openai.OpenAI, delivery: Any, secret: str) -> str:
    """What the SDK's verify_signature says of a delivery with this secret, as a word (the secret
    itself never reaches an assertion or a traceback)."""
    secret = Secret(secret)  # rebound first, as in connect()
    try:
        client.webhooks.verify_signature(delivery.body, delivery.headers, secret=secret)
    except openai.InvalidWebhookSignatureError:
        return "refused"
    except Exception as error:  # a missing header (ValueError), ...: named, not raised with the secret
        return f"error {type(error).__name__}"
    return "verified"
