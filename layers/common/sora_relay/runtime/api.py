"""What every API handler shares: the caller's identity, JSON answers, the error mapping, and
how a route describes itself for the OpenAPI document (scripts/openapi.py writes docs/openapi.yaml)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from pydantic import BaseModel, ConfigDict, Field
from pydantic.fields import FieldInfo

from sora_relay.domain.budget import TenantLimits
from sora_relay.domain.errors import (
    ConfigurationError,
    EventBusError,
    InvalidRequest,
    ProviderAuthFailed,
    ProviderProtocolError,
    ProviderUnavailable,
    QueueError,
    RequestTooLarge,
    SoraRelayError,
    StorageError,
    Unauthorized,
    describe_cause,
)
from sora_relay.observability import logger
from sora_relay.runtime.container import current

JSON = content_types.APPLICATION_JSON

# Every route of the API is under /v1 (template.yaml). On the execute-api URL, `event.path` is that
# route path (the stage is not in it); through a custom domain it also carries the domain's base
# path mapping, e.g. `/relay/v1/videos` for the resource `/v1/videos`. So the resolver strips
# whatever whole segments come before the first `/v1` segment, rather than a base path taken from a
# parameter: the mapping is configured on the domain, outside this stack, may be several segments
# deep, and the same function may be reached both ways. A path that already starts with `/v1` is
# left alone (so a `v1` further in, say a video id, is never taken for the version), and a path with
# no `/v1` segment is left alone too and answers not_found.
API_VERSION_PREFIX = "/v1"
STRIP_PREFIXES: list[str | re.Pattern[str]] = [
    re.compile(rf"^(?!{API_VERSION_PREFIX}(?:/|$))(?:/[^/]+)+?(?={API_VERSION_PREFIX}(?:/|$))")
]


# OpenAI's error `type` for each kind of answer: what its SDK and clients written against it read
# (`error.type`); the status picks the exception class (BadRequestError, RateLimitError, ...).
ERROR_TYPES = (
    "invalid_request_error",
    "authentication_error",
    "permission_error",
    "rate_limit_error",
    "insufficient_quota",
    "server_error",
)


def error_type(status: int, code: str) -> str:
    """OpenAI's `type` for an answer: 401 authentication_error, 403 permission_error, 429
    rate_limit_error (insufficient_quota when that is the code, as OpenAI answers a spent quota),
    5xx server_error (what api.openai.com answers), any other 4xx invalid_request_error."""
    if status >= 500:
        return "server_error"
    if status == 429:
        return "insufficient_quota" if code == "insufficient_quota" else "rate_limit_error"
    return {401: "authentication_error", 403: "permission_error"}.get(status, "invalid_request_error")


def error_body(code: str, message: str, param: str | None = None, *, status: int = 400) -> str:
    """An ErrorResponse, written without building the model (this runs on every failed request)."""
    kind = error_type(status, code)
    return json.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})


# Only the OpenAPI document and the tests read these two, so pydantic builds them on first use.
class ErrorDetail(BaseModel):
    """OpenAI's error object: the same four fields, so its SDK reads `code`, `param` and `type`."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    message: str = Field(description="A human-readable explanation; never a stack trace.")
    type: str = Field(
        description=(
            "OpenAI's error type: `invalid_request_error` (400, 404, 409, 413, 422),"
            " `authentication_error` (401), `permission_error` (403), `rate_limit_error` or"
            " `insufficient_quota` (429), `server_error` (5xx)."
        ),
        json_schema_extra={"enum": list(ERROR_TYPES)},
    )
    param: str | None = Field(description="The request field, header or parameter at fault, or null.")
    code: str = Field(
        min_length=1, description="A stable machine-readable code (see `x-error-codes` on each response)."
    )


class ErrorResponse(BaseModel):
    """Every error answer, the service's and API Gateway's."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    error: ErrorDetail


# -- how a route describes itself in the OpenAPI document -----------------------------------------------
# Plain dicts and pydantic Fields: declaring them costs nothing at cold start; Powertools turns them
# into the document only when scripts/openapi.py asks it to (get_openapi_schema).

Handler = TypeVar("Handler", bound=Callable[..., Any])
Input = tuple[Any, FieldInfo]  # a type and its pydantic Field: description, constraints, default


def answer(model: type[BaseModel], description: str) -> dict[str, Any]:
    """A success response of a route's `responses=`: `model` is what the handler returns."""
    return {"description": description, "content": {JSON: {"model": model}}}


def refusal(description: str, *codes: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    """An error response of a route's `responses=`: the error shape, with the codes it can carry."""
    response: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"model": ErrorResponse}},
        "x-error-codes": list(codes),
    }
    if headers:
        response["headers"] = headers
    return response


# What any route can answer once the request is in the function.
SERVER_ERRORS: dict[int, dict[str, Any]] = {
    500: refusal(
        "Our failure: an unexpected error (`internal_error`), DynamoDB or S3 failed (`storage_error`),"
        " SQS or EventBridge failed (`queue_error`, `event_bus_error`), a setting or secret is"
        " missing (`configuration_error`). Never once a create has stored its task: that answers"
        " 202 with the video.",
        "internal_error",
        StorageError.code,
        QueueError.code,
        EventBusError.code,
        ConfigurationError.code,
    ),
}
# ... and a route with an API key (caller() refuses a request without the authorizer's tenant).
OWNER_ERRORS: dict[int, dict[str, Any]] = {
    401: refusal(
        "The request reached the service without the authorizer's tenant (API Gateway's authorizer"
        " normally answers 401 first).",
        "missing_api_key",
    ),
    **SERVER_ERRORS,
}

# ... and a route that asks the provider while the caller waits: the callback route, which fetches a
# provider's signing keys or looks the task up over its API (the provider retries its push). Never
# the create routes: once a create stored its task, these are the task's `error`, answered 202.
PROVIDER_ERRORS: dict[int, dict[str, Any]] = {
    502: refusal(
        "The provider refused our key (`provider_auth_error`) or broke its contract"
        " (`provider_protocol_error`) while the push was checked or looked up.",
        ProviderAuthFailed.code,
        ProviderProtocolError.code,
    ),
    503: refusal(
        "The provider could not be reached to check or look up the push (its signing keys, its"
        " task lookup); try again after `Retry-After` seconds.",
        ProviderUnavailable.code,
        "provider_timeout",
        headers={
            "Retry-After": {
                "required": True,
                "description": "Seconds to wait before trying again (at least 1).",
                "schema": {"type": "integer", "minimum": 1},
            }
        },
    ),
}


class RequestInputs:
    """What a handler reads from the request itself (see reads()). A plain class: a dataclass
    would cost a millisecond of cold start to generate."""

    __slots__ = ("body", "headers", "path", "query")

    def __init__(
        self,
        body: type[BaseModel] | Input | None = None,
        path: dict[str, Input] | None = None,
        query: dict[str, Input] | None = None,
        headers: dict[str, Input] | None = None,
    ) -> None:
        self.body = body
        self.path = path or {}
        self.query = query or {}
        self.headers = headers or {}


def reads(
    *,
    body: type[BaseModel] | Input | None = None,
    path: dict[str, Input] | None = None,
    query: dict[str, Input] | None = None,
    headers: dict[str, Input] | None = None,
) -> Callable[[Handler], Handler]:
    """Declare what a handler reads from the request itself, for the OpenAPI document.

    Powertools documents a handler's typed parameters, but fills them only when it validates
    requests (`enable_validation=True`), which would replace our parsing and error answers (and
    load its validation machinery at cold start). So the handlers read the event themselves, and
    say here what they read; scripts/openapi.py hands it to Powertools' schema generation. It is an
    attribute on the handler: nothing of it runs per request.
    """

    def declare(handler: Handler) -> Handler:
        handler.request_inputs = RequestInputs(body, path, query, headers)  # type: ignore[attr-defined]
        return handler

    return declare


def json_response(
    status: int, body: BaseModel | dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    text = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body)
    return Response(status_code=status, content_type=JSON, body=text, headers=headers)


def authorizer_context(event: APIGatewayProxyEvent) -> dict[str, str]:
    """What the Lambda authorizer handed API Gateway for this request (`tenant_id`, `key_id`,
    `budget_microusd`, `models`), as strings; empty when the route has no authorizer."""
    context = event.raw_event.get("requestContext", {}).get("authorizer") or {}
    return {
        str(key): str(value) for key, value in context.items() if isinstance(value, (str, int, float, bool))
    }


def tenant_limits(event: APIGatewayProxyEvent) -> TenantLimits | None:
    """The caller's tenant's budget and models, as the authorizer gave them; None without a tenant
    (the use cases then read the tenant item, if any)."""
    context = authorizer_context(event)
    return TenantLimits.from_context(context) if context.get("tenant_id") else None


def caller(event: APIGatewayProxyEvent) -> str:
    """The owner of the request: the tenant the Lambda authorizer found for the request's key
    (`requestContext.authorizer.tenant_id`, functions/authorizer). API Gateway lets no request of a
    protected route through without it; a request that has none anyway is refused, never served
    as nobody's."""
    authorizer = event.raw_event.get("requestContext", {}).get("authorizer") or {}
    tenant_id = authorizer.get("tenant_id") if isinstance(authorizer, dict) else None
    if not tenant_id or not isinstance(tenant_id, str):
        raise Unauthorized(
            "An API key is required (Authorization: Bearer or x-api-key header)", code="missing_api_key"
        )
    return tenant_id


def public_base_url(event: APIGatewayProxyEvent) -> str:
    """Our own stage URL, for callback links: configured, or the one this request came in on."""
    configured = current().settings.public_base_url
    if configured:
        return configured
    context = event.request_context
    return f"https://{context.domain_name}/{context.stage}"


def request_body(event: APIGatewayProxyEvent) -> str:
    """The body as text: 413 over the size limit, 400 if it is not UTF-8 (JSON must be)."""
    try:
        body = event.decoded_body or ""
    except (UnicodeDecodeError, ValueError) as error:
        raise InvalidRequest("The request body is not valid UTF-8 JSON", code="invalid_json") from error
    if len(body.encode()) > current().settings.max_request_body_bytes:
        raise RequestTooLarge(
            f"The request body is larger than {current().settings.max_request_body_bytes} bytes"
        )
    return body


def _failure_keys(app: APIGatewayRestResolver, error: Exception) -> dict[str, str]:
    """What a failed request's log line says: the root cause and, if the route names one and the
    handler did not append it, the task (never the body: it holds the prompt)."""
    keys = {"cause": describe_cause(error)}
    parameters = app.current_event.raw_event.get("pathParameters") or {}
    task_id = parameters.get("video_id") or parameters.get("task_id")
    if task_id and "task_id" not in logger.get_current_keys():
        keys["task_id"] = str(task_id)
    return keys


def install_error_handlers(app: APIGatewayRestResolver) -> None:
    """Every failure becomes `{"error": {"message", "type", "param", "code"}}`; no stack trace leaves.

    Ours (5xx) are logged once: a SoraRelayError with its code and root cause (what AWS answered),
    anything else with its traceback.
    """

    @app.exception_handler(SoraRelayError)
    def _known(error: SoraRelayError) -> Response:
        if error.status_code >= 500:
            logger.warning("Request failed", extra={"error_code": error.code, **_failure_keys(app, error)})
        return Response(
            status_code=error.status_code,
            content_type=JSON,
            body=error_body(error.code, error.message, error.param, status=error.status_code),
            headers=error.headers(),
        )

    @app.not_found
    def _no_route(_: Exception) -> Response:  # Powertools: also an unknown method on a known path
        return Response(
            status_code=404, content_type=JSON, body=error_body("not_found", "No such route", status=404)
        )

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("Unexpected error", extra=_failure_keys(app, error))
        return Response(
            status_code=500,
            content_type=JSON,
            body=error_body("internal_error", "Something went wrong on our side", status=500),
        )
