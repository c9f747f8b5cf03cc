"""The AceDataCloud video adapter: what it sends per service, how each answer and result body maps
(shared/providers/acedata-video.md), and the same against the simulator over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devstack.simulator import ProviderSimulator, SimulatorConfig
from sora_relay.adapters.providers.acedata import MAX_BATCH, AceDataVideo, create_body, read_result
from sora_relay.domain import catalogue
from sora_relay.domain.catalogue import ModelEntry
from sora_relay.domain.errors import (
    ConfigurationError,
    InvalidRequest,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderRejected,
    ProviderUnavailable,
)
from sora_relay.domain.provider import GenerationRequest, ProviderResult, ProviderState, Push
from tests.unit.test_simulator import CallbackReceiver

CALLBACK = "https://relay.example/callbacks/acedata/t-1?token=secret"
IMAGE = "https://img.example/first.png"
TOKEN = "ace-test-token"
ACE = {"callback_url": CALLBACK, "async": True}  # on every create body


def entry(model_id: str) -> ModelEntry:
    return catalogue.default().require(model_id)


def ask(
    model: ModelEntry | str, *, image: str | None = None, seconds: int | None = None, size: str | None = None
):
    model = entry(model) if isinstance(model, str) else model
    return GenerationRequest(
        prompt="a fox in the snow",
        model=model,
        seconds=seconds or model.default_seconds,
        size=size or model.default_size,
        image_url=image,
    )


def adapter(handler: Callable[[httpx.Request], httpx.Response]) -> AceDataVideo:
    return AceDataVideo(
        httpx.Client(transport=httpx.MockTransport(handler)),
        base_url="https://api.acedata.cloud/",
        api_key=lambda: "tok",
        timeout=3,
    )


def off_catalogue(route: str, provider_model: str, **fields: Any) -> ModelEntry:
    """An entry for a service the catalogue does not list yet (its builder is still tested)."""
    data: dict[str, Any] = {
        "id": f"test-{route}",
        "name": route,
        "provider": "acedata",
        "route": route,
        "provider_model": provider_model,
        "seconds": [5],
        "default_seconds": 5,
        "sizes": {"1280x720": {"aspect_ratio": "16:9"}},
        "default_size": "1280x720",
        "image": True,
        "audio": False,
        "price_per_second_usd": 0,
        "price_read": "2026-12-01",
        "price_source": "test",
        **fields,
    }
    return ModelEntry.model_validate(data)


# -- create bodies, one per service: the request tables of acedata-video.md -----------------------

CREATE_BODIES = [
    (
        "veo-3.1-fast",
        None,
        {
            "action": "text2video",
            "model": "veo31-fast",
            "prompt": "a fox in the snow",
            "aspect_ratio": "16:9",
        },
    ),
    (
        "veo-3.1",
        IMAGE,
        {
            "action": "image2video",
            "model": "veo31",
            "prompt": "a fox in the snow",
            "image_urls": [IMAGE],
            "aspect_ratio": "16:9",
        },
    ),
    (
        "kling-2.5-turbo-pro",
        None,
        {
            "action": "text2video",
            "model": "kling-v2-5-turbo",
            "prompt": "a fox in the snow",
            "duration": 5,
            "aspect_ratio": "16:9",
            "mode": "pro",
        },
    ),
    (
        "kling-2.5-turbo-pro",
        IMAGE,
        {
            "action": "image2video",
            "model": "kling-v2-5-turbo",
            "prompt": "a fox in the snow",
            "start_image_url": IMAGE,
            "duration": 5,
            "aspect_ratio": "16:9",
            "mode": "pro",
        },
    ),
    (
        "seedance-1.5-pro",
        None,
        {
            "model": "doubao-seedance-1-5-pro-251215",
            "content": [{"type": "text", "text": "a fox in the snow"}],
            "duration": 5,
            "ratio": "16:9",
            "resolution": "720p",
            "generate_audio": True,
        },
    ),
    (
        "seedance-1.5-pro",
        IMAGE,
        {
            "model": "doubao-seedance-1-5-pro-251215",
            "content": [
                {"type": "text", "text": "a fox in the snow"},
                {"type": "image_url", "image_url": {"url": IMAGE}, "role": "first_frame"},
            ],
            "duration": 5,
            "ratio": "16:9",
            "resolution": "720p",
            "generate_audio": True,
        },
    ),
    (
        "wan-2.6",
        None,
        {
            "action": "text2video",
            "model": "wan2.6-t2v",
            "prompt": "a fox in the snow",
            "duration": 5,
            "size": "1280*720",
            "audio": True,
        },
    ),
    (
        "wan-2.6",
        IMAGE,
        {
            # The image-to-video twin, and the resolution tier instead of a size.
            "action": "image2video",
            "model": "wan2.6-i2v",
            "prompt": "a fox in the snow",
            "image_url": IMAGE,
            "duration": 5,
            "resolution": "720P",
            "audio": True,
        },
    ),
]


@pytest.mark.parametrize(("model_id", "image", "fields"), CREATE_BODIES)
def test_each_catalogue_entry_builds_its_service_body(model_id: str, image: str | None, fields: dict) -> None:
    assert create_body(ask(model_id, image=image), callback_url=CALLBACK) == {**fields, **ACE}


def test_every_live_acedata_entry_has_a_body_case() -> None:
    live = {model.id for model in catalogue.default().live() if model.provider == "acedata"}
    assert live == {model_id for model_id, _, _ in CREATE_BODIES}


def test_the_size_spelling_comes_from_the_entry() -> None:
    body = create_body(ask("veo-3.1-fast", size="1080x1920"), callback_url=CALLBACK)
    assert (body["aspect_ratio"], body["resolution"]) == ("9:16", "1080p")
    body = create_body(ask("wan-2.6", size="960x960", seconds=15), callback_url=CALLBACK)
    assert (body["size"], body["duration"]) == ("960*960", 15)


@pytest.mark.parametrize(
    ("route", "provider_model", "sizes", "image", "fields"),
    [
        (
            "luma",
            "ray",
            {"1280x720": {"aspect_ratio": "16:9"}},
            IMAGE,
            # Luma takes no model and no duration.
            {
                "action": "generate",
                "prompt": "a fox in the snow",
                "start_image_url": IMAGE,
                "aspect_ratio": "16:9",
            },
        ),
        (
            "hailuo",
            "minimax-t2v",
            {"1280x720": {}},
            IMAGE,
            {
                "action": "generate",
                "model": "minimax-i2v",
                "prompt": "a fox in the snow",
                "first_image_url": IMAGE,
            },
        ),
        (
            "minimax",
            "MiniMax-H3",
            {"1366x768": {"aspect_ratio": "16:9", "resolution": "768P"}},
            None,
            {
                "model": "MiniMax-H3",
                "content": [{"type": "text", "text": "a fox in the snow"}],
                "duration": 5,
                "resolution": "768P",
                "ratio": "16:9",
            },
        ),
        (
            "happyhorse",
            "happyhorse-1.1-t2v",
            {"1920x1080": {"aspect_ratio": "16:9", "resolution": "1080P"}},
            IMAGE,
            {
                "action": "image_to_video",
                "model": "happyhorse-1.1-i2v",
                "prompt": "a fox in the snow",
                "image_url": IMAGE,
                "duration": 5,
                "ratio": "16:9",
                "resolution": "1080P",
            },
        ),
    ],
)
def test_services_without_a_catalogue_entry_have_builders(
    route: str, provider_model: str, sizes: dict, image: str | None, fields: dict
) -> None:
    model = off_catalogue(route, provider_model, sizes=sizes, default_size=next(iter(sizes)))
    assert create_body(ask(model, image=image), callback_url=CALLBACK) == {**fields, **ACE}


def test_an_unknown_service_is_our_configuration_error() -> None:
    model = off_catalogue("pika", "pika-2")
    with pytest.raises(ConfigurationError):
        create_body(ask(model), callback_url=CALLBACK)


def test_minimax_without_a_resolution_is_our_configuration_error() -> None:
    model = off_catalogue("minimax", "MiniMax-H3")  # its size names no resolution
    with pytest.raises(ConfigurationError):
        create_body(ask(model), callback_url=CALLBACK)


def test_a_size_the_entry_does_not_offer_names_size() -> None:
    with pytest.raises(InvalidRequest) as caught:
        create_body(ask("veo-3.1-fast", size="640x480"), callback_url=CALLBACK)
    assert caught.value.param == "size"


# -- submit: the call and the error table ----------------------------------------------------------


def test_submit_posts_the_body_to_the_services_route_with_bearer_auth() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"task_id": "t-1"})

    assert adapter(handler).submit(ask("kling-2.5-turbo-pro"), callback_url=CALLBACK) == "t-1"
    (request,) = seen
    assert (request.method, str(request.url)) == ("POST", "https://api.acedata.cloud/kling/videos")
    assert request.headers["authorization"] == "Bearer tok"
    assert json.loads(request.content) == create_body(ask("kling-2.5-turbo-pro"), callback_url=CALLBACK)
    assert request.extensions["timeout"]["read"] == 3


def error_answer(status: int, code: str, headers: dict[str, str] | None = None) -> httpx.Response:
    body = {"success": False, "error": {"code": code, "message": "m"}, "trace_id": "x"}
    return httpx.Response(status, headers=headers or {}, json=body)


@pytest.mark.parametrize(
    ("status", "code", "error"),
    [
        # acedata-video.md's table
        (400, "token_mismatched", ProviderAuthFailed),
        (400, "api_not_implemented", ProviderRejected),
        (401, "invalid_token", ProviderAuthFailed),
        (429, "too_many_requests", ProviderUnavailable),
        (500, "api_error", ProviderUnavailable),
        # the rest of the platform table (acedata-sora.md)
        (400, "bad_request", ProviderRejected),
        (400, "no_token", ProviderAuthFailed),
        (400, "disabled", ProviderAuthFailed),
        (401, "token_expired", ProviderAuthFailed),
        (403, "used_up", ProviderAuthFailed),
        (404, "no_api", ProviderProtocolError),
        (504, "timeout", ProviderUnavailable),
    ],
)
def test_error_answers_map_to_domain_errors(status: int, code: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        adapter(lambda request: error_answer(status, code)).submit(ask("veo-3.1-fast"), callback_url=CALLBACK)


def test_a_moderation_refusal_is_content_refused() -> None:
    with pytest.raises(ProviderRejected) as caught:
        adapter(lambda request: error_answer(403, "forbidden")).submit(ask("wan-2.6"), callback_url=CALLBACK)
    assert caught.value.code == "content_refused"


def test_a_429_carries_retry_after_when_one_is_sent() -> None:
    # AceData documents none; when one comes anyway it is honoured.
    with pytest.raises(ProviderUnavailable) as caught:
        adapter(lambda request: error_answer(429, "too_many_requests", {"retry-after": "7"})).submit(
            ask("veo-3.1-fast"), callback_url=CALLBACK
        )
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize("exc", [httpx.ConnectError, httpx.ReadTimeout, httpx.RemoteProtocolError])
def test_transport_failures_are_unavailable(exc: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc("x", request=request)

    with pytest.raises(ProviderUnavailable):
        adapter(handler).submit(ask("veo-3.1-fast"), callback_url=CALLBACK)


@pytest.mark.parametrize("answer", [b"<html>", b"[1]", b'{"success": true}', b'{"task_id": 5}', b"{}"])
def test_answers_off_contract_are_protocol_errors(answer: bytes) -> None:
    with pytest.raises(ProviderProtocolError):
        adapter(lambda request: httpx.Response(200, content=answer)).submit(
            ask("veo-3.1-fast"), callback_url=CALLBACK
        )


# -- read_push: an unsigned cue ----------------------------------------------------------------


def test_a_push_names_its_task_and_says_nothing_else() -> None:
    body = {
        "success": True,
        "task_id": "t-9",
        "video_url": "https://forged.example/v.mp4",
        "state": "succeed",
    }
    push = adapter(lambda r: httpx.Response(500)).read_push({}, json.dumps(body).encode())
    assert push == Push("t-9", None)


@pytest.mark.parametrize(
    "body", [b"", b"nope", b"\xff\xfe", b"[]", b'"t"', b"{}", b'{"task_id": 5}', b'{"task_id": "  "}']
)
def test_malformed_pushes_are_invalid_requests(body: bytes) -> None:
    with pytest.raises(InvalidRequest):
        adapter(lambda r: httpx.Response(500)).read_push({}, body)


def test_the_http_client_is_built_only_for_a_request_to_the_provider() -> None:
    # A push only names a task: its function must not build the provider's client (a TLS
    # context and a connection pool: tens of ms of its cold start, bench/cold_start.py).
    built = []

    def client() -> httpx.Client:
        built.append(1)
        return httpx.Client(
            transport=httpx.MockTransport(lambda r: httpx.Response(200, json={"task_id": "t"}))
        )

    provider = AceDataVideo(client, base_url="https://api.acedata.cloud", api_key=lambda: "tok", timeout=3)
    provider.read_push({}, b'{"task_id": "t"}')
    assert built == []
    assert provider.submit(ask("veo-3.1-fast"), callback_url=CALLBACK) == "t"
    assert built == [1]


# -- read_result: the result table of acedata-video.md -----------------------------------------

VIDEO = "https://platform.cdn.acedata.cloud/video/t.mp4"
SUCCESS_BODIES = {
    "veo": {
        "success": True,
        "task_id": "t",
        "trace_id": "r",
        "data": [
            {
                "id": "253eedc47f1c4eb2a370ed2312168f4b",
                "video_url": VIDEO,
                "created_at": "2025-07-25 16:07:43",
                "complete_at": "2025-07-25 16:10:28",
                "state": "succeeded",
            }
        ],
    },
    "kling": {
        "success": True,
        "task_id": "t",
        "video_id": "v",
        "video_url": VIDEO,
        "duration": "5.1",
        "state": "succeed",
    },
    "luma": {
        "success": True,
        "task_id": "t",
        "video_id": "v",
        "prompt": "p",
        # the thumbnail comes first on purpose: it is not the video
        "thumbnail_url": "https://platform.cdn.acedata.cloud/luma/t.jpg",
        "video_url": VIDEO,
        "video_width": 1552,
        "video_height": 656,
        "thumbnail_width": 1552,
        "thumbnail_height": 656,
        "state": "completed",
    },
    "hailuo": {
        "success": True,
        "task_id": "t",
        "data": [
            {
                "id": "v",
                "model": "minimax-i2v",
                "prompt": "p",
                "first_image_url": IMAGE,
                "status": "success",
                "video_url": VIDEO,
            }
        ],
    },
    "seedance": {
        "success": True,
        "task_id": "t",
        "trace_id": "r",
        "data": [
            {
                "id": "cgt-20251222005129-62fhb",
                "status": "succeeded",
                "content": {"video_url": VIDEO},
                "model": "doubao-seedance-1-5-pro-251215",
                "ratio": "16:9",
                "resolution": "720p",
                "duration": 5,
                "usage": {"completion_tokens": 108900, "total_tokens": 108900},
            }
        ],
    },
    # Seedance's guide shows `data` as one object with video_url at its top: read that too.
    "seedance-guide": {
        "success": True,
        "task_id": "t",
        "trace_id": "r",
        "data": {"task_id": "cgt-1", "status": "succeeded", "video_url": VIDEO, "model": "m"},
    },
    "wan": {
        "success": True,
        "video_url": VIDEO + "?Expires=1769349278&OSSAccessKeyId=x&Signature=y",
        "state": "completed",
        "task_id": "t",
    },
    "happyhorse": {"success": True, "task_id": "t", "data": [{"video_url": VIDEO}]},
}


@pytest.mark.parametrize("service", SUCCESS_BODIES)
def test_each_services_success_body_yields_its_video(service: str) -> None:
    result = read_result("t", SUCCESS_BODIES[service])
    assert result.state is ProviderState.SUCCEEDED
    assert result.video_url is not None and result.video_url.startswith(VIDEO)


def test_the_platform_failure_body_fails_with_its_code() -> None:
    body = {"success": False, "task_id": "t", "error": {"code": "api_error", "message": "fetch failed"}}
    assert read_result("t", body) == ProviderResult(
        "t", ProviderState.FAILED, error_code="api_error", error_message="fetch failed"
    )


@pytest.mark.parametrize(
    ("body", "state", "code"),
    [
        # a failure word outranks everything, Kling's wrapper message included (README rule 4)
        (
            {"success": True, "state": "failed", "message": "SUCCEED"},
            ProviderState.FAILED,
            "generation_failed",
        ),
        ({"data": [{"status": "cancelled"}]}, ProviderState.FAILED, "cancelled"),
        ({"state": "rejected", "failure_reason": "nsfw"}, ProviderState.FAILED, "generation_failed"),
        # a success word without a video is no success
        ({"success": True, "data": [{"state": "succeeded"}]}, ProviderState.FAILED, "no_video"),
        # a status word that is not terminal keeps it running, whatever `success` says
        ({"success": False, "state": "processing", "video_url": VIDEO}, ProviderState.RUNNING, None),
        ({"success": True, "data": [{"status": "queued"}]}, ProviderState.RUNNING, None),
        # no word: success false with a structured error, or after the end, fails
        ({"success": False, "error": {"code": "x", "message": "m"}}, ProviderState.FAILED, "x"),
        ({"success": False, "finished_at": 1.0}, ProviderState.FAILED, "generation_failed"),
        # ... but a bare success false is a hiccup (the SDK's reading): still running
        ({"success": False, "error": "temporary"}, ProviderState.RUNNING, None),
        # no word, a video URL: done
        ({"success": True, "video_url": VIDEO}, ProviderState.SUCCEEDED, None),
        # the create answer, or nothing at all: still running
        ({"task_id": "t"}, ProviderState.RUNNING, None),
        ({"success": True, "task_id": "t"}, ProviderState.RUNNING, None),
        (None, ProviderState.RUNNING, None),
        ("text", ProviderState.RUNNING, None),
        # success true at the end without a video
        ({"success": True, "finished_at": 2.0}, ProviderState.FAILED, "no_video"),
    ],
)
def test_result_bodies_normalise_like_the_sdk(body: Any, state: ProviderState, code: str | None) -> None:
    result = read_result("t", body)
    assert (result.state, result.error_code) == (state, code)


def test_a_failure_reads_its_reason_from_the_body() -> None:
    assert read_result("t", {"state": "failed", "failure_reason": "nsfw"}).error_message == "nsfw"


def test_a_record_finished_without_a_video_fails() -> None:
    assert read_result("t", {"success": True}, finished=True).error_code == "no_video"


def test_progress_is_reported_while_running() -> None:
    assert read_result("t", {"state": "processing", "progress": 40}).progress == 40
    assert read_result("t", {"data": [{"status": "running", "progress": 0.25}]}).progress == 25


# -- query ---------------------------------------------------------------------------------------


def test_query_asks_the_models_route_in_batches_of_50_and_keeps_only_our_ids() -> None:
    batches: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        assert str(request.url) == "https://api.acedata.cloud/seedance/tasks"
        body = json.loads(request.content)
        assert body["action"] == "retrieve_batch"
        batches.append(body["ids"])
        items = [
            {
                "id": task_id,
                "created_at": 1.0,
                "type": "videos",
                "request": {},
                "response": SUCCESS_BODIES["seedance"],
            }
            for task_id in body["ids"]
            if task_id != "7"  # unknown upstream: left out
        ]
        items.append({"id": "someone-else", "response": SUCCESS_BODIES["seedance"]})
        return httpx.Response(200, json={"items": items, "count": len(items)})

    results = adapter(handler).query(entry("seedance-1.5-pro"), [str(n) for n in range(120)])
    assert [len(batch) for batch in batches] == [MAX_BATCH, MAX_BATCH, 20]
    assert [result.provider_task_id for result in results] == [str(n) for n in range(120) if n != 7]
    assert {result.state for result in results} == {ProviderState.SUCCEEDED}


def test_query_reads_each_records_state() -> None:
    items = [
        {"id": "a"},
        {"id": "b", "response": {"task_id": "b"}},
        {"id": "c", "response": SUCCESS_BODIES["wan"]},
        {"id": "d", "response": {"success": False, "error": {"code": "api_error", "message": "m"}}},
        {"id": "e", "response": {"success": True}, "finished_at": 3.0},
    ]
    provider = adapter(lambda request: httpx.Response(200, json={"items": items, "count": 5}))
    results = provider.query(entry("wan-2.6"), ["a", "b", "c", "d", "e"])
    assert [(r.state, r.error_code) for r in results] == [
        (ProviderState.RUNNING, None),
        (ProviderState.RUNNING, None),
        (ProviderState.SUCCEEDED, None),
        (ProviderState.FAILED, "api_error"),
        (ProviderState.FAILED, "no_video"),
    ]


def test_query_of_no_ids_calls_nobody() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise AssertionError("no call expected")

    assert adapter(handler).query(entry("veo-3.1"), []) == []


@pytest.mark.parametrize(
    "answer", [{"items": "x"}, {"items": [{"response": {}}]}, {"items": [5]}, {"items": None}]
)
def test_malformed_task_records_are_protocol_errors(answer: dict) -> None:
    with pytest.raises(ProviderProtocolError):
        adapter(lambda request: httpx.Response(200, json=answer)).query(entry("veo-3.1"), ["a"])


def test_a_lookup_error_maps_like_a_create_error() -> None:
    with pytest.raises(ProviderUnavailable):
        adapter(lambda request: error_answer(500, "api_error")).query(entry("veo-3.1"), ["a"])


# -- against the simulator over real HTTP -----------------------------------------------------------


@pytest.fixture
def slow_sim() -> Iterator[ProviderSimulator]:
    """Jobs never finish during the test (and so never render a video)."""
    with ProviderSimulator(SimulatorConfig(api_token=TOKEN, callback_delay_s=30.0)) as sim:
        yield sim


def sim_adapter(sim: ProviderSimulator) -> AceDataVideo:
    return AceDataVideo(httpx.Client(timeout=10), base_url=sim.url, api_key=lambda: TOKEN, timeout=10)


def catalogue_requests() -> list[GenerationRequest]:
    return [
        ask(model, image=image, seconds=seconds, size=size)
        for model in catalogue.default().live()
        if model.provider == "acedata"
        for size in model.sizes
        for seconds in model.seconds
        for image in (None, IMAGE)
    ]


def test_the_simulator_accepts_every_body_the_catalogue_can_produce(slow_sim: ProviderSimulator) -> None:
    # Given every live AceData entry in every size, length and with or without an image
    provider = sim_adapter(slow_sim)
    requests = catalogue_requests()

    # When each is submitted
    task_ids = [provider.submit(request, callback_url="http://127.0.0.1:9/cb") for request in requests]

    # Then the simulator took each one (its checks follow the contract's request table)
    assert len(set(task_ids)) == len(requests)
    jobs = {job.id: job for job in slow_sim.jobs()}
    for request, task_id in zip(requests, task_ids, strict=True):
        job = jobs[task_id]
        assert job.meta["service"] == request.model.route
        assert job.seconds == (8 if request.model.route == "veo" else request.seconds)
        if request.model.route != "wan" or request.image_url is None:  # wan i2v: the image's aspect
            assert f"{job.width}x{job.height}" == request.size


def test_a_lookup_on_another_services_route_does_not_find_the_task(slow_sim: ProviderSimulator) -> None:
    provider = sim_adapter(slow_sim)
    task_id = provider.submit(ask("veo-3.1-fast"), callback_url="http://127.0.0.1:9/cb")
    assert [r.state for r in provider.query(entry("veo-3.1-fast"), [task_id])] == [ProviderState.RUNNING]
    assert provider.query(entry("kling-2.5-turbo-pro"), [task_id]) == []


@pytest.mark.parametrize("model_id", ["veo-3.1-fast", "kling-2.5-turbo-pro", "seedance-1.5-pro", "wan-2.6"])
def test_a_push_then_a_lookup_yields_the_video(model_id: str) -> None:
    # Given a simulated service that finishes quickly and pushes to our receiver
    receiver = CallbackReceiver()
    try:
        with ProviderSimulator(SimulatorConfig(api_token=TOKEN, callback_delay_s=0.05)) as sim:
            provider = sim_adapter(sim)
            model = entry(model_id)

            # When a task is submitted, its push read and the task looked up
            task_id = provider.submit(ask(model, size=min(model.sizes)), callback_url=receiver.url)
            (delivery,) = receiver.wait_for(1, timeout=15)
            push = provider.read_push({}, json.dumps(delivery.body).encode())
            (result,) = provider.query(model, [push.provider_task_id])

            # Then the lookup, not the push, reports the finished video
            assert push == Push(task_id, None)
            assert result.state is ProviderState.SUCCEEDED
            assert result.video_url == sim.video_url(sim.job(task_id))  # type: ignore[arg-type]
            assert httpx.get(result.video_url).status_code == 200
    finally:
        receiver.close()


def test_a_simulated_failure_is_read_as_failed() -> None:
    receiver = CallbackReceiver()
    try:
        with ProviderSimulator(SimulatorConfig(api_token=TOKEN, callback_delay_s=0.05)) as sim:
            provider = sim_adapter(sim)
            request = GenerationRequest("[sim:fail] doomed", entry("wan-2.6"), 5, "1280x720")
            task_id = provider.submit(request, callback_url=receiver.url)
            receiver.wait_for(1, timeout=10)
            (result,) = provider.query(entry("wan-2.6"), [task_id])
        assert (result.state, result.error_code) == (ProviderState.FAILED, "api_error")
    finally:
        receiver.close()


@pytest.mark.parametrize(("mode", "error"), [("429", ProviderUnavailable), ("500", ProviderUnavailable)])
def test_simulated_create_faults_map_like_the_real_ones(
    slow_sim: ProviderSimulator, mode: str, error: type
) -> None:
    request = GenerationRequest(f"[sim:{mode}] busy", entry("veo-3.1"), 8, "1280x720")
    with pytest.raises(error) as caught:
        sim_adapter(slow_sim).submit(request, callback_url="http://127.0.0.1:9/cb")
    if mode == "429":
        assert caught.value.retry_after == 1.0


def test_a_wrong_key_is_auth_failed_at_the_simulator(slow_sim: ProviderSimulator) -> None:
    provider = AceDataVideo(httpx.Client(), base_url=slow_sim.url, api_key=lambda: "wrong", timeout=10)
    with pytest.raises(ProviderAuthFailed):
        provider.submit(ask("veo-3.1"), callback_url="http://127.0.0.1:9/cb")
