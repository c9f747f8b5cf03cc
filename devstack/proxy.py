"""API Gateway's REST proxy integration as data (dev-only; no I/O): the Lambda event a request
becomes, the HTTP answer a proxy result becomes, and API Gateway's own error answers, customised
by the template's GatewayResponses as the deployed API would be."""

from __future__ import annotations

import base64
import contextlib
import json
import re
import time
from collections.abc import Mapping
from typing import Any, NamedTuple
from urllib.parse import parse_qsl, unquote

from devstack.template import ACCOUNT, LOCAL_API_ID, Route

Headers = list[tuple[str, str]]


class GatewayError(NamedTuple):
    """One of API Gateway's own answers: response type, default status, message, x-amzn-ErrorType."""

    response_type: str
    status: int
    message: str
    error_type: str | None = None


FORBIDDEN, SERVER_ERROR = "ForbiddenException", "Internal server error"
INVALID_API_KEY = GatewayError("INVALID_API_KEY", 403, "Forbidden", FORBIDDEN)  # missing or unknown x-api-key
NO_ROUTE = GatewayError("MISSING_AUTHENTICATION_TOKEN", 403, "Missing Authentication Token", FORBIDDEN)
# A Lambda authorizer raised "Unauthorized" (or an identity source is missing), denied, or failed;
# API Gateway's body for the last is {"message": null}: the message here keeps one error schema.
UNAUTHORIZED = GatewayError("UNAUTHORIZED", 401, "Unauthorized", "UnauthorizedException")
DENY = "User is not authorized to access this resource with an explicit deny"
ACCESS_DENIED = GatewayError("ACCESS_DENIED", 403, DENY, "AccessDeniedException")
AUTHORIZER_FAILURE = GatewayError("AUTHORIZER_FAILURE", 500, SERVER_ERROR, "AuthorizerConfigurationException")
TOO_LARGE = GatewayError("REQUEST_TOO_LARGE", 413, "Request Too Long")
FUNCTION_ERROR = GatewayError("DEFAULT_5XX", 502, SERVER_ERROR)  # raised, crashed, timed out or malformed
INVOKE_REJECTED = GatewayError("DEFAULT_5XX", 500, SERVER_ERROR)  # Lambda had no free instance in time
_HOP_BY_HOP = {"connection", "content-length", "transfer-encoding", "keep-alive", "date", "server"}
_RESULT_FIELDS = {"statusCode", "headers", "multiValueHeaders", "body", "isBase64Encoded"}


class HttpAnswer(NamedTuple):
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def _single_and_multi(pairs: Headers) -> tuple[dict[str, str] | None, dict[str, list[str]] | None]:
    multi: dict[str, list[str]] = {}
    for name, value in pairs:
        multi.setdefault(name, []).append(value)
    # API Gateway keeps the last value of a repeated name in the single-value map.
    return {name: values[-1] for name, values in multi.items()} or None, multi or None


def header(headers: Headers, name: str) -> str | None:
    """The last value of a header, by case-insensitive name."""
    return next((value for key, value in reversed(headers) if key.lower() == name), None)


def build_event(
    route: Route, path: str, query: str, headers: Headers, body: bytes, binary: bool, context: dict[str, Any]
) -> dict[str, Any]:
    """A REST (v1) proxy event, shaped like events/*.json. `binary`: the Content-Type is a
    BinaryMediaType, so the body goes base64; `context`: stage, domainName, requestId and identity."""
    params = {name: unquote(value) for name, value in (route.match(route.method, path) or {}).items()}
    single_headers, multi_headers = _single_and_multi(headers)
    single_query, multi_query = _single_and_multi(parse_qsl(query, keep_blank_values=True))
    text, encoded = None, False
    if body:
        with contextlib.suppress(UnicodeDecodeError):  # not text: base64 all the same
            text = None if binary else body.decode()
        if text is None:
            text, encoded = base64.b64encode(body).decode(), True
    return {
        "resource": route.path,
        "path": path,
        "httpMethod": route.method,
        "headers": single_headers,
        "multiValueHeaders": multi_headers,
        "queryStringParameters": single_query,
        "multiValueQueryStringParameters": multi_query,
        "pathParameters": params or None,
        "stageVariables": None,
        "requestContext": {
            **context,
            "resourcePath": route.path,
            "httpMethod": route.method,
            "path": f"/{context['stage']}{path}",
            "accountId": ACCOUNT,
            "apiId": LOCAL_API_ID,
            "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000),
            "identity": {**context["identity"], "userAgent": header(headers, "user-agent")},
        },
        "body": text,
        "isBase64Encoded": encoded,
    }


def proxy_answer(result: Any) -> HttpAnswer:
    """The HTTP answer of a Lambda proxy result; ValueError if API Gateway would refuse it."""
    if not isinstance(result, dict) or set(result) - _RESULT_FIELDS:
        raise ValueError(f"not a REST proxy result: {str(result)[:200]}")
    status = result.get("statusCode")
    status = int(status) if isinstance(status, str) and status.isdigit() else status
    if type(status) is not int or not 100 <= status <= 599:
        raise ValueError(f"statusCode {status!r} is not an HTTP status")
    merged: dict[str, list[str]] = {}
    for name, values in (result.get("multiValueHeaders") or {}).items():
        if not isinstance(values, list):
            raise ValueError(f"multiValueHeaders[{name!r}] is not a list")
        merged[name] = [str(value) for value in values]
    for name, value in (result.get("headers") or {}).items():
        if str(value) not in merged.setdefault(name, []):  # a pair in both maps appears once
            merged[name].insert(0, str(value))
    body = result.get("body")
    if body is not None and not isinstance(body, str):
        raise ValueError("body is not a string")
    payload = base64.b64decode(body) if body and result.get("isBase64Encoded") else (body or "").encode()
    kept = {name: values for name, values in merged.items() if name.lower() not in _HOP_BY_HOP}
    return HttpAnswer(status, [(name, value) for name, values in kept.items() for value in values], payload)


def gateway_answer(
    configured: Mapping[str, Any], error: GatewayError, request_id: str, stage: str
) -> HttpAnswer:
    """API Gateway's own answer for `error`, as the template's GatewayResponses (`configured`) customise
    it: a specific entry wins; DEFAULT_4XX/5XX supply what it leaves out."""
    specific = configured.get(error.response_type) or {}
    fallback = configured.get("DEFAULT_4XX" if error.status < 500 else "DEFAULT_5XX") or {}
    status = int(specific.get("StatusCode") or fallback.get("StatusCode") or error.status)
    templates = specific.get("ResponseTemplates") or fallback.get("ResponseTemplates") or {}
    template = templates.get("application/json", '{"message":$context.error.messageString}')
    context = {
        "error.responseType": error.response_type,
        "error.messageString": json.dumps(error.message),
        "error.message": error.message,
        "requestId": request_id,
        "stage": stage,
    }
    body = re.sub(r"\$context\.([A-Za-z.]+[A-Za-z])", lambda found: context.get(found[1], found[0]), template)
    headers = [("Content-Type", "application/json")]
    if error.error_type:
        headers.append(("x-amzn-ErrorType", error.error_type))
    return HttpAnswer(status, headers, body.encode())
