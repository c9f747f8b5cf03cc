"""sora_relay.runtime.api on Powertools' APIGatewayRestResolver: the prefixes it strips, the error
mapping it installs, and the request glue (body, headers) as our API answers them."""

from __future__ import annotations

import base64
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response

from sora_relay.domain.errors import NotFound, SoraRelayError
from sora_relay.runtime.api import STRIP_PREFIXES, install_error_handlers, json_response, request_body
from sora_relay.runtime.container import Container, current, use
from tests.conftest import LambdaContext, load_event

NOT_FOUND = {
    "error": {"message": "No such route", "type": "invalid_request_error", "param": None, "code": "not_found"}
}
JSON_HEADERS = {"Content-Type": ["application/json"]}


class Throttled(SoraRelayError):
    status_code = 503
    code = "provider_unavailable"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "7"}


@pytest.fixture(autouse=True)
def settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # request_body reads the body size limit from the settings, which need these.
    monkeypatch.setenv("TASKS_TABLE_NAME", "tasks")
    monkeypatch.setenv("VIDEOS_BUCKET_NAME", "videos")
    with use(Container()):
        yield


@pytest.fixture
def app() -> APIGatewayRestResolver:
    """A resolver set up as the API functions set theirs up, with routes shaped like theirs."""
    resolver = APIGatewayRestResolver(strip_prefixes=STRIP_PREFIXES)
    install_error_handlers(resolver)

    @resolver.get("/v1/videos")
    def list_route() -> Response:
        return json_response(
            200, {"route": "list", "limit": resolver.current_event.get_query_string_value("limit")}
        )

    @resolver.get("/v1/videos/<video_id>")
    def get_route(video_id: str) -> Response:
        if video_id == "missing":
            raise NotFound("No such video", param="video_id")
        if video_id == "throttled":
            raise Throttled("slow down")
        if video_id == "boom":
            raise RuntimeError("secret detail")
        return json_response(200, {"route": "get", "id": video_id})

    @resolver.get("/v1/videos/<video_id>/content")
    def content_route(video_id: str) -> Response:
        return Response(status_code=302, headers={"Location": f"https://cdn.example/{video_id}"}, body="")

    @resolver.post("/v1/callbacks/<provider>/<task_id>")
    def callback_route(provider: str, task_id: str) -> Response:
        current = resolver.current_event
        body = request_body(current)
        key = current.headers.get("idempotency-key")
        return json_response(200, {"provider": provider, "task_id": task_id, "body": body, "key": key})

    return resolver


def event(method: str, path: str, **fields: Any) -> dict[str, Any]:
    base = load_event("get")
    base.update(httpMethod=method, path=path, **fields)
    return base


def call(app: APIGatewayRestResolver, method: str, path: str, **fields: Any) -> tuple[dict[str, Any], Any]:
    answer = app.resolve(event(method, path, **fields), LambdaContext())
    return answer, json.loads(answer["body"]) if answer["body"] else None


# -- routing and the prefixes stripped ------------------------------------------------------------


def test_a_path_parameter_reaches_the_route_and_the_answer_is_a_rest_proxy_result(
    app: APIGatewayRestResolver,
) -> None:
    answer, body = call(app, "GET", "/v1/videos/video_abc")
    assert body == {"route": "get", "id": "video_abc"}
    assert answer == {
        "statusCode": 200,
        "body": answer["body"],
        "isBase64Encoded": False,
        "multiValueHeaders": JSON_HEADERS,
    }


def test_two_path_parameters(app: APIGatewayRestResolver) -> None:
    _, body = call(app, "POST", "/v1/callbacks/acedata/t-1.2", body="{}")
    assert body == {"provider": "acedata", "task_id": "t-1.2", "body": "{}", "key": None}


@pytest.mark.parametrize(
    ("path", "routed"),
    [
        ("/v1/videos/video_abc", "/v1/videos/video_abc"),  # the execute-api URL: no stage in `path`
        ("/relay/v1/videos/video_abc", "/v1/videos/video_abc"),  # a custom domain's base path
        ("/relay/eu/v1/videos/video_abc", "/v1/videos/video_abc"),  # a multi-level one
        ("/relay/v1/videos/v1/content", "/v1/videos/v1/content"),  # only up to the first /v1
        ("/v1/videos/v1/content", "/v1/videos/v1/content"),  # a `v1` further in is not the version
        ("/relay/v1", "/v1"),
        ("/relay/v1x/videos", "/relay/v1x/videos"),  # whole segments only
        ("/nope", "/nope"),
        ("/", "/"),
    ],
)
def test_what_comes_before_the_first_v1_segment_is_stripped(path: str, routed: str) -> None:
    # As Powertools applies a pattern of strip_prefixes: re.sub(pattern, "", path)
    [pattern] = STRIP_PREFIXES
    assert isinstance(pattern, re.Pattern)
    assert pattern.sub("", path) == routed


@pytest.mark.parametrize("base_path", ["", "/relay", "/relay/eu"])
def test_every_route_answers_under_a_base_path(app: APIGatewayRestResolver, base_path: str) -> None:
    assert call(app, "GET", f"{base_path}/v1/videos")[1]["route"] == "list"
    assert call(app, "GET", f"{base_path}/v1/videos/video_abc")[1]["id"] == "video_abc"
    assert call(app, "GET", f"{base_path}/v1/videos/v1/content")[0]["statusCode"] == 302
    assert call(app, "POST", f"{base_path}/v1/callbacks/acedata/t1", body="{}")[1]["task_id"] == "t1"


@pytest.mark.parametrize("path", ["/v1/videos/", "/relay/v1/videos/"])
def test_a_trailing_slash_is_ignored(app: APIGatewayRestResolver, path: str) -> None:
    assert call(app, "GET", path)[1]["route"] == "list"


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/relay/nope"),
        ("GET", "/V1/videos"),  # paths are case-sensitive
        ("GET", "/v1/videos/a/b"),  # a parameter is one segment
        ("GET", "/v1/videos/video_abc/content/extra"),
        ("GET", "/relay/v1/nothing-here"),
        # An unknown method on a known path: Powertools answers not found, not 405
        ("DELETE", "/v1/videos/video_abc"),
        ("POST", "/v1/videos"),
        ("OPTIONS", "/v1/videos"),
        ("GET", "/v1/callbacks/acedata/t1"),
    ],
)
def test_no_route_is_our_json_404_not_found(app: APIGatewayRestResolver, method: str, path: str) -> None:
    answer, body = call(app, method, path)
    assert (answer["statusCode"], body) == (404, NOT_FOUND)
    assert answer["multiValueHeaders"] == JSON_HEADERS


def test_a_redirect_has_location_and_no_content_type(app: APIGatewayRestResolver) -> None:
    answer, _ = call(app, "GET", "/v1/videos/v1/content")
    assert answer == {
        "statusCode": 302,
        "body": "",
        "isBase64Encoded": False,
        "multiValueHeaders": {"Location": ["https://cdn.example/v1"]},
    }


def test_current_event_and_context_are_the_requests(app: APIGatewayRestResolver) -> None:
    context = LambdaContext()
    app.resolve(event("GET", "/v1/videos", queryStringParameters={"limit": "5"}), context)
    assert app.lambda_context is context
    assert app.current_event.get_query_string_value("limit") == "5"
    assert app.current_event.request_context.identity.api_key_id == "sample-api-key-id"
    assert app.current_event.request_context.stage == "live"


# -- error mapping --------------------------------------------------------------------------------


def test_a_known_error_is_its_status_code_and_param(
    app: APIGatewayRestResolver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        answer, body = call(app, "GET", "/v1/videos/missing")
    assert answer["statusCode"] == 404
    assert body == {
        "error": {
            "message": "No such video",
            "type": "invalid_request_error",
            "param": "video_id",
            "code": "not_found",
        }
    }
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_known_5xx_error_has_its_headers_as_multi_value_headers_and_is_logged_as_a_warning(
    app: APIGatewayRestResolver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        answer, body = call(app, "GET", "/v1/videos/throttled")
    assert answer["statusCode"] == 503
    assert body == {
        "error": {
            "message": "slow down",
            "type": "server_error",
            "param": None,
            "code": "provider_unavailable",
        }
    }
    assert answer["multiValueHeaders"] == {"Retry-After": ["7"], "Content-Type": ["application/json"]}
    warnings = [(r.levelname, r.getMessage()) for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [("WARNING", "Request failed")]


def test_an_unexpected_error_is_a_bare_500_and_logged_with_its_trace(
    app: APIGatewayRestResolver, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        answer, body = call(app, "GET", "/v1/videos/boom")
    assert answer["statusCode"] == 500
    assert body == {
        "error": {
            "message": "Something went wrong on our side",
            "type": "server_error",
            "param": None,
            "code": "internal_error",
        }
    }
    assert "secret detail" not in answer["body"]
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert (record.levelname, record.getMessage()) == ("ERROR", "Unexpected error")
    assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)


# -- the request ----------------------------------------------------------------------------------


def test_headers_are_looked_up_case_insensitively(app: APIGatewayRestResolver) -> None:
    _, body = call(app, "POST", "/v1/callbacks/acedata/t1", body="{}", headers={"Idempotency-Key": "k1"})
    assert body["key"] == "k1"


def test_a_base64_body_is_decoded(app: APIGatewayRestResolver) -> None:
    text = '{"prompt": "ünïcode"}'
    encoded = base64.b64encode(text.encode()).decode()
    _, body = call(app, "POST", "/v1/callbacks/acedata/t1", body=encoded, isBase64Encoded=True)
    assert body["body"] == text
    _, body = call(app, "POST", "/v1/callbacks/acedata/t1", body=None)
    assert body["body"] == ""


@pytest.mark.parametrize("raw", [b"\xff\xfe{", b"\xc3("])
def test_a_non_utf8_body_is_400_invalid_json(app: APIGatewayRestResolver, raw: bytes) -> None:
    answer, body = call(
        app, "POST", "/v1/callbacks/acedata/t1", body=base64.b64encode(raw).decode(), isBase64Encoded=True
    )
    assert answer["statusCode"] == 400
    assert body["error"]["code"] == "invalid_json"


def test_malformed_base64_is_400_invalid_json(app: APIGatewayRestResolver) -> None:
    answer, body = call(app, "POST", "/v1/callbacks/acedata/t1", body="!!!notbase64", isBase64Encoded=True)
    assert (answer["statusCode"], body["error"]["code"]) == (400, "invalid_json")


def test_a_body_over_the_limit_is_413(app: APIGatewayRestResolver) -> None:
    too_big = "x" * (current().settings.max_request_body_bytes + 1)
    answer, body = call(app, "POST", "/v1/callbacks/acedata/t1", body=too_big)
    assert answer["statusCode"] == 413
    assert body["error"]["code"] == "request_too_large"
