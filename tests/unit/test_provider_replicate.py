"""The Replicate predictions adapter against its contract (shared/providers/replicate.md).

HTTP is faked with httpx.MockTransport; the bodies are Replicate's own examples (the docs'
webhook and get-a-prediction examples, the rate-limit answer) and their variants per status.
Signatures are made with `standardwebhooks`, the reference implementation, not by our code.
"""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook

from sora_relay.adapters.providers import replicate
from sora_relay.adapters.providers.replicate import ReplicatePredictions, build_input, result_of, video_url
from sora_relay.domain import catalogue
from sora_relay.domain.catalogue import InputNames, ModelEntry
from sora_relay.domain.errors import (
    InvalidRequest,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
    Unauthorized,
)
from sora_relay.domain.provider import GenerationRequest, ProviderState

BASE = "https://api.replicate.com"
TOKEN = "r8_test_token"
SECRET = "whsec_" + base64.b64encode(b"replicate-test-signing-secret-32").decode()
OTHER_SECRET = "whsec_" + base64.b64encode(b"another-account-signing-secret!!").decode()
CALLBACK = "https://relay.example.com/v1/callbacks/replicate/video_1?token=t"
VIDEO = "https://replicate.delivery/xezq/abc123/tmpq7wj3d1m.mp4"

# https://replicate.com/docs/topics/webhooks/receive-webhook: "an example of an unfinished prediction"
DOCS_WEBHOOK: dict[str, Any] = {
    "id": "ufawqhfynnddngldkgtslldrkq",
    "version": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
    "created_at": "2022-04-26T22:13:06.224088Z",
    "started_at": None,
    "completed_at": None,
    "status": "starting",
    "input": {"text": "Alice"},
    "output": None,
    "error": None,
    "logs": None,
    "metrics": {},
}
# Replicate's get-a-prediction example (replicate/hello-world, succeeded)
DOCS_PREDICTION: dict[str, Any] = {
    "id": "gm3qorzdhgbfurvjtvhg6dckhu",
    "model": "replicate/hello-world",
    "version": "5c7d5dc6dd8bf75c1acaa8565735e7986bc5b66206b55cca93cb72c9bf15ccaa",
    "input": {"text": "Alice"},
    "logs": "",
    "output": "hello Alice",
    "error": None,
    "status": "succeeded",
    "created_at": "2023-09-08T16:19:34.765994Z",
    "started_at": "2023-09-08T16:19:34.779176Z",
    "completed_at": "2023-09-08T16:19:34.791859Z",
    "metrics": {"predict_time": 0.012683},
    "urls": {
        "cancel": "https://api.replicate.com/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu/cancel",
        "get": "https://api.replicate.com/v1/predictions/gm3qorzdhgbfurvjtvhg6dckhu",
    },
}
# contract, "Rate limits"
THROTTLED = {"detail": "Request was throttled. Your rate limit resets in ~30s."}


def prediction(**changes: Any) -> dict[str, Any]:
    """The docs' prediction as a video model's: succeeded with a video URL unless changed."""
    body = copy.deepcopy(DOCS_PREDICTION)
    body.update(model="google/veo-3.1-fast", output=VIDEO)
    body.update(changes)
    return body


class FakeReplicate:
    """A MockTransport handler: canned answers per (method, path), every request recorded."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.secret = SECRET
        self.answers: dict[tuple[str, str], Callable[[httpx.Request], httpx.Response]] = {
            ("GET", "/v1/webhooks/default/secret"): lambda _: httpx.Response(200, json={"key": self.secret}),
        }

    def on(
        self, method: str, path: str, response: httpx.Response | Callable[[httpx.Request], httpx.Response]
    ) -> None:
        self.answers[(method, path)] = response if callable(response) else (lambda _: response)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        answer = self.answers.get((request.method, request.url.raw_path.decode().split("?")[0]))
        if answer is None:
            return httpx.Response(404, json={"detail": "Not found.", "status": 404})
        return answer(request)

    def calls(self, path: str) -> int:
        return sum(1 for request in self.requests if request.url.path == path)


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def fake() -> FakeReplicate:
    return FakeReplicate()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def adapter(fake: FakeReplicate, clock: Clock) -> ReplicatePredictions:
    client = httpx.Client(transport=httpx.MockTransport(fake))
    return ReplicatePredictions(client, base_url=BASE, api_token=lambda: TOKEN, timeout=5, clock=clock)


def entry(model_id: str) -> ModelEntry:
    return catalogue.default().require(model_id)


def replicate_entries() -> list[ModelEntry]:
    return [item for item in catalogue.default().live() if item.provider == "replicate"]


def request_for(model: ModelEntry, **changes: Any) -> GenerationRequest:
    values: dict[str, Any] = {
        "prompt": "a lighthouse at dusk",
        "model": model,
        "seconds": model.default_seconds,
        "size": model.default_size,
    }
    values.update(changes)
    return GenerationRequest(**values)


def signed(
    body: bytes | dict[str, Any],
    *,
    secret: str = SECRET,
    msg_id: str = "msg_2LJ0zUWnYd1Yp3OXrBDt1Tt6Xx9",
    at: float | None = None,
) -> tuple[dict[str, str], bytes]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    moment = datetime.fromtimestamp(int(at if at is not None else time.time()), tz=UTC)
    headers = {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(moment.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id=msg_id, timestamp=moment, data=raw.decode()),
    }
    return headers, raw


# -- submit ------------------------------------------------------------------------------------


EXPECTED_INPUT = {
    "replicate-veo-3.1-fast": {
        "prompt": "a lighthouse at dusk",
        "duration": 8,
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "generate_audio": True,
    },
    "replicate-kling-v2.5-turbo-pro": {
        "prompt": "a lighthouse at dusk",
        "duration": 5,
        "aspect_ratio": "16:9",
    },
    "replicate-hailuo-02": {"prompt": "a lighthouse at dusk", "duration": 6, "resolution": "768p"},
    "replicate-seedance-1.5-pro": {
        "prompt": "a lighthouse at dusk",
        "duration": 5,
        "aspect_ratio": "16:9",
        "generate_audio": False,
    },
}


def test_every_replicate_entry_has_an_expected_submit_body() -> None:
    assert {item.id for item in replicate_entries()} == set(EXPECTED_INPUT)


@pytest.mark.parametrize("model_id", sorted(EXPECTED_INPUT))
def test_submit_posts_the_model_route_with_its_input_names(
    adapter: ReplicatePredictions, fake: FakeReplicate, model_id: str
) -> None:
    # Given
    model = entry(model_id)
    owner, name = model.route.split("/")
    fake.on(
        "POST",
        f"/v1/models/{owner}/{name}/predictions",
        httpx.Response(201, json=prediction(status="starting", output=None)),
    )
    # When
    task_id = adapter.submit(request_for(model), callback_url=CALLBACK)
    # Then
    assert task_id == DOCS_PREDICTION["id"]
    [sent] = fake.requests
    assert sent.method == "POST"
    assert sent.headers["authorization"] == f"Bearer {TOKEN}"
    assert "prefer" not in sent.headers  # never held open (contract, "Create")
    assert json.loads(sent.content) == {
        "input": EXPECTED_INPUT[model_id],
        "webhook": CALLBACK,
        "webhook_events_filter": ["completed"],
    }


@pytest.mark.parametrize(
    ("model_id", "field"),
    [
        ("replicate-veo-3.1-fast", "image"),
        ("replicate-kling-v2.5-turbo-pro", "start_image"),
        ("replicate-hailuo-02", "first_frame_image"),
        ("replicate-seedance-1.5-pro", "image"),
    ],
)
def test_a_reference_image_goes_in_the_models_own_field(model_id: str, field: str) -> None:
    body = build_input(request_for(entry(model_id), image_url="https://img.example.com/first.png"))
    assert body[field] == "https://img.example.com/first.png"


def test_each_size_sends_its_spelling() -> None:
    veo = entry("replicate-veo-3.1-fast")
    portrait = build_input(request_for(veo, size="1080x1920", seconds=4))
    assert (portrait["aspect_ratio"], portrait["resolution"], portrait["duration"]) == ("9:16", "1080p", 4)
    hailuo = build_input(request_for(entry("replicate-hailuo-02"), size="1920x1080"))
    assert hailuo["resolution"] == "1080p" and "aspect_ratio" not in hailuo


@pytest.mark.parametrize(("style", "sent"), [("int", 8), ("string", "8"), ("seconds_suffix", "8s")])
def test_duration_formats(style: str, sent: int | str) -> None:
    model = entry("replicate-veo-3.1-fast")
    model = model.model_copy(update={"input": model.input.model_copy(update={"duration_format": style})})
    assert build_input(request_for(model, seconds=8))["duration"] == sent


def test_sizes_seconds_and_images_the_model_does_not_take_are_refused_before_any_call() -> None:
    model = entry("replicate-kling-v2.5-turbo-pro")
    with pytest.raises(InvalidRequest) as size:
        build_input(request_for(model, size="1280x720"))
    assert size.value.param == "size"
    with pytest.raises(InvalidRequest) as seconds:
        build_input(request_for(model, seconds=7))
    assert seconds.value.param == "seconds"
    text_only = model.model_copy(update={"image": False, "input": InputNames(image=None, resolution=None)})
    with pytest.raises(InvalidRequest) as image:
        build_input(request_for(text_only, image_url="https://img.example.com/a.png"))
    assert image.value.param == "image_urls"


def submit_answer(adapter: ReplicatePredictions, fake: FakeReplicate, response: httpx.Response) -> None:
    fake.on("POST", "/v1/models/google/veo-3.1-fast/predictions", response)
    adapter.submit(request_for(entry("replicate-veo-3.1-fast")), callback_url=CALLBACK)


def test_a_throttled_create_is_unavailable_with_its_retry_after(
    adapter: ReplicatePredictions, fake: FakeReplicate
) -> None:
    with pytest.raises(ProviderUnavailable) as caught:
        submit_answer(adapter, fake, httpx.Response(429, json=THROTTLED, headers={"Retry-After": "30"}))
    assert caught.value.retry_after == 30
    assert len(fake.requests) == 1  # the caller decides about a resend, not the adapter


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (
            422,
            {
                "title": "Input validation failed",
                "detail": "- input.duration: duration must be one of the following: 4, 6, 8\n",
                "status": 422,
            },
            ProviderRejected,
        ),
        (
            401,
            {
                "title": "Unauthenticated",
                "detail": "You did not pass a valid authentication token",
                "status": 401,
            },
            ProviderAuthFailed,
        ),
        (
            402,
            {
                "title": "Insufficient credit",
                "detail": "You have insufficient credit to run this model.",
                "status": 402,
            },
            ProviderAuthFailed,
        ),
        (
            404,
            {"title": "Not found", "detail": "The requested resource could not be found.", "status": 404},
            ProviderProtocolError,
        ),
        (500, {"title": "Internal server error", "detail": "boom", "status": 500}, ProviderUnavailable),
        (504, {"title": "Gateway timeout", "detail": "slow", "status": 504}, ProviderUnavailable),
    ],
)
def test_create_errors_map_from_problem_details(
    adapter: ReplicatePredictions,
    fake: FakeReplicate,
    status: int,
    body: dict[str, Any],
    error: type[Exception],
) -> None:
    with pytest.raises(error) as caught:
        submit_answer(adapter, fake, httpx.Response(status, json=body))
    assert len(fake.requests) == 1  # never resent here, whatever the answer
    if error is ProviderRejected:
        assert "duration must be one of" in str(caught.value)


def test_a_create_timeout_is_unavailable_and_not_resent(clock: Clock) -> None:
    attempts: list[httpx.Request] = []

    def slow(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise httpx.ReadTimeout("timed out", request=request)

    adapter = ReplicatePredictions(
        httpx.Client(transport=httpx.MockTransport(slow)),
        base_url=BASE,
        api_token=lambda: TOKEN,
        timeout=1,
        clock=clock,
    )
    with pytest.raises(ProviderUnavailable) as caught:
        adapter.submit(request_for(entry("replicate-veo-3.1-fast")), callback_url=CALLBACK)
    assert caught.value.code == "provider_timeout"
    assert len(attempts) == 1


def test_a_create_answer_without_an_id_is_a_protocol_error(
    adapter: ReplicatePredictions, fake: FakeReplicate
) -> None:
    with pytest.raises(ProviderProtocolError):
        submit_answer(adapter, fake, httpx.Response(201, json={"status": "starting"}))


def test_the_token_is_read_per_call_and_the_client_built_lazily(fake: FakeReplicate, clock: Clock) -> None:
    # Given
    tokens = iter(["first", "second"])
    built: list[httpx.Client] = []

    def client() -> httpx.Client:
        built.append(httpx.Client(transport=httpx.MockTransport(fake)))
        return built[-1]

    adapter = ReplicatePredictions(
        client, base_url=BASE + "/", api_token=lambda: next(tokens), timeout=5, clock=clock
    )
    assert built == []
    fake.on("POST", "/v1/models/google/veo-3.1-fast/predictions", httpx.Response(201, json=prediction()))
    # When
    for _ in range(2):
        adapter.submit(request_for(entry("replicate-veo-3.1-fast")), callback_url=CALLBACK)
    # Then
    assert [request.headers["authorization"] for request in fake.requests] == [
        "Bearer first",
        "Bearer second",
    ]
    assert str(fake.requests[0].url) == f"{BASE}/v1/models/google/veo-3.1-fast/predictions"


# -- read_push: signatures ------------------------------------------------------------------------


def test_the_docs_webhook_signed_with_the_account_secret_is_read(
    adapter: ReplicatePredictions, fake: FakeReplicate
) -> None:
    headers, body = signed(DOCS_WEBHOOK)
    push = adapter.read_push(headers, body)
    assert push.provider_task_id == "ufawqhfynnddngldkgtslldrkq"
    assert push.result is not None and push.result.state is ProviderState.RUNNING
    [secret_call] = fake.requests
    assert secret_call.url.path == "/v1/webhooks/default/secret"
    assert secret_call.headers["authorization"] == f"Bearer {TOKEN}"


def test_the_secret_is_fetched_once_and_cached(adapter: ReplicatePredictions, fake: FakeReplicate) -> None:
    for status in ("starting", "processing", "succeeded"):
        adapter.read_push(*signed(prediction(status=status)))
    assert fake.calls("/v1/webhooks/default/secret") == 1


def test_any_one_matching_signature_entry_is_enough(adapter: ReplicatePredictions) -> None:
    headers, body = signed(prediction())
    headers["webhook-signature"] = "v1,bm90IGEgc2lnbmF0dXJl " + headers["webhook-signature"]
    assert adapter.read_push(headers, body).result.state is ProviderState.SUCCEEDED  # type: ignore[union-attr]


def refused(adapter: ReplicatePredictions, headers: dict[str, str], body: bytes) -> Unauthorized:
    with pytest.raises(Unauthorized) as caught:
        adapter.read_push(headers, body)
    assert caught.value.code == "invalid_signature"
    return caught.value


def test_a_push_signed_with_another_secret_is_refused(adapter: ReplicatePredictions) -> None:
    refused(adapter, *signed(prediction(), secret=OTHER_SECRET))


def test_a_push_older_than_the_tolerance_is_refused(adapter: ReplicatePredictions) -> None:
    refused(adapter, *signed(prediction(), at=time.time() - 600))
    assert adapter.read_push(*signed(prediction(), at=time.time() - 240)).provider_task_id  # inside 300 s


def test_a_push_from_the_future_is_refused(adapter: ReplicatePredictions) -> None:
    refused(adapter, *signed(prediction(), at=time.time() + 600))


def test_a_changed_body_is_refused(adapter: ReplicatePredictions) -> None:
    headers, body = signed(prediction(status="failed", output=None, error="NSFW"))
    refused(adapter, headers, body.replace(b'"failed"', b'"succeeded"'))


def test_a_changed_webhook_id_is_refused(adapter: ReplicatePredictions) -> None:
    headers, body = signed(prediction())
    refused(adapter, {**headers, "webhook-id": "msg_other"}, body)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_a_push_without_a_signature_header_is_refused_without_a_lookup(
    adapter: ReplicatePredictions, fake: FakeReplicate, missing: str
) -> None:
    headers, body = signed(prediction())
    del headers[missing]
    refused(adapter, headers, body)
    assert fake.requests == []


@pytest.mark.parametrize("signature", ["garbage", "v1,", "v1,%%%not-base64%%%", "v1,a,b", "v2,abc"])
def test_malformed_signatures_are_refused_not_crashed_on(
    adapter: ReplicatePredictions, signature: str
) -> None:
    headers, body = signed(prediction())
    refused(adapter, {**headers, "webhook-signature": signature}, body)


def test_a_body_that_is_not_utf8_is_refused(adapter: ReplicatePredictions) -> None:
    headers, _ = signed(prediction())
    refused(adapter, headers, b"\xff\xfe\x00")


def test_header_names_are_read_case_insensitively(adapter: ReplicatePredictions) -> None:
    headers, body = signed(prediction())
    assert adapter.read_push({name.title(): value for name, value in headers.items()}, body).provider_task_id


def test_a_signed_body_that_is_not_a_prediction_is_invalid(adapter: ReplicatePredictions) -> None:
    with pytest.raises(InvalidRequest) as caught:
        adapter.read_push(*signed({"hello": "world"}))
    assert caught.value.code == "invalid_callback"


def test_a_rotated_secret_is_followed_once_and_forgeries_do_not_hammer_the_api(
    adapter: ReplicatePredictions, fake: FakeReplicate, clock: Clock
) -> None:
    # Given a container that cached the old secret
    adapter.read_push(*signed(prediction()))
    # When the account rotates it and Replicate signs with the new one
    fake.secret = OTHER_SECRET
    push = adapter.read_push(*signed(prediction(), secret=OTHER_SECRET))
    # Then one refetch follows the rotation
    assert push.result is not None and push.result.state is ProviderState.SUCCEEDED
    assert fake.calls("/v1/webhooks/default/secret") == 2
    # And forged pushes within the next minutes refetch nothing
    forged_secret = "whsec_" + base64.b64encode(b"forger" * 6).decode()
    for _ in range(3):
        refused(adapter, *signed(prediction(), secret=forged_secret))
    assert fake.calls("/v1/webhooks/default/secret") == 2
    # And once the interval has passed one more forgery may look again, once
    clock.now += replicate.SECRET_REFETCH_INTERVAL_S
    refused(adapter, *signed(prediction(), secret=forged_secret))
    refused(adapter, *signed(prediction(), secret=forged_secret))
    assert fake.calls("/v1/webhooks/default/secret") == 3
    # And the current secret still verifies from the cache
    assert adapter.read_push(*signed(prediction(), secret=OTHER_SECRET)).provider_task_id
    assert fake.calls("/v1/webhooks/default/secret") == 3


def test_a_failed_refetch_keeps_the_cached_secret(
    adapter: ReplicatePredictions, fake: FakeReplicate, clock: Clock
) -> None:
    adapter.read_push(*signed(prediction()))
    fake.on("GET", "/v1/webhooks/default/secret", httpx.Response(503, json={"detail": "down", "status": 503}))
    clock.now += replicate.SECRET_REFETCH_INTERVAL_S
    refused(adapter, *signed(prediction(), secret=OTHER_SECRET))
    assert adapter.read_push(*signed(prediction())).provider_task_id


def test_a_secret_that_cannot_be_read_at_all_is_the_providers_failure(
    adapter: ReplicatePredictions, fake: FakeReplicate
) -> None:
    fake.on("GET", "/v1/webhooks/default/secret", httpx.Response(503, json={"detail": "down", "status": 503}))
    with pytest.raises(ProviderUnavailable):
        adapter.read_push(*signed(prediction()))


def test_a_secret_answer_without_a_key_is_a_protocol_error(
    adapter: ReplicatePredictions, fake: FakeReplicate
) -> None:
    fake.on("GET", "/v1/webhooks/default/secret", httpx.Response(200, json={"key": ""}))
    with pytest.raises(ProviderProtocolError):
        adapter.read_push(*signed(prediction()))


# -- the Prediction mapping -----------------------------------------------------------------------


def test_succeeded_carries_the_video_url() -> None:
    result = result_of(replicate.ReplicatePrediction.model_validate(prediction()))
    assert (result.state, result.video_url, result.error_code) == (ProviderState.SUCCEEDED, VIDEO, None)


def test_the_docs_hello_world_prediction_has_no_video() -> None:
    result = result_of(replicate.ReplicatePrediction.model_validate(DOCS_PREDICTION))
    assert (result.state, result.error_code) == (ProviderState.FAILED, "no_video")


@pytest.mark.parametrize(
    ("changes", "code", "message"),
    [
        (
            {"status": "failed", "output": None, "error": "E005: the input was flagged as sensitive"},
            "generation_failed",
            "E005: the input was flagged as sensitive",
        ),
        (
            {"status": "failed", "output": None, "error": None},
            "generation_failed",
            "The provider reported a failure",
        ),
        ({"status": "canceled", "output": None}, "cancelled", "The prediction was canceled at the provider"),
        (
            {"status": "succeeded", "output": None, "data_removed": True},
            "output_expired",
            "The provider deleted the video before it was copied",
        ),
    ],
)
def test_terminal_failures_carry_a_code_and_message(changes: dict[str, Any], code: str, message: str) -> None:
    result = result_of(replicate.ReplicatePrediction.model_validate(prediction(**changes)))
    assert (result.state, result.error_code, result.error_message) == (ProviderState.FAILED, code, message)


@pytest.mark.parametrize("status", ["starting", "processing", "queued-someday", ""])
def test_non_terminal_statuses_never_finish_even_with_a_video_in_output(status: str) -> None:
    result = result_of(replicate.ReplicatePrediction.model_validate(prediction(status=status)))
    assert result.state is ProviderState.RUNNING
    assert result.video_url is None and not result.state.is_terminal


def test_progress_is_read_from_the_last_tqdm_line() -> None:
    logs = "Starting\n 10%|█         | 5/50 [00:01<00:09]\n 42%|████▏     | 21/50 [00:04<00:06]\nsaving\n"
    result = result_of(
        replicate.ReplicatePrediction.model_validate(prediction(status="processing", logs=logs))
    )
    assert result.progress == 42
    assert (
        result_of(
            replicate.ReplicatePrediction.model_validate(prediction(status="processing", logs=None))
        ).progress
        is None
    )


@pytest.mark.parametrize(
    ("output", "url"),
    [
        (VIDEO, VIDEO),
        ([VIDEO], VIDEO),
        (["not a url", VIDEO, "https://replicate.delivery/second.mp4"], VIDEO),
        ({"video": VIDEO, "thumbnail": "https://replicate.delivery/t.png"}, VIDEO),
        ({"thumbnail": "https://replicate.delivery/t.png", "url": VIDEO}, VIDEO),
        ({"result": {"videos": [VIDEO]}}, VIDEO),
        ("hello Alice", None),
        (None, None),
        (42, None),
        ([], None),
    ],
)
def test_output_shapes(output: Any, url: str | None) -> None:
    assert video_url(output) == url


# -- query ------------------------------------------------------------------------------------------


def test_query_looks_each_prediction_up_and_leaves_unknown_ones_out(
    adapter: ReplicatePredictions, fake: FakeReplicate
) -> None:
    # Given
    fake.on("GET", "/v1/predictions/done", httpx.Response(200, json=prediction(id="done")))
    fake.on(
        "GET",
        "/v1/predictions/busy",
        httpx.Response(200, json=prediction(id="busy", status="processing", output=None)),
    )
    # When
    results = adapter.query(entry("replicate-veo-3.1-fast"), ["done", "gone", "busy"])
    # Then
    assert [(item.provider_task_id, item.state) for item in results] == [
        ("done", ProviderState.SUCCEEDED),
        ("busy", ProviderState.RUNNING),
    ]
    assert all(request.headers["authorization"] == f"Bearer {TOKEN}" for request in fake.requests)
    assert all(request.method == "GET" for request in fake.requests)


def test_query_quotes_ids_into_the_path(adapter: ReplicatePredictions, fake: FakeReplicate) -> None:
    assert adapter.query(entry("replicate-veo-3.1-fast"), ["../webhooks/default/secret"]) == []
    assert fake.requests[0].url.raw_path == b"/v1/predictions/..%2Fwebhooks%2Fdefault%2Fsecret"


def test_a_throttled_lookup_is_unavailable(adapter: ReplicatePredictions, fake: FakeReplicate) -> None:
    fake.on("GET", "/v1/predictions/x", httpx.Response(429, json=THROTTLED, headers={"Retry-After": "2"}))
    with pytest.raises(ProviderUnavailable) as caught:
        adapter.query(entry("replicate-veo-3.1-fast"), ["x"])
    assert caught.value.retry_after == 2


def test_a_malformed_lookup_answer_is_a_protocol_error(
    adapter: ReplicatePredictions, fake: FakeReplicate
) -> None:
    fake.on("GET", "/v1/predictions/x", httpx.Response(200, json={"id": "x"}))
    with pytest.raises(ProviderProtocolError):
        adapter.query(entry("replicate-veo-3.1-fast"), ["x"])
