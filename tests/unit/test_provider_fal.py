"""FalQueue against fal's contract (shared/providers/fal-queue.md), over httpx.MockTransport.

The payloads are the contract page's examples (webhook OK/ERROR bodies, status bodies, the submit
answer) and fal's documented output example; the pushes are signed here, independently of the
simulator, exactly as "Signature verification" describes.
"""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from sora_relay.adapters.providers.fal import FalQueue, app_base, fal_input
from sora_relay.domain import catalogue
from sora_relay.domain.errors import (
    InvalidRequest,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
    Unauthorized,
)
from sora_relay.domain.provider import GenerationRequest, ProviderState, Push

QUEUE = "https://queue.fal.run"
JWKS_URL = "https://rest.alpha.fal.ai/.well-known/jwks.json"
USER_ID = "fal-user-123"
KEY = "fal-key-abc:secret"
NOW = 1_800_000_000.0
REQUEST_ID = "764cabcf-b745-4b3e-ae38-1200304cf45b"
CALLBACK = "https://relay.example/callbacks/fal?token=tok/en+1&task=vid_1"
IMAGE = "https://images.example/first-frame.png"
ROOT = Path(__file__).resolve().parents[2]

# fal's output example (fal docs, Kling O3 text-to-video "Output Example").
OUTPUT = {
    "video": {
        "content_type": "video/mp4",
        "file_name": "output.mp4",
        "file_size": 13096952,
        "url": "https://v3b.fal.media/files/b/0a8d04e2/idOb9V-Q9ujlggPSKqsfS_output.mp4",
    }
}
# fal-queue.md, Webhook: the two documented bodies, and the payload_error case.
OK_PUSH = {"request_id": REQUEST_ID, "gateway_request_id": REQUEST_ID, "status": "OK", "payload": OUTPUT}
ERROR_PUSH = {
    "request_id": REQUEST_ID,
    "gateway_request_id": REQUEST_ID,
    "status": "ERROR",
    "error": "Invalid status code: 422",
    "payload": {
        "detail": [
            {"loc": ["body", "prompt"], "msg": "The prompt was flagged", "type": "content_policy_violation"}
        ]
    },
}
UNSERIALISABLE_PUSH = {
    "request_id": REQUEST_ID,
    "gateway_request_id": REQUEST_ID,
    "status": "OK",
    "payload": None,
    "payload_error": "Response payload is not JSON serializable",
}
# fal-queue.md, Submit: the answer's fields.
SUBMIT_ANSWER = {
    "request_id": REQUEST_ID,
    "gateway_request_id": REQUEST_ID,
    "response_url": f"{QUEUE}/fal-ai/veo3.1/requests/{REQUEST_ID}",
    "status_url": f"{QUEUE}/fal-ai/veo3.1/requests/{REQUEST_ID}/status",
    "cancel_url": f"{QUEUE}/fal-ai/veo3.1/requests/{REQUEST_ID}/cancel",
}


def entry(model_id: str) -> catalogue.ModelEntry:
    return catalogue.default().require(model_id)


def fal_entries() -> list[catalogue.ModelEntry]:
    return [model for model in catalogue.default().models if model.provider == "fal"]


# -- a faked fal: its queue, its JWKS, a clock ---------------------------------------------------


def jwk_for(key: Ed25519PrivateKey) -> dict[str, str]:
    raw = key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kty": "OKP", "crv": "Ed25519", "x": base64.urlsafe_b64encode(raw).rstrip(b"=").decode()}


@dataclass
class FakeFal:
    """Routes by method and path; records every request; counts JWKS fetches."""

    keys: list[Ed25519PrivateKey] = field(default_factory=lambda: [Ed25519PrivateKey.generate()])
    extra_jwks: list[dict[str, Any]] = field(default_factory=list)
    answers: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = field(default_factory=dict)
    requests: list[httpx.Request] = field(default_factory=list)
    jwks_fetches: int = 0

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if str(request.url) == JWKS_URL:
            self.jwks_fetches += 1
            return httpx.Response(200, json={"keys": [*self.extra_jwks, *map(jwk_for, self.keys)]})
        answer = self.answers.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"detail": "Not Found"})
        return answer(request)

    def on(self, method: str, path: str, status: int = 200, body: Any = None, **kwargs: Any) -> None:
        self.answers[(method, path)] = lambda _request: httpx.Response(status, json=body, **kwargs)

    def calls(self, method: str) -> list[httpx.Request]:
        return [
            request for request in self.requests if request.method == method and str(request.url) != JWKS_URL
        ]


@dataclass
class Clock:
    now: float = NOW

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fal() -> FakeFal:
    return FakeFal()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_adapter(fal: FakeFal, clock: Clock, **overrides: Any) -> FalQueue:
    settings: dict[str, Any] = {
        "queue_base_url": QUEUE,
        "jwks_url": JWKS_URL,
        "api_key": lambda: KEY,
        "user_id": USER_ID,
        "timeout": 5.0,
        "clock": clock,
    }
    settings.update(overrides)
    return FalQueue(httpx.Client(transport=httpx.MockTransport(fal.handle)), **settings)


@pytest.fixture
def adapter(fal: FakeFal, clock: Clock) -> FalQueue:
    return make_adapter(fal, clock)


def signed(
    body: dict[str, Any] | bytes,
    key: Ed25519PrivateKey,
    *,
    timestamp: float = NOW,
    request_id: str = REQUEST_ID,
    user_id: str = USER_ID,
) -> tuple[dict[str, str], bytes]:
    """fal-queue.md, Signature verification 1-3: headers (lower-case, as read_push takes them)."""
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    message = f"{request_id}\n{user_id}\n{int(timestamp)}\n{hashlib.sha256(raw).hexdigest()}".encode()
    headers = {
        "x-fal-webhook-request-id": request_id,
        "x-fal-webhook-user-id": user_id,
        "x-fal-webhook-timestamp": str(int(timestamp)),
        "x-fal-webhook-signature": key.sign(message).hex(),
    }
    return headers, raw


def generation(model_id: str, *, size: str, seconds: int, image: str | None = None) -> GenerationRequest:
    return GenerationRequest(
        prompt="a lighthouse at dusk", model=entry(model_id), seconds=seconds, size=size, image_url=image
    )


# -- submit ------------------------------------------------------------------------------------

# The input per catalogue entry, spelled as each endpoint's fal page documents it.
SUBMIT_CASES = [
    (
        "fal-veo-3.1",
        "1280x720",
        8,
        None,
        "fal-ai/veo3.1",
        {"duration": "8s", "aspect_ratio": "16:9", "resolution": "720p", "generate_audio": True},
    ),
    (
        "fal-veo-3.1",
        "1080x1920",
        4,
        IMAGE,
        "fal-ai/veo3.1/image-to-video",
        {
            "duration": "4s",
            "aspect_ratio": "9:16",
            "resolution": "1080p",
            "generate_audio": True,
            "image_url": IMAGE,
        },
    ),
    (
        "fal-kling-2.5-turbo-pro",
        "1080x1080",
        10,
        None,
        "fal-ai/kling-video/v2.5-turbo/pro/text-to-video",
        {"duration": "10", "aspect_ratio": "1:1"},
    ),
    (
        "fal-kling-2.5-turbo-pro",
        "1920x1080",
        5,
        IMAGE,
        "fal-ai/kling-video/v2.5-turbo/pro/image-to-video",
        {"duration": "5", "aspect_ratio": "16:9", "image_url": IMAGE},
    ),
    (
        "fal-ltx-2.3-fast",
        "1080x1920",
        8,
        None,
        "fal-ai/ltx-2.3/text-to-video/fast",
        {"duration": 8, "aspect_ratio": "9:16", "resolution": "1080p", "generate_audio": True},
    ),
    (
        "fal-ltx-2.3-fast",
        "1920x1080",
        6,
        IMAGE,
        "fal-ai/ltx-2.3/image-to-video/fast",
        {
            "duration": 6,
            "aspect_ratio": "16:9",
            "resolution": "1080p",
            "generate_audio": True,
            "image_url": IMAGE,
        },
    ),
]


@pytest.mark.parametrize(("model_id", "size", "seconds", "image", "endpoint", "fields"), SUBMIT_CASES)
def test_submit_posts_the_entry_input_to_the_endpoint_queue(
    fal: FakeFal,
    adapter: FalQueue,
    model_id: str,
    size: str,
    seconds: int,
    image: str | None,
    endpoint: str,
    fields: dict[str, Any],
) -> None:
    # Given
    fal.on("POST", f"/{endpoint}", body=SUBMIT_ANSWER)

    # When
    request_id = adapter.submit(
        generation(model_id, size=size, seconds=seconds, image=image), callback_url=CALLBACK
    )

    # Then
    assert request_id == REQUEST_ID
    (sent,) = fal.calls("POST")
    assert sent.url.host == "queue.fal.run"
    assert sent.url.path == f"/{endpoint}"
    assert parse_qs(urlsplit(str(sent.url)).query) == {"fal_webhook": [CALLBACK]}  # whole, token included
    assert "token%3Dtok%2Fen%2B1" in str(sent.url)  # url-encoded, so fal reads it back intact
    assert sent.headers["authorization"] == f"Key {KEY}"
    assert "prefer" not in sent.headers  # never `Prefer: wait`
    assert json.loads(sent.content) == {"prompt": "a lighthouse at dusk", **fields}


def test_every_fal_entry_is_covered_by_the_submit_cases() -> None:
    covered = {(model_id, image is not None) for model_id, _, _, image, _, _ in SUBMIT_CASES}
    expected = {
        (model.id, with_image)
        for model in fal_entries()
        for with_image in (False, True)
        if with_image <= model.image
    }
    assert covered == expected


def test_submit_reads_the_key_per_call(fal: FakeFal, clock: Clock) -> None:
    keys = iter(["first-key", "rotated-key"])
    adapter = make_adapter(fal, clock, api_key=lambda: next(keys))
    fal.on("POST", "/fal-ai/veo3.1", body=SUBMIT_ANSWER)
    request = generation("fal-veo-3.1", size="1280x720", seconds=8)

    adapter.submit(request, callback_url=CALLBACK)
    adapter.submit(request, callback_url=CALLBACK)

    assert [call.headers["authorization"] for call in fal.calls("POST")] == [
        "Key first-key",
        "Key rotated-key",
    ]


@pytest.mark.parametrize(
    ("status", "body", "headers", "error", "check"),
    [
        (
            422,
            {
                "detail": [
                    {
                        "loc": ["body", "duration"],
                        "msg": "Input should be '4s', '6s' or '8s'",
                        "type": "literal_error",
                    }
                ]
            },
            {},
            ProviderRejected,
            lambda e: "duration: Input should be '4s', '6s' or '8s'" in e.message,
        ),
        (401, {"detail": "Invalid key"}, {}, ProviderAuthFailed, lambda e: True),
        (403, {"detail": "Exhausted balance"}, {}, ProviderAuthFailed, lambda e: True),
        (
            429,
            {"detail": "Too many requests"},
            {"Retry-After": "7"},
            ProviderUnavailable,
            lambda e: e.retry_after == 7,
        ),
        (500, {"detail": "Internal error"}, {}, ProviderUnavailable, lambda e: True),
        (
            504,
            {"detail": "Gateway timeout"},
            {"X-Fal-Error-Type": "timeout"},
            ProviderUnavailable,
            lambda e: "timeout" in e.message,
        ),
        (200, {"status": "IN_QUEUE"}, {}, ProviderProtocolError, lambda e: True),
    ],
)
def test_submit_maps_fal_refusals_and_never_retries(
    fal: FakeFal,
    adapter: FalQueue,
    status: int,
    body: Any,
    headers: dict[str, str],
    error: type[Exception],
    check: Callable[[Any], bool],
) -> None:
    fal.on("POST", "/fal-ai/veo3.1", status=status, body=body, headers=headers)

    with pytest.raises(error) as raised:
        adapter.submit(generation("fal-veo-3.1", size="1280x720", seconds=8), callback_url=CALLBACK)

    assert check(raised.value)
    assert len(fal.calls("POST")) == 1  # a repeat could bill twice (README rule 8)


def test_submit_timeout_is_unavailable_and_not_resent(fal: FakeFal, adapter: FalQueue) -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("slow", request=request)

    fal.answers[("POST", "/fal-ai/veo3.1")] = slow

    with pytest.raises(ProviderUnavailable) as raised:
        adapter.submit(generation("fal-veo-3.1", size="1280x720", seconds=8), callback_url=CALLBACK)

    assert raised.value.code == "provider_timeout"
    assert len(fal.calls("POST")) == 1


@pytest.mark.parametrize(
    ("changes", "param"),
    [({"size": "640x480"}, "size"), ({"seconds": 7}, "seconds")],
)
def test_input_refuses_what_the_entry_does_not_offer(changes: dict[str, Any], param: str) -> None:
    request = GenerationRequest(
        **{"prompt": "p", "model": entry("fal-veo-3.1"), "seconds": 8, "size": "1280x720", **changes}
    )

    with pytest.raises(InvalidRequest) as raised:
        fal_input(request)

    assert raised.value.param == param


def test_input_refuses_an_image_for_a_text_only_model() -> None:
    text_only = entry("fal-kling-2.5-turbo-pro").model_copy(update={"image": False, "image_route": None})

    with pytest.raises(InvalidRequest) as raised:
        fal_input(GenerationRequest("p", text_only, 5, "1920x1080", image_url=IMAGE))

    assert raised.value.param == "image"


# -- read_push: the body, once verified ----------------------------------------------------------


def test_an_ok_push_with_a_video_succeeds(fal: FakeFal, adapter: FalQueue) -> None:
    headers, body = signed(OK_PUSH, fal.keys[0])

    push = adapter.read_push(headers, body)

    assert push.provider_task_id == REQUEST_ID
    assert push.result is not None
    assert push.result.state is ProviderState.SUCCEEDED
    assert push.result.video_url == OUTPUT["video"]["url"]


def test_an_error_push_fails_with_its_text(fal: FakeFal, adapter: FalQueue) -> None:
    headers, body = signed(ERROR_PUSH, fal.keys[0])

    push = adapter.read_push(headers, body)

    assert push.result is not None
    assert push.result.state is ProviderState.FAILED
    assert push.result.error_code == "content_policy_violation"
    assert push.result.error_message is not None
    assert "Invalid status code: 422" in push.result.error_message
    assert "prompt: The prompt was flagged" in push.result.error_message


def test_a_null_payload_is_a_verified_cue_to_look_the_request_up(fal: FakeFal, adapter: FalQueue) -> None:
    headers, body = signed(UNSERIALISABLE_PUSH, fal.keys[0])

    assert adapter.read_push(headers, body) == Push(REQUEST_ID, None)


def test_an_ok_push_without_a_video_fails(fal: FakeFal, adapter: FalQueue) -> None:
    headers, body = signed({**OK_PUSH, "payload": {"images": []}}, fal.keys[0])

    push = adapter.read_push(headers, body)

    assert push.result is not None
    assert (push.result.state, push.result.error_code) == (ProviderState.FAILED, "no_video")


def test_a_signed_push_of_another_shape_is_invalid(fal: FakeFal, adapter: FalQueue) -> None:
    headers, body = signed({**OK_PUSH, "status": "IN_PROGRESS"}, fal.keys[0])

    with pytest.raises(InvalidRequest):
        adapter.read_push(headers, body)


# -- read_push: signature verification -------------------------------------------------------------


def assert_refused(adapter: FalQueue, headers: dict[str, str], body: bytes) -> None:
    with pytest.raises(Unauthorized) as raised:
        adapter.read_push(headers, body)
    assert raised.value.code == "invalid_signature"


def test_a_push_signed_with_another_key_is_refused(adapter: FalQueue) -> None:
    headers, body = signed(OK_PUSH, Ed25519PrivateKey.generate())

    assert_refused(adapter, headers, body)


def test_a_push_for_another_fal_user_is_refused(fal: FakeFal, adapter: FalQueue) -> None:
    headers, body = signed(OK_PUSH, fal.keys[0], user_id="someone-else")  # validly signed by fal

    assert_refused(adapter, headers, body)


@pytest.mark.parametrize("offset", [-301, 301, -3600, 86_400])
def test_a_push_outside_five_minutes_is_refused(fal: FakeFal, adapter: FalQueue, offset: int) -> None:
    headers, body = signed(OK_PUSH, fal.keys[0], timestamp=NOW + offset)

    assert_refused(adapter, headers, body)


@pytest.mark.parametrize("offset", [-300, 299])
def test_a_push_inside_five_minutes_is_accepted(fal: FakeFal, adapter: FalQueue, offset: int) -> None:
    headers, body = signed(OK_PUSH, fal.keys[0], timestamp=NOW + offset)

    assert adapter.read_push(headers, body).result is not None


def test_a_body_changed_after_signing_is_refused(fal: FakeFal, adapter: FalQueue) -> None:
    # Given a genuine push, replayed with another body under the same headers
    headers, _ = signed(ERROR_PUSH, fal.keys[0])
    forged = json.dumps({**OK_PUSH, "payload": {"video": {"url": "https://evil.example/x.mp4"}}}).encode()

    # Then
    assert_refused(adapter, headers, forged)


def test_the_body_is_hashed_as_received(fal: FakeFal, adapter: FalQueue) -> None:
    # Same JSON, other bytes: only the bytes that were signed verify.
    headers, body = signed(OK_PUSH, fal.keys[0])
    reformatted = json.dumps(OK_PUSH, indent=2).encode()

    assert adapter.read_push(headers, body).result is not None
    assert_refused(adapter, headers, reformatted)


@pytest.mark.parametrize(
    "header",
    [
        "x-fal-webhook-request-id",
        "x-fal-webhook-user-id",
        "x-fal-webhook-timestamp",
        "x-fal-webhook-signature",
    ],
)
def test_a_push_missing_a_header_is_refused(fal: FakeFal, adapter: FalQueue, header: str) -> None:
    headers, body = signed(OK_PUSH, fal.keys[0])
    del headers[header]

    assert_refused(adapter, headers, body)
    assert fal.jwks_fetches == 0  # refused before any key is needed


@pytest.mark.parametrize(
    ("header", "value"),
    [("x-fal-webhook-signature", "not-hex"), ("x-fal-webhook-timestamp", "yesterday")],
)
def test_a_malformed_header_is_refused(fal: FakeFal, adapter: FalQueue, header: str, value: str) -> None:
    headers, body = signed(OK_PUSH, fal.keys[0])
    headers[header] = value

    assert_refused(adapter, headers, body)


def test_the_signed_request_id_must_be_the_bodys(fal: FakeFal, adapter: FalQueue) -> None:
    # A genuine signature for request A carrying request B's body.
    headers, body = signed({**OK_PUSH, "request_id": "another-request"}, fal.keys[0])

    assert_refused(adapter, headers, body)


def test_any_published_ed25519_key_may_verify(fal: FakeFal, adapter: FalQueue) -> None:
    # Given a JWKS with a key of another type and two Ed25519 keys
    fal.extra_jwks.append({"kty": "RSA", "n": "AQAB", "e": "AQAB"})
    fal.keys.append(Ed25519PrivateKey.generate())
    headers, body = signed(OK_PUSH, fal.keys[1])

    # Then the second one is enough
    assert adapter.read_push(headers, body).result is not None


def test_without_a_user_id_only_the_signature_is_checked(fal: FakeFal, clock: Clock) -> None:
    adapter = make_adapter(fal, clock, user_id=None)
    headers, body = signed(OK_PUSH, fal.keys[0], user_id="whoever")

    assert adapter.read_push(headers, body).result is not None


# -- the JWKS cache ---------------------------------------------------------------------------------


def test_the_jwks_is_fetched_once_and_again_after_24_hours(
    fal: FakeFal, adapter: FalQueue, clock: Clock
) -> None:
    # Given two pushes within a day
    for _ in range(2):
        adapter.read_push(*signed(OK_PUSH, fal.keys[0], timestamp=clock.now))
        clock.now += 3600
    assert fal.jwks_fetches == 1

    # When a day has passed since the fetch
    clock.now = NOW + 24 * 3600
    adapter.read_push(*signed(OK_PUSH, fal.keys[0], timestamp=clock.now))

    # Then the keys were fetched again
    assert fal.jwks_fetches == 2


def test_a_rotated_key_is_fetched_early(fal: FakeFal, adapter: FalQueue, clock: Clock) -> None:
    # Given keys fetched for a first push
    adapter.read_push(*signed(OK_PUSH, fal.keys[0], timestamp=clock.now))

    # When fal rotates its key some minutes later
    clock.now += 301
    fal.keys = [Ed25519PrivateKey.generate()]
    push = adapter.read_push(*signed(OK_PUSH, fal.keys[0], timestamp=clock.now))

    # Then the new key was fetched without waiting a day
    assert push.result is not None
    assert fal.jwks_fetches == 2


def test_unknown_keys_trigger_at_most_one_refetch_per_five_minutes(
    fal: FakeFal, adapter: FalQueue, clock: Clock
) -> None:
    # Given keys fetched a minute ago
    adapter.read_push(*signed(OK_PUSH, fal.keys[0], timestamp=clock.now))
    clock.now += 60

    # When forged pushes keep coming
    for _ in range(3):
        assert_refused(adapter, *signed(OK_PUSH, Ed25519PrivateKey.generate(), timestamp=clock.now))

    # Then none of them made us fetch the keys again
    assert fal.jwks_fetches == 1


def test_an_unreachable_jwks_is_unavailable_not_a_verdict(fal: FakeFal, clock: Clock) -> None:
    # Nothing is known about the push: fal retries it later (fal-queue.md, Webhook).
    adapter = make_adapter(fal, clock, jwks_url="https://rest.alpha.fal.ai/missing.json")

    with pytest.raises(ProviderUnavailable):
        adapter.read_push(*signed(OK_PUSH, fal.keys[0]))


def test_importing_the_adapter_does_not_import_cryptography() -> None:
    # The verifier imports it lazily: it must not weigh on other functions' cold start.
    code = "import sys, sora_relay.adapters.providers.fal; print('cryptography' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"PYTHONPATH": str(ROOT / "layers" / "common"), "PATH": ""},
    )
    assert result.stdout.strip() == "False"


# -- query ----------------------------------------------------------------------------------------

STATUS_PATH = f"/fal-ai/veo3.1/requests/{REQUEST_ID}/status"
RESULT_PATH = f"/fal-ai/veo3.1/requests/{REQUEST_ID}"


@pytest.mark.parametrize(
    ("status", "state", "error_code"),
    [
        ({"status": "IN_QUEUE", "queue_position": 3}, ProviderState.PENDING, None),
        ({"status": "IN_PROGRESS", "logs": [{"message": "step 1"}]}, ProviderState.RUNNING, None),
        (
            {
                "status": "COMPLETED",
                "logs": None,
                "metrics": {"inference_time": 41.2},
                "error": "Out of memory",
                "error_type": "runner_error",
            },
            ProviderState.FAILED,
            "runner_error",
        ),
        ({"status": "FAILED"}, ProviderState.FAILED, "generation_failed"),
        ({"status": "SOMETHING_NEW"}, ProviderState.RUNNING, None),
    ],
)
def test_query_maps_the_status(
    fal: FakeFal, adapter: FalQueue, status: dict[str, Any], state: ProviderState, error_code: str | None
) -> None:
    fal.on("GET", STATUS_PATH, body=status)

    (result,) = adapter.query(entry("fal-veo-3.1"), [REQUEST_ID])

    assert (result.provider_task_id, result.state, result.error_code) == (REQUEST_ID, state, error_code)
    assert [call.url.path for call in fal.calls("GET")] == [STATUS_PATH]  # no result fetch


def test_query_fetches_the_result_of_a_completed_request(fal: FakeFal, adapter: FalQueue) -> None:
    fal.on(
        "GET", STATUS_PATH, body={"status": "COMPLETED", "logs": None, "metrics": {"inference_time": 41.2}}
    )
    fal.on("GET", RESULT_PATH, body=OUTPUT)

    (result,) = adapter.query(entry("fal-veo-3.1"), [REQUEST_ID])

    assert result.state is ProviderState.SUCCEEDED
    assert result.video_url == OUTPUT["video"]["url"]
    assert [call.headers["authorization"] for call in fal.calls("GET")] == [f"Key {KEY}"] * 2


@pytest.mark.parametrize("status", [404, 410])
def test_query_reads_404_and_410_as_expired(fal: FakeFal, adapter: FalQueue, status: int) -> None:
    fal.on("GET", STATUS_PATH, status=status, body={"detail": "Request not found"})

    (result,) = adapter.query(entry("fal-veo-3.1"), [REQUEST_ID])

    assert (result.state, result.error_code) == (ProviderState.FAILED, "provider_result_expired")


def test_query_reads_a_lapsed_result_as_expired(fal: FakeFal, adapter: FalQueue) -> None:
    fal.on("GET", STATUS_PATH, body={"status": "COMPLETED"})
    fal.on("GET", RESULT_PATH, status=410, body={"detail": "Gone"})

    (result,) = adapter.query(entry("fal-veo-3.1"), [REQUEST_ID])

    assert result.error_code == "provider_result_expired"


def test_query_reads_an_error_result_as_failed(fal: FakeFal, adapter: FalQueue) -> None:
    fal.on("GET", STATUS_PATH, body={"status": "COMPLETED"})
    fal.on("GET", RESULT_PATH, status=422, body=ERROR_PUSH["payload"])

    (result,) = adapter.query(entry("fal-veo-3.1"), [REQUEST_ID])

    assert (result.state, result.error_code) == (ProviderState.FAILED, "content_policy_violation")
    assert result.error_message is not None and "The prompt was flagged" in result.error_message


@pytest.mark.parametrize(
    ("status", "error"), [(429, ProviderUnavailable), (503, ProviderUnavailable), (401, ProviderAuthFailed)]
)
def test_query_raises_when_the_lookup_itself_fails(
    fal: FakeFal, adapter: FalQueue, status: int, error: type[Exception]
) -> None:
    fal.on("GET", STATUS_PATH, status=status, body={"detail": "no"}, headers={"Retry-After": "2"})

    with pytest.raises(error):
        adapter.query(entry("fal-veo-3.1"), [REQUEST_ID])


def test_query_drops_the_endpoint_subpath(fal: FakeFal, adapter: FalQueue) -> None:
    # Requests submitted to .../v2.5-turbo/pro/image-to-video live under fal-ai/kling-video.
    fal.on(
        "GET",
        f"/fal-ai/kling-video/requests/{REQUEST_ID}/status",
        body={"status": "IN_QUEUE", "queue_position": 0},
    )
    fal.on("GET", "/fal-ai/kling-video/requests/other/status", body={"status": "IN_PROGRESS"})

    results = adapter.query(entry("fal-kling-2.5-turbo-pro"), [REQUEST_ID, "other"])

    assert [(result.provider_task_id, result.state) for result in results] == [
        (REQUEST_ID, ProviderState.PENDING),
        ("other", ProviderState.RUNNING),
    ]


@pytest.mark.parametrize(
    ("endpoint", "base"),
    [
        ("fal-ai/veo3.1", f"{QUEUE}/fal-ai/veo3.1"),
        ("fal-ai/veo3.1/image-to-video", f"{QUEUE}/fal-ai/veo3.1"),
        ("fal-ai/kling-video/v2.5-turbo/pro/text-to-video", f"{QUEUE}/fal-ai/kling-video"),
        ("workflows/someone/my-flow", f"{QUEUE}/workflows/someone/my-flow"),
        ("comfy/someone/graph", f"{QUEUE}/comfy/someone/graph"),
    ],
)
def test_app_base_follows_the_subpath_rule(endpoint: str, base: str) -> None:
    assert app_base(QUEUE + "/", endpoint) == base


def test_the_submit_answer_urls_agree_with_the_subpath_rule() -> None:
    # The URLs fal returns at submit "already get this right" (fal-queue.md).
    assert (
        SUBMIT_ANSWER["status_url"]
        == f"{app_base(QUEUE, 'fal-ai/veo3.1/image-to-video')}/requests/{REQUEST_ID}/status"
    )
