"""docs/openapi.yaml is generated from the code (scripts/openapi.py); these tests check that the
committed copy is what the code says, and what generation alone cannot show: that it covers the
template's routes, the error codes the code raises and API Gateway's own answers, that real
answers of the handlers conform to it, and that the fuzzer can use it."""

from __future__ import annotations

import ast
import copy
import functools
import importlib.util
import json
import subprocess
import sys
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest
import yaml
from openapi_schema_validator import OAS31Validator
from openapi_spec_validator import validate as validate_spec

from devstack import fuzz_hooks
from devstack.proxy import (
    ACCESS_DENIED,
    AUTHORIZER_FAILURE,
    FUNCTION_ERROR,
    INVALID_API_KEY,
    INVOKE_REJECTED,
    NO_ROUTE,
    TOO_LARGE,
    UNAUTHORIZED,
    gateway_answer,
)
from devstack.template import ROOT, Stack, load_template, secret_value
from sora_relay.domain import errors
from sora_relay.domain.tokens import callback_token
from sora_relay.runtime.api import error_body
from tests.conftest import load_event
from tests.integration.conftest import submitted

DOCUMENT = ROOT / "docs" / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
# Raised, but always caught before an HTTP answer: a failed copy of the provider's video becomes
# the task's `error.code` (the video object), never an error answer of the API; a preview that
# cannot be drawn becomes the task's `preview_error` (usecases/previews.py), and the task completes.
# An unknown outcome of a create, and a task that could not be handed to dispatch, are a stored
# task's failure: the create answers 202 with that video (usecases/submit.py), never the error.
NOT_ANSWERED = {
    "UpstreamRejected",
    "UpstreamUnavailable",
    "PreviewFailed",
    "ProviderOutcomeUnknown",
    "TaskNotQueued",
}
# The operator's modules (scripts/tenants.py runs them with AWS credentials): behind no route, so
# what they raise is printed by the command, never answered by the API.
OPERATOR_ONLY = {"usecases/manage_tenants.py", "adapters/tenants.py", "adapters/tenant_secrets.py"}


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("sora_relay_openapi", ROOT / "scripts" / "openapi.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@functools.cache
def document() -> dict[str, Any]:
    return yaml.safe_load(DOCUMENT.read_text())  # type: ignore[no-any-return]


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
    return _deref(copy.deepcopy(document()), document())  # type: ignore[no-any-return]


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in resolved()["paths"].items():
        for method in METHODS:
            if method in item:
                yield method.upper(), path, item[method]


def documented_codes() -> dict[int, set[str]]:
    """Status -> every code listed in x-error-codes under it, over all operations."""
    codes: dict[int, set[str]] = {}
    for _, _, operation in operations():
        for status, response in operation["responses"].items():
            codes.setdefault(int(status), set()).update(response.get("x-error-codes", []))
    return codes


ERROR_SCHEMA = functools.cache(lambda: resolved()["components"]["schemas"]["ErrorResponse"])


# -- the committed document is the code's -------------------------------------------------------------


def test_the_committed_document_is_what_the_code_generates():
    generated = _load_generator().render(_load_generator().build())
    assert DOCUMENT.read_text() == generated, (
        "docs/openapi.yaml has drifted: run `make openapi` and commit it"
    )


def test_the_generator_check_mode_fails_on_drift(tmp_path, monkeypatch, capsys):
    generator = _load_generator()
    stale = tmp_path / "openapi.yaml"
    stale.write_text(DOCUMENT.read_text().replace("summary: Create a video", "summary: Make a video"))
    monkeypatch.setattr(generator, "DOCUMENT", stale)
    assert generator.main(["--check"]) == 1
    assert "-      summary: Make a video" in capsys.readouterr().out


def test_the_document_is_valid_openapi_3_1():
    validate_spec(document())
    assert document()["openapi"].startswith("3.1.")


def test_every_template_route_is_documented_with_the_api_key_the_template_requires():
    # All but the MCP endpoint, which is JSON-RPC (docs/mcp.md; its key is checked in tests/e2e/test_mcp.py).
    everything = Stack(template=load_template(), parameters={}).routes()
    routes = [route for route in everything if route.path != "/mcp"]
    assert {route.function_id for route in everything if route.path == "/mcp"} == {"McpFunction"}
    assert all(route.api_key_required for route in everything if route.path == "/mcp")
    assert {(method, path) for method, path, _ in operations()} == {(r.method, r.path) for r in routes}
    for route in routes:
        operation = document()["paths"][route.path][route.method.lower()]
        security = operation.get("security", document()["security"])
        assert any("ApiKey" in requirement for requirement in security) == route.api_key_required, route
    scheme = document()["components"]["securitySchemes"]["ApiKey"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "x-api-key")
    bearer = document()["components"]["securitySchemes"]["Bearer"]
    assert (bearer["type"], bearer["scheme"]) == ("http", "bearer")
    assert document()["security"] == [{"ApiKey": []}, {"Bearer": []}]  # either header


def test_the_lambda_handlers_import_none_of_powertools_openapi_generation():
    # Cold start: the route declarations are plain data until scripts/openapi.py asks for a schema.
    script = (
        "import importlib.util, sys\n"
        "for name in ('submit', 'status', 'callback'):\n"
        "    spec = importlib.util.spec_from_file_location(name, f'functions/{name}/app.py')\n"
        "    spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
        "print(sorted(m for m in sys.modules if m.rsplit('.', 1)[-1] in ('params', 'models', 'dependant')"
        " and 'event_handler.openapi' in m))\n"
    )
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- errors ---------------------------------------------------------------------------------------------------


def test_every_error_response_is_the_error_shape_with_its_codes():
    for method, path, operation in operations():
        for status, response in operation["responses"].items():
            if status[0] in "45":
                assert response["content"]["application/json"]["schema"] == ERROR_SCHEMA(), (
                    method,
                    path,
                    status,
                )
                assert response.get("x-error-codes"), (method, path, status)


@pytest.mark.parametrize("param", [None, "prompt"])
def test_the_service_error_body_is_the_documented_error_shape(param):
    answer = json.loads(error_body("invalid_value", "a message", param))
    OAS31Validator(ERROR_SCHEMA()).validate(answer)
    assert fuzz_hooks.is_error_shape(answer)


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
    package = ROOT / "layers" / "common" / "sora_relay"
    for path in sources:
        if path.is_relative_to(package) and path.relative_to(package).as_posix() in OPERATOR_ONLY:
            continue
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


def test_every_error_the_code_raises_is_documented_under_its_status_and_nothing_else():
    # The routes' `responses=` list their codes by hand; this is what keeps those lists honest.
    raised, written = _answered_codes()
    assert len(raised) > 20  # the scan found the raise sites
    codes = documented_codes()
    assert sorted((status, code) for status, code in raised if code not in codes.get(status, set())) == []
    assert written <= set().union(*codes.values())
    # Upper-case codes are API Gateway's response types (the next test).
    service_codes = {code for code in set().union(*codes.values()) if not code.isupper()}
    assert service_codes <= {code for _, code in raised} | written


def test_api_gateways_own_answers_are_the_error_shape_and_documented():
    api = next(
        resource["Properties"]
        for resource in load_template()["Resources"].values()
        if resource["Type"] == "AWS::Serverless::Api"
    )
    responses = api["GatewayResponses"]
    codes = documented_codes()
    for error in (
        UNAUTHORIZED,
        ACCESS_DENIED,
        AUTHORIZER_FAILURE,
        INVALID_API_KEY,
        TOO_LARGE,
        FUNCTION_ERROR,
        INVOKE_REJECTED,
    ):
        answer = gateway_answer(responses, error, "request-id", "live")
        body = json.loads(answer.body)
        OAS31Validator(ERROR_SCHEMA()).validate(body)
        assert body["error"]["code"] in codes[answer.status], error
    unknown_route = gateway_answer(responses, NO_ROUTE, "request-id", "live")
    assert (unknown_route.status, json.loads(unknown_route.body)["error"]["code"]) == (404, "not_found")


# -- real answers of the handlers (in process, as in tests/integration) -----------------------------------------


def check_answer(method: str, path: str, answer: tuple[int, dict[str, str], Any]) -> Any:
    """Fail unless `answer` is what the document says `method path` answers with its status: a
    documented status, its required headers, its body schema, and an error code listed for it."""
    status, headers, body = answer
    documented = resolved()["paths"][path][method.lower()]["responses"].get(str(status))
    assert documented is not None, f"{method} {path}: {status} is not documented ({body})"
    for name, header in documented.get("headers", {}).items():
        assert not header.get("required") or name.lower() in headers, f"{method} {path} {status}: no {name}"
    if "content" not in documented:
        assert body is None
        return None
    OAS31Validator(documented["content"]["application/json"]["schema"]).validate(body)
    if "x-error-codes" in documented:
        assert body["error"]["code"] in documented["x-error-codes"], (method, path, status, body)
    return body


VIDEOS, VIDEO = "/v1/videos", "/v1/videos/{video_id}"
CONTENT, CALLBACK = "/v1/videos/{video_id}/content", "/v1/callbacks/{provider}/{task_id}"


def test_a_video_from_create_to_download_answers_as_documented(api, internet):
    video, call = submitted(api, internet)
    check_answer("POST", VIDEOS, (202, {}, video))
    not_ready = check_answer("GET", CONTENT, api.get(video["id"], content=True))
    assert not_ready["error"]["code"] == "video_not_ready"
    callback_url = call["body"]["callback_url"]
    assert check_answer("POST", CALLBACK, api.callback(callback_url, internet.success_body(call)))["changed"]
    done = check_answer("GET", VIDEO, api.get(video["id"]))
    assert done["status"] == "completed" and done["download_url"]
    assert check_answer("GET", CONTENT, api.get(video["id"], content=True)) is None
    page = check_answer("GET", VIDEOS, api.list(limit="5"))
    check_answer("GET", VIDEOS, api.list(limit="1", after=page["data"][0]["id"]))


def test_a_failed_video_and_a_repeated_callback_answer_as_documented(api, internet):
    video, call = submitted(api, internet)
    callback_url = call["body"]["callback_url"]
    first = check_answer("POST", CALLBACK, api.callback(callback_url, internet.failure_body(call)))
    again = check_answer("POST", CALLBACK, api.callback(callback_url, internet.failure_body(call)))
    assert (first["changed"], again["changed"], again["status"]) == (True, False, "failed")
    assert check_answer("GET", VIDEO, api.get(video["id"]))["error"]["code"] == "api_error"
    check_answer("GET", CONTENT, api.get(video["id"], content=True))


# One stack for all the cases (provisioning one is the slow part): each case names itself on failure.
CREATE_REFUSALS: list[tuple[dict[str, Any], int, str]] = [
    ({"body": {"prompt": "a boat", "colour": "red"}}, 400, "unknown_parameter"),
    ({"body": {"model": "sora-2"}}, 400, "missing_parameter"),
    ({"body": {"prompt": "a boat", "size": "big"}}, 400, "invalid_value"),
    ({"body": {"prompt": "a boat", "model": "no-such-model"}}, 400, "model_not_found"),
    ({"body": {"prompt": "a boat", "callback_url": "https://10.0.0.1/hook"}}, 400, "unsafe_url"),
    ({"body": None, "raw": "{not json"}, 400, "invalid_json"),
    ({"body": {"prompt": "a boat"}, "idempotency_key": "has space"}, 400, "invalid_request"),
    ({"body": {"prompt": "x" * 70_000}}, 413, "request_too_large"),
    ({"body": {"prompt": "a boat"}, "owner": None}, 401, "missing_api_key"),
]


def test_create_refusals_answer_as_documented(api, internet):
    for request_kwargs, status, code in CREATE_REFUSALS:
        answer = api.submit(**request_kwargs)
        assert answer[0] == status, (request_kwargs, answer)
        assert check_answer("POST", VIDEOS, answer)["error"]["code"] == code, request_kwargs


def test_a_reused_idempotency_key_answers_as_documented(api, internet):
    first = api.submit({"prompt": "the first"}, idempotency_key="openapi-1")
    again = api.submit({"prompt": "the first"}, idempotency_key="openapi-1")
    assert check_answer("POST", VIDEOS, again) == check_answer("POST", VIDEOS, first)
    other = api.submit({"prompt": "another"}, idempotency_key="openapi-1")
    assert check_answer("POST", VIDEOS, other)["error"]["code"] == "idempotency_key_reused"


def test_read_refusals_answer_as_documented(api, internet):
    nobody = "video_00000000000000000000000000000000"
    cases = [
        (VIDEO, api.get(nobody), "video_not_found"),
        (VIDEO, api.get("not-an-id"), "video_not_found"),
        (CONTENT, api.get(nobody, content=True), "video_not_found"),
        (VIDEOS, api.list(limit="0"), "invalid_value"),
        (VIDEOS, api.list(limit="101"), "invalid_value"),
        (VIDEOS, api.list(after=nobody), "video_not_found"),
        (VIDEOS, api.list(owner=None), "missing_api_key"),  # type: ignore[arg-type]
    ]
    for path, answer, code in cases:
        assert check_answer("GET", path, answer)["error"]["code"] == code, (path, answer)


def test_the_catalogue_answers_as_documented(api, internet):
    models = check_answer("GET", "/v1/models", api.call("status", _models_event("/v1/models")))
    model_id = models["data"][0]["id"]
    one = api.call("status", _models_event(f"/v1/models/{model_id}", model_id=model_id))
    assert check_answer("GET", "/v1/models/{model_id}", one)["id"] == model_id
    missing = api.call("status", _models_event("/v1/models/nope", model_id="nope"))
    assert check_answer("GET", "/v1/models/{model_id}", missing)["error"]["code"] == "model_not_found"


def _models_event(path: str, **parameters: str) -> dict[str, Any]:
    event = load_event("list")
    event["path"] = event["requestContext"]["path"] = path
    event["resource"] = "/v1/models/{model_id}" if parameters else "/v1/models"
    event["pathParameters"] = parameters or None
    event["queryStringParameters"] = event["multiValueQueryStringParameters"] = None
    return event


def test_provider_callback_refusals_answer_as_documented(api, internet, stack):
    video, call = submitted(api, internet)
    url = call["body"]["callback_url"]
    key = secret_value(stack, "CallbackTokenSecret")
    missing = "video_00000000000000000000000000000000"
    cases = [
        (api.push(url, internet.success_body(call), token="wrong"), "invalid_callback_token"),
        (api.push(url.replace("/acedata/", "/other/"), internet.success_body(call)), "not_found"),
        (api.push(url, json.dumps({"success": True}).encode()), "invalid_callback"),
        (api.push(url, json.dumps({"task_id": "someone-else"}).encode()), "callback_task_mismatch"),
        (
            api.push(
                url.replace(video["id"], missing),
                json.dumps({"task_id": "x"}).encode(),
                token=callback_token(missing, key),
            ),
            "task_not_found",
        ),
    ]
    for answer, code in cases:
        assert check_answer("POST", CALLBACK, answer)["error"]["code"] == code, answer


# -- the fuzz run reads this document (devstack/fuzz_hooks.py) -------------------------------------------------------------


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
