"""docs/openapi.yaml against what the service is: the template's routes, the pydantic models, the
error codes the code can answer, API Gateway's own answers, and (e2e) real answers of the local
stack over HTTP, each checked against the document's response for its operation and status."""

from __future__ import annotations

import ast
import copy
import functools
import json
import re
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from openapi_spec_validator import validate as validate_spec
from pydantic import BaseModel, ConfigDict

from devstack import fuzz_hooks
from devstack.load import FAST_FUNCTION_ENV, FAST_PARAMETERS
from devstack.processes import eventually, local_http
from devstack.proxy import (
    FUNCTION_ERROR,
    INVALID_API_KEY,
    INVOKE_REJECTED,
    NO_ROUTE,
    TOO_LARGE,
    GatewayResponses,
)
from devstack.stack import DevStack, aws_environment
from devstack.template import ROOT, Stack, load_template, secret_value
from sora_relay.domain import errors
from sora_relay.domain.models import (
    DURATIONS,
    MAX_IMAGES,
    MAX_PROMPT_CHARS,
    MODEL_SIZES,
    CreateVideoRequest,
    VideoError,
    VideoList,
    VideoObject,
)
from sora_relay.domain.task import Status
from sora_relay.domain.tokens import callback_token
from sora_relay.runtime.api import error_body
from sora_relay.usecases.idempotency import _KEY as SERVICE_IDEMPOTENCY_KEY
from sora_relay.usecases.read import DEFAULT_LIMIT, MAX_LIMIT

DOCUMENT = ROOT / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Raised, but always caught before an HTTP answer: a failed copy of the provider's video becomes
# the task's `error.code` (the video object), never an error answer of the API.
NOT_ANSWERED = {"UpstreamRejected", "UpstreamUnavailable"}


@functools.cache
def document() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text())


def _deref(node: Any, root: dict[str, Any]) -> Any:
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = root
            for part in node["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            return _deref(target, root)
        return {key: _deref(value, root) for key, value in node.items()}
    if isinstance(node, list):
        return [_deref(item, root) for item in node]
    return node


@functools.cache
def resolved() -> dict[str, Any]:
    """The document with every $ref replaced by its target (it has no recursive ones)."""
    return _deref(copy.deepcopy(document()), document())


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in resolved()["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def schema(name: str) -> dict[str, Any]:
    return resolved()["components"]["schemas"][name]  # type: ignore[no-any-return]


def documented_codes() -> dict[str, set[str]]:
    """Status key ("400", "5XX") -> every code listed in x-error-codes under it, over all operations."""
    codes: dict[str, set[str]] = {}
    for _, _, operation in operations():
        for status, response in operation["responses"].items():
            codes.setdefault(status, set()).update(response.get("x-error-codes", []))
    return codes


def is_documented(codes: dict[str, set[str]], status: int, code: str) -> bool:
    return code in codes.get(str(status), set()) or code in codes.get(f"{status // 100}XX", set())


def validate(instance: Any, json_schema: dict[str, Any]) -> None:
    OAS30Validator(json_schema).validate(instance)


# -- the document and the template --------------------------------------------------------------------


def test_document_is_valid_openapi():
    validate_spec(document())
    assert document()["openapi"].startswith("3.0.")


def test_servers_are_the_stage_url_and_every_path_is_under_v1():
    (server,) = document()["servers"]
    assert server["url"] == "{api_url}"
    assert "api_url" in server["variables"]
    assert all(path.startswith("/v1/") for path in document()["paths"])


def test_every_template_route_is_documented_and_nothing_else():
    stack = Stack(template=load_template(), parameters={})
    routes = {(route.method, route.path) for route in stack.routes()}
    documented = {(method, path) for method, path, _ in operations()}
    assert documented == routes


def test_the_api_key_is_required_exactly_where_the_template_requires_it():
    scheme = document()["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "x-api-key")
    default = document()["security"]
    stack = Stack(template=load_template(), parameters={})
    for route in stack.routes():
        operation = document()["paths"][route.path][route.method.lower()]
        security = operation.get("security", default)
        assert any("ApiKey" in requirement for requirement in security) == route.api_key_required, route


def test_path_parameters_are_the_templates():
    for _, path, operation in operations():
        declared = {param["name"] for param in operation.get("parameters", []) if param["in"] == "path"}
        assert declared == set(re.findall(r"\{(\w+)\}", path)), path


# -- the document and the models ------------------------------------------------------------------------


def _model_schema(model: type[BaseModel], mode: str) -> dict[str, Any]:
    if mode == "serialization":
        # What the service sends: every field, defaults included (json_response dumps them all).
        model = type(
            f"Serialized{model.__name__}",
            (model,),
            {"model_config": ConfigDict(json_schema_serialization_defaults_required=True)},
        )
    return model.model_json_schema(mode=mode)  # type: ignore[arg-type]


def _nullable(field_schema: dict[str, Any]) -> bool:
    """Whether a pydantic field schema admits null."""
    return any(option.get("type") == "null" for option in field_schema.get("anyOf", []))


def _assert_same_fields(model: type[BaseModel], documented: dict[str, Any], mode: str) -> None:
    generated = _model_schema(model, mode)
    assert set(documented["properties"]) == set(generated["properties"]), model.__name__
    assert set(documented.get("required", [])) == set(generated.get("required", [])), model.__name__
    for name, field_schema in generated["properties"].items():
        assert bool(documented["properties"][name].get("nullable")) == _nullable(field_schema), (
            f"{model.__name__}.{name}: nullable"
        )
    forbids_extra = model.model_config.get("extra") == "forbid"
    if mode == "validation":
        assert documented.get("additionalProperties", True) is not forbids_extra, model.__name__


def test_the_video_object_is_the_model():
    documented = schema("VideoObject")
    _assert_same_fields(VideoObject, documented, "serialization")
    assert documented["additionalProperties"] is False
    properties = documented["properties"]
    assert properties["object"]["enum"] == ["video"]
    assert properties["status"]["enum"] == [status.value for status in Status]
    assert properties["model"]["enum"] == list(MODEL_SIZES)
    assert properties["seconds"]["enum"] == [str(seconds) for seconds in DURATIONS]
    assert set(properties["size"]["enum"]) == {size for sizes in MODEL_SIZES.values() for size in sizes}
    assert set(properties["error"]["properties"]) == set(VideoError.model_fields)
    assert set(properties["error"]["required"]) == set(VideoError.model_json_schema()["required"])


def test_the_video_list_is_the_model():
    _assert_same_fields(VideoList, schema("VideoList"), "serialization")
    assert schema("VideoList")["properties"]["data"]["maxItems"] == MAX_LIMIT


def test_the_create_request_is_the_model():
    documented = schema("CreateVideoRequest")
    _assert_same_fields(CreateVideoRequest, documented, "validation")
    properties = documented["properties"]
    assert (properties["prompt"]["minLength"], properties["prompt"]["maxLength"]) == (1, MAX_PROMPT_CHARS)
    assert properties["model"]["enum"] == list(MODEL_SIZES)
    assert properties["model"]["default"] == CreateVideoRequest.model_fields["model"].default
    assert properties["size"]["default"] == CreateVideoRequest.model_fields["size"].default
    all_sizes = [size for size in MODEL_SIZES["sora-2-pro"]]
    assert properties["size"]["enum"] == all_sizes
    assert [value for value in properties["duration"]["enum"] if value is not None] == list(DURATIONS)
    seconds = {tuple(option["enum"]) for option in properties["seconds"]["anyOf"]}
    assert seconds == {tuple(str(value) for value in DURATIONS), DURATIONS}
    assert properties["image_urls"]["maxItems"] == MAX_IMAGES
    # The size table: anything but sora-2's sizes needs sora-2-pro.
    pro_branch, size_branch = documented["anyOf"]
    assert pro_branch["properties"]["model"]["enum"] == ["sora-2-pro"] and pro_branch["required"] == ["model"]
    assert size_branch["properties"]["size"]["enum"] == list(MODEL_SIZES["sora-2"])
    assert set(MODEL_SIZES) == {"sora-2", "sora-2-pro"}


def test_list_limits_are_the_services():
    (operation,) = [op for method, path, op in operations() if (method, path) == ("GET", "/v1/videos")]
    limit = next(param for param in operation["parameters"] if param["name"] == "limit")["schema"]
    assert (limit["minimum"], limit["maximum"], limit["default"]) == (1, MAX_LIMIT, DEFAULT_LIMIT)


@pytest.mark.parametrize(
    "key", ["a", "!", "~" * 255, "~" * 256, "", "a b", "é", "\x7f", "\t", "key-1_2.3:4/5", '{"x"}']
)
def test_the_idempotency_key_pattern_is_the_services(key):
    header = document()["components"]["parameters"]["IdempotencyKey"]["schema"]
    documented = header["minLength"] <= len(key) <= header["maxLength"] and re.search(header["pattern"], key)
    assert bool(documented) == bool(SERVICE_IDEMPOTENCY_KEY.match(key))


# -- error codes ----------------------------------------------------------------------------------------------


def _error_classes() -> dict[str, type[errors.SoraRelayError]]:
    return {
        name: value
        for name, value in vars(errors).items()
        if isinstance(value, type) and issubclass(value, errors.SoraRelayError)
    }


def _answered_codes() -> tuple[set[tuple[int, str]], set[str]]:
    """What the code can answer: (status, code) of every error it raises, read from the source
    (a literal `code=`, or the class's own code), and the codes it writes with error_body()."""
    classes = _error_classes()
    raised: set[tuple[int, str]] = set()
    written: set[str] = set()
    sources = [
        *(ROOT / "layers" / "common" / "sora_relay").rglob("*.py"),
        *(ROOT / "functions").glob("*/app.py"),
    ]
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name == "error_body" and node.args and isinstance(node.args[0], ast.Constant):
                written.add(node.args[0].value)
            error_class = classes.get(name or "")
            if error_class is None or name in NOT_ANSWERED:
                continue
            code = next((keyword.value for keyword in node.keywords if keyword.arg == "code"), None)
            if code is None:
                raised.add((error_class.status_code, error_class.code))
            elif isinstance(code, ast.Constant):
                raised.add((error_class.status_code, code.value))
    return raised, written


def test_every_error_the_code_raises_is_documented_under_its_status():
    raised, written = _answered_codes()
    assert len(raised) > 20  # the scan found the raise sites
    codes = documented_codes()
    missing = sorted((status, code) for status, code in raised if not is_documented(codes, status, code))
    assert missing == []
    everywhere = set().union(*codes.values())
    assert written <= everywhere


def test_every_documented_service_code_is_one_the_code_answers():
    raised, written = _answered_codes()
    answered = {code for _, code in raised} | written
    documented = set().union(*documented_codes().values())
    # Upper-case codes are API Gateway's response types (checked against the template below).
    assert {code for code in documented if not code.isupper()} <= answered


@pytest.mark.parametrize("error_class", sorted(_error_classes()))
def test_error_answers_are_the_error_shape(error_class):
    code = _error_classes()[error_class].code
    for param in (None, "prompt"):
        validate(json.loads(error_body(code, "a message", param)), schema("Error"))
        assert fuzz_hooks.is_error_shape(json.loads(error_body(code, "a message", param)))


def test_every_error_response_is_the_error_shape_with_its_codes():
    for method, path, operation in operations():
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert response["content"]["application/json"]["schema"] == schema("Error"), (
                    method,
                    path,
                    status,
                )
                assert response.get("x-error-codes"), (method, path, status)


def test_api_gateways_own_answers_are_the_error_shape_and_documented():
    api = next(
        resource["Properties"]
        for resource in load_template()["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Api"
    )
    responses = GatewayResponses(api["GatewayResponses"])
    codes = documented_codes()
    for error in (INVALID_API_KEY, TOO_LARGE, FUNCTION_ERROR, INVOKE_REJECTED):
        answer = responses.answer(error, "request-id", "live")
        body = json.loads(answer.body)
        validate(body, schema("Error"))
        assert is_documented(codes, answer.status, body["error"]["code"]), error
    unknown_route = responses.answer(NO_ROUTE, "request-id", "live")
    assert unknown_route.status == 404
    assert json.loads(unknown_route.body)["error"]["code"] == "not_found"


# -- the fuzz run's safety and reach (no stack) ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "pinned"),
    [
        ("https://example.com/hook", True),
        ("  https://example.com/hook  ", True),
        ("https://localhost/hook", True),
        ("https://8.8.8.8/hook", True),
        ("https://127.0.0.1:8443/hook", False),
        ("https://[::1]/hook", False),
        ("https://[::ffff:127.0.0.1]/hook", False),
        ("http://example.com/hook", False),  # refused by the service: not https
        ("https://10.0.0.1/hook", False),  # refused by the service: private
    ],
)
def test_the_fuzz_run_never_lets_the_service_call_out(url, pinned):
    for field in ("callback_url", "input_reference", "image_urls"):
        value: Any = [url, "https://127.0.0.1/a"] if field == "image_urls" else url
        body = {"prompt": "a boat", field: value}
        assert fuzz_hooks.pin_outbound_urls(body) is pinned
        sent = body[field][0] if field == "image_urls" else body[field]
        assert sent == (fuzz_hooks.SAFE_URL if pinned else url)


def test_the_fuzz_run_leaves_bodies_the_service_refuses_alone():
    for body in ({"prompt": "", "callback_url": "https://example.com/"}, {"nope": 1}, [1], "x", None):
        before = copy.deepcopy(body)
        assert fuzz_hooks.pin_outbound_urls(body) is False
        assert body == before


@functools.cache
def _fuzz_schema() -> Any:
    import schemathesis

    return schemathesis.openapi.from_path(DOCUMENT)


def _case(path: str, method: str, **parts: Any) -> Any:
    return _fuzz_schema()[path][method].Case(**parts)


def test_the_fuzz_run_signs_some_callbacks_only_for_task_ids_that_cannot_exist(monkeypatch):
    monkeypatch.setenv("FUZZ_CALLBACK_KEY", "the-key")

    def token_for(task_id: str) -> str:
        parameters = {"provider": "acedata", "task_id": task_id}
        case = _case(
            "/v1/callbacks/{provider}/{task_id}", "POST", path_parameters=parameters, query={"token": "t"}
        )
        return str(fuzz_hooks.map_case(None, case).query["token"])

    impossible = [f"task-{number}" for number in range(50)]
    signed = [task_id for task_id in impossible if token_for(task_id) != "t"]
    assert 0 < len(signed) < len(impossible)
    assert all(token_for(task_id) == callback_token(task_id, "the-key") for task_id in signed)
    assert {token_for(f"video_{number:032x}") for number in range(50)} == {"t"}


def test_the_fuzz_run_names_seed_videos_in_some_reads(monkeypatch):
    monkeypatch.setenv("FUZZ_VIDEO_IDS", "video_seed")
    ids = [
        fuzz_hooks.map_case(None, _case(path, "GET", path_parameters={"video_id": f"id-{n}"})).path_parameters
        for path in ("/v1/videos/{video_id}", "/v1/videos/{video_id}/content")
        for n in range(50)
    ]
    assert 0 < sum(parameters["video_id"] == "video_seed" for parameters in ids) < len(ids)


# -- real answers of the local stack (e2e) ------------------------------------------------------------------


def _operation_for(method: str, path: str) -> dict[str, Any]:
    return resolved()["paths"][path][method.lower()]  # type: ignore[no-any-return]


def check_answer(method: str, path: str, response: httpx.Response) -> dict[str, Any] | None:
    """Fail unless `response` is what the document says `method path` answers with its status:
    a documented status, its content type and schema, its required headers, and an error code
    listed for it. Returns the parsed body."""
    responses = _operation_for(method, path)["responses"]
    status = str(response.status_code)
    documented = responses.get(status) or responses.get(f"{status[0]}XX")
    assert documented is not None, f"{method} {path}: {status} is not documented ({response.text[:200]})"
    for name, header in documented.get("headers", {}).items():
        if header.get("required"):
            assert name in response.headers, f"{method} {path} {status}: no {name} header"
    if "content" not in documented:
        assert not response.content
        return None
    assert response.headers["content-type"].split(";")[0] in documented["content"]
    body = response.json()
    validate(body, documented["content"]["application/json"]["schema"])
    if "x-error-codes" in documented:
        assert body["error"]["code"] in documented["x-error-codes"], (method, path, status, body)
    return body  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def live_stack() -> Iterator[DevStack]:
    with DevStack(
        moto_port=0,
        simulator_port=0,
        gateway_port=0,
        callback_delay=0.3,
        log_dir=ROOT / ".devstack" / "openapi-e2e-logs",
        function_env=FAST_FUNCTION_ENV,
        parameters=FAST_PARAMETERS,
    ) as local:
        yield local


@pytest.fixture
def client(live_stack: DevStack) -> Iterator[httpx.Client]:
    headers = {"x-api-key": live_stack.api_key}
    with local_http(live_stack.api_url, headers=headers) as http:
        yield http


def _eventually(probe: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    return eventually(probe, timeout=timeout, what=what)


VIDEOS = "/v1/videos"
VIDEO = "/v1/videos/{video_id}"
CONTENT = "/v1/videos/{video_id}/content"
CALLBACK = "/v1/callbacks/{provider}/{task_id}"


@pytest.mark.e2e
def test_a_video_from_create_to_download_answers_as_documented(client):
    created = client.post(VIDEOS, json={"prompt": f"a paper boat ({uuid.uuid4().hex[:8]})", "duration": 4})
    video = check_answer("POST", VIDEOS, created)
    assert created.status_code == 202 and video is not None
    video_id = video["id"]
    not_ready = client.get(f"/v1/videos/{video_id}/content")
    if not_ready.status_code == 404:  # unless the simulator was quicker than this request
        assert check_answer("GET", CONTENT, not_ready)["error"]["code"] == "video_not_ready"  # type: ignore[index]

    def completed() -> dict[str, Any] | None:
        answer = client.get(f"/v1/videos/{video_id}")
        body = check_answer("GET", VIDEO, answer)
        return body if body and body["status"] == "completed" else None

    done = _eventually(completed, "the video to complete")
    assert done["download_url"] and done["download_expires_at"] and done["progress"] == 100
    content = client.get(f"/v1/videos/{video_id}/content")
    assert content.status_code == 302
    check_answer("GET", CONTENT, content)
    listed = client.get(VIDEOS, params={"limit": 5})
    page = check_answer("GET", VIDEOS, listed)
    assert listed.status_code == 200 and page is not None and video_id in [v["id"] for v in page["data"]]
    after = client.get(VIDEOS, params={"limit": 1, "after": page["data"][0]["id"]})
    assert after.status_code == 200
    check_answer("GET", VIDEOS, after)


@pytest.mark.e2e
def test_a_failed_video_answers_as_documented(client):
    created = client.post(VIDEOS, json={"prompt": f"fails [sim:fail] ({uuid.uuid4().hex[:8]})"})
    video_id = check_answer("POST", VIDEOS, created)["id"]  # type: ignore[index]

    def failed() -> dict[str, Any] | None:
        body = check_answer("GET", VIDEO, client.get(f"/v1/videos/{video_id}"))
        return body if body and body["status"] == "failed" else None

    assert _eventually(failed, "the video to fail")["error"]["code"]
    check_answer("GET", CONTENT, client.get(f"/v1/videos/{video_id}/content"))


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("request_kwargs", "status", "code"),
    [
        ({"json": {"prompt": "a boat", "colour": "red"}}, 400, "unknown_parameter"),
        ({"json": {"model": "sora-2"}}, 400, "missing_parameter"),
        ({"json": {"prompt": "a boat", "size": "1792x1024"}}, 400, "invalid_value"),
        ({"json": {"prompt": "a boat", "callback_url": "https://10.0.0.1/hook"}}, 400, "unsafe_url"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, 400, "invalid_json"),
        ({"json": {"prompt": "a boat"}, "headers": {"Idempotency-Key": "has space"}}, 400, "invalid_request"),
        ({"json": {"prompt": "x" * 70_000}}, 413, "request_too_large"),
        ({"json": {"prompt": "a boat"}, "headers": {"x-api-key": "not-a-key"}}, 403, "INVALID_API_KEY"),
    ],
)
def test_create_refusals_answer_as_documented(client, request_kwargs, status, code):
    answer = client.post(VIDEOS, **request_kwargs)
    assert answer.status_code == status, answer.text
    assert check_answer("POST", VIDEOS, answer)["error"]["code"] == code  # type: ignore[index]


@pytest.mark.e2e
def test_a_reused_idempotency_key_answers_as_documented(client):
    key = f"openapi-{uuid.uuid4().hex}"
    first = client.post(VIDEOS, json={"prompt": "the first"}, headers={"Idempotency-Key": key})
    assert first.status_code == 202
    again = client.post(VIDEOS, json={"prompt": "the first"}, headers={"Idempotency-Key": key})
    assert check_answer("POST", VIDEOS, again) == check_answer("POST", VIDEOS, first)
    other = client.post(VIDEOS, json={"prompt": "another"}, headers={"Idempotency-Key": key})
    assert other.status_code == 422
    check_answer("POST", VIDEOS, other)


@pytest.mark.e2e
@pytest.mark.parametrize(
    ("method", "path", "url", "params", "status"),
    [
        ("GET", VIDEO, "/v1/videos/video_00000000000000000000000000000000", None, 404),
        ("GET", VIDEO, "/v1/videos/not-an-id", None, 404),
        ("GET", CONTENT, "/v1/videos/video_00000000000000000000000000000000/content", None, 404),
        ("GET", VIDEOS, "/v1/videos", {"limit": "0"}, 400),
        ("GET", VIDEOS, "/v1/videos", {"limit": "101"}, 400),
        ("GET", VIDEOS, "/v1/videos", {"after": "video_00000000000000000000000000000000"}, 404),
    ],
)
def test_read_refusals_answer_as_documented(client, method, path, url, params, status):
    answer = client.request(method, url, params=params)
    assert answer.status_code == status, answer.text
    check_answer(method, path, answer)
    no_key = client.request(method, url, params=params, headers={"x-api-key": ""})
    assert no_key.status_code == 403
    check_answer(method, path, no_key)


@pytest.mark.e2e
def test_another_owners_video_is_a_documented_404(client, live_stack):
    with local_http(live_stack.api_url, headers={"x-api-key": live_stack.other_api_key}) as other:
        theirs = other.post(VIDEOS, json={"prompt": "not yours"}).json()["id"]
    for path, url in ((VIDEO, f"/v1/videos/{theirs}"), (CONTENT, f"/v1/videos/{theirs}/content")):
        answer = client.get(url)
        assert answer.status_code == 404
        assert check_answer("GET", path, answer)["error"]["code"] == "video_not_found"  # type: ignore[index]


@pytest.mark.e2e
def test_provider_callbacks_answer_as_documented(client, live_stack):
    assert live_stack.stack is not None
    with aws_environment(live_stack.moto_url):
        key = secret_value(live_stack.stack, "CallbackTokenSecret")
    no_callback = client.post(VIDEOS, json={"prompt": f"lost [sim:no-callback] ({uuid.uuid4().hex[:8]})"})
    task_id = no_callback.json()["id"]
    token = callback_token(task_id, key)
    anonymous = {"headers": {"x-api-key": ""}}
    cases = [
        (
            f"/v1/callbacks/acedata/{task_id}",
            {"token": "wrong"},
            {"task_id": "x"},
            401,
            "invalid_callback_token",
        ),
        (f"/v1/callbacks/other/{task_id}", {"token": token}, {"task_id": "x"}, 404, "not_found"),
        (f"/v1/callbacks/acedata/{task_id}", {"token": token}, {"success": True}, 400, "invalid_callback"),
        (
            f"/v1/callbacks/acedata/{task_id}",
            {"token": token},
            {"task_id": "someone-else"},
            409,
            "callback_task_mismatch",
        ),
        (
            "/v1/callbacks/acedata/video_00000000000000000000000000000000",
            {"token": callback_token("video_00000000000000000000000000000000", key)},
            {"task_id": "x"},
            404,
            "task_not_found",
        ),
    ]
    for url, params, body, status, code in cases:
        answer = client.post(url, params=params, json=body, **anonymous)
        assert answer.status_code == status, (url, answer.text)
        assert check_answer("POST", CALLBACK, answer)["error"]["code"] == code  # type: ignore[index]
    # The provider's own result, with the task id it was given: recorded (200), then a duplicate.
    assert live_stack.simulator is not None
    provider_task_id = _eventually(
        lambda: (live_stack.task_item(task_id) or {}).get("provider_task_id"), "the provider task id"
    )
    result = {"success": False, "task_id": provider_task_id, "error": {"code": "api_error", "message": "no"}}
    url = f"/v1/callbacks/acedata/{task_id}"
    first = client.post(url, params={"token": token}, json=result, **anonymous)
    assert first.status_code == 200
    assert check_answer("POST", CALLBACK, first) == {"received": True, "changed": True, "status": "failed"}
    again = client.post(url, params={"token": token}, json=result, **anonymous)
    assert check_answer("POST", CALLBACK, again) == {"received": True, "changed": False, "status": "failed"}


@pytest.mark.e2e
def test_an_unknown_route_is_the_error_shape(client):
    for method, url in (("GET", "/v1/nothing"), ("DELETE", "/v1/videos"), ("PUT", "/v1/videos/x")):
        answer = client.request(method, url)
        assert answer.status_code == 404
        validate(answer.json(), schema("Error"))
        assert answer.json()["error"]["code"] == "not_found"
