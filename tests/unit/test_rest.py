"""sora_relay.runtime.rest: the in-house REST router and event, and the error mapping api.py installs on it."""

from __future__ import annotations

import base64
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest

from sora_relay.domain.errors import Conflict, NotFound, SoraRelayError
from sora_relay.runtime.api import install_error_handlers, json_response, request_body
from sora_relay.runtime.rest import Headers, Response, RestEvent, RestRouter
from sora_relay.runtime.settings import get_settings
from tests.conftest import LambdaContext, load_event

NOT_FOUND = {"error": {"code": "not_found", "message": "No such route", "param": None}}
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
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


@pytest.fixture
def app() -> RestRouter:
    router = RestRouter()
    install_error_handlers(router)

    @router.get("/v1/videos")
    def list_route() -> Response:
        return json_response(
            200, {"route": "list", "limit": router.current_event.get_query_string_value("limit")}
        )

    @router.get("/v1/videos/<video_id>")
    def get_route(video_id: str) -> Response:
        if video_id == "missing":
            raise NotFound("No such video", param="video_id")
        if video_id == "throttled":
            raise Throttled("slow down")
        if video_id == "boom":
            raise RuntimeError("secret detail")
        return json_response(200, {"route": "get", "id": video_id})

    @router.get("/v1/videos/fetch")
    def static_route() -> Response:
        return json_response(200, {"route": "static"})

    @router.get("/v1/videos/<video_id>/content")
    def content_route(video_id: str) -> Response:
        return Response(status_code=302, headers={"Location": f"https://cdn.example/{video_id}"}, body="")

    @router.post("/v1/callbacks/<provider>/<task_id>")
    def callback_route(provider: str, task_id: str) -> Response:
        body = request_body(router.current_event)
        return json_response(200, {"provider": provider, "task_id": task_id, "body": body})

    return router


def event(method: str, path: str, **fields: Any) -> dict[str, Any]:
    base = load_event("get")
    base.update(httpMethod=method, path=path, **fields)
    return base


def call(app: RestRouter, method: str, path: str, **fields: Any) -> tuple[dict[str, Any], Any]:
    answer = app.resolve(event(method, path, **fields), LambdaContext())
    return answer, json.loads(answer["body"]) if answer["body"] else None


# -- routing --------------------------------------------------------------------------------------


def test_a_path_parameter_reaches_the_route(app: RestRouter) -> None:
    answer, body = call(app, "GET", "/v1/videos/video_abc")
    assert body == {"route": "get", "id": "video_abc"}
    assert answer == {
        "statusCode": 200,
        "body": answer["body"],
        "isBase64Encoded": False,
        "multiValueHeaders": JSON_HEADERS,
    }
    assert list(answer) == ["statusCode", "body", "isBase64Encoded", "multiValueHeaders"]


def test_two_path_parameters(app: RestRouter) -> None:
    _, body = call(app, "POST", "/v1/callbacks/acedata/t-1.2", body="{}")
    assert body == {"provider": "acedata", "task_id": "t-1.2", "body": "{}"}


def test_a_static_route_wins_over_a_parameter_whatever_the_order(app: RestRouter) -> None:
    assert call(app, "GET", "/v1/videos/fetch")[1] == {"route": "static"}


@pytest.mark.parametrize("path", ["/v1/videos/", "/v1/videos//"])
def test_trailing_slashes_are_ignored(app: RestRouter, path: str) -> None:
    assert call(app, "GET", path)[1]["route"] == "list"


def test_a_parameter_is_one_segment(app: RestRouter) -> None:
    answer, body = call(app, "GET", "/v1/videos/a/b")
    assert (answer["statusCode"], body) == (404, NOT_FOUND)


@pytest.mark.parametrize("video_id", ["a%20b", "a b", "ü", "a:b@c", "(a)", "a{b}", "a|b^c"])
def test_url_characters_match_a_parameter_as_powertools_did(app: RestRouter, video_id: str) -> None:
    assert call(app, "GET", f"/v1/videos/{video_id}")[1] == {"route": "get", "id": video_id}


@pytest.mark.parametrize("video_id", ["a?b", 'a"b', "a#b", "a\\b", "a`b"])
def test_other_characters_do_not(app: RestRouter, video_id: str) -> None:
    assert call(app, "GET", f"/v1/videos/{video_id}")[0]["statusCode"] == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nope"),
        ("GET", "/V1/videos"),  # paths are case-sensitive
        ("GET", "/live/v1/videos"),  # the stage is not part of `path`
        ("DELETE", "/v1/videos/video_abc"),  # an unknown method on a known path
        ("POST", "/v1/videos"),
        ("OPTIONS", "/v1/videos"),
        ("GET", "/v1/videos/video_abc/content/extra"),
    ],
)
def test_no_route_is_404_not_found(app: RestRouter, method: str, path: str) -> None:
    answer, body = call(app, method, path)
    assert (answer["statusCode"], body) == (404, NOT_FOUND)
    assert answer["multiValueHeaders"] == JSON_HEADERS


def test_the_method_is_matched_case_insensitively(app: RestRouter) -> None:
    assert call(app, "get", "/v1/videos")[1]["route"] == "list"


def test_a_redirect_has_location_and_no_content_type(app: RestRouter) -> None:
    answer, _ = call(app, "GET", "/v1/videos/v1/content")
    assert answer == {
        "statusCode": 302,
        "body": "",
        "isBase64Encoded": False,
        "multiValueHeaders": {"Location": ["https://cdn.example/v1"]},
    }


def test_without_a_not_found_handler_the_default_404() -> None:
    router = RestRouter()
    answer = router.resolve(event("GET", "/x"), LambdaContext())
    assert answer["statusCode"] == 404
    assert json.loads(answer["body"]) == {"statusCode": 404, "message": "Not found"}


def test_current_event_and_context_are_the_requests(app: RestRouter) -> None:
    context = LambdaContext()
    app.resolve(event("GET", "/v1/videos", queryStringParameters={"limit": "5"}), context)
    assert app.lambda_context is context
    assert app.current_event.get_query_string_value("limit") == "5"


# -- error mapping --------------------------------------------------------------------------------


def test_a_known_error_is_its_status_code_and_param(
    app: RestRouter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        answer, body = call(app, "GET", "/v1/videos/missing")
    assert answer["statusCode"] == 404
    assert body == {"error": {"code": "not_found", "message": "No such video", "param": "video_id"}}
    assert not [record for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_known_5xx_error_has_its_headers_and_is_logged_as_a_warning(
    app: RestRouter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        answer, body = call(app, "GET", "/v1/videos/throttled")
    assert answer["statusCode"] == 503
    assert body == {"error": {"code": "provider_unavailable", "message": "slow down", "param": None}}
    assert answer["multiValueHeaders"] == {"Retry-After": ["7"], "Content-Type": ["application/json"]}
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [("WARNING", "Request failed")]


def test_an_unexpected_error_is_a_bare_500_and_logged_with_its_trace(
    app: RestRouter, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        answer, body = call(app, "GET", "/v1/videos/boom")
    assert answer["statusCode"] == 500
    assert body == {
        "error": {"code": "internal_error", "message": "Something went wrong on our side", "param": None}
    }
    assert "secret detail" not in answer["body"]
    [record] = caplog.records
    assert (record.levelname, record.getMessage()) == ("ERROR", "Unexpected error")
    assert record.exc_info and isinstance(record.exc_info[1], RuntimeError)


def test_the_nearest_handler_wins() -> None:
    router = RestRouter()
    router.exception_handler(Exception)(lambda error: Response(500, body="any"))
    router.exception_handler(SoraRelayError)(lambda error: Response(error.status_code, body="known"))

    @router.get("/conflict")
    def conflict() -> Response:
        raise Conflict("dup")

    answer = router.resolve(event("GET", "/conflict"), LambdaContext())
    assert (answer["statusCode"], answer["body"]) == (409, "known")


def test_without_a_handler_the_error_propagates() -> None:
    router = RestRouter()

    @router.get("/boom")
    def boom() -> Response:
        raise RuntimeError("no handler")

    with pytest.raises(RuntimeError):
        router.resolve(event("GET", "/boom"), LambdaContext())


def test_a_route_must_answer_a_response(app: RestRouter) -> None:
    @app.get("/v1/bad")
    def bad() -> Any:
        return {"not": "a Response"}

    answer, body = call(app, "GET", "/v1/bad")
    assert answer["statusCode"] == 500
    assert body["error"]["code"] == "internal_error"


# -- the event ------------------------------------------------------------------------------------


def test_headers_are_case_insensitive() -> None:
    headers = RestEvent({"headers": {"Idempotency-Key": "k1", "X-API-Key": "v"}}).headers
    assert headers.get("idempotency-key") == headers.get("IDEMPOTENCY-KEY") == "k1"
    assert headers["x-api-key"] == headers["X-Api-Key"] == "v"
    assert "IDEMPOTENCY-key" in headers
    assert headers.get("missing") is None
    assert RestEvent({"headers": None}).headers == {}
    assert Headers({"A": "1"}) == {"a": "1"}


def test_query_string_values() -> None:
    assert RestEvent({"queryStringParameters": None}).get_query_string_value("token") is None
    assert RestEvent({"queryStringParameters": None}).get_query_string_value("token", "d") == "d"
    assert RestEvent({"queryStringParameters": {"token": "t"}}).get_query_string_value("token") == "t"


def test_request_context() -> None:
    source = load_event("submit")
    current = RestEvent(source)
    assert current.request_context.identity.api_key_id == "sample-api-key-id"
    assert current.request_context.domain_name == "abc123.execute-api.us-east-1.amazonaws.com"
    assert current.request_context.stage == "live"


def test_a_base64_body_is_decoded() -> None:
    text = '{"prompt": "ünïcode"}'
    current = RestEvent({"body": base64.b64encode(text.encode()).decode(), "isBase64Encoded": True})
    assert current.decoded_body == text
    assert RestEvent({"body": text, "isBase64Encoded": False}).decoded_body == text
    assert RestEvent({"body": None}).decoded_body is None


def test_a_body_that_is_not_utf8_raises() -> None:
    current = RestEvent({"body": base64.b64encode(b"\xff\xfe{").decode(), "isBase64Encoded": True})
    with pytest.raises(UnicodeDecodeError):
        _ = current.decoded_body


@pytest.mark.parametrize("raw", [b"\xff\xfe{", b"\xc3("])
def test_a_non_utf8_body_is_400_invalid_json(app: RestRouter, raw: bytes) -> None:
    answer, body = call(
        app, "POST", "/v1/callbacks/acedata/t1", body=base64.b64encode(raw).decode(), isBase64Encoded=True
    )
    assert answer["statusCode"] == 400
    assert body["error"]["code"] == "invalid_json"


def test_malformed_base64_is_400_invalid_json(app: RestRouter) -> None:
    answer, body = call(app, "POST", "/v1/callbacks/acedata/t1", body="!!!notbase64", isBase64Encoded=True)
    assert (answer["statusCode"], body["error"]["code"]) == (400, "invalid_json")


def test_a_bytes_body_is_sent_base64_encoded() -> None:
    answer = Response(200, "application/octet-stream", b"\x00\x01").to_proxy_result()
    assert answer["isBase64Encoded"] is True
    assert base64.b64decode(answer["body"]) == b"\x00\x01"


def test_explicit_headers_override_the_content_type() -> None:
    answer = Response(200, "application/json", "{}", headers={"Content-Type": "text/plain"}).to_proxy_result()
    assert answer["multiValueHeaders"] == {"Content-Type": ["text/plain"]}
