"""What every API handler shares: the caller's identity, JSON answers, and the error mapping."""

from __future__ import annotations

import json
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from pydantic import BaseModel

from sora_relay.domain.errors import (
    InvalidRequest,
    RequestTooLarge,
    SoraRelayError,
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


def error_body(code: str, message: str, param: str | None = None) -> str:
    return json.dumps({"error": {"code": code, "message": message, "param": param}})


def json_response(
    status: int, body: BaseModel | dict[str, Any], headers: dict[str, str] | None = None
) -> Response:
    text = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body)
    return Response(status_code=status, content_type=JSON, body=text, headers=headers)


def caller(event: APIGatewayProxyEvent) -> str:
    """The owner of the request: the id of the API key API Gateway checked."""
    key_id = event.request_context.identity.api_key_id
    if not key_id:
        raise Unauthorized("An API key is required (x-api-key header)", code="missing_api_key")
    return key_id


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
    """Every failure becomes `{"error": {"code", "message", "param"}}`; no stack trace leaves.

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
            body=error_body(error.code, error.message, error.param),
            headers=error.headers(),
        )

    @app.not_found
    def _no_route(_: Exception) -> Response:  # Powertools: also an unknown method on a known path
        return Response(status_code=404, content_type=JSON, body=error_body("not_found", "No such route"))

    @app.exception_handler(Exception)
    def _unexpected(error: Exception) -> Response:
        logger.exception("Unexpected error", extra=_failure_keys(app, error))
        return Response(
            status_code=500,
            content_type=JSON,
            body=error_body("internal_error", "Something went wrong on our side"),
        )
